"""What ``grammars/python.lark`` means: Lark's own parser for it, the oracle of the Python grammar.

A source ``src`` is a sentence of the grammar iff Lark's LALR parser with the contextual lexer
and ``lark.indenter.PythonIndenter`` parses ``src + "\\n"`` (the newline mimics CPython's
tokenizer, which ends the last line of a file). structgen's matcher must accept exactly these
texts; CPython's ``ast.parse`` is the independent reference the grammar is measured against.
"""

from __future__ import annotations

import functools
from pathlib import Path

import lark
from lark.indenter import PythonIndenter

PYTHON_GRAMMAR = Path(__file__).resolve().parents[1] / "grammars" / "python.lark"


@functools.lru_cache(maxsize=1)
def python_parser() -> lark.Lark:
    """Lark's parser for ``grammars/python.lark``, built once per process."""
    return lark.Lark(PYTHON_GRAMMAR.read_text("utf-8"), parser="lalr", lexer="contextual",
                     postlex=PythonIndenter(), start="file_input", maybe_placeholders=False)


def lark_accepts(src: str) -> bool:
    """True iff the grammar accepts the Python source ``src`` (see the module docstring)."""
    try:
        python_parser().parse(src + "\n")
    except lark.LarkError:  # UnexpectedInput and the indenter's DedentError
        return False
    return True
