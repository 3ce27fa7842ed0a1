"""Lexer contexts built per byte class equal the plain product over all 256 bytes, and the
native product builder equals its Python twin."""

from __future__ import annotations

import numpy as np
import pytest
from test_native_parity import grammar_text

from structgen import Grammar, _native
from structgen.grammar import builtin_grammar_text, builtin_postlex, builtin_start
from structgen.lexer import LexerContexts, _product_python

SCHEMA = {"type": "object", "properties": {
    "name": {"type": "string", "maxLength": 8}, "when": {"type": "string", "format": "date"},
    "tags": {"type": "array", "items": {"enum": ["a", "b\u00e9", 3]}}}}


def every_byte(self, terms):
    return np.arange(256, dtype=np.int64), np.arange(256, dtype=np.int64)


def grammars():
    yield "sql", Grammar.from_lark(builtin_grammar_text("sql"), start=builtin_start("sql"),
                                   postlex=builtin_postlex("sql"))
    yield "python", Grammar.from_lark(builtin_grammar_text("python"),
                                      start=builtin_start("python"),
                                      postlex=builtin_postlex("python"))
    yield "spanning", Grammar.from_lark(grammar_text("spanning.lark"))
    yield "schema", Grammar.from_json_schema(SCHEMA)


@pytest.mark.parametrize("name,grammar", list(grammars()), ids=lambda x: x if isinstance(x, str) else "")
def test_byte_classes_change_nothing(monkeypatch, name, grammar):
    fast = LexerContexts(grammar)
    built = [fast.dfa(c) for c in range(fast.n_contexts)]
    classes = [len(fast._byte_classes(t)[0]) for t in fast.context_terminals]
    assert min(classes) < 256  # the classes do merge bytes
    monkeypatch.setattr(LexerContexts, "_byte_classes", every_byte)
    plain = LexerContexts(grammar)
    for c, dfa in enumerate(built):
        other = plain.dfa(c)
        for field in ("transitions", "winner", "alive", "final_only"):
            assert np.array_equal(getattr(dfa, field), getattr(other, field)), (name, c, field)


def product_inputs(contexts: LexerContexts, c: int):
    terms = contexts.context_terminals[c]
    table, _, offsets = contexts._all_terminals_table()
    start = np.array([offsets[t] if contexts.terminal_dfas[t].n_states else 0 for t in terms],
                     dtype=np.int32)
    rep, class_of = contexts._byte_classes(terms)
    return table, rep, class_of, start


@pytest.mark.parametrize("name,grammar", list(grammars()), ids=lambda x: x if isinstance(x, str) else "")
def test_native_product_equals_the_python_twin(name, grammar):
    contexts = LexerContexts(grammar)
    for c in range(contexts.n_contexts):
        args = product_inputs(contexts, c)
        native = _native.product_dfa(*args, 200_000)
        twin = _product_python(*args, 200_000)
        for a, b in zip(native, twin, strict=True):
            assert a.dtype == b.dtype == np.int32 and np.array_equal(a, b), (name, c)


def test_product_past_its_state_limit_is_refused():
    contexts = LexerContexts(Grammar.from_json_schema(SCHEMA))
    biggest = max(range(contexts.n_contexts), key=lambda c: contexts.dfa(c).n_states)
    args = product_inputs(contexts, biggest)
    limit = contexts.dfa(biggest).n_states - 1
    assert _native.product_dfa(*args, limit) is None
    assert _product_python(*args, limit) is None
    assert _native.product_dfa(*args, limit + 1)[0].shape[0] == limit + 1
