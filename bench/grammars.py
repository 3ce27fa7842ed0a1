"""Per-token mask benchmark of the built-in language grammars, structgen beside its peers.

Run from the repository root::

    python bench/grammars.py                        # SQL, Python, Go; every installed engine
    python bench/grammars.py --quick                # 10 documents, 60 s budgets, no precompute
    python bench/grammars.py --grammars sql --engines structgen,llguidance --json out.json

For each grammar (``GRAMMARS``) the documents are real code, every k-th of the corpus to make
``--queries``: SQL, Spider dev gold queries; Python, the standard-library files listed in
shared/data/python; Go, the Go 1.19 standard library (testdata/ left out). Files longer than
``MAX_TOKENS`` are replayed up to there (every token must be accepted; EOS is not checked). Peers
run only where they can express the grammar: llguidance and xgrammar have no Lark post-lexer, so
Python's indentation and Go's semicolon insertion are structgen's alone. Documents are
tokenized once, here, with the Llama-3.2 tokenizer (``--tokenizer``),
and every engine replays the same ids in its own child process (this file with ``--child``), so
engines share no caches and each one's memory is its own:

* ``structgen`` -- ``GrammarCompiler(info).compile_grammar(text)`` (lazy: mask-cache entries are
  built as states are met) timed twice on fresh compilers (the first also pays one-time costs),
  then a first replay pass right after compiling and a warm pass on the same compiled grammar;
* ``structgen-full`` -- ``compile_grammar(text, precompute=True)`` is the lazy compile plus
  ``CompiledGrammar.precompute()``; that is run with a progress callback and stopped at
  ``--precompute-budget`` seconds, reporting the entries built and the projected total;
* ``llguidance`` -- ``LLMatcher.grammar_from_lark(text)`` on the same grammar text (llguidance
  has no terminal priorities, so ``NAME.2:`` becomes ``NAME:``; its lexer is longest-match,
  where the priorities of this grammar make no difference); compile = ``LLMatcher`` creation;
* ``xgrammar`` -- ``Grammar.from_lark(text)`` (xgrammar's own Lark front end, which turns the
  grammar into its EBNF with whitespace rules after every terminal; the same priority edit);
  compile = ``GrammarCompiler.compile_grammar`` (it builds its mask cache). xgrammar parses
  characters, with no contextual lexer, so it reads keywords and identifiers more loosely.

Before each token, and once after the last (that mask must allow EOS), each engine fills the
full-vocabulary bitmask, and only that call is timed. Each child stops starting new documents
when its ``--budget`` seconds are spent (first pass, then the warm pass over the same documents);
ratio rows compare structgen with a peer over the documents both finished and accepted. xgrammar
takes seconds per mask on this grammar, so it covers few documents in its budget.

The masks do not mean the same thing across engines (see above): compare allowed-token counts
before reading much into small differences.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # `python bench/grammars.py` puts bench/ on sys.path, not the root
    sys.path.insert(0, str(REPO))

DEFAULT_DATA = REPO.parent / "shared" / "data"
ENGINES = ("structgen", "llguidance", "xgrammar")
PEER_MODULES = {"llguidance": "llguidance", "xgrammar": "xgrammar"}
RESULT_PREFIX = "GRAMMAR-BENCH-RESULT "
# Issue 5's bars, per grammar: per-token p50 and p99 in microseconds (Llama-3.2, this machine).
BARS = {"sql": {"p50_us": 50.0, "p99_us": 1000.0}, "python": {"p50_us": 50.0, "p99_us": 1000.0}}
MAX_TOKENS = 2000  # long files are replayed up to here (their EOS is then not checked)


# ---------------------------------------------------------------------------------------------
# Grammars and their documents
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Document:
    """One text to replay, complete (so EOS must be allowed after its last token)."""

    name: str
    text: str


@dataclass(frozen=True)
class GrammarBench:
    """A built-in grammar and the real code it is replayed on."""

    name: str
    path: Path  # the .lark file
    documents: Callable[[Path, int], list[Document]]  # (data folder, how many; 0 = all)
    corpus: str  # what the documents are, for the table's title
    # why the peers cannot run this grammar (None: they can)
    peers_cannot: str | None = None

    def text(self) -> str:
        return self.path.read_text("utf-8")

    def peer_text(self) -> str:
        """The grammar for peers whose Lark dialect has no terminal priorities."""
        return re.sub(r"^(\s*[A-Z_][A-Z_0-9]*)\.-?\d+(\s*:)", r"\1\2", self.text(), flags=re.M)


def every_kth(items: list, count: int) -> list:
    """``count`` items spread evenly over ``items`` (all of them when ``count`` is 0)."""
    if count <= 0 or count >= len(items):
        return list(items)
    step = len(items) / count
    return [items[int(i * step)] for i in range(count)]


def spider_dev_queries(data: Path, count: int) -> list[Document]:
    path = data / "sql" / "spider" / "dev_gold.sql"
    docs = []
    with path.open(encoding="utf-8") as fh:
        for k, line in enumerate(fh):
            query = line.rstrip("\n").rsplit("\t", 1)[0]
            if query:
                docs.append(Document(f"spider_dev:{k}", query))
    return every_kth(docs, count)


def python_stdlib_files(data: Path, count: int) -> list[Document]:
    """The standard-library files named in python/stdlib-files.txt (read from this Python)."""
    import sysconfig

    root = Path(sysconfig.get_paths()["stdlib"])
    names = [n.strip() for n in (data / "python" / "stdlib-files.txt").read_text().splitlines()
             if n.strip() and not n.startswith("#")]
    docs = [Document(f"py:{n}", (root / n).read_text("utf-8")) for n in names
            if (root / n).exists()]
    return every_kth(docs, count)


GO_ROOTS = (Path("/usr/share/go-1.19/src"), Path("/usr/lib/go-1.19/src"))


def go_stdlib_files(data: Path, count: int) -> list[Document]:
    """Go 1.19 standard library files (Debian's golang-1.19-src), testdata/ left out."""
    root = next((r for r in GO_ROOTS if r.exists()), None)
    if root is None:
        raise SystemExit("Go sources missing: apt-get install golang-1.19-src")
    files = sorted(p for p in root.rglob("*.go") if "testdata" not in p.parts)
    return [Document(f"go:{p.relative_to(root)}", p.read_text("utf-8", errors="replace"))
            for p in every_kth(files, count or 500)]


GRAMMARS: dict[str, GrammarBench] = {
    "sql": GrammarBench("sql", REPO / "grammars" / "sql.lark", spider_dev_queries,
                        "Spider dev gold queries"),
    "python": GrammarBench("python", REPO / "grammars" / "python.lark", python_stdlib_files,
                           "Python standard-library files",
                           "no Lark post-lexer (indentation) in llguidance or xgrammar"),
    "go": GrammarBench("go", REPO / "grammars" / "go.lark", go_stdlib_files,
                       "Go standard-library files",
                       "no Lark post-lexer (semicolon insertion) in llguidance or xgrammar"),
}


def tokenize(docs: list[Document], encode: Callable[[str], list[int]],
             token_bytes: list[bytes]) -> list[dict[str, Any]]:
    """Token ids per document; each must spell its text exactly."""
    out = []
    for doc in docs:
        ids = [int(t) for t in encode(doc.text)]
        if b"".join(token_bytes[t] for t in ids) != doc.text.encode("utf-8"):
            raise SystemExit(f"{doc.name}: the tokenizer does not round-trip this text")
        out.append({"name": doc.name, "ids": ids[:MAX_TOKENS], "complete": len(ids) <= MAX_TOKENS})
    return out


# ---------------------------------------------------------------------------------------------
# Child side: one engine
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


def reset_peak_memory() -> float | None:
    """RSS in MB now, with Linux's peak counter (``VmHWM``) restarted from here; None elsewhere."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
            f.write("5")
    except OSError:
        return None
    rss = _status_kib("VmRSS")
    return None if rss is None else rss / 1024


def peak_memory() -> float | None:
    hwm = _status_kib("VmHWM")
    return None if hwm is None else hwm / 1024


class StructgenEngine:
    """structgen behind the peers' interface (``new_matcher``, ``fill_mask``, ``accept``)."""

    name = "structgen"

    def __init__(self, compiled: Any, vocab_size: int) -> None:
        from structgen import GrammarMatcher, allocate_token_bitmask

        self._matcher_cls = GrammarMatcher
        self.compiled = compiled
        self.bitmask = np.asarray(allocate_token_bitmask(1, vocab_size))
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


def _bit(bitmask: np.ndarray, token_id: int) -> bool:
    words = np.asarray(bitmask).reshape(-1)
    return bool((int(words[token_id >> 5]) >> (token_id & 31)) & 1)


def replay(engine: Any, docs: list[dict], eos_id: int, deadline: float) -> list[dict[str, Any]]:
    """Replay documents in order on fresh matchers until ``deadline`` (``perf_counter``).

    Per document: mask-fill and accept times (ns) up to the first rejected token; a document is
    accepted when every token is, and EOS is allowed by the last mask and accepted.
    """
    results = []
    for doc in docs:
        if time.perf_counter() > deadline:
            break
        fills: list[int] = []
        accepts: list[int] = []
        rejected_at, eos_ok, error = None, None, None
        try:
            engine.new_matcher()
            for i, tid in enumerate(doc["ids"]):
                engine.fill_mask()
                fills.append(engine.last_fill_ns)
                t0 = time.perf_counter_ns()
                ok = engine.accept(tid)
                accepts.append(time.perf_counter_ns() - t0)
                if not ok:
                    rejected_at = i
                    break
            if rejected_at is None and not doc.get("complete", True):
                eos_ok = True  # a prefix of a long file: every token accepted is the test
            elif rejected_at is None:
                engine.fill_mask()
                fills.append(engine.last_fill_ns)
                eos_ok = _bit(engine.bitmask, eos_id) and engine.accept(eos_id)
        except Exception as e:  # noqa: BLE001 - a crash on one document is a result, not a stop
            error = f"{type(e).__name__}: {e}"
        results.append({"name": doc["name"], "accepted": error is None and bool(eos_ok),
                        "rejected_at": rejected_at, "error": error,
                        "fill_ns": fills, "accept_ns": accepts})
    return results


def two_passes(engine: Any, docs: list[dict], eos_id: int, budget_s: float) -> dict[str, Any]:
    """A first pass right after compiling, then a warm pass over the documents it reached."""
    deadline = time.perf_counter() + budget_s
    gc.collect()
    first = replay(engine, docs, eos_id, deadline)
    gc.collect()
    reached = docs[:len(first)]
    warm = replay(engine, reached, eos_id, deadline + budget_s)
    return {"first": first, "warm": [{k: r[k] for k in ("name", "accepted", "fill_ns")}
                                     for r in warm]}


def child_structgen(spec: dict[str, Any], opts: argparse.Namespace) -> dict[str, Any]:
    from structgen import GrammarCompiler
    from structgen.bundled import load_bundled_tokenizer

    grammar = GRAMMARS[spec["grammar"]]
    info = load_bundled_tokenizer(spec["tokenizer"])
    base_mb = reset_peak_memory()
    t0 = time.perf_counter()
    compiler = GrammarCompiler(info, cache_enabled=False)
    setup_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    compiled = compiler.compile_builtin(grammar.name)
    compile_s = time.perf_counter() - t0
    out: dict[str, Any] = {"engine": "structgen", "setup_s": setup_s, "compile_s": compile_s}
    if not opts.quick:  # again on a fresh compiler: what a process pays after its first grammar
        t0 = time.perf_counter()
        GrammarCompiler(info, cache_enabled=False).compile_builtin(grammar.name)
        out["compile2_s"] = time.perf_counter() - t0
    engine = StructgenEngine(compiled, info.vocab_size)
    out.update(two_passes(engine, spec["docs"], int(info.eos_token_ids[0]), opts.budget))
    masker = getattr(compiled, "native_masker", None)
    if masker is not None:
        out["cache_entries"] = masker.cache_entries
        out["cache_mb"] = masker.cache_bytes / 2**20
    if base_mb is not None:
        out["peak_mb"] = (peak_memory() or base_mb) - base_mb
    return out


class _Budget(Exception):
    pass


def child_structgen_full(spec: dict[str, Any], opts: argparse.Namespace) -> dict[str, Any]:
    """``compile_grammar(text, precompute=True)``, as lazy compile + ``precompute()``, capped."""
    from structgen import GrammarCompiler
    from structgen.bundled import load_bundled_tokenizer

    info = load_bundled_tokenizer(spec["tokenizer"])
    t0 = time.perf_counter()
    compiled = GrammarCompiler(info, cache_enabled=False).compile_builtin(spec["grammar"])
    lazy_s = time.perf_counter() - t0
    progress = {"done": 0, "total": None}
    start = time.perf_counter()

    def tick(done: int, total: int) -> None:
        progress["done"], progress["total"] = done, total
        if time.perf_counter() - start > opts.precompute_budget:
            raise _Budget

    finished = True
    try:
        compiled.precompute(tick)
    except _Budget:
        finished = False
    spent = time.perf_counter() - start
    out = {"engine": "structgen-full", "full_lazy_s": lazy_s, "full_precompute_s": spent,
           "full_finished": finished, "full_entries_done": progress["done"],
           "full_entries_total": progress["total"]}
    masker = getattr(compiled, "native_masker", None)
    if masker is not None:
        out["full_cache_mb"] = masker.cache_bytes / 2**20
        out["full_cache_entries"] = masker.cache_entries
    return out


def _peer_classes() -> dict[str, type]:
    """Grammar-text versions of the JSON adapters in ``bench/peers.py``."""
    from bench.peers import LLGuidancePeer, PeerUnavailable, XGrammarPeer

    class LLGuidanceLark(LLGuidancePeer):
        def compile_lark(self, tok: Any, text: str) -> float:
            import llguidance

            lltok = self._lltokenizer(tok)
            t0 = time.perf_counter()
            grammar = llguidance.LLMatcher.grammar_from_lark(text)
            template = llguidance.LLMatcher(lltok, grammar, log_level=self.log_level)
            self.compile_s = time.perf_counter() - t0
            if template.is_error():
                raise PeerUnavailable(f"llguidance: compile failed: {template.get_error()}")
            self.tok, self.grammar, self.template = tok, grammar, template
            return self.compile_s

    class XGrammarLark(XGrammarPeer):
        def compile_lark(self, tok: Any, text: str) -> float:
            import xgrammar as xgr

            info = self._tokenizer_info(tok)
            compiler = xgr.GrammarCompiler(info, max_threads=self.max_threads,
                                           cache_enabled=False)
            t0 = time.perf_counter()
            try:
                compiled = compiler.compile_grammar(xgr.Grammar.from_lark(text))
            except Exception as e:  # noqa: BLE001
                raise PeerUnavailable(f"xgrammar: compile failed: {e}") from e
            self.compile_s = time.perf_counter() - t0
            self.tok, self.compiled = tok, compiled
            return self.compile_s

    return {"llguidance": LLGuidanceLark, "xgrammar": XGrammarLark}


def child_peer(spec: dict[str, Any], opts: argparse.Namespace) -> dict[str, Any]:
    from bench.peers import PeerUnavailable, load_peer_tokenizer

    name = spec["engine"]
    tok = load_peer_tokenizer(spec["tokenizer"])
    try:
        peer = _peer_classes()[name]()
        base_mb = reset_peak_memory()
        compile_s = peer.compile_lark(tok, GRAMMARS[spec["grammar"]].peer_text())
    except PeerUnavailable as e:
        return {"engine": name, "unavailable": str(e)}
    out: dict[str, Any] = {"engine": name, "version": peer.version, "setup_s": peer.setup_s,
                           "compile_s": compile_s}
    out.update(two_passes(peer, spec["docs"], tok.eos_token_id, opts.budget))
    if base_mb is not None:
        out["peak_mb"] = (peak_memory() or base_mb) - base_mb
    return out


CHILDREN = {"structgen": child_structgen, "structgen-full": child_structgen_full,
            "llguidance": child_peer, "xgrammar": child_peer}


def child_main(opts: argparse.Namespace) -> int:
    spec = json.loads(Path(opts.spec).read_text("utf-8"))
    spec["engine"] = opts.child
    t0 = time.perf_counter()
    try:
        result = CHILDREN[opts.child](spec, opts)
    except Exception as e:  # noqa: BLE001 - reported in the table
        result = {"engine": opts.child, "error": f"{type(e).__name__}: {e}"}
    result["child_wall_s"] = time.perf_counter() - t0
    sys.stdout.write(RESULT_PREFIX + json.dumps(result) + "\n")
    return 0


# ---------------------------------------------------------------------------------------------
# Parent side
# ---------------------------------------------------------------------------------------------


def run_child(engine: str, spec_path: Path, opts: argparse.Namespace) -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", engine,
           "--spec", str(spec_path), "--budget", str(opts.budget),
           "--precompute-budget", str(opts.precompute_budget)] + (["--quick"] if opts.quick else [])
    limit = 2 * opts.budget + opts.precompute_budget + 600  # compiles come on top of budgets
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=limit, cwd=REPO)
    except subprocess.TimeoutExpired:
        return {"engine": engine, "error": f"child timed out after {limit} s"}
    for line in proc.stdout.splitlines():
        if line.startswith(RESULT_PREFIX):
            return json.loads(line[len(RESULT_PREFIX):])
    return {"engine": engine, "error": f"child exited {proc.returncode}",
            "stderr_tail": proc.stderr[-2000:]}


def _pct(values: list[int], q: float) -> float | None:
    return float(np.percentile(values, q)) / 1e3 if values else None  # ns -> µs


def _accepted(result: dict[str, Any], key: str = "first") -> set[str]:
    return {r["name"] for r in result.get(key, []) if r["accepted"]}


def _fills(runs: list[dict], names: set[str] | None) -> list[int]:
    return [t for r in runs if names is None or r["name"] in names for t in r["fill_ns"]]


def timing(result: dict[str, Any], names: set[str] | None = None) -> dict[str, Any]:
    """Mask-fill percentiles (µs) over the accepted documents (or ``names``), both passes."""
    ok = _accepted(result) if names is None else names
    first = _fills(result.get("first", []), ok)
    warm = _fills(result.get("warm", []), ok)
    accepts = [t for r in result.get("first", []) if r["name"] in ok for t in r["accept_ns"]]
    return {"p50": _pct(first, 50), "p99": _pct(first, 99),
            "max": max(first) / 1e3 if first else None,
            "warm_p50": _pct(warm, 50), "warm_p99": _pct(warm, 99),
            "accept_p50": _pct(accepts, 50), "masks": len(first)}


def summarize(grammar: str, results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    rows, ratios = [], []
    ours = results.get("structgen", {})
    for engine, res in results.items():
        first = res.get("first", [])
        row = {"grammar": grammar, "engine": engine, "version": res.get("version"),
               "status": res.get("error") or res.get("unavailable") or "ok",
               "setup_s": res.get("setup_s"), "compile_s": res.get("compile_s"),
               "compile2_s": res.get("compile2_s"),
               "first_mask_us": first[0]["fill_ns"][0] / 1e3 if first and first[0]["fill_ns"]
               else None,
               "docs": f"{len(_accepted(res))}/{len(first)}", "peak_mb": res.get("peak_mb"),
               "rejected": [{"name": r["name"], "at": r["rejected_at"], "error": r["error"]}
                            for r in first if not r["accepted"]][:20]}
        row.update(timing(res))
        for key in ("cache_entries", "cache_mb", "full_lazy_s", "full_precompute_s",
                    "full_finished", "full_entries_done", "full_entries_total", "full_cache_mb",
                    "full_error"):
            if key in res:
                row[key] = res[key]
        rows.append(row)
        if engine != "structgen" and "first" in res and "first" in ours:
            both = _accepted(ours) & _accepted(res)
            a, b = timing(ours, both), timing(res, both)
            ratios.append({"grammar": grammar, "peer": engine, "docs": len(both),
                           **{k: (a[k] / b[k] if a[k] and b[k] else None)
                              for k in ("p50", "p99", "warm_p50", "warm_p99")}})
    return {"rows": rows, "ratios": ratios}


def _f(value: Any, fmt: str = "{:.1f}", na: str = "—") -> str:
    return na if value is None else fmt.format(value)


def _full_cell(row: dict[str, Any]) -> str:
    if "full_error" in row:
        return "error"
    if "full_precompute_s" not in row:
        return "—"
    total = row["full_lazy_s"] + row["full_precompute_s"]
    if row.get("full_finished"):
        return f"{total:.1f}"
    done, of = row.get("full_entries_done") or 0, row.get("full_entries_total") or 0
    projected = (row["full_lazy_s"] + row["full_precompute_s"] * of / done) if done else None
    return (f">{total:.0f} ({done}/{of} entries" +
            (f", ~{projected / 3600:.1f} h)" if projected else ")"))


def format_table(rows: list[dict[str, Any]]) -> str:
    head = ["grammar", "engine", "compile s", "2nd s", "full s", "1st mask", "p50", "p99", "max",
            "warm p50", "warm p99", "accept p50", "docs ok", "masks", "peak MB"]
    lines = [head]
    for r in rows:
        if r["status"] != "ok":
            lines.append([r["grammar"], r["engine"], r["status"][:90]])
            continue
        lines.append([r["grammar"], r["engine"], _f(r["compile_s"], "{:.2f}"),
                      _f(r.get("compile2_s"), "{:.2f}"), _full_cell(r), _f(r["first_mask_us"]),
                      _f(r["p50"]), _f(r["p99"]), _f(r["max"]), _f(r["warm_p50"]),
                      _f(r["warm_p99"]), _f(r["accept_p50"]), r["docs"], str(r["masks"]),
                      _f(r["peak_mb"], "{:.0f}")])
    return _columns(lines)


def format_ratios(ratios: list[dict[str, Any]]) -> str:
    lines = [["grammar", "structgen / peer", "docs", "p50", "p99", "warm p50", "warm p99"]]
    for q in ratios:
        lines.append([q["grammar"], q["peer"], str(q["docs"]), _f(q["p50"], "{:.2f}"),
                      _f(q["p99"], "{:.2f}"), _f(q["warm_p50"], "{:.2f}"),
                      _f(q["warm_p99"], "{:.2f}")])
    return _columns(lines)


def _columns(lines: list[list[str]]) -> str:
    widths = [max(len(line[i]) for line in lines if i < len(line))
              for i in range(max(map(len, lines)))]
    return "\n".join("  ".join(c.rjust(w) if i >= 2 else c.ljust(w)
                               for i, (c, w) in enumerate(zip(line, widths, strict=False)))
                     for line in lines)


def evaluate_bars(rows: list[dict[str, Any]]) -> list[str]:
    out = []
    for r in rows:
        bar = BARS.get(r["grammar"])
        if r["engine"] != "structgen" or bar is None or r["status"] != "ok":
            continue
        for key in ("p50", "p99"):
            value, limit = r[key], bar[f"{key}_us"]
            verdict = "—" if value is None else ("met" if value <= limit else "NOT met")
            out.append(f"{r['grammar']}: structgen {key} {_f(value)} µs "
                       f"(bar {limit:g} µs): {verdict}")
    return out


def _installed(engine: str) -> bool:
    module = PEER_MODULES.get(engine)
    return module is None or importlib.util.find_spec(module) is not None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--grammars", default=",".join(GRAMMARS), help="comma-separated")
    p.add_argument("--engines", default=",".join(ENGINES), help="comma-separated")
    p.add_argument("--tokenizer", default="llama3", help="a structgen.bundled tokenizer name")
    p.add_argument("--queries", type=int, default=200,
                   help="documents per grammar, spread over the corpus (0: all)")
    p.add_argument("--budget", type=float, default=240.0,
                   help="seconds of replay per engine and pass (documents past it are skipped)")
    p.add_argument("--precompute-budget", type=float, default=180.0,
                   help="seconds for structgen's full precompute before it is stopped")
    p.add_argument("--no-precompute", action="store_true", help="skip structgen's precompute")
    p.add_argument("--quick", action="store_true",
                   help="10 documents, 60 s budgets, no precompute, one structgen compile")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--json", type=Path, help="write every row, ratio and bar here")
    p.add_argument("--child", choices=sorted(CHILDREN), help=argparse.SUPPRESS)
    p.add_argument("--spec", help=argparse.SUPPRESS)
    opts = p.parse_args(argv)
    if opts.quick:
        opts.queries, opts.budget, opts.no_precompute = 10, min(opts.budget, 60.0), True
    return opts


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    if opts.child:
        return child_main(opts)
    from structgen.bundled import bundled_encoder, load_bundled_tokenizer

    grammars = [g for g in opts.grammars.split(",") if g]
    engines = [e for e in opts.engines.split(",") if e]
    unknown = [g for g in grammars if g not in GRAMMARS] + [e for e in engines if e not in ENGINES]
    if unknown:
        print(f"unknown grammar or engine: {', '.join(unknown)}", file=sys.stderr)
        return 2
    info = load_bundled_tokenizer(opts.tokenizer)
    encode = bundled_encoder(opts.tokenizer)
    print(f"grammars {', '.join(grammars)}; engines {', '.join(engines)}; tokenizer "
          f"{opts.tokenizer}; {os.cpu_count()} CPUs; Python {platform.python_version()}",
          flush=True)
    summaries = []
    with tempfile.TemporaryDirectory(prefix="grammar-bench-") as tmp:
        for name in grammars:
            bench = GRAMMARS[name]
            docs = tokenize(bench.documents(opts.data, opts.queries), encode, info.token_bytes)
            spec = {"grammar": name, "tokenizer": opts.tokenizer, "docs": docs}
            spec_path = Path(tmp) / f"{name}.json"
            spec_path.write_text(json.dumps(spec), encoding="utf-8")
            print(f"[{name}] {len(docs)} {bench.corpus}, "
                  f"{sum(len(d['ids']) for d in docs)} tokens", flush=True)
            results: dict[str, dict[str, Any]] = {}
            for engine in engines:
                if not _installed(engine):
                    results[engine] = {"engine": engine, "unavailable": "not installed"}
                    continue
                if engine != "structgen" and bench.peers_cannot:
                    results[engine] = {"engine": engine, "unavailable": bench.peers_cannot}
                    continue
                results[engine] = res = run_child(engine, spec_path, opts)
                print(f"[{name}] {engine}: {res.get('error') or res.get('unavailable') or 'ok'} "
                      f"({_f(res.get('child_wall_s'))} s)", flush=True)
                if res.get("stderr_tail"):
                    print(res["stderr_tail"], file=sys.stderr)
                if engine == "structgen" and "first" in res and not opts.no_precompute:
                    full = run_child("structgen-full", spec_path, opts)
                    print(f"[{name}] structgen precompute: {full.get('error') or 'ok'} "
                          f"({_f(full.get('child_wall_s'))} s)", flush=True)
                    if full.get("error"):
                        res["full_error"] = full["error"]
                    res.update({k: v for k, v in full.items() if k.startswith("full_")})
            summaries.append(summarize(name, results))
    rows = [r for s in summaries for r in s["rows"]]
    ratios = [q for s in summaries for q in s["ratios"]]
    bars = evaluate_bars(rows)
    print()
    print(f"Per-token mask times in µs (first pass unless 'warm'), compile times in s; "
          f"tokenizer {opts.tokenizer}")
    print(format_table(rows))
    if ratios:
        print()
        print("Ratios structgen / peer over the documents both accepted (below 1: structgen "
              "faster)")
        print(format_ratios(ratios))
    for r in rows:
        if r["engine"] == "structgen" and r["status"] == "ok" and "cache_entries" in r:
            print(f"\nstructgen mask cache after the run ({r['grammar']}): "
                  f"{r['cache_entries']} entries, {r['cache_mb']:.0f} MB")
    if bars:
        print()
        print("Bars (issue 5), this run")
        print("\n".join(bars))
    if opts.json:
        payload = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                               "platform": platform.platform()},
                   "options": {k: (str(v) if isinstance(v, Path) else v)
                               for k, v in vars(opts).items()},
                   "rows": rows, "ratios": ratios, "bars": bars}
        opts.json.write_text(json.dumps(payload, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
