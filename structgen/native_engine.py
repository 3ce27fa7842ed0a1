"""Glue between the reference thread sets and the native mask engine, plus the mask cache.

The mask cache follows XGrammar's adaptive token mask cache on top of SynCode's idea of
precomputing per lexer state: for a key (LALR state on top of the stack, lexer DFA state) the
vocabulary is split once, with only the top of the stack known, into tokens that are certainly
accepted, certainly rejected, and uncertain (their fate needs the stack below the top). At run
time the mask is the accepted set plus the uncertain tokens that pass on the real stack, walked
in trie order so shared prefixes are stepped once. Entries are built lazily on first use, or all
at once by :meth:`NativeMasker.precompute`; the cache is bounded in bytes (LRU eviction).

Knowing only the top state is often too little: after a finished name or number, ending the
lexeme needs reductions below the top, and most of a 128k vocabulary can be uncertain, each such
token then walked on the real stack (milliseconds). So keys deepen adaptively: when a key
leaves more than ``MAX_UNCERTAIN`` tokens uncertain, it is stored as a small "deeper" marker and
the lookup tries the top 4, 16 and 64 states of the real stack (``STACK_LEVELS``), and finally
the whole stack, whose split is exact (nothing uncertain). A key holds what the walk reads:
the known states, each with its indentation column (PythonIndenter; 0 for states that open no
level), the lexer state, and, while a line break may still end before the next line-break
byte, the column after it.

Most of a whole-vocabulary walk is tokens that only move the lexer inside one lexeme (" FROM",
" Foo", ... after " F"). A walk settles those in bulk from subtree summaries (native/summary.pxi):
per large trie node and threads' lexer states, each token's end state, built once and shared by
every later walk; viability is then asked once per end state instead of once per token.
"""

from __future__ import annotations

import os
import struct
import threading
from collections import OrderedDict

import numpy as np

from . import _native
from .bitmask import bitmask_width
from .postlex import PythonIndenter

# A grammar's mask cache is bounded (LRU). Replaying 200 standard-library files through the
# Python grammar with a 128k vocabulary fills about 620 MB (deeper keys' entries); at 512 MB the
# second pass thrashed (warm p99 6 ms against 0.1 ms). Set ``masker.cache_limit`` to change it.
DEFAULT_CACHE_BYTES = 1024 * 1024 * 1024
# A deepened key keeps its split (so a deeper key walks only its uncertain tokens) while at
# most this fraction of the vocabulary, and at most KEEP_SPLIT_MAX tokens, are uncertain; past
# that the walk stops there. Uncertain counts are bimodal: on the SQL, Python and Go benches
# (Llama-3.2, 128k tokens) a key left a few hundred (its reductions reach just below the
# known states) or over 32k (a top state that only reduces: nearly every token waits for the
# stack); few fell between 4k and 32k (of the keys walked from scratch: SQL none, Python 42 of
# 4,881, Go 98 of 3,846). Stopping the latter at 4k rather than 32k cut their wasted walks
# from about 230 to 50 µs.
KEEP_SPLIT_FRACTION = 0.25
KEEP_SPLIT_MAX = 4096
# A key that leaves more tokens than this to walk on the real stack is deepened.
MAX_UNCERTAIN = 256
# How many states of the real stack the successive keys know (after that: all of them).
STACK_LEVELS = (1, 4, 16, 64)

# Trie nodes with at least this many tokens below get subtree summaries (native/summary.pxi):
# their in-lexeme tokens are settled in bulk on whole-vocabulary walks. 0 turns them off.
SUMMARY_MIN_TOKENS = 64

# Lex on with every terminal (one more product DFA) after a reduction below a partial stack, to
# prove more tokens rejected. Measured on the SQL, Python and Go benches and on JSONSchemaBench's
# Kubernetes schemas it settled no more keys and masks were no faster, while it cost 0.5 s of
# each code grammar's compile and 40% of a large schema's; so it is off. (Tests keep it working.)
LEX_ANY_AFTER_UNKNOWN = False

MaskEntry = _native.MaskEntry
_INT32 = struct.Struct("=i").pack  # one int32 as the bytes numpy gives it


class NativeMasker:
    """Fills token masks for one compiled grammar with the native engine and the mask cache."""

    def __init__(self, compiled, *, cache_bytes: int = DEFAULT_CACHE_BYTES) -> None:
        grammar = compiled.grammar
        lexers = compiled.lexers
        trie = compiled.trie
        self.vocab_size = compiled.tokenizer_info.vocab_size
        self.width = bitmask_width(self.vocab_size)
        self.trie_ids = trie.ids
        self.trie_lcp = trie.lcp
        offsets = []
        trans, winner, alive_counts, alive_terms, alive_ignored = [], [], [], [], []
        total = 0
        ignored = np.zeros(grammar.n_terminals, dtype=np.uint8)
        for t in lexers.ignored:
            ignored[t] = 1
        is_ignored = ignored.astype(bool)
        for c in range(lexers.n_contexts):
            d = lexers.dfa(c)
            offsets.append(total)
            trans.append(np.where(d.transitions >= 0, d.transitions + total, -1))
            winner.append(d.winner)
            # per state, the terminals its lexeme may still become (ignored ones apart)
            alive = np.asarray(d.alive, dtype=bool)
            real = alive & ~is_ignored
            alive_ignored.append((alive & is_ignored).any(axis=1).astype(np.uint8))
            alive_terms.append(np.nonzero(real)[1])
            alive_counts.append(real.sum(axis=1))
            total += d.n_states
        any_ctx = lexers.any_context() if LEX_ANY_AFTER_UNKNOWN else None
        any_start = -1
        if any_ctx is not None:
            any_start = total
            trans.append(np.where(any_ctx.transitions >= 0, any_ctx.transitions + total, -1))
            winner.append(any_ctx.winner)
            alive_ignored.append(np.zeros(any_ctx.n_states, dtype=np.uint8))
            alive_counts.append(np.zeros(any_ctx.n_states, dtype=np.int64))
            total += any_ctx.n_states
        alive_ptr = np.concatenate([[0], np.cumsum(np.concatenate(alive_counts))])
        alive_terms = np.concatenate(alive_terms).astype(np.int32)
        alive_ignored = np.concatenate(alive_ignored)
        self.offsets = np.array(offsets, dtype=np.int64)
        self.state_context = lexers.state_context
        ctx_start = self.offsets[lexers.state_context]
        self.context_sizes = [lexers.dfa(c).n_states for c in range(lexers.n_contexts)]
        self.context_final_only = [lexers.dfa(c).final_only for c in range(lexers.n_contexts)]
        self.engine = _native.NativeEngine(
            grammar.action, grammar.goto, grammar.rule_lhs, grammar.rule_len,
            np.concatenate(trans), np.concatenate(winner), alive_ptr,
            alive_terms, alive_ignored, ctx_start, ignored,
            trie.data, trie.offsets, trie.lcp, trie.ids, grammar.end_state,
            np.array(sorted(compiled.tokenizer_info.eos_token_ids), dtype=np.int64),
            np.concatenate([lexers.dfa(c).final_only for c in range(lexers.n_contexts)]
                           + ([np.zeros(any_ctx.n_states, dtype=bool)] if any_ctx else [])),
            any_start, self._indenter_tables(grammar), grammar.postlex is not None,
            summary_nodes=trie.summary_nodes(SUMMARY_MIN_TOKENS) if SUMMARY_MIN_TOKENS > 0
            else None)
        self.core = _native.NativeMatcherCore(self.engine)
        self.n_states = grammar.n_states
        self.start_state = grammar.start_state
        self._column_read = self._column_lexer_states(
            grammar, np.concatenate(trans), np.concatenate(winner), alive_ptr, alive_terms,
            list(self.offsets) + ([any_start] if any_start >= 0 else []))
        # (state, q) keys for the top state only, bytes keys for deeper ones
        self._cache: OrderedDict[tuple[int, int] | bytes, MaskEntry] = OrderedDict()  # oldest first
        self._cache_bytes = 0
        self.cache_limit = cache_bytes
        # a new entry's walk of the whole vocabulary is cut into this many pieces at once
        self.walk_threads = max(1, min(os.cpu_count() or 1, 8))
        self._lock = threading.Lock()

    def _indenter_tables(self, grammar) -> tuple | None:
        """A PythonIndenter for the native engine, when its state can be read off the stack
        (``Grammar.postlex_on_stack``): terminal ids, and per parser state the bracket depth
        change and whether it holds an indentation level."""
        pl = grammar.postlex
        self.bracket_delta = self.indent_state = None
        if not isinstance(pl, PythonIndenter) or not grammar.postlex_on_stack:
            return None
        ids = {t.name: i for i, t in enumerate(grammar.terminals)}
        access = grammar.accessing_terminals()
        delta = np.zeros(grammar.n_states, dtype=np.int8)
        for name in pl.open_brackets:
            delta[access == ids[name]] = 1
        for name in pl.close_brackets:
            delta[access == ids[name]] = -1
        indent_state = ((access == ids[pl.indent]) + 2 * (access == ids[pl.dedent])).astype(np.uint8)
        self.bracket_delta, self.indent_state = delta, indent_state
        return (ids[pl.newline], ids[pl.indent], ids[pl.dedent], pl.tab_len, delta, indent_state)

    def _column_lexer_states(self, grammar, trans: np.ndarray, winner: np.ndarray,
                             alive_ptr, alive_terms, starts) -> np.ndarray | None:
        """Per global lexer state: may a walk from it read the column carried into a token?

        Only ending a line-break lexeme reads the column (the indenter compares it with the
        open levels), and a line-break byte resets it to 0. So it matters only while such an
        end is reachable from the state without a line-break byte: after "\\n\\n# note" it is
        not (a comment line ends with a line break first), although the lexeme may still
        become a line break. Keying on it there made every space of a comment a new cache
        key, each a walk of the whole vocabulary. Should a fresh lexeme (from a start state in
        ``starts``) reach a line-break end without that byte (a line break that is not one),
        every state whose lexeme may still end as a line break reads it, as before."""
        if self.indent_state is None:
            return None
        newline = [t.name for t in grammar.terminals].index(grammar.postlex.newline)
        # the lexeme in progress may still end as the line break (any bytes)
        may_end = np.zeros(len(trans), dtype=bool)
        at = np.flatnonzero(alive_terms == newline)
        may_end[np.searchsorted(alive_ptr, at, side="right") - 1] = True
        # of those, the ones that reach a line-break end by other bytes (a fixed point)
        rows = np.flatnonzero(may_end)
        step = trans[rows]
        step[:, 10] = -1  # past a line-break byte the column is 0 whatever it was
        reads = winner == newline
        while True:
            more = reads[rows] | ((step >= 0) & reads[np.maximum(step, 0)]).any(axis=1)
            if (more == reads[rows]).all():
                break
            reads[rows] = more
        # a fresh lexeme might end as a line break before any line-break byte: tell none apart
        return may_end if reads[np.asarray(starts)].any() else reads

    # --- thread conversion ---------------------------------------------------------------
    def spec_of(self, threads) -> tuple[np.ndarray, tuple[int, int] | None]:
        """Threads as the native engine's int32 spec, and their mask-cache key (or None).

        The key is (top parser state, lexer state) when there is one thread and no shadow,
        the case the cache covers; other thread sets are walked over the whole vocabulary.
        """
        offsets, state_context = self.offsets, self.state_context
        spec = [len(threads)]
        key = None
        col = 0
        for stack, q, sh, post in threads:
            states = []
            node = stack
            while node is not None:
                states.append(node[0])
                node = node[1]
            states.reverse()
            aux = [0] * len(states)
            if post is not None and self.indent_state is not None:
                col = post[0]
                levels = iter(post[2][1:])  # the open levels, one per _INDENT node
                aux = [next(levels, 0) if self.indent_state[s] == 1 else 0 for s in states]
            qg = int(offsets[state_context[stack[0]]]) + q if q >= 0 else -1
            spec.append(len(states))
            for s, x in zip(states, aux, strict=True):
                spec.append(s)
                spec.append(x)
            spec.append(qg)
            spec.append(len(sh))
            spec.extend(int(offsets[c]) + s for c, s in sh)
            if len(threads) == 1 and not sh:
                key = (states[-1], qg)
        spec.append(col)
        return np.array(spec, dtype=np.int32), key

    # --- cache ----------------------------------------------------------------------------
    @property
    def cache_bytes(self) -> int:
        return self._cache_bytes

    @property
    def cache_entries(self) -> int:
        return len(self._cache)

    def entry(self, state: int, q: int) -> MaskEntry | None:
        """The cache entry for a top-state key, built on first use (a ``deeper`` marker when
        it leaves too many tokens uncertain). Past the byte budget the oldest entries are
        evicted first."""
        key = (state, q)
        found = self._cache.get(key)  # a dict read is atomic under the GIL
        if found is not None:
            return found
        return self._insert(key, self._build_entry(
            np.array([1, 1, state, 0, q, 0, 0], dtype=np.int32), partial=True, may_deepen=True))

    def lookup(self, spec: np.ndarray) -> MaskEntry | None:
        """The cache entry for the threads ``spec`` (see :meth:`spec_of`): each thread's top
        state first, then its top 4, 16, 64 states (``STACK_LEVELS``) while an entry says
        ``deeper``, then whole stacks. None if the engine could not classify (the caller then
        walks the whole vocabulary).

        Knowing more of the stack only settles tokens the shallower ``parent`` left uncertain
        (its accepted and rejected ones stay so), so when the parent kept its split only its
        uncertain tokens are walked: a new deeper key costs about one fill. A key is the
        truncated spec itself: known states with their indentation columns, lexer states,
        shadows, and the column while a line break may still end before a line-break byte
        (``_column_lexer_states``)."""
        levels, parent = STACK_LEVELS, None
        vals = spec.tolist()
        reads_col = self._column_read
        if vals[0] == 1 and vals[1] > 1:  # the usual case first, without building keys
            end = 2 + 2 * vals[1]
            top, aux, q, nsh = vals[end - 2:end + 2]
            if not nsh and not aux and not (  # no shadow, top column 0, column unused
                    vals[-1] and q >= 0 and reads_col is not None and reads_col[q]):
                found = self.entry(top, q)  # the (state, q) key: its spec exactly
                if found is None or not found.deeper:
                    return found
                levels, parent = STACK_LEVELS[1:], found
        raw = spec.tobytes()
        threads = []  # (depth, states' int32 bytes, (q, shadows) int32 bytes)
        pos = 1
        col = 0
        for _ in range(vals[0]):
            depth = vals[pos]
            end = pos + 1 + 2 * depth
            q, nsh = vals[end], vals[end + 1]
            threads.append((depth, raw[4 * (pos + 1):4 * end], raw[4 * end:4 * (end + 2 + nsh)]))
            if q >= 0 and reads_col is not None and reads_col[q]:
                col = vals[-1]
            pos = end + 2 + nsh
        deepest = max(thread[0] for thread in threads)
        for k in levels:
            partial = k < deepest
            chunks = [_INT32(len(threads))]
            for depth, states, tail in threads:
                kk = min(k, depth)
                chunks += [_INT32(kk), states[8 * (depth - kk):], tail]
            chunks.append(_INT32(col))
            thread_spec = b"".join(chunks)  # the truncated spec, as int32 bytes
            key = (b"p" if partial else b"w") + thread_spec
            found = self._cache.get(key)
            if found is None:
                found = self._insert(key, self._build_entry(
                    np.frombuffer(thread_spec, dtype=np.int32).copy(), partial=partial,
                    may_deepen=partial and k < STACK_LEVELS[-1], parent=parent))
            if found is None or not found.deeper:
                return found
            parent = found
        raise AssertionError("the last stack level never deepens")

    def _insert(self, key, built: MaskEntry | None) -> MaskEntry | None:
        if built is None:
            return None
        with self._lock:
            if key not in self._cache:
                self._cache[key] = built
                self._cache_bytes += built.nbytes
                while self._cache_bytes > self.cache_limit and len(self._cache) > 1:
                    _, old = self._cache.popitem(last=False)
                    self._cache_bytes -= old.nbytes
        return built

    def put(self, state: int, q: int, entry: MaskEntry) -> None:
        """Insert a prebuilt entry (from a saved grammar)."""
        with self._lock:
            old = self._cache.pop((state, q), None)
            if old is not None:
                self._cache_bytes -= old.nbytes
            self._cache[(state, q)] = entry
            self._cache_bytes += entry.nbytes

    def cache_items(self) -> list[tuple[tuple[int, int], MaskEntry]]:
        """The top-state entries (what a saved grammar keeps; deeper keys refill lazily)."""
        with self._lock:
            return [(k, e) for k, e in self._cache.items() if isinstance(k, tuple)]

    def _build_entry(self, thread: np.ndarray, *, partial: bool, may_deepen: bool,
                     parent: MaskEntry | None = None) -> MaskEntry | None:
        """Classify the vocabulary (or only ``parent``'s uncertain tokens, when it kept them)
        for one thread; a key left with too many uncertain tokens becomes ``deeper``, and one
        with more than ``KEEP_SPLIT_MAX`` (or a quarter of the vocabulary) uncertain a bare
        ``deeper`` marker (walking that many costs about as much as a fresh split, so they are
        not kept)."""
        # past this many uncertain tokens the split is not kept: stop walking there
        limit = -1
        if may_deepen:
            limit = min(int(len(self.trie_ids) * KEEP_SPLIT_FRACTION), KEEP_SPLIT_MAX)
        built = self.engine.split(
            thread, partial, parent if parent is not None and parent.has_split else None,
            width=self.width, max_uncertain=limit,
            deepen_above=MAX_UNCERTAIN if may_deepen else -1, num_threads=self.walk_threads)
        return _DEEPER if built is False else built

    def precompute(self, progress=None, num_threads: int | None = None) -> int:
        """Fill the cache for every (parser state, lexer state) pair; returns entries built.

        The walks run natively on ``num_threads`` (default: every core) OpenMP threads with
        the GIL released, a chunk of keys at a time; a key that leaves more than
        ``MAX_UNCERTAIN`` tokens uncertain gets a bare ``deeper`` marker (its walk stops
        there). ``progress(done, total)`` is called after each chunk."""
        keys = [(self.start_state, -1)]
        for s in range(self.n_states):
            ctx = int(self.state_context[s])
            base = int(self.offsets[ctx])
            final_only = self.context_final_only[ctx]
            keys.extend((s, base + k) for k in range(self.context_sizes[ctx])
                        if not final_only[k])  # settled away after every token

        todo = [key for key in keys if key not in self._cache]
        workers = max(1, min(num_threads or os.cpu_count() or 1, 32))
        built = len(keys) - len(todo)
        chunk = 64 * workers
        for i in range(0, len(todo), chunk):
            part = todo[i:i + chunk]
            found = self.engine.split_many(
                [s for s, _ in part], [q for _, q in part], width=self.width,
                max_uncertain=MAX_UNCERTAIN, deepen_above=MAX_UNCERTAIN, num_threads=workers)
            for key, entry in zip(part, found, strict=True):
                if entry is not None:
                    self._insert(key, _DEEPER if entry is False else entry)
                    built += 1
            if progress is not None:
                progress(len(keys) - len(todo) + i + len(part), len(keys))
        return built

    # --- masks ----------------------------------------------------------------------------
    def job(self, row: int, spec: np.ndarray) -> tuple:
        """What the native engine needs to fill ``row`` for threads ``spec``."""
        return (row, spec, self.lookup(spec))

    def fill(self, bitmask: np.ndarray, jobs: list[tuple], num_threads: int = 1) -> list[int]:
        """Run jobs in one native call with the GIL released, on ``num_threads`` OpenMP threads;
        returns the rows not filled (the caller uses the reference engine for those)."""
        return self.engine.fill_rows(bitmask, jobs, num_threads)


_EMPTY_IDS = np.zeros(0, dtype=np.int64)
_EMPTY_POS = np.zeros(0, dtype=np.int32)
_DEEPER = MaskEntry(None, _EMPTY_IDS, _EMPTY_POS, _EMPTY_POS, deeper=True)
