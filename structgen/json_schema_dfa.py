"""Byte DFAs built directly for the two JSON string regexes the schema front end writes most.

Keys beside declared properties (a canonical JSON string whose value is none of the declared
names) and strings with only ``minLength``/``maxLength`` have a simple structure: a trie, or a
counter, walked beside the automaton of one string character. Written as regex text they cost a
subset construction and a minimization over thousands of states (a trie of names gives each
node its own copy of every escape sequence); built here they cost a numpy row per state.

``json_schema_regex`` remembers how each such regex was made (:func:`remember`); the schema
builder registers the builder under the text Lark hands on (:func:`register_for_lark`), so
Lark still sees the regex and ``regex_dfa.regex_to_dfa`` returns the same language, only
sooner. ``tests/test_json_schema.py`` checks both paths give the same language.
"""

from __future__ import annotations

import functools
from collections import OrderedDict

import numpy as np

from .regex_dfa import (
    DEFAULT_MAX_STATES,
    ByteDFA,
    _finished,
    _trim_and_minimize,
    dfa_intersection,
    regex_to_dfa,
    register_direct,
)

MAX_REMEMBERED = 4096
MAX_SPELLINGS = 64  # per excluded value (controls and '/' have several spellings)
QUOTE = ord('"')

_SPECS: OrderedDict[str, tuple] = OrderedDict()


def remember(regex: str, kind: str, *args) -> None:
    """Note that ``regex`` is the language ``kind`` (``exclude``, ``length``, ``region`` or
    ``both``) of ``args``."""
    _SPECS[regex] = (kind, args)
    _SPECS.move_to_end(regex)
    while len(_SPECS) > MAX_REMEMBERED:
        _SPECS.popitem(last=False)


def register_for_lark(regex: str, lark_regex: str) -> None:
    """If ``regex`` was remembered, have ``regex_to_dfa(lark_regex)`` build it directly."""
    spec = _SPECS.get(regex)
    if spec is None:
        return
    register_direct(lark_regex, functools.partial(_build, *spec))


def _build(kind: str, args: tuple) -> ByteDFA | None:
    build = {"exclude": excluding_dfa, "length": length_dfa, "region": region_dfa,
             "both": both_dfa}[kind]
    return build(*args)


def dfa_of(regex: str) -> ByteDFA:
    """The automaton of ``regex``, built directly when it was remembered; RegexError when
    it is larger than the lexer takes (as ``regex_to_dfa``)."""
    spec = _SPECS.get(regex)
    dfa = _build(*spec) if spec is not None else None
    if dfa is None:
        return regex_to_dfa(regex)
    return _finished(regex, dfa, DEFAULT_MAX_STATES)


def both_dfa(a: str, b: str, negate_a: bool = False) -> ByteDFA:
    """Strings both regexes match (``(?=a\\Z)b``), or (``negate_a``) that ``b`` matches and
    ``a`` does not (``(?!a\\Z)b``), each side built directly when it can be: a pattern beside
    a length range or a format, a string that is not one of some values."""
    return dfa_intersection(dfa_of(b), dfa_of(a), negate_b=negate_a)


def region_dfa(unit_regex: str, values: tuple[str, ...], spell, inside: tuple[str, ...],
               outside: tuple[str, ...]) -> ByteDFA | None:
    """Keys (``excluding_dfa``) that every regex of ``inside`` matches and none of
    ``outside`` does."""
    dfa = excluding_dfa(unit_regex, values, spell)
    if dfa is None:
        return None
    for rx in inside:
        dfa = dfa_intersection(dfa, regex_to_dfa(rx))
    for rx in outside:
        dfa = dfa_intersection(dfa, regex_to_dfa(rx), negate_b=True)
    return dfa


def _unit(unit_regex: str) -> tuple[np.ndarray, int] | None:
    """(next unit state per state and byte, with -2 for "one character read"), n_states, for
    a unit automaton whose matches are never prefixes of one another; None otherwise."""
    d = regex_to_dfa(unit_regex)
    t = d.transitions.astype(np.int64)
    if (t[d.accepting] >= 0).any() or d.accepting[0]:
        return None
    nxt = np.where(t >= 0, np.where(d.accepting[np.maximum(t, 0)], -2, t), -1)
    return nxt, d.n_states


def length_dfa(unit_regex: str, lo: int, hi: int | None, opens: bool = True,
               closes: bool = True) -> ByteDFA | None:
    """``"`` + ``unit_regex{lo,hi}`` + ``"`` (``hi`` None: unbounded); without the opening
    (``opens=False``) or closing (``closes=False``) quote for the pieces of a long string."""
    got = _unit(unit_regex)
    if got is None:
        return None
    nxt, n_u = got
    top = hi if hi is not None else lo
    n_k = top + 1
    start, end, base = 0, 1, 2  # state base + k * n_u + u: k characters read, inside unit u
    rows = np.full((base + n_k * n_u, 256), -1, dtype=np.int64)
    rows[start, QUOTE] = base
    k = np.arange(n_k)
    k_next = k + 1 if hi is not None else np.minimum(k + 1, top)
    for u in range(n_u):
        row = nxt[u]
        ids = base + k * n_u + u
        block = np.where(row[None, :] >= 0, (base + k * n_u)[:, None] + row[None, :], -1)
        done = base + k_next * n_u  # the start of the next character
        block = np.where(row[None, :] == -2, done[:, None], block)
        if hi is not None:
            # no character starts after the last one: a started escape or multibyte sequence
            # would be a dead state, and the mask takes every live transition as a way on
            block[top] = -1
        rows[ids] = block
    closing = base + k[k >= lo] * n_u
    accepting = np.zeros(rows.shape[0], dtype=bool)
    if closes:
        rows[closing, QUOTE] = end
        accepting[end] = True
    else:
        accepting[closing] = True
    if not (opens and closes):
        # without the opening quote, start where it led (state 0 must be the start); drop
        # the states nothing reaches: the quote's source, or the closing quote's target
        first = start if opens else base
        keep = [first] + [s for s in range(rows.shape[0]) if s != first
                          and (s != start or opens) and (s != end or closes)]
        index = np.full(rows.shape[0], -1, dtype=np.int64)
        index[keep] = np.arange(len(keep))
        rows = np.where(rows >= 0, index[np.maximum(rows, 0)], -1)[keep]
        accepting = accepting[keep]
    return ByteDFA(rows.astype(np.int32), accepting)


def _spellings(value: str, spell) -> list[bytes] | None:
    out = [b""]
    for c in value:
        forms = spell(c)
        out = [o + f for o in out for f in forms]
        if len(out) > MAX_SPELLINGS:
            return None
    return out


def excluding_dfa(unit_regex: str, values: tuple[str, ...], spell) -> ByteDFA | None:
    """``"`` + ``unit_regex*`` + ``"`` except the strings spelling one of ``values``
    (``spell(c)``: the byte spellings of character ``c`` that ``unit_regex`` admits)."""
    got = _unit(unit_regex)
    if got is None:
        return None
    nxt, n_u = got
    trie: list[dict[int, int]] = [{}]
    terminal = [False]
    for v in values:
        forms = _spellings(v, spell)
        if forms is None:
            return None
        for f in forms:
            node = 0
            for b in f:
                child = trie[node].get(b)
                if child is None:
                    child = len(trie)
                    trie.append({})
                    terminal.append(False)
                    trie[node][b] = child
                node = child
            terminal[node] = True
    start, end, off = 0, 1, 2  # off + u: no longer on the trie, inside unit u
    index: dict[tuple[int, int], int] = {}
    rows: list[np.ndarray] = [np.full(256, -1, dtype=np.int64) for _ in range(off + n_u)]
    free = np.where(nxt >= 0, off + nxt, np.where(nxt == -2, off, -1))  # [n_u, 256]
    for u in range(n_u):
        rows[off + u][:] = free[u]
    rows[off][QUOTE] = end
    todo: list[tuple[int, int]] = []

    def state(node: int, u: int) -> int:
        key = (node, u)
        j = index.get(key)
        if j is None:
            j = index[key] = len(rows)
            rows.append(None)  # type: ignore[arg-type]
            todo.append(key)
        return j

    rows[start][QUOTE] = state(0, 0)
    while todo:
        node, u = todo.pop()
        row = free[u].copy()
        for b, child in trie[node].items():
            n2 = nxt[u, b]
            if n2 == -1:
                continue
            row[b] = state(child, 0 if n2 == -2 else int(n2))
        if u == 0 and not terminal[node]:
            row[QUOTE] = end
        rows[index[(node, u)]] = row
    accepting = np.zeros(len(rows), dtype=bool)
    accepting[end] = True
    return _trim_and_minimize(np.stack(rows), accepting, start)
