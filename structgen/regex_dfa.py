"""Regular expressions to minimized byte-level DFAs.

Language models emit bytes, and a token may end inside a UTF-8 character, so every terminal is
matched by a DFA over bytes, not characters. ``regex_nfa`` reads the regex with ``re``'s own
parser and builds a DFA over code point ranges; here each range transition is expanded into the
UTF-8 byte sequences of the code points it covers (sharing states between code points with the
same continuation, so ``[^"]`` costs a handful of states, not a million), dead states are
trimmed (a live state can always still reach an accepting one) and the result is minimized.

``\\d``, ``\\w`` and ``\\s`` have their Unicode meaning, as in Python's ``re`` (and so in Lark):
see ``unicode_classes``.
"""

from __future__ import annotations

import bisect
import functools
import re
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .errors import RegexError
from .regex_nfa import CharDFA, nfa_to_dfa, regex_to_nfa

MAX_CODEPOINT = 0x10FFFF
SURROGATES = (0xD800, 0xDFFF)
DEFAULT_MAX_STATES = 20_000
# The Thompson NFA of a regex is a few times larger than its DFA in the usual cases.
NFA_STATES_PER_DFA_STATE = 10
# Moore refinement stops after this many state x byte-class steps (then no minimization).
MINIMIZE_WORK = 20_000_000
# Rough size of the automaton a regex unrolls to (repeat counts multiplied through nesting);
# above this the automaton would take minutes to build, so the regex is refused up front.
MAX_UNROLLED = 20_000

# A bounded repeat above this count blows up any DFA (states grow linearly per nesting level,
# multiplicatively when nested); refuse it up front instead of hanging.
MAX_REPEAT = 1_000
_REPEAT = re.compile(r"(?<!\\)\{(\d*)(?:,(\d*))?\}")
_UNSUPPORTED = [
    (re.compile(r"\(\?<?[=!]"), "lookaround assertions"),
    (re.compile(r"\\[1-9]|\(\?P="), "back-references"),
    (re.compile(r"(?<!\\)\\[bBAZ]"), "anchors \\b, \\B, \\A, \\Z"),
]


@dataclass(frozen=True)
class ByteDFA:
    """A trimmed, minimized DFA over bytes. State 0 is the start; -1 is the dead state.

    ``transitions[s, b]`` is the next state (or -1); ``accepting[s]`` says whether the bytes read
    so far form a complete match. Every non-dead state can still reach an accepting state.
    """

    transitions: np.ndarray  # int32 [n_states, 256]
    accepting: np.ndarray  # bool [n_states]

    @property
    def n_states(self) -> int:
        return int(self.transitions.shape[0])

    def run(self, data: bytes, state: int = 0) -> int:
        """State after reading ``data`` from ``state`` (-1 once dead)."""
        for b in data:
            if state < 0:
                return -1
            state = int(self.transitions[state, b])
        return state

    def matches(self, data: bytes) -> bool:
        s = self.run(data)
        return s >= 0 and bool(self.accepting[s])


def _unrolled_size(items) -> int:
    from re import _constants as C  # noqa: N812

    total = 0
    for op, av in items:
        if op in (C.MAX_REPEAT, C.MIN_REPEAT):
            lo, hi, inner = av
            count = lo + 1 if hi is C.MAXREPEAT else hi
            total += max(count, 1) * max(_unrolled_size(inner), 1)
        elif op is C.SUBPATTERN:
            total += _unrolled_size(av[3])
        elif op is C.BRANCH:
            total += sum(_unrolled_size(alt) for alt in av[1])
        else:
            total += 1
    return total


def _parse(regex: str):
    """``re``'s parse tree of ``regex``; its syntax errors as :class:`RegexError`."""
    from re import _parser as sre

    try:
        return sre.parse(regex)
    except (re.error, OverflowError, RecursionError) as exc:
        raise RegexError(f"invalid regex {regex!r}: {exc}") from exc


def _check_supported(regex: str, parsed=None) -> None:
    if parsed is None:
        parsed = _parse(regex)
    size = _unrolled_size(parsed)
    if size > MAX_UNROLLED:
        raise RegexError(
            f"regex {regex!r} unrolls to about {size:,} states (limit {MAX_UNROLLED:,}); "
            "bound its repeats more tightly")
    for pattern, what in _UNSUPPORTED:
        if pattern.search(regex):
            raise RegexError(f"regex {regex!r} uses {what}, which a finite automaton cannot express")
    for m in _REPEAT.finditer(regex):
        counts = [int(x) for x in m.groups() if x]
        if counts and max(counts) > MAX_REPEAT:
            raise RegexError(
                f"regex {regex!r} repeats {max(counts)} times; structgen bounds repeats at "
                f"{MAX_REPEAT} so the automaton stays small")


class _ByteBuilder:
    """Expands a code point DFA into byte states; the states reading the continuation bytes
    of a multi-byte character are shared by their content (what they lead to), so ``[^"]``
    costs a handful of states, not a million."""

    def __init__(self, cdfa: CharDFA, max_states: int) -> None:
        self.cdfa = cdfa
        self.max_states = max_states
        n = cdfa.n_states
        self.rows: list[list[int]] = [[-1] * 256 for _ in range(n)]
        self.accepting = list(cdfa.accepting)
        self.residuals: dict[tuple, int] = {}
        self.any_multibyte: dict[int, list[int]] = {}

    def build(self) -> None:
        for i, runs in enumerate(self.cdfa.runs):
            if not runs:
                continue
            row = self.rows[i]
            k = 0
            n_runs = len(runs)
            # ASCII bytes straight from the runs
            while k < n_runs and runs[k][0] < 0x80:
                lo, hi, t = runs[k]
                for b in range(lo, min(hi, 0x7F) + 1):
                    row[b] = t
                if hi >= 0x80:
                    break
                k += 1
            if runs[-1][1] < 0x80:
                continue
            high = [r for r in runs if r[1] >= 0x80]
            t = high[0][2]
            if len(high) == 2 and high[0][0] <= 0x80 and high[0][1] == SURROGATES[0] - 1 \
                    and high[1] == (SURROGATES[1] + 1, MAX_CODEPOINT, t):
                row[0xC2:0xF5] = self._any_multibyte(t)
                continue
            starts = [r[0] for r in runs]
            for lead in range(0xC2, 0xF5):
                if lead < 0xE0:
                    n, base, lo = 1, (lead & 0x1F) << 6, 0x80
                elif lead < 0xF0:
                    n, base, lo = 2, (lead & 0x0F) << 12, 0x800
                else:
                    n, base, lo = 3, (lead & 0x07) << 18, 0x10000
                row[lead] = self._residual(runs, starts, base, 64 ** n, n, lo)

    def _any_multibyte(self, t: int) -> list[int]:
        """Targets of the lead bytes 0xC2..0xF4 when every non-ASCII code point leads to
        ``t`` (``.``, ``[^"]``): the fixed shape of well-formed UTF-8 (RFC 3629, table 3-7),
        written out instead of searched per lead byte."""
        found = self.any_multibyte.get(t)
        if found is not None:
            return found

        def state(ranges: list[tuple[int, int, int]]) -> int:
            idx = len(self.rows)
            row = [-1] * 256
            for lo, hi, target in ranges:
                row[lo:hi + 1] = [target] * (hi - lo + 1)
            self.rows.append(row)
            self.accepting.append(False)
            return idx

        c1 = state([(0x80, 0xBF, t)])
        c2 = state([(0x80, 0xBF, c1)])
        c2_e0 = state([(0xA0, 0xBF, c1)])  # no overlong 3-byte forms
        c2_ed = state([(0x80, 0x9F, c1)])  # no surrogates
        c3 = state([(0x80, 0xBF, c2)])
        c3_f0 = state([(0x90, 0xBF, c2)])  # no overlong 4-byte forms
        c3_f4 = state([(0x80, 0x8F, c2)])  # nothing above U+10FFFF
        out = [c1] * (0xE0 - 0xC2) + [c2_e0] + [c2] * 12 + [c2_ed] + [c2] * 2 + \
            [c3_f0] + [c3] * 3 + [c3_f4]
        self.any_multibyte[t] = out
        return out

    @staticmethod
    def _target_at(runs, starts, cp: int) -> int:
        k = bisect.bisect_right(starts, cp) - 1
        if k >= 0 and runs[k][0] <= cp <= runs[k][1]:
            return runs[k][2]
        return -1

    def _residual(self, runs, starts, base: int, span: int, n: int, valid_lo: int) -> int:
        """State reading the ``n`` continuation bytes of code points ``[base, base+span)``."""
        lo = max(base, valid_lo)
        hi = min(base + span - 1, MAX_CODEPOINT)
        if lo > hi:
            return -1
        k = max(bisect.bisect_right(starts, lo) - 1, 0)
        pieces = []
        while k < len(runs) and runs[k][0] <= hi:
            a, b, t = runs[k]
            if b >= lo:
                pieces.append((max(a, lo) - base, min(b, hi) - base, t))
            k += 1
        if not pieces:
            return -1
        key = (n, tuple(pieces))
        found = self.residuals.get(key)
        if found is not None:
            return found
        idx = len(self.rows)
        if idx >= self.max_states * 4:
            raise RegexError(f"the byte automaton grows past {self.max_states} states")
        row = [-1] * 256
        self.rows.append(row)
        self.accepting.append(False)
        self.residuals[key] = idx
        sub = 64 ** (n - 1)
        if n == 1:
            for a, b, t in pieces:
                for c in range(a, b + 1):
                    row[0x80 + c] = t
            return idx
        local_runs = [(a + base, b + base, t) for a, b, t in pieces]
        local_starts = [r[0] for r in local_runs]
        first = (pieces[0][0]) // sub
        last = (pieces[-1][1]) // sub
        for c in range(first, last + 1):
            row[0x80 + c] = self._residual(local_runs, local_starts, base + c * sub, sub, n - 1,
                                           lo)
        return idx


def _trim_and_minimize(rows: np.ndarray, accepting: np.ndarray, start: int) -> ByteDFA:
    n = rows.shape[0]
    # the distinct edges (a state has few distinct successors among its 256 bytes)
    src, col = np.nonzero(rows >= 0)
    edges = np.unique(src * n + rows[src, col])
    e_src, e_dst = edges // n, edges % n
    succ = _adjacency(e_src, e_dst, n)
    reach = _reachable(succ, [start], n)
    preds = _adjacency(e_dst, e_src, n)
    live = _reachable(preds, np.flatnonzero(accepting & reach).tolist(), n) & reach
    if not live[start]:
        return ByteDFA(np.full((1, 256), -1, dtype=np.int32), np.zeros(1, dtype=bool))
    keep = np.flatnonzero(live)
    remap = np.full(n + 1, -1, dtype=np.int64)
    remap[keep] = np.arange(len(keep))
    t = remap[rows[keep]]  # -1 maps through index n -> -1
    acc = accepting[keep]
    s0 = int(remap[start])
    # Moore partition refinement over byte classes (bytes whose columns agree in every state
    # behave alike, so each is checked once). A round hashes each state's signature (its
    # class, its successors' classes) to one 64-bit number, so rounds are cheap numpy work; a
    # chain like a{1000} needs one round per state, so the rounds are bounded by
    # MINIMIZE_WORK. The final partition is checked exactly (a hash collision, or running out
    # of rounds, keeps the states apart: a trimmed DFA is already correct, a minimal one only
    # smaller).
    _, first_col = _row_classes(np.ascontiguousarray(t.T))
    tc = np.ascontiguousarray(t[:, first_col])
    cls = _moore(tc, acc)
    n_cls = int(cls.max()) + 1 if len(cls) else 0
    # renumber: the start's class becomes 0
    relabel = np.arange(n_cls)
    relabel[[0, cls[s0]]] = relabel[[cls[s0], 0]]
    cls = relabel[cls]
    _, rep = np.unique(cls, return_index=True)
    rows_out = t[rep]
    out = np.where(rows_out >= 0, cls[np.maximum(rows_out, 0)], -1).astype(np.int32)
    return ByteDFA(out, acc[rep].copy())


def _adjacency(a: np.ndarray, b: np.ndarray, n: int) -> list[list[int]]:
    """Per node of ``a``, its ``b`` neighbours (edge list to adjacency lists)."""
    order = np.argsort(a, kind="stable")
    ptr = np.searchsorted(a[order], np.arange(n + 1)).tolist()
    nb = b[order].tolist()
    return [nb[ptr[i]:ptr[i + 1]] for i in range(n)]


def _reachable(adj: list[list[int]], roots: list[int], n: int) -> np.ndarray:
    seen = bytearray(n)
    stack = list(roots)
    for r in roots:
        seen[r] = 1
    while stack:
        for y in adj[stack.pop()]:
            if not seen[y]:
                seen[y] = 1
                stack.append(y)
    return np.frombuffer(bytes(seen), dtype=np.uint8).astype(bool)


_HASH_MULT = np.random.default_rng(20240611).integers(
    1, 2**63, size=257, dtype=np.uint64) | np.uint64(1)


def _moore(tc: np.ndarray, acc: np.ndarray) -> np.ndarray:
    """Class of each state in the coarsest stable partition (the minimal DFA's states), or
    every state its own class when that is not found within MINIMIZE_WORK."""
    n, k = tc.shape
    identity = np.arange(n, dtype=np.int64)
    if n == 0:
        return identity
    cls = acc.astype(np.int64)
    n_cls = len(np.unique(cls))
    dead = tc < 0
    safe = np.maximum(tc, 0)
    mult = _HASH_MULT[1:k + 1]
    rounds = max(1, MINIMIZE_WORK // max(n * k, 1))
    with np.errstate(over="ignore"):
        for _ in range(rounds):
            succ = np.where(dead, np.int64(-1), cls[safe]).astype(np.uint64)
            h = succ @ mult if k else np.zeros(n, dtype=np.uint64)
            h += cls.astype(np.uint64) * _HASH_MULT[0]
            _, new_cls = np.unique(h, return_inverse=True)
            new_cls = new_cls.reshape(-1).astype(np.int64)
            new_n = int(new_cls.max()) + 1
            cls = new_cls
            if new_n == n_cls:
                break
            n_cls = new_n
        else:
            return identity
    # exact check: every state's signature equals its class representative's
    _, rep = np.unique(cls, return_index=True)
    succ = np.where(dead, -1, cls[safe])
    if not (np.array_equal(succ, succ[rep[cls]]) and np.array_equal(acc, acc[rep[cls]])):
        return identity
    return cls


def _row_classes(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(class of each row, index of the first row of each class): equal rows share a class,
    numbered in order of first appearance. (A dict over row bytes: ``np.unique(axis=0)``
    sorts rows as opaque records, which is many times slower.)"""
    ids: dict[bytes, int] = {}
    out = np.empty(rows.shape[0], dtype=np.int64)
    first = []
    for i, key in enumerate(map(bytes, rows)):
        c = ids.setdefault(key, len(ids))
        if c == len(first):
            first.append(i)
        out[i] = c
    return out, np.array(first, dtype=np.int64)


def literal_to_dfa(text: str) -> ByteDFA:
    """The DFA of one exact string: a chain of its UTF-8 bytes (no regex machinery needed)."""
    data = text.encode("utf-8")
    if not data:
        raise RegexError("a literal terminal cannot be empty")
    trans = np.full((len(data) + 1, 256), -1, dtype=np.int32)
    for i, b in enumerate(data):
        trans[i, b] = i + 1
    accepting = np.zeros(len(data) + 1, dtype=bool)
    accepting[-1] = True
    return ByteDFA(trans, accepting)


# Terminals of Lark's common.lark whose regex leans on a lookbehind or on lazy repeats: Lark's
# lexer (re.match) ends them at the first closing quote / "*/". Written here as plain regexes
# with the same lexemes, which a DFA can express.
LARK_COMMON_EQUIVALENTS = {
    # ESCAPED_STRING: no newline inside; ends at the first quote not escaped by a backslash
    '".*?(?<!\\\\)(\\\\\\\\)*?"': r'"(?:[^"\\\n]|\\[^\n])*"',
    # C_COMMENT: ends at the first "*/"
    "/\\*(.|\n)*?\\*/": r"/\*(?:[^*]|\*+[^*/])*\*+/",
}


def _repeat_kinds(regex: str, parsed=None) -> tuple[bool, bool]:
    """(has greedy repeats, has lazy repeats), read with re's own parser."""
    from re import _constants as C  # noqa: N812
    from re import _parser as sre

    if parsed is None:
        try:
            parsed = sre.parse(regex)
        except Exception:  # syntax errors are reported by the regex compiler proper
            return True, False
    greedy = lazy = False
    stack = list(parsed)
    while stack:
        op, av = stack.pop()
        if op is C.MAX_REPEAT:
            greedy = True
            stack.extend(av[2])
        elif op is C.MIN_REPEAT:
            lazy = True
            stack.extend(av[2])
        elif op is C.SUBPATTERN:
            stack.extend(av[3])
        elif op is C.BRANCH:
            for alt in av[1]:
                stack.extend(alt)
    return greedy, lazy


def _product(a: ByteDFA, b: ByteDFA, both: bool) -> ByteDFA:
    """The strings ``a`` matches that ``b`` matches too (``both``) or does not."""
    ta = a.transitions.astype(np.int64)
    tb = b.transitions.astype(np.int64)
    nb = tb.shape[0] + 1  # b's dead state is -1, coded 0
    index = {(0, 0): 0}
    pairs = [(0, 0)]
    rows = []
    k = 0
    while k < len(pairs):
        x, y = pairs[k]
        k += 1
        row_a = ta[x]
        row_b = tb[y] if y >= 0 else np.full(256, -1, dtype=np.int64)
        live = row_a >= 0
        if both:
            live &= row_b >= 0
        codes = np.where(live, row_a * nb + row_b + 1, -1)
        row = np.full(256, -1, dtype=np.int64)
        for code in np.unique(codes[live]).tolist():
            pair = (code // nb, code % nb - 1)
            j = index.get(pair)
            if j is None:
                j = index[pair] = len(pairs)
                pairs.append(pair)
            row[codes == code] = j
        rows.append(row)
    acc_b = np.array([y >= 0 and bool(b.accepting[y]) for _, y in pairs])
    acc = np.array([bool(a.accepting[x]) for x, _ in pairs]) & (acc_b if both else ~acc_b)
    return _trim_and_minimize(np.stack(rows), acc, 0)


def dfas_disjoint(a: ByteDFA, b: ByteDFA) -> bool:
    """Whether no string matches both ``a`` and ``b``."""
    return not _product(a, b, True).accepting.any()


def dfa_intersection(a: ByteDFA, b: ByteDFA, *, negate_b: bool = False) -> ByteDFA:
    """The strings ``a`` matches that ``b`` matches too (or, ``negate_b``, does not)."""
    return _product(a, b, not negate_b)


def _shortest_match(dfa: ByteDFA) -> ByteDFA:
    """Keep only matches with no matching proper prefix: what re.match returns for a regex
    whose repeats are all lazy."""
    trans = dfa.transitions.copy()
    trans[dfa.accepting] = -1
    return _trim_and_minimize(trans.astype(np.int64), dfa.accepting.copy(), 0)


_DIRECT: OrderedDict[str, Callable[[], ByteDFA | None]] = OrderedDict()
MAX_DIRECT = 4096


def register_direct(regex: str, build: Callable[[], ByteDFA | None]) -> None:
    """Have :func:`regex_to_dfa` call ``build()`` for exactly ``regex``: a front end that wrote
    the regex knows a faster construction of the same language (``build`` may return None to
    fall back to the general path). Bounded; forgetting one only costs speed."""
    with _DIRECT_LOCK:
        _DIRECT[regex] = build
        _DIRECT.move_to_end(regex)
        while len(_DIRECT) > MAX_DIRECT:
            _DIRECT.popitem(last=False)


_DIRECT_LOCK = threading.Lock()


@functools.lru_cache(maxsize=1024)
def regex_to_dfa(regex: str, *, max_states: int = DEFAULT_MAX_STATES) -> ByteDFA:
    """Compile a Python-syntax regex (as Lark writes terminals) to a minimized byte DFA.

    Raises :class:`RegexError` for syntax errors, lookaround, back-references, anchors, or an
    automaton over ``max_states`` states. Results are cached per process (DFAs are immutable:
    their arrays are made read-only).
    """
    regex = LARK_COMMON_EQUIVALENTS.get(regex, regex)
    build = _DIRECT.get(regex)
    dfa = build() if build is not None else None
    if dfa is not None:
        return _finished(regex, dfa, max_states)
    return _compile(regex, max_states)


def _finished(regex: str, dfa: ByteDFA, max_states: int) -> ByteDFA:
    """``dfa`` made read-only (it is cached and shared), or RegexError if it is too big."""
    if dfa.n_states > max_states:
        raise RegexError(f"regex {regex!r} needs {dfa.n_states} byte states (limit {max_states})")
    dfa.transitions.setflags(write=False)
    dfa.accepting.setflags(write=False)
    return dfa


def _compile(regex: str, max_states: int = DEFAULT_MAX_STATES) -> ByteDFA:
    """The general path of :func:`regex_to_dfa` (no cache, no direct builders)."""
    parsed = _parse(regex)
    greedy, lazy = _repeat_kinds(regex, parsed)
    if lazy and greedy:
        raise RegexError(
            f"regex {regex!r} mixes lazy and greedy repeats; structgen lexes a terminal with "
            "lazy repeats as its shortest match, so use only one kind in a terminal")
    conditions, body = _whole_string_lookaheads(parsed)
    if conditions:
        # (?=A\Z)(?!B\Z)C: the strings C matches that A matches and B does not
        from re import _parser as sre

        dfa = _compile_parsed(regex, sre.SubPattern(parsed.state, body), max_states, lazy)
        for positive, items in conditions:
            other = _compile_parsed(regex, sre.SubPattern(parsed.state, items), max_states,
                                    False)
            dfa = _product(dfa, other, positive)
        return _finished(regex, dfa, max_states)
    _check_supported(regex, parsed)
    return _compile_parsed(regex, parsed, max_states, lazy)


def _whole_string_lookaheads(parsed) -> tuple[list[tuple[bool, list]], list]:
    r"""Leading ``(?=X\Z)`` / ``(?!X\Z)`` assertions of a regex (conditions on the whole
    string, so a product of automata expresses them), and the rest of the regex."""
    from re import _constants as C  # noqa: N812

    items = list(parsed)
    conditions = []
    while items and items[0][0] in (C.ASSERT, C.ASSERT_NOT):
        direction, sub = items[0][1]
        sub = list(sub)
        if direction != 1 or not sub or sub[-1] != (C.AT, C.AT_END_STRING):
            break
        conditions.append((items[0][0] is C.ASSERT, sub[:-1]))
        items.pop(0)
    return conditions, items


def _compile_parsed(regex: str, parsed, max_states: int, lazy: bool) -> ByteDFA:
    nfa = regex_to_nfa(regex, NFA_STATES_PER_DFA_STATE * max_states, parsed)
    cdfa = nfa_to_dfa(nfa, max_states)
    builder = _ByteBuilder(cdfa, max_states)
    builder.build()
    rows = np.array(builder.rows, dtype=np.int64).reshape(-1, 256)
    accepting = np.array(builder.accepting, dtype=bool)
    dfa = _trim_and_minimize(rows, accepting, 0)
    if dfa.n_states > max_states:
        raise RegexError(f"regex {regex!r} needs {dfa.n_states} byte states (limit {max_states})")
    return _finished(regex, _shortest_match(dfa) if lazy else dfa, max_states)
