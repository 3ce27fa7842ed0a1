"""Regex text for JSON Schema leaves: string spellings, patterns, formats and number ranges.

Every function here returns Python-``re`` regex text (as a Lark terminal holds it) over the
*JSON spelling* of a value, never over its decoded form: a string terminal includes its quotes
and escapes, a number terminal is the digits as written.

Spelling rules (documented in ``json_schema``):

* An unconstrained string accepts every JSON spelling (any escape).
* A string with only ``minLength``/``maxLength`` accepts every spelling; each raw character,
  short escape, ``\\uXXXX`` escape or escaped surrogate pair counts as one character, as
  Python's ``json`` decodes it.
* Strings whose *value* matters (``pattern``, ``format``, ``const``/``enum``, property names) use
  the canonical spelling that ``json.dumps(..., ensure_ascii=False)`` writes: characters raw,
  except ``"`` ``\\`` and controls, which use ``\\" \\\\ \\b \\f \\n \\r \\t`` or
  ``\\u00XX``; ``/`` may also be written ``\\/``. One value then has one spelling (``/`` aside),
  which keeps "this key is not a declared property" exact.
"""

from __future__ import annotations

import functools
import re
from re import _constants as sre_c  # noqa: N813 - the stdlib's own regex parser
from re import _parser as sre_parse

from .regex_nfa import complement

WS_CHARS = r"[ \t\n\r]"

# One character of a JSON string in any spelling (one decoded code point).
ANY_UNIT = (r'(?:[^"\\\x00-\x1f]|\\["\\/bfnrt]'
            r'|\\u(?:[0-9a-cA-CefEF][0-9a-fA-F]{3}|[dD][0-7][0-9a-fA-F]{2})'
            r'|\\u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2})')
# Any JSON string, every escape allowed (the same language as grammars/json.lark's STRING).
ANY_STRING = r'"(?:[^"\\\x00-\x1f]|\\["\\/bfnrt]|\\u[0-9a-fA-F]{4})*"'
INTEGER = r"-?(?:0|[1-9][0-9]*)"
NUMBER = r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?"

_SHORT_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n",
                  "\r": "\\r", "\t": "\\t"}
_SPECIALS = [chr(c) for c in range(0x20)] + ['"', "\\"]
_META = set(".^$*+?{}[]\\|()/")


def re_char(c: str) -> str:
    """Regex text matching exactly the character ``c`` (outside a class)."""
    if c in _META:
        return "\\" + c
    o = ord(c)
    if o < 0x20 or o == 0x7F:
        return f"\\x{o:02x}"
    if c == "-" or c == '"' or c == "'" or c == "#" or c == " ":
        return "\\" + c if c in "-#" else c
    if o > 0x7F and not c.isprintable():
        return f"\\u{o:04x}" if o <= 0xFFFF else f"\\U{o:08x}"
    return c


def re_class_char(c: str) -> str:
    """Regex text for ``c`` inside a character class."""
    if c in "\\]^-[/":
        return "\\" + c
    o = ord(c)
    if o < 0x20 or o == 0x7F:
        return f"\\x{o:02x}"
    if o > 0x7F and not c.isprintable():
        return f"\\u{o:04x}" if o <= 0xFFFF else f"\\U{o:08x}"
    return c


def re_literal(text: str) -> str:
    return "".join(re_char(c) for c in text)


def _hex_ci(h: str) -> str:
    out = []
    for c in h:
        out.append(f"[{c.lower()}{c.upper()}]" if c.isalpha() else c)
    return "".join(out)


def special_spelling(c: str) -> str:
    """Regex for the canonical escape of a character that cannot appear raw in a JSON string."""
    if c in _SHORT_ESCAPES:
        return re_literal(_SHORT_ESCAPES[c])
    return "\\\\u00" + _hex_ci(f"{ord(c):02x}")


def canonical_char(c: str) -> str:
    """Regex for the canonical spellings of one character."""
    if c in _SHORT_ESCAPES or ord(c) < 0x20:
        return special_spelling(c)
    if c == "/":
        return r"(?:\/|\\\/)"
    return re_char(c)


def canonical_string(value: str) -> str:
    """Regex for the canonical spellings of ``value`` as a JSON string, quotes included."""
    return '"' + "".join(canonical_char(c) for c in value) + '"'


def json_literal(value: str) -> str:
    """The canonical spelling itself (for literal terminals)."""
    import json

    return json.dumps(value, ensure_ascii=False)


# ----------------------------------------------------------------------------------------------
# Strings excluding a finite set of values (generic keys next to declared properties)
# ----------------------------------------------------------------------------------------------

# the short escapes, and \\u00XX for the controls that have none (one spelling per character)
_ALL_ESCAPES = r'\\["\\/bfnrt]|\\u00(?:0[0-7bBeEfF]|1[0-9a-fA-F])'


def _unit_excluding(chars: set[str]) -> str:
    """One canonical character unit whose character is not in ``chars``: ``"``, ``\\`` and
    controls written with their short escape, or ``\\u00XX`` (either case) for controls that
    have none; ``/`` raw or ``\\/``. All spellings of one character are excluded together, so
    the exclusion is by value."""
    raw = sorted(c for c in chars if c not in _SPECIALS)
    cls = r'[^"\\\x00-\x1f' + "".join(re_class_char(c) for c in raw) + "]"
    if not any(c in _SPECIALS or c == "/" for c in chars):
        return f"(?:{cls}|{_ALL_ESCAPES})"
    alts = [cls]
    if "/" not in chars:
        alts.append(r"\\\/")
    for c in _SPECIALS:
        if c not in chars:
            alts.append(special_spelling(c))
    return "(?:" + "|".join(alts) + ")"


CANONICAL_UNIT = _unit_excluding(set())


def canonical_spellings(c: str) -> list[bytes]:
    """The UTF-8 spellings of character ``c`` that ``CANONICAL_UNIT`` admits."""
    forms = []
    if c in _SHORT_ESCAPES:
        forms.append(_SHORT_ESCAPES[c])
    elif ord(c) < 0x20:
        h = f"{ord(c):02x}"
        forms.extend(sorted({"\\u00" + h, "\\u00" + h.upper()}))
    if c == "/":
        forms.extend(["/", "\\/"])
    elif c not in _SHORT_ESCAPES and ord(c) >= 0x20:
        forms.append(c)
    return [f.encode("utf-8") for f in forms]


def _any_spelling(c: str) -> str:
    """Regex for every spelling of ``c`` that ``CANONICAL_UNIT`` admits (the exclusion is by
    value: a value in the set is excluded however it is spelled)."""
    forms = [re_literal(f.decode("utf-8")) for f in canonical_spellings(c)]
    return forms[0] if len(forms) == 1 else "(?:" + "|".join(forms) + ")"


def keys_in_region(values, inside: list[str], outside: list[str]) -> str:
    """Regex for canonical keys (``string_excluding(values)``) that every regex of ``inside``
    matches in full and none of ``outside`` does (each a regex over key spellings, quotes
    included), written with whole-string lookaheads."""
    from .json_schema_dfa import remember

    vals = tuple(sorted(set(values)))
    rx = ("".join(f"(?={k}\\Z)" for k in inside) + "".join(f"(?!{k}\\Z)" for k in outside)
          + _string_excluding(vals))
    remember(rx, "region", CANONICAL_UNIT, vals, canonical_spellings, tuple(inside),
             tuple(outside))
    return rx


def string_excluding(values) -> str:
    """Regex for canonical JSON strings (quotes included) whose value is not in ``values``."""
    return _string_excluding(tuple(sorted(set(values))))


@functools.lru_cache(maxsize=1024)
def _string_excluding(vals: tuple[str, ...]) -> str:
    from .json_schema_dfa import remember

    if not vals:
        return '"' + CANONICAL_UNIT + '*"'
    rx = '"' + _not_in(list(vals)) + '"'
    remember(rx, "exclude", CANONICAL_UNIT, vals, canonical_spellings)
    return rx


def _not_in(vals: list[str]) -> str:
    """Unit strings that are not in ``vals`` (non-empty), written with a single trailing star
    (regex libraries build automata for nested stars slowly): a string outside the set either
    leaves the trie of ``vals`` at some node (then anything may follow) or stops at a trie
    node that is not one of the values."""
    trie: dict = {}
    for v in vals:
        node = trie
        for c in v:
            node = node.setdefault(c, {})
        node[None] = True

    def deviate(node) -> str:
        kids = sorted(c for c in node if c is not None)
        alts = [_unit_excluding(set(kids))]
        alts += [_any_spelling(c) + deviate(node[c]) for c in kids]
        return alts[0] if len(alts) == 1 else "(?:" + "|".join(alts) + ")"

    def stops(node) -> str | None:
        kids = sorted(c for c in node if c is not None)
        alts = [] if None in node else [""]
        for c in kids:
            sub = stops(node[c])
            if sub is not None:
                alts.append(_any_spelling(c) + sub)
        if not alts:
            return None
        if alts == [""]:
            return ""
        nonempty = [a for a in alts if a]
        body = nonempty[0] if len(nonempty) == 1 else "(?:" + "|".join(nonempty) + ")"
        return f"(?:{body})?" if "" in alts else body

    left = deviate(trie) + CANONICAL_UNIT + "*"
    stop = stops(trie)
    if stop is None:
        return left
    if stop == "":
        return f"(?:{left})?"
    return f"(?:{left}|{stop})"


# ----------------------------------------------------------------------------------------------
# Patterns: Python re syntax over decoded characters -> regex over canonical spellings
# ----------------------------------------------------------------------------------------------

_UNICODE_SPACE_NOCTRL = "\\x20\\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000"
_CTRL_CLASS = '\\x00-\\x1f"\\\\'


class PatternError(Exception):
    """A pattern cannot be translated; ``what`` says why."""


class _Emitter:
    """Walks a parsed ``re`` pattern and writes a regex over canonical JSON spellings."""

    def __init__(self, pattern: str, flags: int) -> None:
        self.pattern = pattern
        self.flags = flags

    def seq(self, items, flags) -> str:
        return "".join(self.item(op, av, flags) for op, av in items)

    def item(self, op, av, flags) -> str:  # noqa: C901 - one branch per re opcode
        if op is sre_c.LITERAL:
            return self.charset([(sre_c.LITERAL, av)], False, flags)
        if op is sre_c.NOT_LITERAL:
            return self.charset([(sre_c.LITERAL, av)], True, flags)
        if op is sre_c.ANY:
            if flags & re.DOTALL:
                return self.charset([], True, flags)
            return self.charset([(sre_c.LITERAL, 10)], True, flags)
        if op is sre_c.IN:
            negated = bool(av) and av[0][0] is sre_c.NEGATE
            return self.charset(av[1:] if negated else av, negated, flags)
        if op is sre_c.BRANCH:
            return "(?:" + "|".join(self.seq(alt, flags) for alt in av[1]) + ")"
        if op is sre_c.SUBPATTERN:
            _, add, delete, sub = av
            return "(?:" + self.seq(sub, (flags | add) & ~delete) + ")"
        if op in (sre_c.MAX_REPEAT, sre_c.MIN_REPEAT):
            lo, hi, sub = av
            body = "(?:" + self.seq(sub, flags) + ")"
            if hi is sre_c.MAXREPEAT:
                return body + ("*" if lo == 0 else "+" if lo == 1 else f"{{{lo},}}")
            if lo == hi:
                return body + ("" if lo == 1 else f"{{{lo}}}")
            return body + ("?" if (lo, hi) == (0, 1) else f"{{{lo},{hi}}}")
        if op is sre_c.AT:
            raise PatternError(f"anchor {av} inside the pattern")
        if op in (sre_c.GROUPREF, sre_c.GROUPREF_EXISTS):
            raise PatternError("back-references")
        if op in (sre_c.ASSERT, sre_c.ASSERT_NOT):
            raise PatternError("lookaround assertions")
        raise PatternError(f"the regex construct {op}")

    def charset(self, items, negated: bool, flags) -> str:
        ci = bool(flags & re.IGNORECASE)
        items = list(items)
        if ci:
            items = _case_closure(items)
        probe = _compile_class(items, negated, flags)
        specials = [c for c in _SPECIALS if probe.fullmatch(c)]
        slash = bool(probe.fullmatch("/"))
        pieces = []
        if negated:
            body = "".join(_class_item(op, av, flags) for op, av in items)
            pieces.append("[^" + body + _CTRL_CLASS + "/]")
        else:
            simple = []
            for op, av in items:
                if op is sre_c.LITERAL:
                    c = chr(av)
                    if c not in _SPECIALS and c != "/":
                        simple.append(re_class_char(c))
                elif op is sre_c.RANGE:
                    for lo, hi in _split_range(av[0], av[1]):
                        simple.append(re_class_char(chr(lo)) if lo == hi else
                                      re_class_char(chr(lo)) + "-" + re_class_char(chr(hi)))
                elif op is sre_c.CATEGORY:
                    pieces.append(_category_piece(av, flags))
                else:
                    raise PatternError(f"class item {op}")
            if simple:
                pieces.insert(0, "[" + "".join(simple) + "]")
        if slash:
            pieces.extend([r"\/", r"\\\/"])
        pieces.extend(special_spelling(c) for c in specials)
        if not pieces:
            return "(?!)"  # never used: an empty class; caught by the caller's emptiness check
        return pieces[0] if len(pieces) == 1 else "(?:" + "|".join(pieces) + ")"


def _split_range(lo: int, hi: int):
    """The range minus controls, '"', '\\' and '/' (those are spelled separately)."""
    cuts = sorted({0x22, 0x5C, 0x2F})
    cur = max(lo, 0x20)
    for c in cuts:
        if cur > hi:
            return
        if cur <= c <= hi:
            if cur <= c - 1:
                yield (cur, c - 1)
            cur = c + 1
    if cur <= hi:
        yield (cur, hi)


def _category_piece(cat, flags) -> str:
    ascii_only = bool(flags & re.ASCII)
    if cat is sre_c.CATEGORY_DIGIT:
        return "[0-9]" if ascii_only else r"\d"
    if cat is sre_c.CATEGORY_WORD:
        return "[a-zA-Z0-9_]" if ascii_only else r"\w"
    if cat is sre_c.CATEGORY_SPACE:
        return "[ ]" if ascii_only else "[" + _UNICODE_SPACE_NOCTRL + "]"
    if cat is sre_c.CATEGORY_NOT_DIGIT:
        return "[^0-9" + _CTRL_CLASS + "/]" if ascii_only else "[^\\d" + _CTRL_CLASS + "/]"
    if cat is sre_c.CATEGORY_NOT_WORD:
        return ("[^a-zA-Z0-9_" + _CTRL_CLASS + "/]" if ascii_only
                else "[^\\w" + _CTRL_CLASS + "/]")
    if cat is sre_c.CATEGORY_NOT_SPACE:
        return ("[^ \\t\\n\\r\\f\\v" + _CTRL_CLASS + "/]" if ascii_only
                else "[^\\s" + _CTRL_CLASS + "/]")
    raise PatternError(f"character category {cat}")


def _class_item(op, av, flags) -> str:
    if op is sre_c.LITERAL:
        return re_class_char(chr(av))
    if op is sre_c.RANGE:
        return re_class_char(chr(av[0])) + "-" + re_class_char(chr(av[1]))
    if op is sre_c.CATEGORY:
        ascii_only = bool(flags & re.ASCII)
        table = {sre_c.CATEGORY_DIGIT: "0-9" if ascii_only else r"\d",
                 sre_c.CATEGORY_NOT_DIGIT: None, sre_c.CATEGORY_WORD:
                 "a-zA-Z0-9_" if ascii_only else r"\w", sre_c.CATEGORY_NOT_WORD: None,
                 sre_c.CATEGORY_SPACE: r" \t\n\r\f\v" if ascii_only else r"\s",
                 sre_c.CATEGORY_NOT_SPACE: None}
        got = table.get(av)
        if got is None:
            raise PatternError("a negated category inside a negated class")
        return got
    raise PatternError(f"class item {op}")


def _compile_class(items, negated, flags):
    body = "".join(_class_item(op, av, flags) if not (
        op is sre_c.CATEGORY and av in (sre_c.CATEGORY_NOT_DIGIT, sre_c.CATEGORY_NOT_WORD,
                                        sre_c.CATEGORY_NOT_SPACE))
        else {sre_c.CATEGORY_NOT_DIGIT: r"\D", sre_c.CATEGORY_NOT_WORD: r"\W",
              sre_c.CATEGORY_NOT_SPACE: r"\S"}[av] for op, av in items)
    if not body:
        return re.compile(r"[\s\S]" if negated else r"(?!)")
    return re.compile("[" + ("^" if negated else "") + body + "]",
                      flags & (re.ASCII | re.IGNORECASE))


def _case_closure(items):
    out = list(items)
    for op, av in items:
        if op is sre_c.LITERAL:
            chars = [chr(av)]
        elif op is sre_c.RANGE and av[1] - av[0] <= 2000:
            chars = [chr(c) for c in range(av[0], av[1] + 1)]
        else:
            continue
        for c in chars:
            for v in {c.lower(), c.upper(), c.swapcase(), c.title(), c.casefold()}:
                if len(v) == 1 and v != c:
                    out.append((sre_c.LITERAL, ord(v)))
            extra = {"k": "\u212a", "s": "\u017f", "K": "\u212a", "S": "\u017f"}.get(c)
            if extra:
                out.append((sre_c.LITERAL, ord(extra)))
    return out


_CATEGORY_NAMES = {
    "Letter": "L", "Cased_Letter": "LC", "Uppercase_Letter": "Lu", "Lowercase_Letter": "Ll",
    "Titlecase_Letter": "Lt", "Modifier_Letter": "Lm", "Other_Letter": "Lo", "Mark": "M",
    "Nonspacing_Mark": "Mn", "Spacing_Mark": "Mc", "Enclosing_Mark": "Me", "Number": "N",
    "Decimal_Number": "Nd", "digit": "Nd", "Letter_Number": "Nl", "Other_Number": "No",
    "Punctuation": "P", "punct": "P", "Connector_Punctuation": "Pc", "Dash_Punctuation": "Pd",
    "Open_Punctuation": "Ps", "Close_Punctuation": "Pe", "Initial_Punctuation": "Pi",
    "Final_Punctuation": "Pf", "Other_Punctuation": "Po", "Symbol": "S", "Math_Symbol": "Sm",
    "Currency_Symbol": "Sc", "Modifier_Symbol": "Sk", "Other_Symbol": "So",
    "Separator": "Z", "Space_Separator": "Zs", "Line_Separator": "Zl",
    "Paragraph_Separator": "Zp", "Other": "C", "Control": "Cc", "cntrl": "Cc", "Format": "Cf",
    "Surrogate": "Cs", "Private_Use": "Co", "Unassigned": "Cn",
}
_PROPERTY_ESCAPE = re.compile(r"\\([pP])\{([A-Za-z_=]+)\}")


@functools.cache
def _category_ranges(cat: str) -> tuple[tuple[int, int], ...]:
    """Code point ranges of a Unicode general category (``L``, ``Lu``, ``LC`` ...)."""
    import unicodedata

    wanted = {"LC": ("Lu", "Ll", "Lt")}.get(cat)
    out: list[list[int]] = []
    for cp in range(0x110000):
        c = unicodedata.category(chr(cp))
        if (c in wanted) if wanted else c.startswith(cat):
            if out and out[-1][1] == cp - 1:
                out[-1][1] = cp
            else:
                out.append([cp, cp])
    return tuple((a, b) for a, b in out)


def _python_syntax(pattern: str) -> str:
    """An ECMA-262 pattern (JSON Schema's dialect) in Python ``re`` syntax: Unicode property
    escapes ``\\p{Letter}`` / ``\\P{Lu}`` (general categories) become explicit classes."""
    if "\\p{" not in pattern and "\\P{" not in pattern:
        return pattern
    out = []
    i = 0
    in_class = False
    while i < len(pattern):
        c = pattern[i]
        m = _PROPERTY_ESCAPE.match(pattern, i) if c == "\\" else None
        if m:
            name = m.group(2).split("=", 1)[-1]
            if m.group(2).count("=") and m.group(2).split("=")[0] not in (
                    "General_Category", "gc"):
                raise PatternError(f"Unicode property {m.group(2)!r}")
            cat = _CATEGORY_NAMES.get(name, name)
            if cat not in ("L", "LC", "M", "N", "P", "S", "Z", "C") and not (
                    len(cat) == 2 and cat in {v for v in _CATEGORY_NAMES.values()}):
                raise PatternError(f"Unicode property {m.group(2)!r}")
            ranges = _category_ranges(cat)
            if m.group(1) == "P":
                ranges = complement(ranges)
            body = "".join(re_class_char(chr(a)) if a == b else
                           re_class_char(chr(a)) + "-" + re_class_char(chr(b))
                           for a, b in ranges if not (0xD800 <= a and b <= 0xDFFF))
            out.append(body if in_class else f"[{body}]")
            i = m.end()
            continue
        if c == "\\":
            out.append(pattern[i:i + 2])
            i += 2
            continue
        if c == "[" and not in_class:
            in_class = True
            out.append(c)
            if pattern[i + 1:i + 2] == "^":
                out.append("^")
                i += 1
            if pattern[i + 1:i + 2] == "]":
                out.append("]")
                i += 1
        elif c == "]" and in_class:
            in_class = False
            out.append(c)
        else:
            out.append(c)
        i += 1
    return "".join(out)


def pattern_body(pattern: str) -> str:
    """Regex over canonical spellings of the string *contents* (no quotes) that ``re.search``
    with ``pattern`` accepts (``re`` syntax; ECMA-262 ``\\p{...}`` general categories are
    read too). Anchors ``^``/``$`` (``\\A``/``\\Z``) are honoured at the ends of
    top-level alternatives; ``$`` is read as the end of the string (ECMA-262 semantics; Python
    would also allow one trailing newline). Raises :class:`PatternError`."""
    try:
        parsed = sre_parse.parse(_python_syntax(pattern))
    except re.error as exc:
        raise PatternError(f"invalid regex: {exc}") from exc
    flags = parsed.state.flags
    items = list(parsed)
    alts = items[0][1][1] if len(items) == 1 and items[0][0] is sre_c.BRANCH else [items]
    em = _Emitter(pattern, flags)
    any_char = em.charset([], True, flags | re.DOTALL)
    out = []
    for alt in alts:
        alt = list(alt)
        start = end = False
        while alt and alt[0][0] is sre_c.AT and alt[0][1] in (sre_c.AT_BEGINNING,
                                                              sre_c.AT_BEGINNING_STRING):
            alt.pop(0)
            start = True
        while alt and alt[-1][0] is sre_c.AT and alt[-1][1] in (sre_c.AT_END, sre_c.AT_END_STRING):
            alt.pop()
            end = True
        body = em.seq(alt, flags)
        out.append(("" if start else any_char + "*") + body + ("" if end else any_char + "*"))
    return out[0] if len(out) == 1 else "(?:" + "|".join(out) + ")"


def pattern_length_bounds(pattern: str) -> tuple[int, float] | None:
    """(min, max) length of the strings a *fully anchored* single-branch pattern matches, or
    None when unknown. Used to see whether minLength/maxLength add anything to a pattern."""
    try:
        parsed = sre_parse.parse(_python_syntax(pattern))
    except re.error:
        return None
    lo, hi = parsed.getwidth()
    items = list(parsed)
    anchored = (items and items[0][0] is sre_c.AT and items[-1][0] is sre_c.AT)
    if not anchored:
        return (lo, float("inf"))
    return (lo, float("inf") if hi >= sre_c.MAXREPEAT else hi)


def pattern_with_length(pattern: str, min_len: int, max_len: int | None) -> str | None:
    """Pattern body intersected with a length range, when the pattern's shape allows it:
    fixed-width parts around one repeated single character set (``^[a-z]+$``, ``^ab.*``,
    ``[0-9]{2}-.*``). None when the shape is not handled."""
    try:
        parsed = sre_parse.parse(_python_syntax(pattern))
    except re.error:
        return None
    flags = parsed.state.flags
    items = list(parsed)
    if items and items[0][0] is sre_c.BRANCH:
        return None
    start = end = False
    while items and items[0][0] is sre_c.AT and items[0][1] in (sre_c.AT_BEGINNING,
                                                                sre_c.AT_BEGINNING_STRING):
        items.pop(0)
        start = True
    while items and items[-1][0] is sre_c.AT and items[-1][1] in (sre_c.AT_END,
                                                                  sre_c.AT_END_STRING):
        items.pop()
        end = True
    dot_star = (sre_c.MAX_REPEAT, (0, sre_c.MAXREPEAT,
                                   sre_parse.SubPattern(parsed.state,
                                                        [(sre_c.IN, [(sre_c.NEGATE, None)])])))

    def is_any_repeat(item) -> bool:
        op, av = item
        return (op in (sre_c.MAX_REPEAT, sre_c.MIN_REPEAT) and av[0] == 0
                and av[1] is sre_c.MAXREPEAT and len(av[2]) == 1
                and (av[2][0][0] is sre_c.ANY and flags & re.DOTALL
                     or av[2][0] == (sre_c.IN, [(sre_c.NEGATE, None)])))
    if not start and not (items and is_any_repeat(items[0])):
        items.insert(0, dot_star)
    if not end and not (items and is_any_repeat(items[-1])):
        items.append(dot_star)
    # fixed-width parts as long as max_len: any ".*" around them must match nothing
    rest = [it for it in items if not is_any_repeat(it)]
    widths = [sre_parse.SubPattern(parsed.state, [it]).getwidth() for it in rest]
    if max_len is not None and all(a == b for a, b in widths):
        fixed = sum(a for a, _ in widths)
        if fixed > max_len or fixed < min_len and len(rest) == len(items):
            raise PatternError("minLength/maxLength leave no string matching the pattern")
        if fixed == max_len:
            return _Emitter(pattern, flags).seq(rest, flags)
    # flatten single-item groups
    while True:
        changed = False
        flat = []
        for op, av in items:
            if op is sre_c.SUBPATTERN and av[1] == 0 and av[2] == 0:
                flat.extend(av[3])
                changed = True
            else:
                flat.append((op, av))
        items = flat
        if not changed:
            break
    fixed = 0
    var_index = None
    for k, (op, av) in enumerate(items):
        lo, hi = sre_parse.SubPattern(parsed.state, [(op, av)]).getwidth()
        if lo == hi:
            fixed += lo
            continue
        if op not in (sre_c.MAX_REPEAT, sre_c.MIN_REPEAT) or var_index is not None:
            return None
        sub = av[2]
        if len(sub) != 1 or sub[0][0] not in (sre_c.LITERAL, sre_c.NOT_LITERAL, sre_c.ANY,
                                              sre_c.IN):
            return None
        var_index = k
    if var_index is None:
        return None
    op, (lo, hi, sub) = items[var_index]
    hi = float("inf") if hi is sre_c.MAXREPEAT else hi
    new_lo = max(lo, min_len - fixed)
    new_hi = hi if max_len is None else min(hi, max_len - fixed)
    if new_hi < new_lo:
        raise PatternError("minLength/maxLength leave no string matching the pattern")
    new_hi_v = sre_c.MAXREPEAT if new_hi == float("inf") else int(new_hi)
    items[var_index] = (sre_c.MAX_REPEAT, (int(new_lo), new_hi_v, sub))
    return _Emitter(pattern, flags).seq(items, flags)


# ----------------------------------------------------------------------------------------------
# Formats
# ----------------------------------------------------------------------------------------------

_D2 = "[0-9]{2}"
_YEAR = "[0-9]{4}"
_LEAP = "(?:[0-9]{2}(?:0[48]|[2468][048]|[13579][26])|(?:[02468][048]|[13579][26])00)"
_DATE = (f"(?:{_YEAR}-(?:(?:0[1-9]|1[0-2])-(?:0[1-9]|1[0-9]|2[0-8])"
         f"|(?:0[13-9]|1[0-2])-(?:29|30)|(?:0[13578]|1[02])-31)|{_LEAP}-02-29)")
_TIME = r"(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]{1,9})?"
_OFFSET = r"(?:Z|[+\-](?:[01][0-9]|2[0-3]):[0-5][0-9])"
_DUR_T = r"T(?:[0-9]+H(?:[0-9]+M)?(?:[0-9]+S)?|[0-9]+M(?:[0-9]+S)?|[0-9]+S)"
_DUR_D = r"(?:[0-9]+Y(?:[0-9]+M)?(?:[0-9]+D)?|[0-9]+M(?:[0-9]+D)?|[0-9]+D)"
_DURATION = rf"P(?:{_DUR_D}(?:{_DUR_T})?|{_DUR_T}|[0-9]+W)"
_LABEL = "[A-Za-z0-9](?:[A-Za-z0-9\\-]{0,38}[A-Za-z0-9])?"
_HOSTNAME = f"(?:{_LABEL}\\.){{0,4}}[A-Za-z](?:[A-Za-z0-9\\-]{{0,38}}[A-Za-z0-9])?"
_OCTET = "(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"
_IPV4 = f"{_OCTET}(?:\\.{_OCTET}){{3}}"
_H16 = "[0-9a-fA-F]{1,4}"


def _ipv6() -> str:
    alts = [f"(?:{_H16}:){{7}}{_H16}"]
    for left in range(0, 8):
        for right in range(0, 8 - left):
            if left + right > 7:
                continue
            lpart = "" if left == 0 else f"(?:{_H16}:){{{left - 1}}}{_H16}" if left > 1 else _H16
            rpart = "" if right == 0 else (f"{_H16}(?::{_H16}){{{right - 1}}}" if right > 1
                                           else _H16)
            alts.append(f"{lpart}::{rpart}")
    return "(?:" + "|".join(alts) + ")"


_UNRESERVED = r"A-Za-z0-9\-._~"
_SUBDELIMS = r"!$&'()*+,;="
_PCT = "%[0-9a-fA-F]{2}"
_URI_CHARS = f"(?:[{_UNRESERVED}{_SUBDELIMS}:@\\/?#\\[\\]]|{_PCT})"
_URI_NOCOLON_SEG = f"(?:[{_UNRESERVED}{_SUBDELIMS}@]|{_PCT})"
_SCHEME = r"[A-Za-z][A-Za-z0-9+\-.]*"
_URI = f"{_SCHEME}:{_URI_CHARS}*"
_URI_REF = f"(?:{_URI}|(?:{_URI_NOCOLON_SEG}*(?:[\\/?#]{_URI_CHARS}*)?))"
_JSON_POINTER = "(?:/(?:[^~/]|~[01])*)*"  # RFC 6901
_EMAIL_LOCAL = r"[A-Za-z0-9!#$%&'*+\-=?^_`{|}~]+(?:\.[A-Za-z0-9!#$%&'*+\-=?^_`{|}~]+)*"

FORMATS = {
    "date-time": f"{_DATE}T{_TIME}{_OFFSET}",
    "date": _DATE,
    "time": f"{_TIME}{_OFFSET}",
    "duration": _DURATION,
    "email": f"{_EMAIL_LOCAL}@{_HOSTNAME}",
    "hostname": _HOSTNAME,
    "ipv4": _IPV4,
    "ipv6": _ipv6(),
    "uuid": "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}",
    "uri": _URI,
    "uri-reference": _URI_REF,
    "json-pointer": _JSON_POINTER,
    "relative-json-pointer": f"(?:0|[1-9][0-9]*)(?:#|{_JSON_POINTER})",
}
# Formats the JSON Schema specifications define; a format outside this list is an annotation
# (no validator asserts it), anything inside it that is not in FORMATS is reported.
STANDARD_FORMATS = set(FORMATS) | {
    "idn-email", "idn-hostname", "iri", "iri-reference", "uri-template", "json-pointer",
    "relative-json-pointer", "regex"}
FORMAT_LENGTHS = {"date": (10, 10), "uuid": (36, 36)}


# ----------------------------------------------------------------------------------------------
# Integer and decimal ranges
# ----------------------------------------------------------------------------------------------

def _digits_range(lo: str, hi: str) -> str:
    """Regex for digit strings of equal length between lo and hi (inclusive)."""
    if lo == hi:
        return lo
    if len(lo) == 1:
        return f"[{lo}-{hi}]" if lo != hi else lo
    if lo[0] == hi[0]:
        return lo[0] + _digits_range(lo[1:], hi[1:])
    n = len(lo) - 1
    alts = []
    if lo[1:] == "0" * n:
        first_lo = lo[0]
    else:
        alts.append(lo[0] + _digits_range(lo[1:], "9" * n))
        first_lo = str(int(lo[0]) + 1)
    if hi[1:] == "9" * n:
        first_hi = hi[0]
        tail = None
    else:
        first_hi = str(int(hi[0]) - 1)
        tail = hi[0] + _digits_range("0" * n, hi[1:])
    if int(first_lo) <= int(first_hi):
        d = first_lo if first_lo == first_hi else f"[{first_lo}-{first_hi}]"
        alts.append(d + ("[0-9]" if n == 1 else f"[0-9]{{{n}}}"))
    if tail is not None:
        alts.append(tail)
    return alts[0] if len(alts) == 1 else "(?:" + "|".join(alts) + ")"


def nonneg_int_range(lo: int, hi: int | None) -> str | None:
    """Regex for the decimal spellings (no leading zeros) of integers in [lo, hi], lo >= 0;
    ``hi`` None means unbounded. None when the range is empty."""
    if hi is not None and hi < lo:
        return None
    alts = []
    a = lo
    while True:
        na = len(str(a))
        top = 10 ** na - 1
        if hi is not None and hi <= top:
            alts.append(_digits_range(str(a), str(hi)))
            break
        alts.append(_digits_range(str(a), str(top)))
        if hi is None:
            alts.append(f"[1-9][0-9]{{{na},}}")
            break
        a = top + 1
    return alts[0] if len(alts) == 1 else "(?:" + "|".join(alts) + ")"


def int_range(lo: int | None, hi: int | None) -> str | None:
    """Regex for integers in [lo, hi] (None = unbounded), canonical spelling (no "-0")."""
    alts = []
    if hi is None or hi >= 0:
        r = nonneg_int_range(max(lo, 0) if lo is not None else 0, hi)
        if r is not None:
            alts.append(r)
    if lo is None or lo < 0:
        # negatives: -k for k in [max(1, -hi), -lo]
        k_lo = 1 if hi is None or hi >= 0 else -hi
        k_hi = None if lo is None else -lo
        r = nonneg_int_range(k_lo, k_hi)
        if r is not None:
            alts.append("-" + (r if r.startswith("(") or len(r) == 1 else "(?:" + r + ")"))
    if not alts:
        return None
    return alts[0] if len(alts) == 1 else "(?:" + "|".join(alts) + ")"


def _join(frac) -> str | None:
    """A fraction language as one regex over digit strings (possibly matching '')."""
    if frac is None:
        return None
    empty, nonempty = frac
    if nonempty is None:
        return "" if empty else None
    return f"(?:{nonempty})?" if empty else nonempty


def _alts(parts: list[str]) -> str | None:
    parts = [p for p in parts if p is not None]
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else "(?:" + "|".join(parts) + ")"


def _prefixed(d: str, frac) -> str | None:
    rest = _join(frac)
    return None if rest is None else d + rest


def _frac_ge(a: str, strict: bool):
    """Fraction digit strings s (possibly empty) with 0.s >= 0.a (> when strict)."""
    a = a.rstrip("0")
    if not a:
        return (False, "[0-9]*[1-9][0-9]*") if strict else (True, "[0-9]+")
    d = int(a[0])
    parts = [f"[{d + 1}-9][0-9]*" if d < 9 else None, _prefixed(a[0], _frac_ge(a[1:], strict))]
    return (False, _alts(parts))


def _frac_le(b: str, strict: bool):
    """Fraction digit strings s with 0.s <= 0.b (< when strict)."""
    b = b.rstrip("0")
    if not b:
        return None if strict else (True, "0+")
    d = int(b[0])
    parts = [f"[0-{d - 1}][0-9]*" if d > 0 else None, _prefixed(b[0], _frac_le(b[1:], strict))]
    return (True, _alts(parts))


def _frac_pos_le(b: str, strict: bool):
    """Fraction digit strings s with 0 < 0.s <= 0.b (< when strict)."""
    b = b.rstrip("0")
    if not b:
        return None
    d = int(b[0])
    if d == 0:
        rest = _frac_pos_le(b[1:], strict)
        return None if rest is None else (False, _prefixed("0", rest))
    parts = [f"[1-{d - 1}][0-9]*" if d > 1 else None, "0[0-9]*[1-9][0-9]*",
             _prefixed(b[0], _frac_le(b[1:], strict))]
    return (False, _alts(parts))


def _frac_between(a: str, a_strict: bool, b: str, b_strict: bool):
    """Fraction digit strings s with 0.a <= 0.s <= 0.b (strictness per side)."""
    a = a.rstrip("0")
    b = b.rstrip("0")
    if not a:
        return _frac_pos_le(b, b_strict) if a_strict else _frac_le(b, b_strict)
    if not b:
        return None
    if a[0] == b[0]:
        rest = _frac_between(a[1:], a_strict, b[1:], b_strict)
        return None if rest is None or _join(rest) is None else (False, a[0] + _join(rest))
    lo_d, hi_d = int(a[0]) + 1, int(b[0]) - 1
    parts = [_prefixed(a[0], _frac_ge(a[1:], a_strict)),
             (f"[{lo_d}-{hi_d}]" if lo_d != hi_d else str(lo_d)) + "[0-9]*"
             if lo_d <= hi_d else None,
             _prefixed(b[0], _frac_le(b[1:], b_strict))]
    got = _alts(parts)
    return None if got is None else (False, got)


def _with_frac(int_re: str, frac) -> str | None:
    if frac is None:
        return None
    empty, nonempty = frac
    if nonempty is None:
        return int_re if empty else None
    return f"{int_re}(?:\\.{nonempty})?" if empty else f"{int_re}\\.{nonempty}"


def _split_decimal(d) -> tuple[int, str]:
    s = format(d, "f")
    if "." in s:
        i, f = s.split(".")
        return int(i), f
    return int(s), ""


def _wrap(r: str) -> str:
    return r if r.startswith("(?:") and r.endswith(")") else "(?:" + r + ")"


def nonneg_decimal_range(lo, lo_strict: bool, hi, hi_strict: bool) -> str | None:
    """Regex for plain decimals (``12``, ``12.50``; no exponent) in the range, 0 <= lo;
    ``hi`` None is unbounded."""
    li, lf = _split_decimal(lo)
    frac_any = (True, "[0-9]+")
    parts: list = []
    if hi is not None:
        hi_i, hf = _split_decimal(hi)
        if li == hi_i:
            parts.append(_with_frac(str(li), _frac_between(lf, lo_strict, hf, hi_strict)))
            return _alts(parts)
    parts.append(_with_frac(str(li), _frac_ge(lf, lo_strict)))
    mid = nonneg_int_range(li + 1, None if hi is None else hi_i - 1)
    if mid is not None:
        parts.append(_with_frac(_wrap(mid), frac_any))
    if hi is not None:
        parts.append(_with_frac(str(hi_i), _frac_le(hf, hi_strict)))
    return _alts(parts)


def decimal_range(lo, lo_strict: bool, hi, hi_strict: bool) -> str | None:
    """Regex for plain decimal numbers (optional sign, optional fraction, no exponent) in the
    range (``lo``/``hi`` None = unbounded). None when empty."""
    from decimal import Decimal

    lo_d = None if lo is None else Decimal(str(lo))
    hi_d = None if hi is None else Decimal(str(hi))
    alts = []
    # non-negative part
    if hi_d is None or hi_d > 0 or (hi_d == 0 and not hi_strict):
        nlo, nstrict = (Decimal(0), False) if lo_d is None or lo_d < 0 else (lo_d, lo_strict)
        r = nonneg_decimal_range(nlo, nstrict, hi_d, hi_strict)
        if r is not None:
            alts.append(r)
    # negative part: -x with x in (0, -lo] ∩ [-hi, ...)
    if lo_d is None or lo_d < 0:
        if hi_d is None or hi_d >= 0:
            xlo, xlo_strict = Decimal(0), True
        else:
            xlo, xlo_strict = -hi_d, hi_strict
        xhi, xhi_strict = (None, False) if lo_d is None else (-lo_d, lo_strict)
        r = nonneg_decimal_range(xlo, xlo_strict, xhi, xhi_strict)
        if r is not None:
            alts.append("-" + _wrap(r))
    if not alts:
        return None
    return alts[0] if len(alts) == 1 else "(?:" + "|".join(alts) + ")"
