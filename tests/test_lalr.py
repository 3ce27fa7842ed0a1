"""structgen's own LALR(1) construction (``structgen.lalr``, ``structgen.bnf_grammar``) against
Lark's, which stays the oracle.

* The built-in grammars (SQL, Python, Go, JSON) as Lark compiles their rules: the same tables.
* JSON Schema grammars from JSONSchemaBench and hand-made schemas: the BNF path and Lark on the
  same text give the same terminals, rules and tables, and the same lexing order wherever two
  terminals' languages meet.
* Conflicts: a shift/reduce conflict is resolved as a shift and reported; a reduce/reduce one
  raises; widths measured off automata agree with ``re``'s parser.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from conftest import DATA, require_data

from structgen.bnf_grammar import (
    UNBOUNDED_WIDTH,
    BnfTerminal,
    NotLalrError,
    grammar_from_bnf,
    regex_max_width,
)
from structgen.errors import GrammarError
from structgen.grammar import (
    Grammar,
    _build_lark,
    _renumber_states,
    builtin_grammar_text,
    builtin_start,
)
from structgen.json_schema import _build
from structgen.lalr import BnfRule, lalr_tables
from structgen.regex_dfa import dfas_disjoint, regex_to_dfa


def _table(action, goto, rule_of, terminal_names, nonterminal_names) -> dict:
    """Tables as {state: {symbol: action}} with rules named by (origin, expansion)."""
    out = {}
    for s in range(action.shape[0]):
        row = {}
        for c in np.flatnonzero(action[s]).tolist():
            a = int(action[s, c])
            row[terminal_names[c]] = ("shift", a - 1) if a > 0 else ("reduce", rule_of(-a - 1))
        for c in np.flatnonzero(goto[s] >= 0).tolist():
            row[nonterminal_names[c]] = ("goto", int(goto[s, c]))
        out[s] = row
    return out


def _grammar_table(g: Grammar, rule_of) -> dict:
    return _table(g.action, g.goto, rule_of, [t.name for t in g.terminals] + ["$END"],
                  g.nonterminal_names)


@pytest.mark.parametrize("name", ["json", "sql", "python", "go"])
def test_builtin_grammars_get_lark_tables(name):
    """Lark's compiled rules of each built-in grammar, analysed by ``lalr_tables``: the tables
    equal Lark's own (after both are numbered breadth first)."""
    text = builtin_grammar_text(name)
    start = builtin_start(name)
    lark_grammar = Grammar.from_lark(text, start=start)
    parser = _build_lark(text, start)
    rules = list(parser.rules)
    terms = [t.name for t in lark_grammar.terminals]
    t_index = {n: i for i, n in enumerate(terms)}
    nts = list(lark_grammar.nonterminal_names)
    nt_index = {n: i for i, n in enumerate(nts)}
    bnf = [BnfRule(nt_index[r.origin.name],
                   tuple(t_index[s.name] if s.is_term else ~nt_index[s.name] for s in r.expansion))
           for r in rules]
    tables = lalr_tables(bnf, len(terms), len(nts), nt_index[start])
    action, goto, (s0, end) = _renumber_states(tables.action, tables.goto,
                                                (tables.start_state, tables.end_state))
    # the tables come numbered as _renumber_states numbers them
    assert np.array_equal(action, tables.action) and np.array_equal(goto, tables.goto)
    assert (s0, end) == (lark_grammar.start_state, lark_grammar.end_state)

    def rule_of(r):
        return (rules[r].origin.name, tuple(s.name for s in rules[r].expansion))

    ours = _table(action, goto, rule_of, terms + ["$END"], nts)
    assert ours == _grammar_table(lark_grammar, rule_of)


def _schema_grammars(schema) -> tuple[Grammar, Grammar, list[str]]:
    built = _build(schema, strict=False, whitespace="flexible", indent=None, separators=None,
                   max_whitespace=64, lenient=True)
    ours, conflicts = grammar_from_bnf(built.rules, built.terminals, source=built.text)
    return Grammar.from_lark(built.text), ours, conflicts


def assert_same_grammar(lark_grammar: Grammar, ours: Grammar) -> None:
    assert [t.name for t in ours.terminals] == [t.name for t in lark_grammar.terminals]
    for a, b in zip(lark_grammar.terminals, ours.terminals, strict=True):
        assert (a.regex, a.priority, a.is_literal, a.literal) == \
            (b.regex, b.priority, b.is_literal, b.literal)
    assert (ours.start_state, ours.end_state) == (lark_grammar.start_state,
                                                   lark_grammar.end_state)

    def rule_of(g):
        return lambda r: g.rule_names[r] + "/" + str(int(g.rule_len[r]))

    # rules are named by origin and length here: the BNF path keeps Lark's rule order, so
    # equal tables under this naming and equal rule lists below mean equal tables
    assert list(ours.rule_names) == list(lark_grammar.rule_names)
    assert ours.rule_len.tolist() == lark_grammar.rule_len.tolist()
    assert _grammar_table(ours, rule_of(ours)) == _grammar_table(lark_grammar,
                                                                 rule_of(lark_grammar))
    # the lexing order matters only between terminals of equal priority and kind whose
    # languages meet: there it must be Lark's
    terms = list(zip(lark_grammar.terminals, ours.terminals, strict=True))
    for i, (a1, b1) in enumerate(terms):
        for a2, b2 in terms[i + 1:]:
            if (a1.priority, a1.is_literal) != (a2.priority, a2.is_literal):
                continue
            if (a1.rank < a2.rank) != (b1.rank < b2.rank):
                assert dfas_disjoint(regex_to_dfa(a1.regex), regex_to_dfa(a2.regex)), \
                    (a1.name, a2.name)


SCHEMAS = [
    {"type": "object", "properties": {"a": {"type": "string", "maxLength": 5},
                                      "b": {"type": "array", "items": {"type": "integer"}},
                                      "c": {"enum": [1, "x", None]}}, "required": ["a"]},
    {"anyOf": [{"type": "string", "pattern": "^[a-z]+$"}, {"type": "string", "format": "date"},
               {"type": "number", "minimum": 0}]},
    {"type": "object", "patternProperties": {"^x-": {"type": "integer"}},
     "properties": {"name": {"type": "string"}}, "additionalProperties": False,
     "minProperties": 1},
    {"$defs": {"node": {"type": "object", "properties": {
        "value": {"type": "integer"}, "next": {"$ref": "#/$defs/node"}}}},
     "$ref": "#/$defs/node"},
    {"type": "array", "prefixItems": [{"type": "string"}, {"type": "boolean"}],
     "minItems": 1, "maxItems": 4},
    {"type": "string", "pattern": "^é{2,3}ü*$"},
]


@pytest.mark.parametrize("schema", SCHEMAS, ids=range(len(SCHEMAS)))
def test_schema_grammars_match_lark(schema):
    lark_grammar, ours, conflicts = _schema_grammars(schema)
    assert conflicts == []
    assert_same_grammar(lark_grammar, ours)


def test_jsonschemabench_grammars_match_lark():
    """Five schemas from each JSONSchemaBench group (a fixed sample)."""
    folder = require_data(DATA / "jsonschema" / "jsonschemabench")
    checked = 0
    for path in sorted(Path(folder).glob("*.jsonl")):
        with path.open(encoding="utf-8") as f:
            rows = [json.loads(line) for _, line in zip(range(5), f, strict=False)]
        for row in rows:
            try:
                lark_grammar, ours, _ = _schema_grammars(row["schema"])
            except GrammarError:
                continue
            assert_same_grammar(lark_grammar, ours)
            checked += 1
    assert checked >= 80


def test_shift_reduce_is_resolved_as_shift_and_reported():
    # e: e PLUS e | X  -- ambiguous: "X+X+X" has a shift/reduce conflict on PLUS
    rules = {"start": [["e"]], "e": [["e", "PLUS", "e"], ["X"]]}
    terms = [BnfTerminal("PLUS", "+", True), BnfTerminal("X", "x", True)]
    ours, conflicts = grammar_from_bnf(rules, terms)
    assert conflicts and all("Shift/Reduce" in c and "PLUS" in c for c in conflicts)
    assert "<e : e PLUS e>" in conflicts[0]
    lark_grammar = Grammar.from_lark('start: e\ne: e PLUS e | X\nPLUS: "+"\nX: "x"\n')
    assert_same_grammar(lark_grammar, ours)


def test_reduce_reduce_raises_naming_the_rules():
    rules = {"start": [["a"], ["b"]], "a": [["X"]], "b": [["X"]]}
    with pytest.raises(NotLalrError, match="Reduce/Reduce") as info:
        grammar_from_bnf(rules, [BnfTerminal("X", "x", True)])
    assert "<a : X>" in str(info.value) and "<b : X>" in str(info.value)


def test_bad_bnf_is_reported():
    x = BnfTerminal("X", "x", True)
    with pytest.raises(NotLalrError, match="defined twice"):
        grammar_from_bnf({"start": [["X"], ["X"]]}, [x])
    with pytest.raises(GrammarError, match="undefined name 'Y'"):
        grammar_from_bnf({"start": [["X", "Y"]]}, [x])
    with pytest.raises(GrammarError, match="empty string"):
        grammar_from_bnf({"start": [["E"]]}, [BnfTerminal("E", "a*", False)])
    with pytest.raises(GrammarError, match="no start rule"):
        grammar_from_bnf({"s": [["X"]]}, [x])


def test_empty_alternatives_and_unreachable_rules():
    rules = {"start": [["X", "opt"]], "opt": [[], ["X"]], "orphan": [["X"]]}
    ours, conflicts = grammar_from_bnf(rules, [BnfTerminal("X", "x", True)])
    assert not conflicts and "orphan" not in ours.nonterminal_names
    lark_grammar = Grammar.from_lark('start: X opt\nopt: | X\nX: "x"\n')
    assert_same_grammar(lark_grammar, ours)


def test_lookaheads_through_empty_rules():
    """What follows ``a`` follows its ``b`` too, across the empty ``c`` (includes), and what
    ``c`` can start with is read through it (reads)."""
    text = ('start: a X | Y a Z\na: W b c\nb: V | V V\nc: | c U\n'
            'X: "x"\nY: "y"\nZ: "z"\nW: "w"\nV: "v"\nU: "u"\n')
    rules = {"start": [["a", "X"], ["Y", "a", "Z"]], "a": [["W", "b", "c"]],
             "b": [["V"], ["V", "V"]], "c": [[], ["c", "U"]]}
    terms = [BnfTerminal(n, n.lower(), True) for n in ("X", "Y", "Z", "W", "V", "U")]
    ours, conflicts = grammar_from_bnf(rules, terms)
    assert not conflicts
    assert_same_grammar(Grammar.from_lark(text), ours)


@pytest.mark.parametrize("regex", [
    "abc", "a{2,5}", "[ \\t]{0,64}\\}", "(?:ab|c){1,3}d?", "x+", "(?:é|ü){2}", "[^\"\\\\]{0,9}",
    "\\u00e9\\u4e2d?", "(?:a|bcd)(?:ef)?", '"(?:[^"\\\\\\x00-\\x1f]|\\\\["\\\\/bfnrt]){0,5}"',
])
def test_max_width_matches_re_parser(regex):
    from re import _parser

    expected = _parser.parse(regex).getwidth()[1]
    assert regex_max_width(regex) == (UNBOUNDED_WIDTH if expected >= UNBOUNDED_WIDTH
                                      else expected)


def test_max_width_of_unbounded_is_re_parsers_bound():
    from re import _parser

    assert UNBOUNDED_WIDTH == _parser.parse("a*").getwidth()[1]
    assert regex_max_width("a(?:bc)*") == UNBOUNDED_WIDTH
    assert regex_max_width(re.escape("a.b")) == 3
