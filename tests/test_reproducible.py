"""The same grammar compiles to the same tables in every process (Lark numbers its LALR states
in an order that changes from run to run; structgen renumbers them breadth first)."""

from __future__ import annotations

import os
import subprocess
import sys

SCRIPT = """
import hashlib
from structgen import Grammar
from structgen.grammar import builtin_grammar_text, builtin_postlex, builtin_start
schema = {"type": "object", "properties": {"a": {"type": "array", "items": {"type": "integer"}},
          "b": {"anyOf": [{"type": "string"}, {"type": "null"}]}}, "required": ["a"]}
grammars = [Grammar.from_lark(builtin_grammar_text(n), start=builtin_start(n),
                              postlex=builtin_postlex(n)) for n in ("sql", "python")]
grammars.append(Grammar.from_json_schema(schema))
for g in grammars:
    h = hashlib.sha256()
    for a in (g.action, g.goto, g.rule_lhs, g.rule_len):
        h.update(a.tobytes())
    h.update(repr((g.start_state, g.end_state, [t.name for t in g.terminals])).encode())
    print(h.hexdigest())
"""


def tables_in_a_new_process(seed: str) -> str:
    env = dict(os.environ, PYTHONHASHSEED=seed)
    done = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True,
                          text=True, timeout=300, check=True)
    return done.stdout


def test_tables_are_the_same_in_every_process():
    first = tables_in_a_new_process("1")
    assert len(first.split()) == 3
    assert tables_in_a_new_process("2") == first
    assert tables_in_a_new_process("1") == first
