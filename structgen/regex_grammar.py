"""A regular expression as a grammar: the output must match the whole pattern.

``regex_to_lark(pattern)`` writes a one-terminal Lark grammar; ``compile_regex(compiler,
pattern)`` compiles it. The syntax is Python's ``re`` (classes, ``\\d \\w \\s`` with their
Unicode meaning, quantifiers including ``{m,n}`` and lazy ones (same language), alternation,
groups, inline and scoped flags ``(?i)`` ``(?s)`` ``(?x)`` ``(?a)``). The output is matched
whole, as ``re.fullmatch`` does: ``^``/``\\A`` at the start and ``$``/``\\Z`` at the end are
accepted and change nothing (``$`` does not allow a trailing newline). Anchors elsewhere,
lookaround, back-references, conditionals and possessive/atomic groups raise
:class:`~structgen.errors.RegexError` with the position of the construct.
"""

from __future__ import annotations

import re
from re import _constants as sre_c  # noqa: N813
from re import _parser as sre_parse

from .errors import RegexError

__all__ = ["compile_regex", "regex_to_lark"]

_FLAG_LETTERS = ((re.IGNORECASE, "i"), (re.DOTALL, "s"), (re.MULTILINE, "m"),
                 (re.ASCII, "a"), (re.VERBOSE, "x"))
_CATEGORIES = {sre_c.CATEGORY_DIGIT: r"\d", sre_c.CATEGORY_NOT_DIGIT: r"\D",
               sre_c.CATEGORY_WORD: r"\w", sre_c.CATEGORY_NOT_WORD: r"\W",
               sre_c.CATEGORY_SPACE: r"\s", sre_c.CATEGORY_NOT_SPACE: r"\S"}
_START = (sre_c.AT_BEGINNING, sre_c.AT_BEGINNING_STRING)
_END = (sre_c.AT_END, sre_c.AT_END_STRING)


def regex_to_lark(pattern: str) -> str:
    """Lark grammar text whose language is the strings ``pattern`` matches in full."""
    if not isinstance(pattern, str):
        raise RegexError(f"a regex pattern must be a str, got {type(pattern).__name__}")
    try:
        parsed = sre_parse.parse(pattern)
    except re.error as exc:
        raise RegexError(f"invalid regex {pattern!r}: {exc.msg} at position {exc.pos}") from exc
    flags = parsed.state.flags & ~(re.UNICODE | re.VERBOSE)
    items = _strip_anchors(list(parsed), pattern)
    em = _Plain(pattern)
    nullable = _min_width(parsed.state, items) == 0
    body = em.nonempty(items) if nullable else em.seq(items)
    if body is None:  # the pattern only matches the empty string
        return "start: \n"
    prefix = "".join(letter for bit, letter in _FLAG_LETTERS if flags & bit and letter != "x")
    rx = (f"(?{prefix})" if prefix else "") + body
    term = "/" + _escape_for_lark(rx) + "/"
    if nullable:
        return f"start: [PATTERN]\nPATTERN: {term}\n"
    return f"start: PATTERN\nPATTERN: {term}\n"


def compile_regex(compiler, pattern: str, *, precompute: bool = False):
    """Compile ``pattern`` (see :func:`regex_to_lark`) with ``compiler``."""
    return compiler.compile_grammar(regex_to_lark(pattern), precompute=precompute)


def _strip_anchors(items: list, pattern: str) -> list:
    while items and items[0][0] is sre_c.AT and items[0][1] in _START:
        items = items[1:]
    while items and items[-1][0] is sre_c.AT and items[-1][1] in _END:
        items = items[:-1]
    if len(items) == 1 and items[0][0] is sre_c.BRANCH:
        alts = [_strip_anchors(list(a), pattern) for a in items[0][1][1]]
        return [(sre_c.BRANCH, (None, [sre_parse.SubPattern(sre_parse.State(), a)
                                       for a in alts]))]
    return items


def _min_width(state, items) -> int:
    return sre_parse.SubPattern(state, list(items)).getwidth()[0]


def _escape_for_lark(rx: str) -> str:
    out = []
    i = 0
    while i < len(rx):
        c = rx[i]
        if c == "\\" and i + 1 < len(rx):
            pair = rx[i:i + 2]
            if pair == "\\\\" and rx[i + 2:i + 3] == '"':
                out.append('\\\\["]')
                i += 3
                continue
            out.append(pair)
            i += 2
            continue
        out.append({"/": "\\/", "\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(c, c))
        i += 1
    return "".join(out)


def _char(c: int, in_class: bool = False) -> str:
    ch = chr(c)
    if c < 0x20 or c == 0x7F or (c > 0x7F and not ch.isprintable()):
        return f"\\x{c:02x}" if c <= 0xFF else (f"\\u{c:04x}" if c <= 0xFFFF else f"\\U{c:08x}")
    if in_class:
        return "\\" + ch if ch in "\\]^-[" else ch
    return re.escape(ch) if ch in ".^$*+?{}[]\\|()" else ch


class _Plain:
    """Writes a parsed pattern back as regex text (only constructs a DFA can express)."""

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern

    def fail(self, what: str) -> RegexError:
        return RegexError(f"regex {self.pattern!r} uses {what}, which a finite automaton "
                          "cannot express (or structgen does not support)")

    def seq(self, items) -> str:
        return "".join(self.item(op, av) for op, av in items)

    def item(self, op, av) -> str:  # noqa: C901 - one branch per opcode
        if op is sre_c.LITERAL:
            return _char(av)
        if op is sre_c.NOT_LITERAL:
            return "[^" + _char(av, True) + "]"
        if op is sre_c.ANY:
            return "."
        if op is sre_c.IN:
            return self.charset(av)
        if op is sre_c.BRANCH:
            return "(?:" + "|".join(self.seq(a) for a in av[1]) + ")"
        if op is sre_c.SUBPATTERN:
            _, add, delete, sub = av
            return _group_head(add, delete) + self.seq(sub) + ")"
        if op in (sre_c.MAX_REPEAT, sre_c.MIN_REPEAT):
            lo, hi, sub = av
            return "(?:" + self.seq(sub) + ")" + _quant(lo, hi)
        if op is sre_c.AT:
            raise self.fail("an anchor that is not at the start or end")
        if op in (sre_c.GROUPREF, sre_c.GROUPREF_EXISTS):
            raise self.fail("back-references")
        if op in (sre_c.ASSERT, sre_c.ASSERT_NOT):
            raise self.fail("lookaround assertions")
        raise self.fail(f"the construct {op}")

    def charset(self, items) -> str:
        out = []
        for op, av in items:
            if op is sre_c.NEGATE:
                out.append("^")
            elif op is sre_c.LITERAL:
                out.append(_char(av, True))
            elif op is sre_c.RANGE:
                out.append(_char(av[0], True) + "-" + _char(av[1], True))
            elif op is sre_c.CATEGORY:
                out.append(_CATEGORIES[av])
            else:
                raise self.fail(f"the class item {op}")
        return "[" + "".join(out) + "]"

    def nonempty(self, items) -> str | None:
        """Regex for the non-empty strings of the sequence ``items`` (None: there are none)."""
        items = list(items)
        if not items:
            return None
        head, rest = items[0], items[1:]
        alts = []
        first = self.nonempty_item(*head)
        if first is not None:
            alts.append(first + self.seq(rest))
        if _min_width(sre_parse.State(), [head]) == 0 and rest:
            tail = self.nonempty(rest)
            if tail is not None:
                alts.append(tail)
        if not alts:
            return None
        return alts[0] if len(alts) == 1 else "(?:" + "|".join(alts) + ")"

    def nonempty_item(self, op, av) -> str | None:
        if op is sre_c.BRANCH:
            alts = [a for a in (self.nonempty(list(b)) for b in av[1]) if a is not None]
            if not alts:
                return None
            return "(?:" + "|".join(alts) + ")"
        if op is sre_c.SUBPATTERN:
            _, add, delete, sub = av
            inner = self.nonempty(list(sub))
            if inner is None:
                return None
            return _group_head(add, delete) + inner + ")"
        if op in (sre_c.MAX_REPEAT, sre_c.MIN_REPEAT):
            lo, hi, sub = av
            if hi == 0:
                return None
            inner = self.nonempty(list(sub))
            if inner is None:
                return None
            nullable = _min_width(sre_parse.State(), list(sub)) == 0
            rest_lo = 0 if nullable else max(lo - 1, 0)
            rest_hi = hi if hi is sre_c.MAXREPEAT else hi - 1
            tail = "" if rest_hi == 0 else "(?:" + self.seq(sub) + ")" + _quant(rest_lo, rest_hi)
            return "(?:" + inner + ")" + tail
        if op is sre_c.AT:
            raise self.fail("an anchor that is not at the start or end")
        return self.item(op, av)


def _group_head(add: int, delete: int) -> str:
    on = "".join(letter for bit, letter in _FLAG_LETTERS if add & bit and letter != "x")
    off = "".join(letter for bit, letter in _FLAG_LETTERS if delete & bit and letter != "x")
    return "(?" + on + ("-" + off if off else "") + ":" if on or off else "(?:"


def _quant(lo: int, hi) -> str:
    if hi is sre_c.MAXREPEAT:
        return "*" if lo == 0 else "+" if lo == 1 else f"{{{lo},}}"
    if lo == hi:
        return "" if lo == 1 else f"{{{lo}}}"
    if (lo, hi) == (0, 1):
        return "?"
    return f"{{{lo},{hi}}}"
