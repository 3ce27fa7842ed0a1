"""Regular expressions to minimized byte-level DFAs.

Language models emit bytes, and a token may end inside a UTF-8 character, so every terminal is
matched by a DFA over bytes, not characters. interegular parses the regex syntax and builds a
character-level FSM; here each character transition is expanded into the UTF-8 byte sequences of
the code points it covers (sharing states between code points with the same continuation, so
``[^"]`` costs a handful of states, not a million), dead states are trimmed (a live state can
always still reach an accepting one) and the result is minimized.

``\\d``, ``\\w`` and ``\\s`` have their Unicode meaning, as in Python's ``re`` (and so in Lark):
see ``unicode_classes``.
"""

from __future__ import annotations

import bisect
import functools
import re
from dataclasses import dataclass

import interegular
import numpy as np

from .errors import RegexError
from .unicode_classes import needs_rewrite, rewrite

MAX_CODEPOINT = 0x10FFFF
SURROGATES = (0xD800, 0xDFFF)
DEFAULT_MAX_STATES = 20_000
MINIMIZE_ROUNDS = 64
# Rough size of the automaton a regex unrolls to (repeat counts multiplied through nesting);
# above this interegular would take minutes, so the regex is refused up front.
MAX_UNROLLED = 20_000

# A bounded repeat above this count blows up any DFA (states grow linearly per nesting level,
# multiplicatively when nested); refuse it up front instead of hanging in interegular.
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


def _check_supported(regex: str) -> None:
    import re as _re
    from re import _parser as sre

    try:
        _re.compile(regex)
        parsed = sre.parse(regex)
    except (_re.error, OverflowError, RecursionError) as exc:
        raise RegexError(f"invalid regex {regex!r}: {exc}") from exc
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


def _char_fsm(regex: str):
    _check_supported(regex)
    try:
        return interegular.parse_pattern(regex).to_fsm()
    except RegexError:
        raise
    except Exception as exc:  # interegular raises several unrelated types
        raise RegexError(f"cannot parse regex {regex!r}: {exc}") from exc


def _segments(fsm, state, placeholders: dict | None = None) -> list[tuple[int, int, int]]:
    """Code point -> next char state for one FSM state, as sorted ``(lo, hi, target)`` runs.

    Explicit characters of the alphabet map to their own symbols; every other code point maps
    to the ``anything_else`` symbol. A placeholder character (see ``unicode_classes``) maps its
    real code point ranges instead, and itself counts as "anything else". Surrogates never
    appear in UTF-8 text and map to nothing.
    """
    mapping = fsm.alphabet._symbol_mapping
    trans = fsm.map.get(state, {})
    other_sym = mapping.get(interegular.fsm.anything_else)
    other = trans.get(other_sym, -1) if other_sym is not None else -1
    explicit = []
    for c, sym in mapping.items():
        if c is interegular.fsm.anything_else:
            continue
        cp = ord(c)
        if placeholders and cp in placeholders:
            target = trans.get(sym, -1)
            explicit.extend((lo, hi, target) for lo, hi in placeholders[cp])
            explicit.append((cp, cp, other))
        else:
            explicit.append((cp, cp, trans.get(sym, -1)))
    explicit.sort()
    runs: list[tuple[int, int, int]] = []

    def add(lo: int, hi: int, target: int) -> None:
        if lo > hi:
            return
        # cut surrogates out
        if lo <= SURROGATES[1] and hi >= SURROGATES[0]:
            add(lo, SURROGATES[0] - 1, target)
            add(SURROGATES[1] + 1, hi, target)
            return
        if runs and runs[-1][2] == target and runs[-1][1] == lo - 1:
            runs[-1] = (runs[-1][0], hi, target)
        else:
            runs.append((lo, hi, target))

    cursor = 0
    for lo, hi, target in explicit:
        add(cursor, lo - 1, other)
        add(lo, hi, target)
        cursor = hi + 1
    add(cursor, MAX_CODEPOINT, other)
    return [r for r in runs if r[2] != -1] if runs else []


class _ByteBuilder:
    """Expands a character FSM into byte states; residual states are shared by their content."""

    def __init__(self, fsm, max_states: int, placeholders: dict | None = None) -> None:
        self.fsm = fsm
        self.placeholders = placeholders
        self.max_states = max_states
        self.char_states = sorted(fsm.states)
        self.char_index = {s: i for i, s in enumerate(self.char_states)}
        self.rows: list[list[int]] = [[-1] * 256 for _ in self.char_states]
        self.accepting = [s in fsm.finals for s in self.char_states]
        self.residuals: dict[tuple, int] = {}

    def build(self) -> None:
        for i, s in enumerate(self.char_states):
            runs = _segments(self.fsm, s, self.placeholders)
            if not runs:
                continue
            starts = [r[0] for r in runs]
            row = self.rows[i]
            for b in range(0x80):
                row[b] = self._target_at(runs, starts, b)
            for lead in range(0xC2, 0xF5):
                if lead < 0xE0:
                    n, base, lo = 1, (lead & 0x1F) << 6, 0x80
                elif lead < 0xF0:
                    n, base, lo = 2, (lead & 0x0F) << 12, 0x800
                else:
                    n, base, lo = 3, (lead & 0x07) << 18, 0x10000
                span = 64 ** n
                row[lead] = self._residual(runs, starts, base, span, n, lo)

    def _target_at(self, runs, starts, cp: int) -> int:
        k = bisect.bisect_right(starts, cp) - 1
        if k >= 0 and runs[k][0] <= cp <= runs[k][1]:
            return self.char_index[runs[k][2]]
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
        self.rows.append([-1] * 256)
        self.accepting.append(False)
        self.residuals[key] = idx
        sub = 64 ** (n - 1)
        local_runs = [(a + base, b + base, t) for a, b, t in pieces]
        local_starts = [r[0] for r in local_runs]
        row = self.rows[idx]
        for c in range(64):
            cbase = base + c * sub
            if n == 1:
                if lo <= cbase <= hi:
                    row[0x80 + c] = self._target_at(local_runs, local_starts, cbase)
            else:
                row[0x80 + c] = self._residual(local_runs, local_starts, cbase, sub, n - 1, lo)
        return idx


def _trim_and_minimize(rows: np.ndarray, accepting: np.ndarray, start: int) -> ByteDFA:
    n = rows.shape[0]
    # forward reachability from start
    reach = np.zeros(n, dtype=bool)
    reach[start] = True
    frontier = [start]
    while frontier:
        nxt = np.unique(rows[frontier])
        nxt = nxt[nxt >= 0]
        new = nxt[~reach[nxt]]
        reach[new] = True
        frontier = new.tolist()
    # backward: states that can reach an accepting state (BFS over reversed edges)
    src, _ = np.nonzero(rows >= 0)
    dst = rows[rows >= 0]
    order = np.argsort(dst, kind="stable")
    rev_src = src[order]
    rev_ptr = np.searchsorted(dst[order], np.arange(n + 1))
    live = accepting & reach
    frontier = np.flatnonzero(live)
    while frontier.size:
        preds = np.concatenate([rev_src[rev_ptr[x]:rev_ptr[x + 1]] for x in frontier])
        preds = np.unique(preds)
        new = preds[reach[preds] & ~live[preds]]
        live[new] = True
        frontier = new
    if not live[start]:
        return ByteDFA(np.full((1, 256), -1, dtype=np.int32), np.zeros(1, dtype=bool))
    keep = np.flatnonzero(live)
    remap = np.full(n + 1, -1, dtype=np.int64)
    remap[keep] = np.arange(len(keep))
    t = remap[rows[keep]]  # -1 maps through index n -> -1
    acc = accepting[keep]
    s0 = int(remap[start])
    # Moore partition refinement over byte classes (bytes whose columns agree in every state
    # behave alike, so each is checked once). Minimal DFAs only save states (a trimmed DFA is
    # already correct), and a chain like a{1000} needs one round per state: stop after
    # MINIMIZE_ROUNDS and keep the states apart rather than spend seconds.
    _, first_col = np.unique(t.T, axis=0, return_index=True)
    tc = t[:, np.sort(first_col)]
    cls = acc.astype(np.int64)
    n_cls = len(np.unique(cls))
    for _ in range(MINIMIZE_ROUNDS):
        sig = np.concatenate([cls[:, None], np.where(tc >= 0, cls[np.maximum(tc, 0)], -1)], axis=1)
        _, new_cls = np.unique(sig, axis=0, return_inverse=True)
        new_cls = new_cls.reshape(-1)
        new_n = int(new_cls.max()) + 1
        cls = new_cls
        if new_n == n_cls:
            break
        n_cls = new_n
    else:
        cls = np.arange(len(acc), dtype=np.int64)
        n_cls = len(acc)
    # renumber: the start's class becomes 0
    relabel = np.arange(n_cls)
    relabel[[0, cls[s0]]] = relabel[[cls[s0], 0]]
    cls = relabel[cls]
    _, rep = np.unique(cls, return_index=True)
    rows_out = t[rep]
    out = np.where(rows_out >= 0, cls[np.maximum(rows_out, 0)], -1).astype(np.int32)
    return ByteDFA(out, acc[rep].copy())


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


def _repeat_kinds(regex: str) -> tuple[bool, bool]:
    """(has greedy repeats, has lazy repeats), read with re's own parser."""
    from re import _constants as C  # noqa: N812
    from re import _parser as sre

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


def _shortest_match(dfa: ByteDFA) -> ByteDFA:
    """Keep only matches with no matching proper prefix: what re.match returns for a regex
    whose repeats are all lazy."""
    trans = dfa.transitions.copy()
    trans[dfa.accepting] = -1
    return _trim_and_minimize(trans.astype(np.int64), dfa.accepting.copy(), 0)


@functools.lru_cache(maxsize=1024)
def regex_to_dfa(regex: str, *, max_states: int = DEFAULT_MAX_STATES) -> ByteDFA:
    """Compile a Python-syntax regex (as Lark writes terminals) to a minimized byte DFA.

    Raises :class:`RegexError` for syntax errors, lookaround, back-references, anchors, or an
    automaton over ``max_states`` states. Results are cached per process (DFAs are immutable:
    their arrays are made read-only).
    """
    regex = LARK_COMMON_EQUIVALENTS.get(regex, regex)
    greedy, lazy = _repeat_kinds(regex)
    if lazy and greedy:
        raise RegexError(
            f"regex {regex!r} mixes lazy and greedy repeats; structgen lexes a terminal with "
            "lazy repeats as its shortest match, so use only one kind in a terminal")
    placeholders = None
    source = regex
    if needs_rewrite(regex):
        _check_supported(regex)
        source, placeholders = rewrite(regex)
    fsm = _char_fsm(source)
    if len(fsm.states) > max_states:
        raise RegexError(f"regex {regex!r} needs {len(fsm.states)} states (limit {max_states})")
    builder = _ByteBuilder(fsm, max_states, placeholders)
    builder.build()
    rows = np.array(builder.rows, dtype=np.int64).reshape(-1, 256)
    accepting = np.array(builder.accepting, dtype=bool)
    dfa = _trim_and_minimize(rows, accepting, builder.char_index[fsm.initial])
    if dfa.n_states > max_states:
        raise RegexError(f"regex {regex!r} needs {dfa.n_states} byte states (limit {max_states})")
    if lazy:
        dfa = _shortest_match(dfa)
    dfa.transitions.setflags(write=False)
    dfa.accepting.setflags(write=False)
    return dfa
