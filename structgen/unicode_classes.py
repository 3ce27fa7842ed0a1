"""Unicode meaning for ``\\d``, ``\\w`` and ``\\s``, as Python's ``re`` (and so Lark) gives it.

interegular reads these escapes as ASCII classes, and spelling the Unicode sets out (133,548
word characters) makes its automata slow to build. Instead, a regex that uses them is parsed
with ``re``'s own parser and written back with a few *placeholder* characters: one stands for
"non-ASCII word characters that are not digits", one for "non-ASCII decimal digits", one for
"non-ASCII whitespace". Characters the regex names explicitly (``é``, ``[à-ÿ]``) stay
themselves, so classes never overlap. The byte-level builder then expands each placeholder into
its real code point ranges (``regex_dfa._segments``).

Every other construct is written back unchanged in meaning. Lazy repeats are written as greedy
ones: structgen lexes longest-match, so only the language of a terminal matters.
"""

from __future__ import annotations

import functools
import re
from re import _constants as C  # noqa: N812
from re import _parser as sre

import numpy as np

from .errors import RegexError

MAX_CODEPOINT = 0x10FFFF
# \d \w \s (Unicode categories) and \u \U \N{} escapes (which interegular cannot read)
_CATEGORY_ESCAPES = re.compile(r"(?<!\\)(?:\\\\)*\\[dDwWsSuUN]")  # an odd run of backslashes
_INLINE_I = re.compile(r"\(\?[a-zA-Z]*i[a-zA-Z-]*[:)]")
# IGNORECASE is expanded into explicit classes here, so it is never written back
_FLAG_LETTERS = ((re.DOTALL, "s"), (re.MULTILINE, "m"))
Ranges = list[tuple[int, int]]


@functools.cache
def _category_tables() -> dict[str, np.ndarray]:
    """bool[0x110000] membership of every code point in re's \\w, \\d and \\s (computed once)."""
    cps = np.arange(MAX_CODEPOINT + 1)
    cps = cps[(cps < 0xD800) | (cps > 0xDFFF)]
    text = "".join(map(chr, cps.tolist()))
    out = {}
    for name, pattern in (("w", r"\w"), ("d", r"\d"), ("s", r"\s")):
        table = np.zeros(MAX_CODEPOINT + 1, dtype=bool)
        table[[ord(c) for c in re.findall(pattern, text)]] = True
        out[name] = table
    return out


def _to_ranges(mask: np.ndarray) -> Ranges:
    idx = np.flatnonzero(mask)
    if idx.size == 0:
        return []
    breaks = np.flatnonzero(np.diff(idx) != 1)
    starts = np.concatenate([[idx[0]], idx[breaks + 1]])
    ends = np.concatenate([idx[breaks], [idx[-1]]])
    return [(int(a), int(b)) for a, b in zip(starts, ends, strict=True)]


@functools.cache
def _case_index() -> dict[str, set[int]]:
    """Code points grouped by every case mapping (lower, upper, casefold), built once."""
    index: dict[str, set[int]] = {}
    for cp in range(MAX_CODEPOINT + 1):
        if 0xD800 <= cp <= 0xDFFF:
            continue
        ch = chr(cp)
        lo, up = ch.lower(), ch.upper()
        if lo == ch and up == ch:
            continue
        for key in {lo, up, ch.casefold(), ch}:
            index.setdefault(key, set()).add(cp)
    return index


def case_variants(cp: int) -> set[int]:
    """Code points that ``re`` with IGNORECASE matches for the literal ``chr(cp)``."""
    ch = chr(cp)
    index = _case_index()
    candidates = {cp}
    for key in {ch, ch.lower(), ch.upper(), ch.casefold()}:
        candidates |= index.get(key, set())
    pattern = re.compile(re.escape(ch), re.IGNORECASE)
    return {x for x in candidates if pattern.fullmatch(chr(x))}


def needs_rewrite(regex: str) -> bool:
    """Does the regex use Unicode categories or case-insensitive matching (which interegular
    handles for ASCII only, while ``re`` folds e.g. the Kelvin sign to ``k``)?"""
    return bool(_CATEGORY_ESCAPES.search(regex) or _INLINE_I.search(regex))



def rewrite(regex: str) -> tuple[str, dict[int, Ranges]]:
    """``regex`` with Unicode categories replaced by placeholders, and what each stands for."""
    try:
        parsed = sre.parse(regex)
    except re.error as exc:
        raise RegexError(f"cannot parse regex {regex!r}: {exc}") from exc
    explicit = np.zeros(MAX_CODEPOINT + 1, dtype=bool)
    explicit[:128] = True
    _mark_explicit(parsed, explicit, parsed.state.flags)
    tables = _category_tables() if _uses_categories(parsed) else _NO_CATEGORIES
    free = np.flatnonzero(~explicit[0xF0000:0x10FFFE]) + 0xF0000
    if free.size < 4:
        raise RegexError(f"regex {regex!r} names too many private-use characters")
    ph_word, ph_digit, ph_space, ph_never = (int(x) for x in free[:4])
    outside = ~explicit
    outside[[ph_word, ph_digit, ph_space, ph_never]] = False
    expansions = {
        ph_word: _to_ranges(tables["w"] & ~tables["d"] & outside),
        ph_digit: _to_ranges(tables["d"] & outside),
        ph_space: _to_ranges(tables["s"] & outside),
        ph_never: [],
    }
    writer = _Writer(explicit, tables, ph_word, ph_digit, ph_space, ph_never)
    body = writer.seq(parsed, parsed.state.flags)
    flags = "".join(letter for flag, letter in _FLAG_LETTERS if parsed.state.flags & flag)
    return (f"(?{flags}:{body})" if flags else body), expansions


def _literal_set(lo: int, hi: int, flags: int) -> list[int]:
    """Code points ``[lo, hi]`` stand for, with their case variants under IGNORECASE."""
    if not flags & re.IGNORECASE:
        return list(range(lo, hi + 1))
    cased = _cased_codepoints()
    out = set(range(lo, hi + 1))
    for cp in (cased[(cased >= lo) & (cased <= hi)] if hi - lo > 64 else range(lo, hi + 1)):
        out |= case_variants(int(cp))
    return sorted(out)


@functools.cache
def _cased_codepoints() -> np.ndarray:
    return np.array(sorted(set().union(*_case_index().values())), dtype=np.int64)


_EMPTY = np.zeros(MAX_CODEPOINT + 1, dtype=bool)
_NO_CATEGORIES = {"w": _EMPTY, "d": _EMPTY, "s": _EMPTY}


def _uses_categories(items) -> bool:
    for op, av in items:
        if op is C.CATEGORY:
            return True
        if op is C.IN and _uses_categories(av):
            return True
        if op is C.BRANCH and any(_uses_categories(alt) for alt in av[1]):
            return True
        if op is C.SUBPATTERN and _uses_categories(av[3]):
            return True
        if op in (C.MAX_REPEAT, C.MIN_REPEAT) and _uses_categories(av[2]):
            return True
    return False


def _mark_explicit(items, explicit: np.ndarray, flags: int) -> None:
    for op, av in items:
        if op in (C.LITERAL, C.NOT_LITERAL):
            explicit[_literal_set(av, av, flags)] = True
        elif op is C.RANGE:
            explicit[av[0]:av[1] + 1] = True
            if flags & re.IGNORECASE:
                explicit[_literal_set(av[0], av[1], flags)] = True
        elif op is C.IN:
            _mark_explicit(av, explicit, flags)
        elif op is C.BRANCH:
            for alt in av[1]:
                _mark_explicit(alt, explicit, flags)
        elif op is C.SUBPATTERN:
            _mark_explicit(av[3], explicit, (flags | av[1]) & ~av[2])
        elif op in (C.MAX_REPEAT, C.MIN_REPEAT):
            _mark_explicit(av[2], explicit, flags)


class _Writer:
    """Writes a parsed regex back as text, over the alphabet explicit chars + placeholders."""

    def __init__(self, explicit, tables, ph_word, ph_digit, ph_space, ph_never) -> None:
        self.explicit = explicit
        self.tables = tables
        self.ph = {"w": ph_word, "d": ph_digit, "s": ph_space}
        self.ph_never = ph_never

    # A set over the abstract alphabet: (bool mask over code points that are explicit,
    # set of placeholders, whether "any other character" is in it).
    def _category(self, name: str, ascii_only: bool) -> tuple[np.ndarray, set[int], bool]:
        mask = self.tables[name] & self.explicit
        if ascii_only:
            mask = mask.copy()
            mask[128:] = False
            return mask, set(), False
        phs = {self.ph[name]} | ({self.ph["d"]} if name == "w" else set())
        return mask, phs, False

    def _complement(self, s):
        mask, phs, other = s
        return (~mask & self.explicit, set(self.ph.values()) - phs, not other)

    def _class_set(self, items, flags: int):
        mask = np.zeros_like(self.explicit)
        phs: set[int] = set()
        other = False
        negate = False
        ascii_only = bool(flags & re.ASCII)
        for op, av in items:
            if op is C.NEGATE:
                negate = True
            elif op is C.LITERAL:
                mask[_literal_set(av, av, flags)] = True
            elif op is C.RANGE:
                mask[av[0]:av[1] + 1] = True
                if flags & re.IGNORECASE:
                    mask[_literal_set(av[0], av[1], flags)] = True
            elif op is C.CATEGORY:
                positive = {C.CATEGORY_WORD: "w", C.CATEGORY_DIGIT: "d", C.CATEGORY_SPACE: "s"}
                negative = {C.CATEGORY_NOT_WORD: "w", C.CATEGORY_NOT_DIGIT: "d",
                            C.CATEGORY_NOT_SPACE: "s"}
                if av in positive:
                    s = self._category(positive[av], ascii_only)
                elif av in negative:
                    s = self._complement(self._category(negative[av], ascii_only))
                else:
                    raise RegexError(f"unsupported character category {av}")
                mask |= s[0]
                phs |= s[1]
                other = other or s[2]
            else:
                raise RegexError(f"unsupported item {op} in a character class")
        s = (mask, phs, other)
        return self._complement(s) if negate else s

    def _emit_set(self, s) -> str:
        mask, phs, other = s
        if other:
            mask, phs, _ = self._complement(s)
            body = self._items(mask, phs)
            return f"[^{body}]" if body else "(?s:.)"
        body = self._items(mask, phs)
        return f"[{body}]" if body else f"[{_char(self.ph_never)}]"

    @staticmethod
    def _items(mask: np.ndarray, phs: set[int]) -> str:
        parts = [_char(a) if a == b else f"{_char(a)}-{_char(b)}" for a, b in _to_ranges(mask)]
        parts += [_char(p) for p in sorted(phs)]
        return "".join(parts)

    def seq(self, items, flags: int) -> str:
        return "".join(self.item(op, av, flags) for op, av in items)

    def item(self, op, av, flags: int) -> str:
        if op is C.LITERAL:
            if flags & re.IGNORECASE:
                variants = _literal_set(av, av, flags)
                if len(variants) > 1:
                    return "[" + "".join(_char(v) for v in variants) + "]"
            return _char(av)
        if op is C.NOT_LITERAL:
            return "[^" + "".join(_char(v) for v in _literal_set(av, av, flags)) + "]"
        if op is C.ANY:
            return "."
        if op is C.IN:
            return self._emit_set(self._class_set(av, flags))
        if op is C.CATEGORY:
            return self._emit_set(self._class_set([(op, av)], flags))
        if op is C.BRANCH:
            return "(?:" + "|".join(self.seq(alt, flags) for alt in av[1]) + ")"
        if op is C.SUBPATTERN:
            _, add, remove, inner = av
            new_flags = (flags | add) & ~remove
            text = self.seq(inner, new_flags)
            on = "".join(letter for flag, letter in _FLAG_LETTERS if add & flag)
            off = "".join(letter for flag, letter in _FLAG_LETTERS if remove & flag)
            if on or off:
                return f"(?{on}{'-' + off if off else ''}:{text})"
            return f"(?:{text})"
        if op in (C.MAX_REPEAT, C.MIN_REPEAT):
            lo, hi, inner = av
            text = f"(?:{self.seq(inner, flags)})"
            if hi is C.MAXREPEAT:
                return text + ("*" if lo == 0 else "+" if lo == 1 else f"{{{lo},}}")
            return text + ("?" if (lo, hi) == (0, 1) else f"{{{lo},{hi}}}")
        raise RegexError(f"regex construct {op} cannot be part of a terminal")


def _char(cp: int) -> str:
    """One code point as regex text that interegular reads back as exactly that character."""
    ch = chr(cp)
    if cp < 0x20 or cp == 0x7F:
        return f"\\x{cp:02x}"
    if ch in "\\^$.|?*+()[]{}-":
        return "\\" + ch
    return ch
