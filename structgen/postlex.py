"""Post-lexers that the matcher runs exactly: Python's indentation and Go's semicolons.

Lark grammars for indentation-sensitive or newline-terminated languages rely on a post-lexer
(Lark's ``postlex=``) that rewrites the token stream between lexer and parser. A constrained
decoder cannot run it afterwards: the mask for the next token depends on it. structgen builds
the two post-lexers that real languages need into the matcher itself:

* :class:`PythonIndenter` -- Lark's ``PythonIndenter`` semantics: a newline lexeme outside
  brackets is passed to the parser followed by ``_INDENT`` / ``_DEDENT`` tokens computed from
  the indentation after its last line break (a tab counts ``tab_len`` columns); inside brackets
  it is dropped; a dedent to a column never opened is an error; at the end of the text the open
  indentation levels are closed. The indentation stack and the bracket depth live in the
  matcher's threads beside the parser stack, so rollback and fork keep working.
* :class:`NewlineSemicolons` -- Go's automatic semicolons: a newline becomes the terminal
  ``newline`` (which the grammar accepts where ``;`` may stand) when the token before it is one
  of ``after``, and is whitespace otherwise. Because the token before the newline is always the
  one the parser shifted last, the decision is a function of the parser state on top of the
  stack, so it is compiled into the per-state lexer contexts: no run-time state at all.

The texts these accept are defined as Lark defines them: a text is a sentence iff Lark, with the
equivalent ``postlex``, parses it followed by one line break -- as Python's tokenizer reads a
file, and as Go's scanner inserts a semicolon at the end of a file.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import GrammarError


@dataclass(frozen=True)
class PythonIndenter:
    """Indentation as in Lark's ``lark.indenter.PythonIndenter`` (the defaults are its names)."""

    newline: str = "_NEWLINE"
    indent: str = "_INDENT"
    dedent: str = "_DEDENT"
    open_brackets: tuple[str, ...] = ("LPAR", "LSQB", "LBRACE")
    close_brackets: tuple[str, ...] = ("RPAR", "RSQB", "RBRACE")
    tab_len: int = 8

    def terminal_names(self) -> tuple[str, ...]:
        return (self.newline, self.indent, self.dedent, *self.open_brackets, *self.close_brackets)

    def key(self) -> list:
        """A JSON-able description (saved with compiled grammars)."""
        return ["python_indenter", self.newline, self.indent, self.dedent,
                list(self.open_brackets), list(self.close_brackets), self.tab_len]


@dataclass(frozen=True)
class NewlineSemicolons:
    """A newline is the terminal ``newline`` right after one of ``after``, else whitespace."""

    after: tuple[str, ...]
    newline: str = "_NL"

    def terminal_names(self) -> tuple[str, ...]:
        return (self.newline, *self.after)

    def key(self) -> list:
        return ["newline_semicolons", self.newline, list(self.after)]


Postlex = PythonIndenter | NewlineSemicolons


def postlex_from_key(key: list | None) -> Postlex | None:
    """Inverse of ``key()``, for loading a saved grammar."""
    if not key:
        return None
    if key[0] == "python_indenter":
        _, nl, ind, ded, opens, closes, tab = key
        return PythonIndenter(nl, ind, ded, tuple(opens), tuple(closes), int(tab))
    if key[0] == "newline_semicolons":
        return NewlineSemicolons(after=tuple(key[2]), newline=key[1])
    raise GrammarError(f"unknown post-lexer {key[0]!r} in a saved grammar")


def check_postlex(postlex: object, terminal_names: set[str] | None,
                  declared: set[str] | None) -> None:
    """Every terminal a post-lexer names must exist (``_INDENT``/``_DEDENT`` via ``%declare``).
    Without the grammar's names (None), only the post-lexer's type is checked."""
    if postlex is None:
        return
    if not isinstance(postlex, (PythonIndenter, NewlineSemicolons)):
        raise GrammarError("postlex must be structgen.postlex.PythonIndenter() or "
                           f"NewlineSemicolons(...), got {type(postlex).__name__}")
    if terminal_names is None or declared is None:
        return
    missing = [n for n in postlex.terminal_names() if n not in terminal_names | declared]
    if isinstance(postlex, PythonIndenter):
        if postlex.tab_len <= 0:
            raise GrammarError("PythonIndenter.tab_len must be positive")
        for name in (postlex.indent, postlex.dedent):
            if name in terminal_names:
                raise GrammarError(f"{name} must be declared with %declare, not defined: "
                                   "the indenter makes it, the lexer never does")
    if postlex.newline in declared:
        raise GrammarError(f"the newline terminal {postlex.newline} needs a definition")
    if missing:
        raise GrammarError(f"the post-lexer needs terminals the grammar does not have: "
                           f"{', '.join(missing)}")
