"""Python-syntax regexes to code-point DFAs: ``re``'s own parser, a Thompson NFA, subsets.

``regex_dfa`` turns the result into a byte DFA. Semantics are ``re``'s: ``\\d \\w \\s`` and
case-insensitive matching are Unicode-aware unless ``re.ASCII`` is on (the category and case
tables come from ``unicode_classes``), ``.`` excludes only ``\\n`` without ``re.DOTALL``, scoped
flags ``(?i:...)`` apply to their group. Lazy repeats have the same language as greedy ones
(the caller decides what lexing means). Anchors, lookaround, back-references, conditionals,
atomic groups and possessive repeats raise :class:`RegexError`: a finite automaton over the
whole lexeme cannot express them.

Character sets are sorted tuples of disjoint inclusive code point ranges, without surrogates
(they never appear in UTF-8 text).
"""

from __future__ import annotations

import functools
import re
from re import _constants as C  # noqa: N812
from re import _parser as sre

from .errors import RegexError

MAX_CODEPOINT = 0x10FFFF
SURROGATES = (0xD800, 0xDFFF)
Ranges = tuple[tuple[int, int], ...]

ALL: Ranges = ((0, SURROGATES[0] - 1), (SURROGATES[1] + 1, MAX_CODEPOINT))
# flags as plain ints (RegexFlag arithmetic is slow in an inner loop)
_I, _S, _A, _L = int(re.IGNORECASE), int(re.DOTALL), int(re.ASCII), int(re.LOCALE)


# ----------------------------------------------------------------------------------------------
# Range sets
# ----------------------------------------------------------------------------------------------

def normalize(ranges) -> Ranges:
    """Sorted, merged, surrogate-free ranges."""
    out: list[list[int]] = []
    for lo, hi in sorted(ranges):
        if lo > hi:
            continue
        if out and lo <= out[-1][1] + 1:
            if hi > out[-1][1]:
                out[-1][1] = hi
        else:
            out.append([lo, hi])
    res = []
    s0, s1 = SURROGATES
    for lo, hi in out:
        if hi < s0 or lo > s1:
            res.append((lo, hi))
            continue
        if lo < s0:
            res.append((lo, s0 - 1))
        if hi > s1:
            res.append((s1 + 1, hi))
    return tuple(res)


def complement(ranges: Ranges) -> Ranges:
    out = []
    cur = 0
    for lo, hi in ranges:
        if lo > cur:
            out.append((cur, lo - 1))
        cur = hi + 1
    if cur <= MAX_CODEPOINT:
        out.append((cur, MAX_CODEPOINT))
    return normalize(out)


@functools.cache
def _category(name: str, ascii_only: bool) -> Ranges:
    """``\\d`` (``d``), ``\\w`` (``w``) or ``\\s`` (``s``) as ``re`` means it."""
    if ascii_only:
        return {"d": ((0x30, 0x39),),
                "w": ((0x30, 0x39), (0x41, 0x5A), (0x5F, 0x5F), (0x61, 0x7A)),
                "s": ((0x09, 0x0D), (0x20, 0x20))}[name]
    from .unicode_classes import _category_tables, _to_ranges

    return normalize(_to_ranges(_category_tables()[name]))


_CATEGORIES = {
    C.CATEGORY_DIGIT: ("d", False), C.CATEGORY_NOT_DIGIT: ("d", True),
    C.CATEGORY_WORD: ("w", False), C.CATEGORY_NOT_WORD: ("w", True),
    C.CATEGORY_SPACE: ("s", False), C.CATEGORY_NOT_SPACE: ("s", True),
}


def _ascii_case(cp: int) -> list[int]:
    if 0x41 <= cp <= 0x5A:
        return [cp, cp + 32]
    if 0x61 <= cp <= 0x7A:
        return [cp, cp - 32]
    return [cp]


def _with_case(lo: int, hi: int, flags: int) -> list[tuple[int, int]]:
    """``[lo, hi]`` plus the case variants ``re`` matches under IGNORECASE."""
    if not flags & _I:
        return [(lo, hi)]
    if flags & _A:
        out = [(lo, hi)]
        for cp in range(max(lo, 0x41), min(hi, 0x7A) + 1):
            out.extend((v, v) for v in _ascii_case(cp))
        return out
    from .unicode_classes import _literal_set

    return [(lo, hi)] + [(v, v) for v in _literal_set(lo, hi, flags)]


def _class_ranges(items, flags: int) -> Ranges:
    """The code points an ``IN`` item list matches."""
    negate = False
    acc: list[tuple[int, int]] = []
    ascii_only = bool(flags & _A)
    for op, av in items:
        if op is C.NEGATE:
            negate = True
        elif op is C.LITERAL:
            acc.extend(_with_case(av, av, flags))
        elif op is C.RANGE:
            acc.extend(_with_case(av[0], av[1], flags))
        elif op is C.CATEGORY:
            if av not in _CATEGORIES:
                raise RegexError(f"unsupported character category {av}")
            name, neg = _CATEGORIES[av]
            r = _category(name, ascii_only)
            acc.extend(complement(r) if neg else r)
        else:
            raise RegexError(f"unsupported item {op} in a character class")
    out = normalize(acc)
    return complement(out) if negate else out


# ----------------------------------------------------------------------------------------------
# Thompson NFA
# ----------------------------------------------------------------------------------------------

_NOT_NEWLINE = complement(((10, 10),))


class NFA:
    """States with epsilon edges and at most one character edge each."""

    def __init__(self, max_states: int) -> None:
        self.eps: list[list[int]] = []
        self.cset: list[int] = []  # charset id of the character edge, -1 for none
        self.target: list[int] = []
        self.charsets: list[Ranges] = []
        self._cs_index: dict[Ranges, int] = {}
        self.max_states = max_states
        self.start = 0
        self.accept = 0

    def state(self) -> int:
        n = len(self.eps)
        if n >= self.max_states:
            raise RegexError(f"the regex needs over {self.max_states} automaton states")
        self.eps.append([])
        self.cset.append(-1)
        self.target.append(-1)
        return n

    def chars(self, ranges: Ranges) -> tuple[int, int]:
        s = self.state()
        e = self.state()
        if ranges:
            cid = self._cs_index.get(ranges)
            if cid is None:
                cid = self._cs_index[ranges] = len(self.charsets)
                self.charsets.append(ranges)
            self.cset[s] = cid
            self.target[s] = e
        return s, e


class _Emitter:
    def __init__(self, nfa: NFA, regex: str) -> None:
        self.nfa = nfa
        self.regex = regex
        # character sets per parse node and flags: a repeat {m,n} emits its body m..n times
        self.sets: dict[tuple[int, int], Ranges] = {}

    def seq(self, items, flags: int) -> tuple[int, int]:
        nfa = self.nfa
        start = end = nfa.state()
        for op, av in items:
            s, e = self.item(op, av, flags)
            nfa.eps[end].append(s)
            end = e
        return start, end

    def item(self, op, av, flags: int) -> tuple[int, int]:  # noqa: C901 - one branch per op
        nfa = self.nfa
        if op is C.LITERAL:
            return nfa.chars(normalize(_with_case(av, av, flags)))
        if op is C.NOT_LITERAL:
            return nfa.chars(complement(normalize(_with_case(av, av, flags))))
        if op is C.ANY:
            return nfa.chars(ALL if flags & _S else _NOT_NEWLINE)
        if op is C.IN:
            key = (id(av), flags)
            found = self.sets.get(key)
            if found is None:
                found = self.sets[key] = _class_ranges(av, flags)
            return nfa.chars(found)
        if op is C.BRANCH:
            s, e = nfa.state(), nfa.state()
            for alt in av[1]:
                a, b = self.seq(alt, flags)
                nfa.eps[s].append(a)
                nfa.eps[b].append(e)
            return s, e
        if op is C.SUBPATTERN:
            _, add, remove, inner = av
            return self.seq(inner, (flags | int(add)) & ~int(remove))
        if op in (C.MAX_REPEAT, C.MIN_REPEAT):
            lo, hi, inner = av
            return self.repeat(lo, hi, inner, flags)
        if op is C.AT:
            raise RegexError(f"regex {self.regex!r} uses an anchor ({str(av).lower()}), "
                             "which a terminal cannot express")
        if op in (C.GROUPREF, C.GROUPREF_EXISTS):
            raise RegexError(f"regex {self.regex!r} uses back-references, which a finite "
                             "automaton cannot express")
        if op in (C.ASSERT, C.ASSERT_NOT):
            raise RegexError(f"regex {self.regex!r} uses lookaround assertions, which a "
                             "finite automaton cannot express")
        raise RegexError(f"regex {self.regex!r} uses {str(op).lower()}, which structgen does "
                         "not support in a terminal")

    def repeat(self, lo: int, hi, inner, flags: int) -> tuple[int, int]:
        nfa = self.nfa
        start = end = nfa.state()
        for _ in range(lo):
            s, e = self.seq(inner, flags)
            nfa.eps[end].append(s)
            end = e
        if hi is C.MAXREPEAT:
            s, e = self.seq(inner, flags)
            loop = nfa.state()
            nfa.eps[end].append(loop)
            nfa.eps[loop].append(s)
            nfa.eps[e].append(loop)
            return start, loop
        if hi > lo:
            final = nfa.state()
            for _ in range(hi - lo):
                s, e = self.seq(inner, flags)
                nfa.eps[end].append(s)
                nfa.eps[end].append(final)
                end = e
            nfa.eps[end].append(final)
            end = final
        return start, end


def regex_to_nfa(regex: str, max_states: int, parsed=None) -> NFA:
    """The Thompson NFA of ``regex`` (``parsed``: its ``re`` parse tree, when at hand)."""
    if parsed is None:
        try:
            parsed = sre.parse(regex)
        except (re.error, OverflowError, RecursionError) as exc:
            raise RegexError(f"invalid regex {regex!r}: {exc}") from exc
    flags = int(parsed.state.flags)
    if flags & _L:
        raise RegexError(f"regex {regex!r}: the LOCALE flag is not supported")
    nfa = NFA(max_states)
    s, e = _Emitter(nfa, regex).seq(list(parsed), flags)
    nfa.start, nfa.accept = s, e
    return nfa


# ----------------------------------------------------------------------------------------------
# Subset construction over code point ranges
# ----------------------------------------------------------------------------------------------

class CharDFA:
    """A DFA over code points: ``runs[s]`` is a sorted list of ``(lo, hi, target)`` (gaps go to
    the dead state); state 0 is the start."""

    def __init__(self, runs: list[list[tuple[int, int, int]]], accepting: list[bool]) -> None:
        self.runs = runs
        self.accepting = accepting

    @property
    def n_states(self) -> int:
        return len(self.runs)


def nfa_to_dfa(nfa: NFA, max_states: int) -> CharDFA:
    eps, cset, target, accept = nfa.eps, nfa.cset, nfa.target, nfa.accept

    def closure(states) -> frozenset:
        seen = set(states)
        stack = list(states)
        while stack:
            x = stack.pop()
            for y in eps[x]:
                if y not in seen:
                    seen.add(y)
                    stack.append(y)
        # only states with a character edge, or the accepting one, tell subsets apart
        return frozenset(x for x in seen if cset[x] >= 0 or x == accept)

    start = closure([nfa.start])
    index = {start: 0}
    order = [start]
    runs_out: list[list[tuple[int, int, int]]] = []
    accepting: list[bool] = []
    closure_memo: dict[frozenset, frozenset] = {}
    charsets = nfa.charsets
    k = 0
    while k < len(order):
        cur = order[k]
        k += 1
        accepting.append(accept in cur)
        by_cs: dict[int, list[int]] = {}
        for x in cur:
            c = cset[x]
            if c >= 0:
                by_cs.setdefault(c, []).append(target[x])
        runs: list[tuple[int, int, int]] = []
        if len(by_cs) == 1:
            (c, tgts), = by_cs.items()
            key = frozenset(tgts)
            nxt = closure_memo.get(key)
            if nxt is None:
                nxt = closure_memo[key] = closure(tgts)
            j = index.get(nxt)
            if j is None:
                j = index[nxt] = len(order)
                order.append(nxt)
            runs = [(lo, hi, j) for lo, hi in charsets[c]]
        elif by_cs:
            events = []
            for c in by_cs:
                for lo, hi in charsets[c]:
                    events.append((lo, 1, c))
                    events.append((hi + 1, -1, c))
            events.sort()
            active: set[int] = set()
            pos = 0
            i = 0
            n_ev = len(events)
            local: dict[frozenset, int] = {}
            while i < n_ev:
                p = events[i][0]
                if active and p > pos:
                    akey = frozenset(active)
                    j = local.get(akey)
                    if j is None:
                        tgts = [t for c in active for t in by_cs[c]]
                        tkey = frozenset(tgts)
                        nxt = closure_memo.get(tkey)
                        if nxt is None:
                            nxt = closure_memo[tkey] = closure(tgts)
                        j = index.get(nxt)
                        if j is None:
                            j = index[nxt] = len(order)
                            order.append(nxt)
                        local[akey] = j
                    if runs and runs[-1][2] == j and runs[-1][1] == pos - 1:
                        runs[-1] = (runs[-1][0], p - 1, j)
                    else:
                        runs.append((pos, p - 1, j))
                while i < n_ev and events[i][0] == p:
                    _, d, c = events[i]
                    if d > 0:
                        active.add(c)
                    else:
                        active.discard(c)
                    i += 1
                pos = p
        if len(order) > max_states:
            raise RegexError(f"the automaton grows past {max_states} states")
        runs_out.append(runs)
    return CharDFA(runs_out, accepting)
