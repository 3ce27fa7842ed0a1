"""Per-token mask benchmark: structgen beside the peer engines on the generic JSON grammar.

Run from the repository root::

    python bench/mask.py                          # llama3, qwen3, gpt2; every installed engine
    python bench/mask.py --quick                  # gpt2, 3 small documents, no outlines-core
    python bench/mask.py --tokenizers llama3 --engines structgen,xgrammar --json out.json

Documents (from ``../shared/data``, or ``--data``): nativejson-benchmark ``roundtrip/*.json``
and ``jsonchecker/pass*.json``; JSONTestSuite ``y_*.json`` that are valid UTF-8 with an object
or array at the top level; the first valid instance of the first two schemas of every
JSONSchemaBench file (``json.dumps`` of its ``data``); and canada / citm_catalog / twitter cut
to their first ``--big-tokens`` tokens. Any document longer than ``--max-doc-tokens`` is cut
too. A cut document is a prefix, so it gets no EOS check. Every document is tokenized once, in
this process, and every engine replays the same ids.

Every engine runs in its own child process per tokenizer (this same file with ``--child``),
so engines share no caches and each one's peak memory is its own. The child replays every
document twice -- a first pass right after compiling (lazy cache fills count) and a warm pass
on the same compiled grammar -- filling the full-vocabulary mask before each token and after
the last one (that mask must allow EOS), and prints one JSON line. This process turns those
lines into the table, the structgen/peer ratios over the documents both engines accept, and
the issue's bars for llama3. ``bench/README.md`` says what each column means.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("STRUCTGEN_CACHE_DIR", "off")  # compile times are measured: never load them
if str(REPO) not in sys.path:  # `python bench/mask.py` puts bench/ on sys.path, not the root
    sys.path.insert(0, str(REPO))

DEFAULT_DATA = REPO.parent / "shared" / "data"
TOKENIZERS = ("llama3", "qwen3", "gpt2")
ENGINES = ("structgen", "xgrammar", "llguidance", "outlines-core")
PEER_MODULES = {"xgrammar": "xgrammar", "llguidance": "llguidance",
                "outlines-core": "outlines_core"}
RESULT_PREFIX = "MASK-BENCH-RESULT "
BATCH_SIZE = 32
BARS_TOKENIZER = "llama3"


# ---------------------------------------------------------------------------------------------
# Documents
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Document:
    """A JSON text to replay; ``max_tokens`` cuts it (then it is a prefix: no EOS check)."""

    name: str
    text: str
    max_tokens: int | None = None


def _read_text(path: Path) -> str | None:
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        return None


def _is_container_json(text: str) -> bool:
    try:
        return isinstance(json.loads(text), (dict, list))
    except ValueError:
        return False


def _schema_instances(folder: Path, per_file: int) -> list[Document]:
    """The first valid instance of the first ``per_file`` schemas (that have one) per file."""
    docs: list[Document] = []
    for path in sorted(folder.glob("*.jsonl")):
        taken = 0
        with path.open(encoding="utf-8") as f:
            for line in f:
                if taken == per_file:
                    break
                record = json.loads(line)
                valid = [t for t in record.get("tests") or [] if t.get("valid") is True]
                if valid:
                    docs.append(Document(f"jsonschemabench/{record['id']}",
                                         json.dumps(valid[0]["data"])))
                    taken += 1
    return docs


def load_documents(data: Path, *, quick: bool, big_tokens: int,
                   schemas_per_file: int) -> list[Document]:
    """The benchmark's documents, in a fixed order (see the module docstring)."""
    native = data / "json" / "nativejson-benchmark"
    suite = data / "json" / "JSONTestSuite" / "test_parsing"
    schemas = data / "jsonschema" / "jsonschemabench"
    if quick:
        picked = [Document(f"jsonchecker/{n}", (native / "jsonchecker" / n).read_text("utf-8"))
                  for n in ("pass02.json", "pass03.json")]
        return picked + _schema_instances(schemas, 1)[:1]
    docs: list[Document] = []
    for path in sorted((native / "roundtrip").glob("*.json")):
        docs.append(Document(f"roundtrip/{path.name}", path.read_text("utf-8")))
    for path in sorted((native / "jsonchecker").glob("pass*.json")):
        docs.append(Document(f"jsonchecker/{path.name}", path.read_text("utf-8")))
    for path in sorted(suite.glob("y_*.json")):
        text = _read_text(path)
        if text is not None and _is_container_json(text):
            docs.append(Document(f"JSONTestSuite/{path.name}", text))
    docs.extend(_schema_instances(schemas, schemas_per_file))
    for name in ("canada.json", "citm_catalog.json", "twitter.json"):
        docs.append(Document(f"{name}[:{big_tokens} tokens]", (native / name).read_text("utf-8"),
                             max_tokens=big_tokens))
    return docs


def tokenize_documents(docs: Iterable[Document], encode: Callable[[str], list[int]],
                       max_doc_tokens: int) -> list[dict[str, Any]]:
    """Token ids per document. Cutting happens on tokens (the text is shortened first only so
    that multi-megabyte files are not encoded whole; the prefix kept is always long enough)."""
    out = []
    for doc in docs:
        limit = min(doc.max_tokens or max_doc_tokens, max_doc_tokens)
        chars = 8 * limit
        while True:
            ids = list(encode(doc.text[:chars]))
            if len(ids) > limit + 8 or chars >= len(doc.text):
                break
            chars *= 2
        cut = len(ids) > limit
        if cut:
            ids = ids[:limit]
        out.append({"name": doc.name, "ids": [int(t) for t in ids], "complete": not cut})
    return out


# ---------------------------------------------------------------------------------------------
# Child side: measuring one engine on one tokenizer
# ---------------------------------------------------------------------------------------------


def _status_kib(key: str) -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def memory_baseline() -> tuple[float, str]:
    """Current RSS in MB, and the peak counter is restarted from it where Linux allows.

    ``ru_maxrss`` of a child started by ``subprocess`` starts at the *parent's* peak (the
    kernel carries it across exec), so on Linux the peak is read from ``VmHWM`` instead, which
    belongs to this process's own memory map and can be reset (``/proc/self/clear_refs``).
    """
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
            f.write("5")
        rss = _status_kib("VmRSS")
        if rss is not None:
            return rss / 1024, "VmHWM"
    except OSError:
        pass
    import resource

    scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20, "ru_maxrss"


def memory_peak(source: str) -> float:
    """Peak RSS in MB since :func:`memory_baseline` (or since start, for ``ru_maxrss``)."""
    if source == "VmHWM":
        hwm = _status_kib("VmHWM")
        if hwm is not None:
            return hwm / 1024
    import resource

    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20


class StructgenDriver:
    """structgen behind the same interface as the peer adapters in ``bench/peers.py``."""

    name = "structgen"

    def __init__(self, compiled: Any, info: Any) -> None:
        from structgen import GrammarMatcher, allocate_token_bitmask

        self._matcher_cls = GrammarMatcher
        self.compiled = compiled
        self.vocab_size = info.vocab_size
        self.bitmask = allocate_token_bitmask(1, info.vocab_size)
        self.matcher: Any = None
        self.last_fill_ns = 0

    def new_matcher(self) -> None:
        self.matcher = self._matcher_cls(self.compiled)

    def fill_mask(self) -> None:
        m, bm = self.matcher, self.bitmask
        t0 = time.perf_counter_ns()
        m.fill_next_token_bitmask(bm, 0)
        self.last_fill_ns = time.perf_counter_ns() - t0

    def accept(self, token_id: int) -> bool:
        return bool(self.matcher.accept_token(token_id))


def _count_without(bitmask: np.ndarray, vocab_size: int, excluded: list[int]) -> int:
    from bench.peers import bit_is_set, count_allowed

    row = np.asarray(bitmask).reshape(-1)
    return count_allowed(row, vocab_size) - sum(bit_is_set(row, e) for e in excluded)


def replay(driver: Any, docs: list[dict], eos_id: int, *, vocab_size: int,
           excluded: list[int] | None) -> list[dict[str, Any]]:
    """Replay every document on a fresh matcher. Per document: mask-fill and accept times (ns)
    up to the first rejected token, and, when ``excluded`` is given, the allowed-token count at
    each position (EOS ids left out) and how often the mask disagreed with ``accept``."""
    from bench.peers import bit_is_set

    results = []
    for doc in docs:
        fills: list[int] = []
        accepts: list[int] = []
        counts: list[int] = []
        mask_disagreements = 0
        rejected_at = None
        eos_ok = None
        error = None
        try:
            driver.new_matcher()
            for i, tid in enumerate(doc["ids"]):
                driver.fill_mask()
                fills.append(driver.last_fill_ns)
                in_mask = bit_is_set(driver.bitmask, tid) if excluded is not None else None
                if excluded is not None:
                    counts.append(_count_without(driver.bitmask, vocab_size, excluded))
                t0 = time.perf_counter_ns()
                ok = driver.accept(tid)
                accepts.append(time.perf_counter_ns() - t0)
                if in_mask is not None and in_mask != ok:
                    mask_disagreements += 1
                if not ok:
                    rejected_at = i
                    break
            if rejected_at is None and doc["complete"]:
                driver.fill_mask()
                fills.append(driver.last_fill_ns)
                if excluded is not None:
                    counts.append(_count_without(driver.bitmask, vocab_size, excluded))
                eos_ok = bit_is_set(driver.bitmask, eos_id) and driver.accept(eos_id)
        except Exception as e:  # noqa: BLE001 - a crash on one document is a result, not a stop
            error = f"{type(e).__name__}: {e}"
        accepted = error is None and rejected_at is None and (not doc["complete"] or eos_ok)
        results.append({"name": doc["name"], "accepted": bool(accepted),
                        "rejected_at": rejected_at, "eos_ok": eos_ok, "error": error,
                        "fill_ns": fills, "accept_ns": accepts, "counts": counts,
                        "mask_disagreements": mask_disagreements})
    return results


def _two_passes(driver: Any, docs: list[dict], eos_id: int, vocab_size: int,
                excluded: list[int]) -> dict[str, Any]:
    gc.collect()
    first = replay(driver, docs, eos_id, vocab_size=vocab_size, excluded=excluded)
    gc.collect()
    warm = replay(driver, docs, eos_id, vocab_size=vocab_size, excluded=None)
    first_mask_ns = first[0]["fill_ns"][0] if first and first[0]["fill_ns"] else None
    return {"first_mask_ns": first_mask_ns, "first": first,
            "warm": [{"name": r["name"], "accepted": r["accepted"], "fill_ns": r["fill_ns"],
                      "accept_ns": r["accept_ns"]} for r in warm]}


def _position_matchers(matcher_cls: Any, compiled: Any, streams: list[list[int]],
                       n: int) -> list[dict[str, Any]]:
    """``n`` matchers at different documents and offsets (deterministic)."""
    rows = []
    for i in range(n):
        doc = i % len(streams)
        ids = streams[doc]
        offset = (i * 7) % len(ids)
        m = matcher_cls(compiled)
        for tid in ids[:offset]:
            m.accept_token(tid)
        rows.append({"m": m, "doc": doc, "pos": offset})
    return rows


def _advance(rows: list[dict[str, Any]], streams: list[list[int]], matcher_cls: Any,
             compiled: Any) -> None:
    for row in rows:
        ids = streams[row["doc"]]
        if row["pos"] >= len(ids) or not row["m"].accept_token(ids[row["pos"]]):
            row["doc"] = (row["doc"] + 1) % len(streams)
            row["m"] = matcher_cls(compiled)
            row["pos"] = 0
        else:
            row["pos"] += 1


def bench_batch(compiled: Any, info: Any, streams: list[list[int]], steps: int) -> dict[str, Any]:
    """Time ``batch_fill_next_token_bitmask`` on 32 matchers with 1 and 2 threads (same
    positions for both), and a plain loop of ``fill_next_token_bitmask`` for reference."""
    import structgen
    from structgen import GrammarMatcher, allocate_token_bitmask

    batch_fill = getattr(structgen, "batch_fill_next_token_bitmask", None)
    if batch_fill is None or not streams:
        return {"available": False}
    bitmask = allocate_token_bitmask(BATCH_SIZE, info.vocab_size)
    check = allocate_token_bitmask(BATCH_SIZE, info.vocab_size)
    mismatches = 0

    def serial(matchers: list, out: Any = bitmask) -> None:
        for i, m in enumerate(matchers):
            m.fill_next_token_bitmask(out, i)

    def run(fill: Callable[[list], None], verify: bool) -> list[int]:
        nonlocal mismatches
        rows = _position_matchers(GrammarMatcher, compiled, streams, BATCH_SIZE)
        times = []
        gc.collect()
        for step in range(steps):
            matchers = [r["m"] for r in rows]
            t0 = time.perf_counter_ns()
            fill(matchers)
            times.append(time.perf_counter_ns() - t0)
            if verify and step < 10:  # untimed: the batch rows must equal single fills
                serial(matchers, check)
                mismatches += int(not np.array_equal(np.asarray(bitmask), np.asarray(check)))
            _advance(rows, streams, GrammarMatcher, compiled)
        return times

    out: dict[str, Any] = {"available": True, "batch": BATCH_SIZE, "steps": steps}
    try:
        out["serial_ns"] = run(serial, verify=False)
        for k in (1, 2):
            out[f"threads{k}_ns"] = run(lambda ms, k=k: batch_fill(ms, bitmask, num_threads=k),
                                        verify=True)
    except Exception as e:  # noqa: BLE001
        return {"available": True, "error": f"{type(e).__name__}: {e}"}
    out["mismatched_steps"] = mismatches
    return out


def bench_save_load(full: Any, info: Any, doc_ids: list[int], tmp: Path) -> dict[str, Any]:
    """Save the fully compiled grammar, load it back, and check the loaded masks on a document."""
    from structgen import CompiledGrammar, GrammarMatcher, allocate_token_bitmask

    if not (hasattr(full, "save") and hasattr(CompiledGrammar, "load")):
        return {"available": False}
    path = tmp / "json.structgen"
    try:
        t0 = time.perf_counter()
        full.save(path)
        save_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        loaded = CompiledGrammar.load(path, info)
        load_s = time.perf_counter() - t0
        a, b = GrammarMatcher(full), GrammarMatcher(loaded)
        bm_a = allocate_token_bitmask(1, info.vocab_size)
        bm_b = allocate_token_bitmask(1, info.vocab_size)
        t0 = time.perf_counter_ns()
        b.fill_next_token_bitmask(bm_b, 0)
        first_mask_ns = time.perf_counter_ns() - t0
        same = True
        for tid in doc_ids[:200]:
            a.fill_next_token_bitmask(bm_a, 0)
            b.fill_next_token_bitmask(bm_b, 0)
            same = same and bool(np.array_equal(np.asarray(bm_a), np.asarray(bm_b)))
            if not (a.accept_token(tid) and b.accept_token(tid)):
                break
    except Exception as e:  # noqa: BLE001
        return {"available": True, "error": f"{type(e).__name__}: {e}"}
    return {"available": True, "save_s": save_s, "load_s": load_s,
            "file_bytes": path.stat().st_size, "first_mask_after_load_ns": first_mask_ns,
            "masks_equal": same}


def child_structgen(spec: dict[str, Any], opts: argparse.Namespace) -> dict[str, Any]:
    """Lazy compile, then the two replay passes; cache size after them."""
    import structgen
    from structgen import GrammarCompiler
    from structgen.bundled import load_bundled_tokenizer

    t0 = time.perf_counter()
    info = load_bundled_tokenizer(spec["tokenizer"])
    tokenizer_s = time.perf_counter() - t0
    base_mb, mem_source = memory_baseline()
    eos_id = int(info.eos_token_ids[0])
    excluded = sorted(set(spec["eos_ids"]) | {int(e) for e in info.eos_token_ids})

    t0 = time.perf_counter()
    compiler = GrammarCompiler(info, cache_enabled=False)
    setup_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    compiled = compiler.compile_builtin("json")
    lazy_s = time.perf_counter() - t0

    driver = StructgenDriver(compiled, info)
    passes = _two_passes(driver, spec["docs"], eos_id, info.vocab_size, excluded)
    peak_mb = memory_peak(mem_source) - base_mb
    masker = compiled.native_masker
    # The first compile in a process also pays one-time costs (lazy imports, Lark building its
    # own grammar parser); a second lazy compile on a fresh compiler shows them apart.
    t0 = time.perf_counter()
    GrammarCompiler(info, cache_enabled=False).compile_builtin("json")
    repeat_s = time.perf_counter() - t0
    return {"engine": "structgen", "version": structgen.__version__,
            "tokenizer_load_s": tokenizer_s, "setup_s": setup_s, "compile_s": lazy_s,
            "repeat_compile_s": repeat_s, "peak_mb": peak_mb, "baseline_mb": base_mb,
            "memory_source": mem_source,
            "cache": {"entries": int(masker.cache_entries), "bytes": int(masker.cache_bytes)},
            **passes}


def child_structgen_full(spec: dict[str, Any], opts: argparse.Namespace) -> dict[str, Any]:
    """Full precompute, save / load and batch fills, in a process of their own so that
    nothing the lazy run built (in any process-wide cache) is reused."""
    from structgen import GrammarCompiler
    from structgen.bundled import load_bundled_tokenizer

    info = load_bundled_tokenizer(spec["tokenizer"])
    base_mb, mem_source = memory_baseline()
    t0 = time.perf_counter()
    compiler = GrammarCompiler(info, cache_enabled=False)
    setup_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    full = compiler.compile_builtin("json", precompute=True)
    full_s = time.perf_counter() - t0
    full_peak = memory_peak(mem_source) - base_mb
    masker = full.native_masker
    complete = [d["ids"] for d in spec["docs"] if d["ids"]]
    with tempfile.TemporaryDirectory(prefix="structgen-bench-") as tmp:
        save_load = bench_save_load(full, info, complete[0] if complete else [], Path(tmp))
    return {"engine": "structgen-full", "full_setup_s": setup_s, "full_compile_s": full_s,
            "full_peak_mb": full_peak,
            "full_cache": {"entries": int(masker.cache_entries), "bytes": int(masker.cache_bytes)},
            "save_load": save_load, "batch": bench_batch(full, info, complete, opts.batch_steps)}


def child_peer(spec: dict[str, Any], opts: argparse.Namespace) -> dict[str, Any]:
    from bench import peers

    classes = {"xgrammar": peers.XGrammarPeer, "llguidance": peers.LLGuidancePeer,
               "outlines-core": peers.OutlinesCorePeer}
    name = opts.child
    kwargs: dict[str, Any] = {}
    if name == "outlines-core":
        # Compile in this process (the parent's timeout bounds it) so its memory counts here.
        kwargs["max_compile_s"] = None
    try:
        engine = classes[name](**kwargs)
    except Exception as e:  # noqa: BLE001
        return {"engine": name, "unavailable": f"{type(e).__name__}: {e}"}
    t0 = time.perf_counter()
    tok = peers.load_peer_tokenizer(spec["tokenizer"])
    tokenizer_s = time.perf_counter() - t0
    base_mb, mem_source = memory_baseline()
    try:
        compile_s = engine.compile_json(tok)
    except Exception as e:  # noqa: BLE001
        return {"engine": name, "version": engine.version,
                "unavailable": f"compile failed: {type(e).__name__}: {e}"}
    excluded = sorted(set(spec["eos_ids"]) | {tok.eos_token_id})
    passes = _two_passes(engine, spec["docs"], tok.eos_token_id, tok.vocab_size, excluded)
    return {"engine": name, "version": engine.version, "tokenizer_load_s": tokenizer_s,
            "setup_s": engine.setup_s, "compile_s": compile_s, "full_compile_s": None,
            "peak_mb": memory_peak(mem_source) - base_mb, "baseline_mb": base_mb,
            "memory_source": mem_source, **passes}


def child_main(opts: argparse.Namespace) -> int:
    with open(opts.docs_file, encoding="utf-8") as f:
        spec = json.load(f)
    run = {"structgen": child_structgen, "structgen-full": child_structgen_full}.get(
        opts.child, child_peer)
    try:
        result = run(spec, opts)
    except Exception as e:  # noqa: BLE001 - reported in the table, the other engines go on
        import traceback

        traceback.print_exc()
        result = {"engine": opts.child, "error": f"{type(e).__name__}: {e}"}
    sys.stdout.write(RESULT_PREFIX + json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0


# ---------------------------------------------------------------------------------------------
# Parent side: running the children, statistics, the table
# ---------------------------------------------------------------------------------------------


def run_child(engine: str, spec_path: Path, opts: argparse.Namespace) -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", engine,
           "--docs-file", str(spec_path), "--batch-steps", str(opts.batch_steps)]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=opts.child_timeout,
                              cwd=str(REPO))
    except subprocess.TimeoutExpired:
        return {"engine": engine, "error": f"timed out after {opts.child_timeout} s"}
    wall = time.perf_counter() - t0
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT_PREFIX):
            result = json.loads(line[len(RESULT_PREFIX):])
            result["child_wall_s"] = wall
            if result.get("error"):
                result["stderr_tail"] = proc.stderr[-2000:]
            return result
    return {"engine": engine, "error": f"child exited {proc.returncode} without a result",
            "stderr_tail": proc.stderr[-2000:]}


def _pct(values: list[int], q: float) -> float | None:
    return float(np.percentile(np.asarray(values, dtype=np.float64), q)) / 1e3 if values else None


def _concat(runs: list[dict], key: str, names: set[str] | None) -> list[int]:
    out: list[int] = []
    for r in runs:
        if r["accepted"] and (names is None or r["name"] in names):
            out.extend(r[key])
    return out


def timing_stats(result: dict[str, Any], names: set[str] | None = None) -> dict[str, Any]:
    """p50/p99/max (µs) of mask fills over the documents accepted (restricted to ``names``)."""
    first = _concat(result["first"], "fill_ns", names)
    warm = _concat(result["warm"], "fill_ns", names)
    acc = _concat(result["first"], "accept_ns", names)
    return {"positions": len(first), "p50_us": _pct(first, 50), "p99_us": _pct(first, 99),
            "max_us": max(first) / 1e3 if first else None, "warm_p50_us": _pct(warm, 50),
            "warm_p99_us": _pct(warm, 99), "accept_p50_us": _pct(acc, 50)}


def _accepted(result: dict[str, Any]) -> set[str]:
    return {r["name"] for r in result["first"] if r["accepted"]}


def count_agreement(ours: dict[str, Any], peer: dict[str, Any],
                    common: set[str]) -> dict[str, Any]:
    """Share of positions (documents both accepted) where the allowed-token counts are equal."""
    by_name = {r["name"]: r for r in peer["first"]}
    equal = total = more = 0
    first_diff = None
    for r in ours["first"]:
        if r["name"] not in common:
            continue
        theirs = by_name[r["name"]]["counts"]
        for pos, (a, b) in enumerate(zip(r["counts"], theirs, strict=False)):
            total += 1
            if a == b:
                equal += 1
                continue
            more += a > b
            if first_diff is None:
                first_diff = {"document": r["name"], "position": pos, "structgen": a, "peer": b}
    return {"positions": total, "equal": equal, "structgen_allows_more": more,
            "structgen_allows_fewer": total - equal - more,
            "fraction": equal / total if total else None, "first_difference": first_diff}


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def summarize(tokenizer: str, results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """One row per engine and one ratio row per peer (structgen / peer, common documents)."""
    rows = []
    ratios = []
    ours = results.get("structgen")
    ours_ok = ours is not None and "first" in ours
    for engine, res in results.items():
        row: dict[str, Any] = {"tokenizer": tokenizer, "engine": engine,
                               "version": res.get("version")}
        if "first" not in res:
            row["error"] = res.get("error") or res.get("unavailable")
            rows.append(row)
            continue
        row.update({k: res.get(k) for k in ("setup_s", "compile_s", "full_compile_s",
                                            "tokenizer_load_s", "peak_mb", "child_wall_s")})
        row["first_mask_us"] = (res["first_mask_ns"] / 1e3
                                if res.get("first_mask_ns") is not None else None)
        row.update(timing_stats(res))
        row["docs_accepted"] = len(_accepted(res))
        row["docs_total"] = len(res["first"])
        row["rejected"] = [{"document": r["name"], "token": r["rejected_at"],
                            "eos_ok": r["eos_ok"], "error": r["error"]}
                           for r in res["first"] if not r["accepted"]]
        row["mask_accept_disagreements"] = sum(r["mask_disagreements"] for r in res["first"])
        if engine == "structgen":
            row.update({k: res.get(k) for k in ("cache", "full_cache", "save_load",
                                                "full_peak_mb", "full_error",
                                                "repeat_compile_s")})
            row["batch"] = _batch_summary(res.get("batch") or {})
        elif ours_ok:
            common = _accepted(ours) & _accepted(res)
            s_ours, s_peer = timing_stats(ours, common), timing_stats(res, common)
            agree = count_agreement(ours, res, common)
            row["count_agreement"] = agree["fraction"]
            ratios.append({
                "tokenizer": tokenizer, "peer": engine, "common_docs": len(common),
                "positions": s_ours["positions"],
                **{f"{k}_ratio": _ratio(s_ours[f"{k}_us"], s_peer[f"{k}_us"])
                   for k in ("p50", "p99", "warm_p50", "warm_p99")},
                "structgen": s_ours, "peer_stats": s_peer, "count_agreement": agree})
        rows.append(row)
    return {"rows": rows, "ratios": ratios}


def _batch_summary(batch: dict[str, Any]) -> dict[str, Any]:
    if not batch.get("available") or "threads1_ns" not in batch:
        return {k: v for k, v in batch.items() if not k.endswith("_ns")}
    med = {k: float(np.median(batch[f"{k}_ns"])) / 1e3 for k in ("serial", "threads1", "threads2")}
    return {"available": True, "batch": batch["batch"], "steps": batch["steps"],
            "mismatched_steps": batch.get("mismatched_steps"), "serial_us": med["serial"], "threads1_us": med["threads1"],
            "threads2_us": med["threads2"], "speedup_2_vs_1": med["threads1"] / med["threads2"]}


def _f(value: Any, fmt: str = "{:.1f}", na: str = "—") -> str:
    return na if value is None else fmt.format(value)


TABLE_COLUMNS = [  # header, width, row -> text
    ("tokenizer", 9, lambda r: r["tokenizer"]),
    ("engine", 13, lambda r: r["engine"]),
    ("version", 8, lambda r: r.get("version") or "—"),
    ("setup ms", 9, lambda r: _f(r.get("setup_s") and r["setup_s"] * 1e3, "{:.0f}")),
    ("compile ms", 10, lambda r: _f(r.get("compile_s") and r["compile_s"] * 1e3)),
    ("full ms", 8, lambda r: _f(r.get("full_compile_s") and r["full_compile_s"] * 1e3, "{:.0f}")),
    ("1st mask µs", 11, lambda r: _f(r.get("first_mask_us"), "{:.0f}")),
    ("p50 µs", 7, lambda r: _f(r.get("p50_us"))),
    ("p99 µs", 8, lambda r: _f(r.get("p99_us"))),
    ("max µs", 8, lambda r: _f(r.get("max_us"), "{:.0f}")),
    ("warm p50", 8, lambda r: _f(r.get("warm_p50_us"))),
    ("warm p99", 8, lambda r: _f(r.get("warm_p99_us"))),
    ("accept p50", 10, lambda r: _f(r.get("accept_p50_us"))),
    ("docs ok", 8, lambda r: f"{r['docs_accepted']}/{r['docs_total']}"),
    ("counts=", 7, lambda r: _f(r.get("count_agreement"), "{:.1%}")),
    ("peak MB", 7, lambda r: _f(r.get("peak_mb"), "{:.0f}")),
]


def format_table(rows: list[dict[str, Any]]) -> str:
    head = "  ".join(h.rjust(w) if i > 2 else h.ljust(w)
                     for i, (h, w, _) in enumerate(TABLE_COLUMNS))
    lines = [head, "-" * len(head)]
    for r in rows:
        if r.get("error"):
            lines.append(f"{r['tokenizer']:<9}  {r['engine']:<13}  not run: {r['error']}")
            continue
        lines.append("  ".join(fn(r).rjust(w) if i > 2 else fn(r).ljust(w)
                               for i, (_, w, fn) in enumerate(TABLE_COLUMNS)))
    return "\n".join(lines)


def format_ratios(ratios: list[dict[str, Any]]) -> str:
    head = (f"{'tokenizer':<9}  {'structgen / peer':<24}  {'common docs':>11}  "
            f"{'positions':>9}  {'p50':>8}  {'p99':>8}  {'warm p50':>8}  {'warm p99':>8}  "
            f"{'counts equal':>12}")
    lines = [head, "-" * len(head)]
    for q in ratios:
        agree = q["count_agreement"]
        x = "{:.2f}x"
        lines.append(
            f"{q['tokenizer']:<9}  {'structgen / ' + q['peer']:<24}  {q['common_docs']:>11}  "
            f"{q['positions']:>9}  {_f(q['p50_ratio'], x):>8}  {_f(q['p99_ratio'], x):>8}  "
            f"{_f(q['warm_p50_ratio'], x):>8}  {_f(q['warm_p99_ratio'], x):>8}  "
            f"{_f(agree['fraction'], '{:.1%}'):>12}")
    return "\n".join(lines)


def format_structgen_extras(rows: list[dict[str, Any]]) -> str:
    lines = []
    for r in rows:
        if r["engine"] != "structgen" or r.get("error"):
            continue
        cache, full = r.get("cache") or {}, r.get("full_cache") or {}
        repeat = r.get("repeat_compile_s")
        parts = [f"lazy compile again on a fresh compiler, same process "
                 f"{_f(repeat and repeat * 1e3)} ms",
                 f"cache after the run {cache.get('entries')} entries / "
                 f"{cache.get('bytes', 0) / 2**20:.1f} MB"]
        if r.get("full_error"):
            parts.append(f"full precompute failed: {r['full_error']}")
        else:
            parts.append(f"after full precompute {full.get('entries')} entries / "
                         f"{full.get('bytes', 0) / 2**20:.1f} MB, peak "
                         f"{_f(r.get('full_peak_mb'), '{:.0f}')} MB")
        sl = r.get("save_load") or {}
        if not sl.get("available"):
            parts.append("save/load n/a")
        elif sl.get("error"):
            parts.append(f"save/load failed: {sl['error']}")
        else:
            share = sl["load_s"] / r["full_compile_s"] if r.get("full_compile_s") else None
            parts.append(f"save {sl['save_s'] * 1e3:.1f} ms, load {sl['load_s'] * 1e3:.1f} ms "
                         f"= {_f(share, '{:.0%}')} of full compile, "
                         f"file {sl['file_bytes'] / 2**20:.1f} MB, first mask after load "
                         f"{sl['first_mask_after_load_ns'] / 1e3:.0f} µs, masks equal: "
                         f"{'yes' if sl['masks_equal'] else 'NO'}")
        b = r.get("batch") or {}
        if not b.get("available"):
            parts.append("batch fill n/a")
        elif b.get("error"):
            parts.append(f"batch fill failed: {b['error']}")
        else:
            parts.append(f"batch {b['batch']} fill (median of {b['steps']} steps): 1 thread "
                         f"{b['threads1_us']:.0f} µs, 2 threads {b['threads2_us']:.0f} µs "
                         f"({b['speedup_2_vs_1']:.2f}x); loop of single fills "
                         f"{b['serial_us']:.0f} µs; rows equal to single fills: "
                         f"{'yes' if b.get('mismatched_steps') == 0 else 'NO'}")
        if r.get("mask_accept_disagreements"):
            parts.append(f"mask/accept disagreements: {r['mask_accept_disagreements']}")
        lines.append(f"{r['tokenizer']}: " + "; ".join(parts))
    return "\n".join(lines)


def evaluate_bars(summaries: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The issue's bars on llama3, measured as reported above (first pass, lazy grammar)."""
    s = summaries.get(BARS_TOKENIZER)
    if s is None:
        return []
    ours = next((r for r in s["rows"] if r["engine"] == "structgen" and not r.get("error")), None)
    if ours is None:
        return []
    xgr = next((q for q in s["ratios"] if q["peer"] == "xgrammar"), None)
    bars: list[dict[str, Any]] = []

    def bar(name: str, measured: float | None, limit: float, detail: str,
            higher_is_better: bool = False) -> None:
        if measured is None:
            status = "n/a"
        elif higher_is_better:
            status = "PASS" if measured >= limit else "MISS"
        else:
            status = "PASS" if measured <= limit else "MISS"
        bars.append({"bar": name, "measured": measured, "limit": limit, "status": status,
                     "detail": detail})

    if xgr is not None:
        a, b = xgr["structgen"]["p50_us"], xgr["peer_stats"]["p50_us"]
        bar("p50 <= 1.5 x xgrammar p50", xgr["p50_ratio"], 1.5,
            f"{_f(a, '{:.1f}')} vs {_f(b, '{:.1f}')} µs over {xgr['common_docs']} common docs "
            f"(warm pass: {_f(xgr['warm_p50_ratio'], '{:.2f}x')})")
    else:
        bar("p50 <= 1.5 x xgrammar p50", None, 1.5, "xgrammar not in this run")
    bar("p99 <= 100 µs", ours.get("p99_us"), 100.0,
        f"first pass {_f(ours.get('p99_us'))} µs (warm pass {_f(ours.get('warm_p99_us'))} µs)")
    lazy_ms = ours["compile_s"] * 1e3 if ours.get("compile_s") is not None else None
    repeat = ours.get("repeat_compile_s")
    bar("lazy compile <= 50 ms", lazy_ms, 50.0,
        f"first in the process; again on a fresh compiler {_f(repeat and repeat * 1e3)} ms; "
        f"trie, per tokenizer, not included: "
        f"{_f(ours.get('setup_s') and ours['setup_s'] * 1e3, '{:.0f}')} ms")
    full_s = ours.get("full_compile_s")
    bar("full precompute <= 5 s", full_s, 5.0, f"{_f(full_s, '{:.2f}')} s")
    sl = ours.get("save_load") or {}
    if sl.get("load_s") is not None and full_s:
        bar("load <= 20% of full compile", sl["load_s"] / full_s, 0.2,
            f"load {sl['load_s'] * 1e3:.1f} ms / full {full_s * 1e3:.0f} ms")
    else:
        bar("load <= 20% of full compile", None, 0.2, sl.get("error") or "save/load n/a")
    b = ours.get("batch") or {}
    if b.get("speedup_2_vs_1") is not None:
        bar("batch 32: 2 threads >= 1.6 x 1 thread", b["speedup_2_vs_1"], 1.6,
            f"{b['threads1_us']:.0f} µs -> {b['threads2_us']:.0f} µs per batch fill",
            higher_is_better=True)
    else:
        bar("batch 32: 2 threads >= 1.6 x 1 thread", None, 1.6,
            b.get("error") or "batch_fill_next_token_bitmask n/a")
    return bars


def format_bars(bars: list[dict[str, Any]]) -> str:
    lines = []
    for b in bars:
        value = _f(b["measured"], "{:.3g}")
        lines.append(f"{b['status']:<5} {b['bar']:<40} measured {value:>8}  ({b['detail']})")
    return "\n".join(lines)


def _installed(engine: str) -> bool:
    return engine == "structgen" or importlib.util.find_spec(PEER_MODULES[engine]) is not None


def _encoder(tokenizer: str) -> Callable[[str], list[int]]:
    from structgen.bundled import bundled_encoder

    return bundled_encoder(tokenizer)


def _eos_ids(tokenizer: str) -> list[int]:
    from structgen.bundled import load_bundled_tokenizer

    return sorted(int(e) for e in load_bundled_tokenizer(tokenizer).eos_token_ids)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tokenizers", default=",".join(TOKENIZERS),
                   help="comma-separated: llama3,qwen3,gpt2 (default: all three)")
    p.add_argument("--engines", default=",".join(ENGINES),
                   help="comma-separated; peers that are not installed are listed as such")
    p.add_argument("--quick", action="store_true",
                   help="gpt2, 3 small documents, no outlines-core (its compile takes seconds)")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the shared data folder")
    p.add_argument("--json", type=Path, help="also write the results here")
    p.add_argument("--big-tokens", type=int, default=1500,
                   help="canada/citm/twitter are cut to this many tokens (default 1500)")
    p.add_argument("--max-doc-tokens", type=int, default=2000,
                   help="any other document is cut to this many tokens (default 2000)")
    p.add_argument("--schemas-per-file", type=int, default=2,
                   help="JSONSchemaBench schemas taken per file (default 2; 21 files)")
    p.add_argument("--batch-steps", type=int, default=None,
                   help="batch-fill steps timed per thread count (default 200, quick 20)")
    p.add_argument("--child-timeout", type=int, default=900, help="seconds per engine child")
    p.add_argument("--child", choices=(*ENGINES, "structgen-full"), help=argparse.SUPPRESS)
    p.add_argument("--docs-file", help=argparse.SUPPRESS)
    opts = p.parse_args(argv)
    if opts.batch_steps is None:
        opts.batch_steps = 20 if opts.quick else 200
    return opts


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    if opts.child:
        return child_main(opts)
    tokenizers = ["gpt2"] if opts.quick else [t for t in opts.tokenizers.split(",") if t]
    engines = [e for e in opts.engines.split(",") if e]
    unknown = [e for e in engines if e not in ENGINES] + [t for t in tokenizers
                                                          if t not in TOKENIZERS]
    if unknown:
        print(f"unknown engine or tokenizer: {', '.join(unknown)}", file=sys.stderr)
        return 2
    if opts.quick:
        engines = [e for e in engines if e != "outlines-core"]
    docs = load_documents(opts.data, quick=opts.quick, big_tokens=opts.big_tokens,
                          schemas_per_file=opts.schemas_per_file)
    print(f"{len(docs)} documents; tokenizers {', '.join(tokenizers)}; engines "
          f"{', '.join(engines)}; {os.cpu_count()} CPUs; Python {platform.python_version()}",
          flush=True)
    summaries: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="mask-bench-") as tmp:
        for tok in tokenizers:
            spec = {"tokenizer": tok, "eos_ids": _eos_ids(tok),
                    "docs": tokenize_documents(docs, _encoder(tok), opts.max_doc_tokens)}
            spec_path = Path(tmp) / f"{tok}.json"
            spec_path.write_text(json.dumps(spec), encoding="utf-8")
            n_tokens = sum(len(d["ids"]) for d in spec["docs"])
            print(f"[{tok}] {n_tokens} tokens in {len(spec['docs'])} documents", flush=True)
            results = {}
            for engine in engines:
                if not _installed(engine):
                    results[engine] = {"engine": engine, "unavailable": "not installed"}
                    continue
                results[engine] = res = run_child(engine, spec_path, opts)
                status = res.get("error") or res.get("unavailable") or "ok"
                print(f"[{tok}] {engine}: {status} ({_f(res.get('child_wall_s'))} s)",
                      flush=True)
                if res.get("stderr_tail"):
                    print(res["stderr_tail"], file=sys.stderr)
                if engine == "structgen" and "first" in res:
                    extra = run_child("structgen-full", spec_path, opts)
                    status = extra.get("error") or "ok"
                    print(f"[{tok}] structgen full precompute, save/load, batch: {status} "
                          f"({_f(extra.get('child_wall_s'))} s)", flush=True)
                    if extra.get("stderr_tail"):
                        print(extra["stderr_tail"], file=sys.stderr)
                    res.update({k: v for k, v in extra.items()
                                if k.startswith(("full_", "save_load", "batch"))})
                    if extra.get("error"):
                        res["full_error"] = extra["error"]
            summaries[tok] = summarize(tok, results)
    rows = [r for s in summaries.values() for r in s["rows"]]
    ratios = [q for s in summaries.values() for q in s["ratios"]]
    bars = evaluate_bars(summaries)
    print()
    print("Per-token mask benchmark, generic JSON grammar (times in µs unless stated)")
    print(format_table(rows))
    if ratios:
        print()
        print("Ratios structgen / peer over the documents both accepted (below 1: structgen "
              "faster); counts equal: share of positions with the same allowed-token count")
        print(format_ratios(ratios))
    extras = format_structgen_extras(rows)
    if extras:
        print()
        print("structgen extras")
        print(extras)
    print()
    if bars:
        print(f"Bars (issue 3), {BARS_TOKENIZER}, this run")
        print(format_bars(bars))
    else:
        print(f"Bars (issue 3): need structgen on {BARS_TOKENIZER} in the run")
    if opts.json:
        payload = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                               "platform": platform.platform()},
                   "options": {"quick": opts.quick, "tokenizers": tokenizers, "engines": engines,
                               "big_tokens": opts.big_tokens,
                               "max_doc_tokens": opts.max_doc_tokens,
                               "batch_steps": opts.batch_steps},
                   "documents": [d.name for d in docs], "rows": rows, "ratios": ratios,
                   "bars": bars}
        opts.json.write_text(json.dumps(payload, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
