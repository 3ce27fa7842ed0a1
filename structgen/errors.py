"""The one exception hierarchy of structgen.

Every error structgen raises on purpose derives from :class:`StructgenError`, so callers can catch
one root. Errors in what the user wrote (grammar text, schema, regex) are also ``ValueError`` and
name the place of the problem; misuse of the API is a :class:`ConfigurationError`.
"""

from __future__ import annotations


class StructgenError(Exception):
    """Root of every error structgen raises on purpose."""


class ConfigurationError(StructgenError, ValueError):
    """The API was used in a way that cannot work; the message says how to fix it."""


class GrammarError(StructgenError, ValueError):
    """A grammar (Lark text, regex, schema) is malformed or uses something unsupported.

    ``line`` and ``column`` (1-based) point into the grammar text when the place is known.
    """

    def __init__(self, message: str, *, line: int | None = None, column: int | None = None,
                 source: str | None = None) -> None:
        self.line = line
        self.column = column
        self.detail = message
        text = message
        if line is not None:
            text = f"{message}\n  at line {line}, column {column or 1}"
            if source is not None:
                lines = source.splitlines()
                if 1 <= line <= len(lines):
                    shown = lines[line - 1]
                    caret = " " * max((column or 1) - 1, 0) + "^"
                    text += f"\n    {shown}\n    {caret}"
        super().__init__(text)


class RegexError(GrammarError):
    """A regular expression cannot be turned into a finite automaton (bad syntax, lookaround,
    back-references, or a DFA too large)."""


class UnsupportedFeatureError(GrammarError):
    """The input uses a feature structgen does not enforce; never silently dropped."""


class TokenizerError(StructgenError, ValueError):
    """A tokenizer could not be read, or a token id is out of range."""


class SerializationError(StructgenError):
    """A saved compiled grammar cannot be loaded (wrong version, other tokenizer, corrupt)."""
