"""Per-token mask benchmark of the built-in language grammars, structgen beside its peers.

Run from the repository root::

    python bench/grammars.py                        # SQL, Python, Go; every installed engine
    python bench/grammars.py --quick                # 10 documents, 60 s budgets, no precompute
    python bench/grammars.py --grammars sql --engines structgen,llguidance --json out.json
    python bench/grammars.py --engines syncode --syncode-python /path/to/syncode-venv/bin/python

For each grammar (``GRAMMARS``) the documents are real code, every k-th of the corpus to make
``--queries``: SQL, Spider dev gold queries; Python, the standard-library files listed in
shared/data/python; Go, the Go 1.19 standard library (testdata/ left out). Files longer than
``MAX_TOKENS`` are replayed up to there (every token must be accepted; EOS is not checked). Peers
run only where they can express the grammar: llguidance and xgrammar have no Lark post-lexer, so
Python's indentation and Go's semicolon insertion are structgen's alone; SynCode runs its own
grammars for all three. Documents are
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
  characters, with no contextual lexer, so it reads keywords and identifiers more loosely;
* ``syncode`` -- SynCode's OWN shipped grammar for the language (``Grammar("sql")``, ``"python"``,
  ``"go"``: not ours) through ``SyncodeLogitsProcessor(grammar, tokenizer, mode="grammar_mask")``
  on ``PreTrainedTokenizerFast`` loaded from the bundled tokenizer folder. It pins transformers
  4.53.2, so its child runs in another interpreter, ``--syncode-python`` (default
  ``$SYNCODE_PYTHON``; without one the row says "not installed"). Its "DFA mask store" is built
  once per grammar and tokenizer and pickled under ``--syncode-cache``; a build is stopped at
  ``--syncode-build-budget`` seconds (default 900) and reported with its progress. compile =
  that build (wall seconds, kept in ``build-times.json`` beside the stores so later runs still
  show it), 2nd = loading the cached store and building the parser again, as every later process
  does. SynCode has no matcher: a mask is computed from the ids so far (decode, incremental
  parse, union of store rows; one torch thread), and that is what is timed. Its masks
  over-approximate: EOS wherever the current terminal could end, and the tokenizer's other
  special tokens (BOS, pad) everywhere.

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
import importlib.metadata
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
os.environ.setdefault("STRUCTGEN_CACHE_DIR", "off")  # compile times are measured: never load them
if str(REPO) not in sys.path:  # `python bench/grammars.py` puts bench/ on sys.path, not the root
    sys.path.insert(0, str(REPO))

DEFAULT_DATA = REPO.parent / "shared" / "data"
DEFAULT_SYNCODE_CACHE = Path(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "structgen-bench",
                             "syncode")
ENGINES = ("structgen", "llguidance", "xgrammar", "syncode")
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
    # why llguidance and xgrammar cannot run this grammar (None: they can)
    peers_cannot: str | None = None
    # the grammar SynCode ships for this language (its own Lark file, indenter and parser)
    syncode_grammar: str | None = None

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
                        "Spider dev gold queries", syncode_grammar="sql"),
    "python": GrammarBench("python", REPO / "grammars" / "python.lark", python_stdlib_files,
                           "Python standard-library files",
                           "no Lark post-lexer (indentation) in llguidance or xgrammar",
                           syncode_grammar="python"),
    "go": GrammarBench("go", REPO / "grammars" / "go.lark", go_stdlib_files,
                       "Go standard-library files",
                       "no Lark post-lexer (semicolon insertion) in llguidance or xgrammar",
                       syncode_grammar="go"),
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


# SynCode runs in an interpreter of its own (``--syncode-python``): it pins transformers 4.53.2.
SYNCODE_MODE = "grammar_mask"  # SyncodeLogitsProcessor's default: the over-approximate mask


class SyncodeRejected(Exception):
    """SynCode's incremental parser failed on a prefix its previous masks allowed."""


class SyncodeEngine:
    """SynCode behind the peers' interface (``new_matcher``, ``fill_mask``, ``accept``).

    SynCode keeps no matcher state of its own: each mask is computed from the token ids so far,
    as ``GrammarConstrainer.mask_scores`` does it (decode the ids, run the incremental parser
    over the text, union the mask-store rows of the acceptable terminal sequences), less the
    final ``masked_fill`` on the logits. That whole computation is what ``fill_mask`` times;
    ``accept`` only reads the last mask's bit and appends the id. A parser failure (SynCode
    would fall back to unconstrained decoding there) ends the document as an error.
    """

    name = "syncode"

    def __init__(self, processor: Any, max_tokens: int) -> None:
        import torch

        self.constrainer = processor.grammar_engine
        self.ids = torch.zeros((1, max_tokens + 1), dtype=torch.long)
        self.count = 0
        self.mask: Any = None  # torch.bool, one per vocabulary entry
        self.allowed: list[int] = []  # allowed-token count of each mask (not timed)
        self.last_fill_ns = 0

    def new_matcher(self) -> None:
        self.constrainer.reset()
        self.count = 0

    def fill_mask(self) -> None:
        ge, ids = self.constrainer, self.ids[:, :self.count]
        t0 = time.perf_counter_ns()
        ge._set_start_from(ids)
        (text, rest), = ge._get_partial_outputs(ids)
        res, failed = ge._parse_partial_output(0, text, rest, accepted_generation=True)
        mask = None if failed else ge.dfa_mask_store.get_accept_mask(res)
        self.last_fill_ns = time.perf_counter_ns() - t0
        if mask is None:
            raise SyncodeRejected(f"SynCode's parser failed after token {self.count}")
        self.mask = mask
        self.allowed.append(int(mask.sum()))

    def accept(self, token_id: int) -> bool:
        if token_id >= len(self.mask) or not bool(self.mask[token_id]):
            return False
        self.ids[0, self.count] = token_id
        self.count += 1
        return True

    @property
    def bitmask(self) -> np.ndarray:
        """The last mask as int32 words (bit ``i % 32`` of word ``i // 32``), for ``_bit``."""
        bits = np.packbits(self.mask.numpy().astype(np.uint8), bitorder="little")
        return np.pad(bits, (0, -len(bits) % 4)).view("<u4")


def _syncode_store_path(grammar: Any, tok: Any) -> Path:
    """Where SynCode caches this mask store (``MaskStore.init_mask_store``'s own formula)."""
    from syncode import common

    return (Path(common.SYNCODE_CACHE) / "mask_stores" / type(tok).__name__ /
            f"{SYNCODE_MODE}_{grammar.hash()}_{tok.vocab_size}.pkl")


def _syncode_progress() -> dict[str, Any]:
    """Route the mask-store build's tqdm bar into a dict (states done / total), silently."""
    import syncode.mask_store.mask_store as ms

    progress: dict[str, Any] = {"done": 0, "total": None}

    class Progress(ms.tqdm):  # type: ignore[name-defined, misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs.update(file=open(os.devnull, "w"), mininterval=3600)  # noqa: SIM115
            super().__init__(*args, **kwargs)
            progress["total"] = self.total

        def update(self, n: float | None = 1) -> bool | None:
            out = super().update(n)
            progress["done"] = self.n
            return out

    ms.tqdm = Progress
    return progress


def child_syncode(spec: dict[str, Any], opts: argparse.Namespace) -> dict[str, Any]:
    """SynCode's own grammar for the language; its mask store built once (``--syncode-build-
    budget``) and cached under ``--syncode-cache``, then loaded again to time a cached start."""
    import signal

    cache = Path(opts.syncode_cache).expanduser() / spec["tokenizer"]
    os.environ["SYNCODE_CACHE"] = str(cache) + "/"  # read when syncode.common is imported
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    here = Path(__file__).resolve().parent  # bench/jsonschema.py would shadow syncode's import
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != here]
    import torch
    from transformers import PreTrainedTokenizerFast
    from transformers import logging as hf_logging

    hf_logging.set_verbosity_error()
    torch.set_num_threads(1)  # one core per engine, as the others' mask fills
    import syncode
    from syncode.grammar_mask.logits_processor import SyncodeLogitsProcessor
    from syncode.parsers.grammars import Grammar

    version = importlib.metadata.version("syncode")
    t0 = time.perf_counter()
    tok = PreTrainedTokenizerFast.from_pretrained(spec["tokenizer_dir"])
    setup_s = time.perf_counter() - t0
    grammar = Grammar(spec["syncode_grammar"])
    store = _syncode_store_path(grammar, tok)
    times_path = cache / "build-times.json"
    times = json.loads(times_path.read_text()) if times_path.exists() else {}
    out: dict[str, Any] = {"engine": "syncode", "version": version, "setup_s": setup_s,
                           "syncode_grammar": grammar.name, "syncode_mode": SYNCODE_MODE,
                           "store_path": str(store), "module": syncode.__file__}

    def open_processor() -> Any:
        return SyncodeLogitsProcessor(grammar, tok, use_cache=True, parse_output_only=False,
                                      mode=SYNCODE_MODE)

    if not store.exists():
        progress = _syncode_progress()

        def stop(signum: int, frame: Any) -> None:
            raise _Budget

        signal.signal(signal.SIGALRM, stop)
        signal.setitimer(signal.ITIMER_REAL, opts.syncode_build_budget)
        t0, cpu0 = time.perf_counter(), time.process_time()
        try:
            open_processor()
        except _Budget:
            store.unlink(missing_ok=True)  # the alarm may have cut the pickle short
            done, total = progress["done"], progress["total"]
            spent = time.perf_counter() - t0
            projected = f", ~{spent * total / done:.0f} s projected" if done and total else ""
            return {**out, "error": f"mask-store build not finished in {spent:.0f} s "
                                    f"({done}/{total} DFA states{projected})"}
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        build = {"wall_s": time.perf_counter() - t0, "cpu_s": time.process_time() - cpu0}
        times = json.loads(times_path.read_text()) if times_path.exists() else {}  # again:
        times[store.name] = build  # another grammar's child may have written it meanwhile
        times_path.write_text(json.dumps(times, indent=1))
        out["store_built_now"] = True
    else:
        out["store_built_now"] = False
    build = times.get(store.name) or {}  # empty: built by something other than this script
    out["store_build_s"], out["store_build_cpu_s"] = build.get("wall_s"), build.get("cpu_s")
    out["store_mb"] = store.stat().st_size / 2**20 if store.exists() else None
    gc.collect()
    base_mb = reset_peak_memory()
    t0, cpu0 = time.perf_counter(), time.process_time()
    processor = open_processor()  # the cached store, as every later process opens it
    out["store_load_s"] = time.perf_counter() - t0
    out["store_load_cpu_s"] = time.process_time() - cpu0
    out["compile_s"], out["compile2_s"] = out["store_build_s"], out["store_load_s"]
    engine = SyncodeEngine(processor, MAX_TOKENS)
    out.update(two_passes(engine, spec["docs"], spec["eos_id"], opts.budget))
    if engine.allowed:
        out["allowed_p50"] = float(np.median(engine.allowed))
        out["allowed_min"] = min(engine.allowed)
    if base_mb is not None:
        out["peak_mb"] = (peak_memory() or base_mb) - base_mb
    return out


CHILDREN = {"structgen": child_structgen, "structgen-full": child_structgen_full,
            "llguidance": child_peer, "xgrammar": child_peer, "syncode": child_syncode}


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
    python = opts.syncode_python if engine == "syncode" else sys.executable
    cmd = [str(python), str(Path(__file__).resolve()), "--child", engine,
           "--spec", str(spec_path), "--budget", str(opts.budget),
           "--precompute-budget", str(opts.precompute_budget),
           "--syncode-cache", str(opts.syncode_cache),
           "--syncode-build-budget", str(opts.syncode_build_budget)] + (
               ["--quick"] if opts.quick else [])
    limit = 2 * opts.budget + opts.precompute_budget + 600  # compiles come on top of budgets
    if engine == "syncode":  # a store build, then a load of it, before the replay
        limit += opts.syncode_build_budget
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
                    "full_error", "syncode_grammar", "syncode_mode", "store_build_s",
                    "store_build_cpu_s", "store_built_now", "store_load_s", "store_load_cpu_s", "store_mb", "allowed_p50", "allowed_min"):
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


def _syncode_missing(python: str | None) -> str | None:
    """Why ``--syncode-python`` cannot run SynCode (None: it can)."""
    if not python:
        return "not installed (give --syncode-python, a Python with syncode; bench/README.md)"
    if not Path(python).exists():
        return f"not installed ({python} is missing)"
    probe = subprocess.run([python, "-c", "import importlib.util as u; "
                            "raise SystemExit(u.find_spec('syncode') is None)"],
                           capture_output=True, timeout=120)
    return None if probe.returncode == 0 else f"not installed (no syncode in {python})"


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
    p.add_argument("--syncode-python", default=os.environ.get("SYNCODE_PYTHON"),
                   help="a Python with syncode installed (its own venv: it pins transformers "
                        "4.53.2); default $SYNCODE_PYTHON; without it syncode is 'not installed'")
    p.add_argument("--syncode-cache", type=Path, default=DEFAULT_SYNCODE_CACHE,
                   help="where SynCode's mask stores are cached (one folder per tokenizer)")
    p.add_argument("--syncode-build-budget", type=float, default=900.0,
                   help="seconds for building one SynCode mask store before it is given up")
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
    from structgen.bundled import bundled_encoder, bundled_tokenizer_files, load_bundled_tokenizer

    grammars = [g for g in opts.grammars.split(",") if g]
    engines = [e for e in opts.engines.split(",") if e]
    unknown = [g for g in grammars if g not in GRAMMARS] + [e for e in engines if e not in ENGINES]
    if unknown:
        print(f"unknown grammar or engine: {', '.join(unknown)}", file=sys.stderr)
        return 2
    info = load_bundled_tokenizer(opts.tokenizer)
    encode = bundled_encoder(opts.tokenizer)
    syncode_missing = _syncode_missing(opts.syncode_python) if "syncode" in engines else None
    print(f"grammars {', '.join(grammars)}; engines {', '.join(engines)}; tokenizer "
          f"{opts.tokenizer}; {os.cpu_count()} CPUs; Python {platform.python_version()}",
          flush=True)
    summaries = []
    with tempfile.TemporaryDirectory(prefix="grammar-bench-") as tmp:
        for name in grammars:
            bench = GRAMMARS[name]
            docs = tokenize(bench.documents(opts.data, opts.queries), encode, info.token_bytes)
            spec = {"grammar": name, "tokenizer": opts.tokenizer, "docs": docs,
                    "eos_id": int(info.eos_token_ids[0]), "syncode_grammar": bench.syncode_grammar,
                    "tokenizer_dir": str(bundled_tokenizer_files(opts.tokenizer)[0].parent)}
            spec_path = Path(tmp) / f"{name}.json"
            spec_path.write_text(json.dumps(spec), encoding="utf-8")
            print(f"[{name}] {len(docs)} {bench.corpus}, "
                  f"{sum(len(d['ids']) for d in docs)} tokens", flush=True)
            results: dict[str, dict[str, Any]] = {}
            for engine in engines:
                if not _installed(engine):
                    results[engine] = {"engine": engine, "unavailable": "not installed"}
                    continue
                if engine == "syncode" and (syncode_missing or not bench.syncode_grammar):
                    results[engine] = {"engine": engine, "unavailable": syncode_missing or
                                       "SynCode ships no grammar for this language"}
                    continue
                if engine in ("llguidance", "xgrammar") and bench.peers_cannot:
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
