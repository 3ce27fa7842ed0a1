"""Plain BNF (named rules, named terminals) to a :class:`~structgen.grammar.Grammar`, no Lark.

For grammars written by a program, not a person: the JSON Schema front end. Lark would parse
the text back, build an object per LR item and measure every regex with ``re``'s parser; here
the rules arrive as symbol lists, the tables come from :mod:`structgen.lalr`, and terminal
widths (Lark's lexing order) come from the byte automata the lexer builds anyway.

The result matches ``Grammar.from_lark`` on the same grammar text: same terminals in the same
order, same rules, same tables after the breadth-first state numbering, and the same terminal
order wherever it matters (between terminals whose languages meet). ``tests/test_lalr.py``
checks that on schema grammars.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

import numpy as np

from .errors import GrammarError
from .lalr import BnfRule, ReduceReduceConflict, lalr_tables

__all__ = ["BnfTerminal", "NotLalrError", "grammar_from_bnf"]

# what ``re``'s parser reports as the width of an unbounded regex (so ranks compare as Lark's)
UNBOUNDED_WIDTH = 1 << 64


class NotLalrError(GrammarError):
    """The rules are not LALR(1): a reduce/reduce conflict, or one rule written twice."""


@dataclass(frozen=True)
class BnfTerminal:
    """A named terminal: a string literal (``value`` is its text) or a Python regex."""

    name: str
    value: str
    is_literal: bool
    priority: int = 0

    @property
    def regex(self) -> str:
        return re.escape(self.value) if self.is_literal else self.value


def grammar_from_bnf(rules: dict[str, list[list[str]]], terminals: list[BnfTerminal], *,
                     start: str = "start", source: str = ""):
    """The :class:`Grammar` of ``rules`` (name -> alternatives, each a list of rule and terminal
    names; rule order is kept) over ``terminals``, and the shift/reduce conflicts resolved as
    shifts, as Lark words them. ``source`` is kept as the grammar's text (its cache key).

    Raises :class:`NotLalrError` for a reduce/reduce conflict or a rule written twice, and
    :class:`GrammarError` for an undefined name or a terminal that matches the empty string.
    """
    from .grammar import Grammar, Terminal

    if start not in rules:
        raise GrammarError(f"no start rule {start!r}")
    term_by_name = {t.name: t for t in terminals}
    reachable = _reachable(rules, start, term_by_name)
    used_terms = {s for name in reachable for alt in rules[name] for s in alt if s not in rules}
    kept_terms = [t for t in terminals if t.name in used_terms]
    nonterminals = sorted(reachable)
    nt_index = {n: i for i, n in enumerate(nonterminals)}
    t_index = {t.name: i for i, t in enumerate(kept_terms)}
    bnf: list[BnfRule] = []
    names: list[tuple[str, tuple[str, ...]]] = []
    seen: set[tuple[str, tuple[str, ...]]] = set()
    for name in rules:
        if name not in reachable:
            continue
        for alt in rules[name]:
            key = (name, tuple(alt))
            if key in seen:
                if alt:
                    raise NotLalrError(f"Rules defined twice: <{name} : {' '.join(alt)}>")
                continue
            seen.add(key)
            names.append(key)
            bnf.append(BnfRule(nt_index[name], tuple(
                ~nt_index[s] if s in nt_index else t_index[s] for s in alt)))
    empty = [t.name for t in kept_terms if _matches_empty(t)]
    if empty:
        raise GrammarError(f"terminals {empty} can match the empty string")
    order = sorted(kept_terms, key=lambda t: (-t.priority, -_max_width(t), -len(t.value), t.name))
    rank = {t.name: i for i, t in enumerate(order)}
    try:
        tables = lalr_tables(bnf, len(kept_terms), len(nonterminals), nt_index[start])
    except ReduceReduceConflict as exc:
        described = [
            f"Reduce/Reduce collision in Terminal('{_terminal_name(kept_terms, term)}') between "
            "the following rules: " + "".join(f"\n\t- {_describe(names[r])}" for r in rs)
            for term, rs in exc.conflicts]
        raise NotLalrError("\n\n".join(described)) from None
    conflicts = [f"Shift/Reduce conflict for terminal {_terminal_name(kept_terms, term)}: "
                 f"(resolving as shift) * {_describe(names[r])}"
                 for term, r in tables.shift_reduce]
    # the tables come numbered breadth first, as _renumber_states numbers Lark's
    grammar = Grammar(
        source=source, start=start,
        terminals=tuple(Terminal(name=t.name, regex=t.regex, priority=t.priority,
                                 is_literal=t.is_literal, is_ignored=False, rank=rank[t.name],
                                 literal=t.value if t.is_literal else None)
                        for t in kept_terms),
        action=tables.action, goto=tables.goto,
        rule_lhs=np.array([r.lhs for r in bnf], dtype=np.int32),
        rule_len=np.array([len(r.rhs) for r in bnf], dtype=np.int32),
        rule_names=tuple(n for n, _ in names), nonterminal_names=tuple(nonterminals),
        start_state=tables.start_state, end_state=tables.end_state)
    return grammar, conflicts


def _reachable(rules: dict[str, list[list[str]]], start: str, terminals: dict) -> set[str]:
    seen = {start}
    todo = [start]
    while todo:
        for alt in rules[todo.pop()]:
            for sym in alt:
                if sym in rules:
                    if sym not in seen:
                        seen.add(sym)
                        todo.append(sym)
                elif sym not in terminals:
                    raise GrammarError(f"undefined name {sym!r}")
    return seen


def _terminal_name(terminals: list[BnfTerminal], index: int) -> str:
    return "$END" if index == len(terminals) else terminals[index].name


def _describe(rule: tuple[str, tuple[str, ...]]) -> str:
    return f"<{rule[0]} : {' '.join(rule[1])}>"


def _max_width(t: BnfTerminal) -> int:
    return len(t.value) if t.is_literal else regex_max_width(t.value)


def _matches_empty(t: BnfTerminal) -> bool:
    from .regex_dfa import regex_to_dfa

    return not t.value if t.is_literal else bool(regex_to_dfa(t.value).accepting[0])


@functools.lru_cache(maxsize=4096)
def regex_max_width(regex: str) -> int:
    """The longest match of ``regex`` in characters (``UNBOUNDED_WIDTH`` when it has no
    bound), as ``re``'s parser measures it, read off the regex's byte automaton: a UTF-8
    continuation byte does not start a character."""
    from .regex_dfa import regex_to_dfa

    if regex.startswith(("(?=", "(?!")):
        # ``re``'s parser gives lookarounds no width, so a key region's conditions
        # (json_schema_regex.keys_in_region) do not bound it there: ask the parser itself
        from re import _parser

        return min(_parser.parse(regex).getwidth()[1], UNBOUNDED_WIDTH)
    dfa = regex_to_dfa(regex)
    trans = dfa.transitions
    n = trans.shape[0]
    starts_char = np.ones(256, dtype=bool)
    starts_char[0x80:0xC0] = False
    # per state, its successors, each with whether some byte leading there starts a character
    succ: list[dict[int, bool]] = [{} for _ in range(n)]
    rows, cols = np.nonzero(trans >= 0)
    for s, b, t in zip(rows.tolist(), cols.tolist(), trans[rows, cols].tolist(), strict=True):
        succ[s][t] = succ[s].get(t, False) or bool(starts_char[b])
    indegree = [0] * n
    for out in succ:
        for t in out:
            indegree[t] += 1
    order = [s for s in range(n) if indegree[s] == 0]
    for s in order:
        for t in succ[s]:
            indegree[t] -= 1
            if indegree[t] == 0:
                order.append(t)
    if len(order) < n:  # a cycle: every state still reaches a match, so there is no bound
        return UNBOUNDED_WIDTH
    longest = [-1] * n
    longest[0] = 0
    best = 0
    for s in order:
        if longest[s] < 0:
            continue
        if dfa.accepting[s]:
            best = max(best, longest[s])
        for t, starts in succ[s].items():
            longest[t] = max(longest[t], longest[s] + starts)
    return best
