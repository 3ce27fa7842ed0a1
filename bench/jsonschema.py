"""JSON Schema coverage and speed over JSONSchemaBench, beside llguidance.

For every schema of the shared JSONSchemaBench split (``../shared/data/jsonschema/
jsonschemabench``), structgen compiles the schema for the Llama-3.2 tokenizer (strict: anything
it cannot enforce is a compile failure, never ignored), replays every valid instance (compact
and ``indent=2`` serializations, keys in the order the grammar writes them: schema order, see
``structgen.json_order``) filling the full-vocabulary mask before each token and checking the
token is allowed (and EOS at the end), and feeds every invalid instance, which must be rejected
in every key order. Printed per group and in total: schemas compiled (beside llguidance's own recorded
count from ``peer_results``), compile time p50/p90/max, valid instances accepted, invalid
instances rejected, and per-token mask time p50/p99.

Times are CPU time of the process (compile) or thread (one mask fill), with wall time beside:
on a shared machine wall time mostly measures the other processes. The thread clock costs about
0.3 µs a reading, included in the mask figures of every engine. A first compile of
``{"type": "object"}`` pays each engine's one-time costs before the timed schemas.

Peers run live in the same run when installed and asked for (``--peers llguidance,xgrammar``):
each compiles the same schemas (one compile thread) and replays the same valid instances
(compact only, keys as given), timed around the engine's own fill call; then the ratio of
structgen's CPU times to each peer's over the schemas both compiled.

Each schema runs in a worker process under a time limit (``--timeout``), so a pathological
schema costs a timeout, not the run.

    python bench/jsonschema.py                          # every schema (long: see --limit)
    python bench/jsonschema.py --limit 10 --workers 2   # 10 schemas per group
    python bench/jsonschema.py --groups Github_easy,Kubernetes --json out.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing
import os
import signal
import sys
import time
import warnings
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("STRUCTGEN_CACHE_DIR", "off")  # compile times are measured: never load them
DATA = ROOT.parent / "shared" / "data" / "jsonschema"
# Python puts this file's folder first on sys.path, where this file would hide the jsonschema
# package from structgen (which checks declared names against propertyNames with it)
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT))


def load_schemas(data: Path, groups: list[str] | None, limit: int | None, seed: str = "") -> list:
    """Schemas as dicts (``id``, ``group``, ``schema``, ``tests``, ``peer_key``), per group in a
    stable pseudo-random order (sha256 of ``seed + id``), at most ``limit`` per group."""
    out = []
    for path in sorted((data / "jsonschemabench").glob("*.jsonl")):
        group = path.stem
        if groups and group not in groups:
            continue
        rows = [json.loads(line) for line in path.open(encoding="utf-8")]
        rows.sort(key=lambda r: hashlib.sha256((seed + r["id"]).encode()).hexdigest())
        if limit is not None:
            rows = rows[:limit]
        for r in rows:
            r["peer_key"] = r.get("source_path", "").rsplit("/", 1)[-1]
        out.extend(rows)
    return out


def llguidance_recorded(data: Path) -> dict:
    path = data / "peer_results" / "llguidance_expected_maskbench.json"
    if not path.exists():
        return {}
    return json.loads(path.read_text())


def serializations(doc) -> list[str]:
    compact = json.dumps(doc, ensure_ascii=False, separators=(",", ":"))
    pretty = json.dumps(doc, ensure_ascii=False, indent=2)
    return [compact] if pretty == compact else [compact, pretty]


# ----------------------------------------------------------------------------------------------
# structgen worker
# ----------------------------------------------------------------------------------------------

_STATE: dict = {}


class _Timeout(Exception):
    pass


def _alarm(*_):
    raise _Timeout()


def _init_worker(tokenizer: str, masks: bool) -> None:
    warnings.simplefilter("ignore")
    from structgen import GrammarCompiler
    from structgen.bundled import bundled_encoder, load_bundled_tokenizer

    info = load_bundled_tokenizer(tokenizer)
    _STATE["info"] = info
    _STATE["encode"] = bundled_encoder(tokenizer)
    _STATE["compiler"] = GrammarCompiler(info, cache_enabled=False)
    _STATE["masks"] = masks
    signal.signal(signal.SIGALRM, _alarm)
    from structgen.json_schema import compile_json_schema

    compile_json_schema(_STATE["compiler"], {"type": "object"})  # one-time costs (Lark's own
    # grammar parser, regex tables) are not a schema's compile


def replay(compiled, ids: list[int], eos: int | None, masks: bool, times: list,
           cpu_times: list) -> bool:
    """Feed ``ids``; with ``masks`` check each token against the filled mask first (its wall
    and thread CPU time appended to ``times`` and ``cpu_times``). True when every token is
    allowed and the document is complete at the end."""
    import numpy as np

    from structgen import GrammarMatcher, allocate_token_bitmask

    m = GrammarMatcher(compiled)
    bm = allocate_token_bitmask(1, compiled.vocab_size) if masks else None
    for t in ids:
        if masks:
            t0, c0 = time.perf_counter_ns(), time.thread_time_ns()
            m.fill_next_token_bitmask(bm, 0)
            cpu_times.append(time.thread_time_ns() - c0)
            times.append(time.perf_counter_ns() - t0)
            if not (int(np.asarray(bm)[0, t >> 5]) >> (t & 31)) & 1:
                return False
        if not m.accept_token(t):
            return False
    if masks and eos is not None:
        m.fill_next_token_bitmask(bm, 0)
        if not (int(np.asarray(bm)[0, eos >> 5]) >> (eos & 31)) & 1:
            return False
    return m.is_completed()


def run_structgen(task: tuple) -> dict:
    row, timeout = task
    from structgen.errors import StructgenError
    from structgen.json_order import NOT_ACCEPTED, accepts_in_some_order, order_keys
    from structgen.json_schema import compile_json_schema

    res = {"id": row["id"], "group": row["group"], "status": "ok", "error": "",
           "compile_s": None, "compile_cpu_s": None, "valid": 0, "valid_ok": 0, "reordered": 0,
           "invalid": 0, "invalid_rejected": 0, "mask_ns": [], "mask_cpu_ns": [],
           "rejected_valid": []}
    signal.alarm(timeout)
    try:
        t0, c0 = time.perf_counter(), time.process_time()
        compiled = compile_json_schema(_STATE["compiler"], row["schema"])
        res["compile_cpu_s"] = time.process_time() - c0
        res["compile_s"] = time.perf_counter() - t0
        info = _STATE["info"]
        eos = info.eos_token_ids[0] if getattr(info, "eos_token_ids", None) else None
        for test in row.get("tests", []):
            if test["valid"]:
                # structgen writes properties in schema order: replay the instance with its
                # keys in the order the grammar takes (what MaskBench did for its peers)
                ordered = order_keys(compiled, test["data"])
                if ordered is NOT_ACCEPTED:
                    res["valid"] += 1
                    res["rejected_valid"].append(json.dumps(test["data"])[:300])
                    continue
                res["reordered"] += json.dumps(ordered) != json.dumps(test["data"])
                for text in serializations(ordered):
                    res["valid"] += 1
                    if replay(compiled, _STATE["encode"](text), eos, _STATE["masks"],
                              res["mask_ns"], res["mask_cpu_ns"]):
                        res["valid_ok"] += 1
                    else:
                        res["rejected_valid"].append(text[:300])
            else:
                res["invalid"] += 1
                if not accepts_in_some_order(compiled, test["data"]):
                    res["invalid_rejected"] += 1
    except _Timeout:
        res["status"] = "timeout"
    except StructgenError as exc:
        res["status"] = "unsupported"
        res["error"] = str(exc).splitlines()[0][:200]
    except RecursionError:
        res["status"] = "error"
        res["error"] = "RecursionError"
    except Exception as exc:  # noqa: BLE001 - a bench reports every failure and goes on
        res["status"] = "error"
        res["error"] = f"{type(exc).__name__}: {exc}"[:200]
    finally:
        signal.alarm(0)
    _thin_mask_times(res)
    return res


def _thin_mask_times(res: dict) -> None:
    """Keep the payload small: an even sample of at most 2000 mask times per schema."""
    for key in ("mask_ns", "mask_cpu_ns"):
        ns = res[key]
        res[key] = ns if len(ns) <= 2000 else ns[:: max(1, len(ns) // 2000)]


# ----------------------------------------------------------------------------------------------
# peers
# ----------------------------------------------------------------------------------------------

def run_peer(name: str, rows: list, tokenizer: str, timeout: int) -> list[dict]:
    """Compile and replay with a peer engine in this process (caller runs it in a child)."""
    from bench import peers

    tok = peers.load_peer_tokenizer(tokenizer)
    # one engine for the run: its tokenizer structure (llguidance's LLTokenizer, xgrammar's
    # TokenizerInfo) is built once, as structgen's GrammarCompiler is
    if name == "llguidance":
        eng = peers.LLGuidancePeer(json_options={})
    elif name == "xgrammar":
        eng = _XGrammarSchemaPeer()
    else:
        raise ValueError(name)
    signal.signal(signal.SIGALRM, _alarm)
    eng.schema = {"type": "object"}
    eng.compile_json(tok)  # one-time costs (tokenizer structure) are not a schema's compile
    out = []
    started = time.time()
    for i, row in enumerate(rows, 1):
        if i % 100 == 0:
            print(f"  {name}: {i}/{len(rows)} schemas, {time.time() - started:.0f} s", file=sys.stderr)
        res = {"id": row["id"], "group": row["group"], "status": "ok", "compile_s": None,
               "compile_cpu_s": None, "valid": 0, "valid_ok": 0, "mask_ns": [],
               "mask_cpu_ns": []}
        signal.alarm(timeout)
        try:
            eng.schema = row["schema"]
            c0 = time.process_time()
            res["compile_s"] = eng.compile_json(tok)
            res["compile_cpu_s"] = time.process_time() - c0
            fill = _raw_fill(name, eng)
            for test in row.get("tests", []):
                if not test["valid"]:
                    continue
                text = json.dumps(test["data"], ensure_ascii=False, separators=(",", ":"))
                res["valid"] += 1
                eng.new_matcher()
                ok = True
                for t in tok.encode(text):
                    t0, c0 = time.perf_counter_ns(), time.thread_time_ns()
                    fill()
                    res["mask_cpu_ns"].append(time.thread_time_ns() - c0)
                    res["mask_ns"].append(time.perf_counter_ns() - t0)
                    if not eng.accept(t):
                        ok = False
                        break
                res["valid_ok"] += ok
        except _Timeout:
            res["status"] = "timeout"
        except Exception as exc:  # noqa: BLE001
            res["status"] = "unsupported"
            res["error"] = str(exc)[:200]
        finally:
            signal.alarm(0)
        _thin_mask_times(res)
        out.append(res)
    return out


def _raw_fill(name: str, eng):
    """The engine's own mask fill call, without the adapter's popcount (timed here the same
    way as structgen's ``fill_next_token_bitmask``)."""
    if name == "llguidance":
        return lambda: eng.matcher.unsafe_compute_mask_ptr(eng.bitmask.ctypes.data,
                                                           eng.bitmask.nbytes)
    return lambda: eng.base.matcher.fill_next_token_bitmask(eng.base.bitmask)


class _XGrammarSchemaPeer:
    """xgrammar with ``compile_json_schema`` (its defaults: any whitespace, strict mode), one
    compile thread like structgen's."""

    def __init__(self) -> None:
        from bench import peers

        self.schema = None
        self.base = peers.XGrammarPeer(max_threads=1)
        self.last_fill_ns = 0

    def compile_json(self, tok) -> float:
        import xgrammar as xgr

        info = self.base._tokenizer_info(tok)
        compiler = xgr.GrammarCompiler(info, max_threads=1, cache_enabled=False)
        t0 = time.perf_counter()
        self.base.compiled = compiler.compile_json_schema(json.dumps(self.schema))
        self.base.tok = tok
        return time.perf_counter() - t0

    def new_matcher(self) -> None:
        self.base.new_matcher()

    def fill_mask(self) -> int:
        n = self.base.fill_mask()
        self.last_fill_ns = self.base.last_fill_ns
        return n

    def accept(self, t: int) -> bool:
        return self.base.accept(t)


def _peer_child(conn, name, rows, tokenizer, timeout) -> None:
    try:
        conn.send(("ok", run_peer(name, rows, tokenizer, timeout)))
    except Exception as exc:  # noqa: BLE001
        conn.send(("error", repr(exc)))
    conn.close()


# ----------------------------------------------------------------------------------------------
# report
# ----------------------------------------------------------------------------------------------

def pct(xs, q):
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def _times(rs: list[dict]) -> dict:
    """Compile (ms) and mask (µs) percentiles of compiled schemas: CPU time (the figure a busy
    shared machine does not distort) and wall time."""
    comp = [r["compile_cpu_s"] for r in rs if r.get("compile_cpu_s") is not None]
    wall = [r["compile_s"] for r in rs if r.get("compile_s") is not None]
    mask = [x for r in rs for x in r.get("mask_cpu_ns", [])]
    mwall = [x for r in rs for x in r["mask_ns"]]
    return {
        "compile_p50_ms": 1e3 * pct(comp, 0.5), "compile_p90_ms": 1e3 * pct(comp, 0.9),
        "compile_max_ms": 1e3 * max(comp) if comp else float("nan"),
        "compile_wall_p50_ms": 1e3 * pct(wall, 0.5), "compile_wall_p90_ms": 1e3 * pct(wall, 0.9),
        "mask_p50_us": pct(mask, 0.5) / 1e3, "mask_p99_us": pct(mask, 0.99) / 1e3,
        "mask_wall_p50_us": pct(mwall, 0.5) / 1e3, "mask_wall_p99_us": pct(mwall, 0.99) / 1e3,
    }


def summarize(results: list[dict], recorded: dict, rows: list, peer_results: dict) -> dict:
    by_group = defaultdict(list)
    for r in results:
        by_group[r["group"]].append(r)
    peer_key = {r["id"]: r["peer_key"] for r in rows}
    table = []
    for group in sorted(by_group) + ["TOTAL"]:
        rs = results if group == "TOTAL" else by_group[group]
        ok = [r for r in rs if r["status"] == "ok"]
        llg_rec = sum(1 for r in rs if peer_key[r["id"]] in recorded
                      and "json_error" not in recorded[peer_key[r["id"]]])
        row = {
            "group": group, "schemas": len(rs), "compiled": len(ok), "llg_recorded": llg_rec,
            "timeouts": sum(r["status"] == "timeout" for r in rs), **_times(ok),
            "valid": sum(r["valid"] for r in ok), "valid_ok": sum(r["valid_ok"] for r in ok),
            "reordered": sum(r.get("reordered", 0) for r in ok),
            "invalid": sum(r["invalid"] for r in ok),
            "invalid_rejected": sum(r["invalid_rejected"] for r in ok),
        }
        for name, prs in peer_results.items():
            ps = prs if group == "TOTAL" else [p for p in prs if p["group"] == group]
            pok = [p for p in ps if p["status"] == "ok"]
            row[f"{name}_compiled"] = len(pok)
            row[f"{name}_timeouts"] = sum(p["status"] == "timeout" for p in ps)
            row[f"{name}_valid"] = sum(p["valid"] for p in pok)
            row[f"{name}_valid_ok"] = sum(p["valid_ok"] for p in pok)
            row.update({f"{name}_{k}": v for k, v in _times(pok).items()})
        table.append(row)
    return {"table": table, "ratios": ratios(results, peer_results)}


def ratios(results: list[dict], peer_results: dict) -> dict:
    """structgen's CPU time over each peer's, on the schemas both compiled (compile) and over
    each engine's own replays of those schemas' valid instances (mask: structgen replays the
    compact and indented forms, the peers the compact one). Below 1: structgen faster."""
    ours = {r["id"]: r for r in results if r["status"] == "ok"}
    out = {}
    for name, prs in peer_results.items():
        theirs = {p["id"]: p for p in prs if p["status"] == "ok"}
        both = sorted(set(ours) & set(theirs))
        a = _times([ours[i] for i in both])
        b = _times([theirs[i] for i in both])
        out[name] = {"schemas": len(both), **{k: a[k] / b[k] if b[k] else float("nan")
                                                 for k in ("compile_p50_ms", "compile_p90_ms",
                                                           "mask_p50_us", "mask_p99_us")}}
    return out


def print_table(summary: dict, peers_run: list[str]) -> None:
    print("compile: CPU ms p50/p90/max (wall p90); mask: CPU µs p50/p99 (wall p50/p99)")
    head = (f"{'group':24s} {'schemas':>7s} {'compiled':>8s} {'llg(rec)':>8s} {'t/o':>4s} "
            f"{'cmp p50':>7s} {'p90':>7s} {'max':>6s} {'(wall)':>7s} {'valid ok':>11s} "
            f"{'invalid rej':>12s} {'mask p50':>8s} {'p99':>7s} {'(wall p50, p99)':>16s}")
    for name in peers_run:
        head += f" | {name[:10]:>10s}: compiled, cmp p50/p90, valid ok, mask p50/p99"
    print(head)
    for r in summary["table"]:
        line = (f"{r['group']:24s} {r['schemas']:7d} {r['compiled']:8d} {r['llg_recorded']:8d} "
                f"{r['timeouts']:4d} {r['compile_p50_ms']:7.1f} {r['compile_p90_ms']:7.1f} "
                f"{r['compile_max_ms']:6.0f} {r['compile_wall_p90_ms']:7.0f} "
                f"{r['valid_ok']:5d}/{r['valid']:<5d} {r['invalid_rejected']:5d}/"
                f"{r['invalid']:<6d} {r['mask_p50_us']:8.1f} {r['mask_p99_us']:7.0f} "
                f"({r['mask_wall_p50_us']:6.1f},{r['mask_wall_p99_us']:7.0f})")
        for name in peers_run:
            valid = f"{r[f'{name}_valid_ok']}/{r[f'{name}_valid']}"
            line += (f" | {r[f'{name}_compiled']:4d} {r[f'{name}_compile_p50_ms']:7.1f}/"
                     f"{r[f'{name}_compile_p90_ms']:<7.1f} {valid:>9s} "
                     f"{r[f'{name}_mask_p50_us']:6.1f}/{r[f'{name}_mask_p99_us']:.0f}")
        print(line)
    for name, q in summary.get("ratios", {}).items():
        print(f"structgen / {name} CPU time over the {q['schemas']} schemas both compiled: "
              f"compile p50 {q['compile_p50_ms']:.2f}x, p90 {q['compile_p90_ms']:.2f}x; "
              f"mask p50 {q['mask_p50_us']:.2f}x, p99 {q['mask_p99_us']:.2f}x")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--groups", default="")
    ap.add_argument("--limit", type=int, default=None, help="schemas per group")
    ap.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 1)))
    ap.add_argument("--timeout", type=int, default=60, help="seconds per schema")
    ap.add_argument("--tokenizer", default="llama3")
    ap.add_argument("--no-masks", action="store_true", help="replay without mask checks")
    ap.add_argument("--peers", default="", help="comma list: llguidance,xgrammar")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    if not (args.data / "jsonschemabench").exists():
        print(f"no data at {args.data}", file=sys.stderr)
        return 2
    groups = [g for g in args.groups.split(",") if g] or None
    rows = load_schemas(args.data, groups, args.limit)
    recorded = llguidance_recorded(args.data)
    tasks = [(r, args.timeout) for r in rows]
    t0 = time.time()
    ctx = multiprocessing.get_context("fork")
    results = []
    with ctx.Pool(args.workers, initializer=_init_worker,
                  initargs=(args.tokenizer, not args.no_masks), maxtasksperchild=200) as pool:
        for i, res in enumerate(pool.imap_unordered(run_structgen, tasks, chunksize=1), 1):
            results.append(res)
            if i % 100 == 0:
                print(f"  {i}/{len(tasks)} schemas, {time.time() - t0:.0f} s", file=sys.stderr)
    peer_results = {}
    peers_run = []
    for name in [p for p in args.peers.split(",") if p]:
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=_peer_child,
                           args=(child, name, rows, args.tokenizer, args.timeout))
        proc.start()
        status, payload = parent.recv()
        proc.join()
        if status == "ok":
            peer_results[name] = payload
            peers_run.append(name)
        else:
            print(f"peer {name} unavailable: {payload}", file=sys.stderr)
    summary = summarize(results, recorded, rows, peer_results)
    print(f"JSONSchemaBench ({len(rows)} schemas, tokenizer {args.tokenizer}, "
          f"{time.time() - t0:.0f} s). llg(rec) = llguidance's recorded passes "
          "(peer_results; 3,484 of the 4,264 shared schemas)")
    print_table(summary, peers_run)
    fails = defaultdict(int)
    for r in results:
        if r["status"] != "ok":
            fails[r["error"].split(":")[0] if r["error"] else r["status"]] += 1
    print("\nnot compiled, by keyword:")
    for k, n in sorted(fails.items(), key=lambda x: -x[1])[:25]:
        print(f"  {n:5d}  {k}")
    bad = [(r["id"], t) for r in results for t in r["rejected_valid"]]
    if bad:
        print(f"\nvalid instances rejected ({len(bad)}), first ones:")
        for rid, text in bad[:10]:
            print(f"  {rid}: {text[:120]}")
    if args.json:
        args.json.write_text(json.dumps({"summary": summary, "results": results}, default=str))
    total = summary["table"][-1]
    print(f"\nvalid instances whose keys were not in schema order (replayed reordered): "
          f"{total['reordered']}")
    return 0 if total["valid_ok"] == total["valid"] else 1


if __name__ == "__main__":
    sys.exit(main())
