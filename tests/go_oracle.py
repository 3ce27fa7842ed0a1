"""Lark's reading of ``grammars/go.lark``: the oracle of what Go source the grammar accepts.

Go's scanner inserts a semicolon at a line break that follows an identifier, a literal, one of
the keywords ``break continue fallthrough return`` or one of ``++ -- ) ] }``. Here that is a
Lark post-lexer, :class:`GoSemicolons`: the grammar's ``_NL`` terminal (one line break,
``/\\r?\\n/``) reaches the parser only when the token passed before it has one of the types in
``GO_SEMICOLON_AFTER``; any other ``_NL`` is dropped. structgen runs the same rule inside its
matcher (``structgen.postlex.NewlineSemicolons``). A source is accepted iff
``go_parser().parse(src + "\\n")`` succeeds: the added line break stands for the semicolon Go's
scanner inserts at the end of a file.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from pathlib import Path

import lark
from lark.exceptions import LarkError
from lark.lexer import Token

GO_GRAMMAR = Path(__file__).resolve().parents[1] / "grammars" / "go.lark"
GO_START = "start"
GO_NEWLINE = "_NL"

# The Lark terminal names after which a line break is a semicolon (the Go spec, "Semicolons").
GO_SEMICOLON_AFTER = (
    "IDENT",
    "INT", "FLOAT", "IMAG", "RUNE", "STRING", "RAW_STRING",
    "BREAK", "CONTINUE", "FALLTHROUGH", "RETURN",
    "INC", "DEC", "RPAREN", "RBRACK", "RBRACE",
)


class GoSemicolons(lark.lark.PostLex):
    """Pass a ``_NL`` token on iff the token passed before it is in ``GO_SEMICOLON_AFTER``."""

    always_accept = (GO_NEWLINE,)

    def __init__(self, after: tuple[str, ...] = GO_SEMICOLON_AFTER) -> None:
        self.after = frozenset(after)

    def process(self, stream: Iterator[Token]) -> Iterator[Token]:
        previous = None
        for token in stream:
            if token.type == GO_NEWLINE and previous not in self.after:
                continue
            previous = token.type
            yield token


@functools.lru_cache(maxsize=1)
def go_parser() -> lark.Lark:
    """Lark's LALR parser for ``grammars/go.lark`` with the semicolon post-lexer (cached)."""
    return lark.Lark(GO_GRAMMAR.read_text("utf-8"), parser="lalr", lexer="contextual",
                     postlex=GoSemicolons(), start=GO_START, maybe_placeholders=False)


def lark_accepts(src: str) -> bool:
    """Whether the grammar accepts the Go source ``src`` (a whole file)."""
    try:
        go_parser().parse(src + "\n")
    except LarkError:
        return False
    return True
