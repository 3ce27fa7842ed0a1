"""Lexer contexts built per byte class equal the plain product over all 256 bytes."""

from __future__ import annotations

import numpy as np
import pytest
from test_native_parity import grammar_text

from structgen import Grammar
from structgen.grammar import builtin_grammar_text, builtin_postlex, builtin_start
from structgen.lexer import LexerContexts

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
