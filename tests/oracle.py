"""An independent, Lark-based oracle for viable-prefix questions.

structgen's contract (see DESIGN.md, "What correct means"): a grammar's language is what
``lark.Lark(text, parser="lalr", lexer="contextual").parse(s)`` accepts, and after a byte prefix
``p`` a token ``t`` is allowed iff ``p + bytes(t)`` is a *viable prefix*: some continuation makes a
string that Lark accepts.  This module answers that question without using any of structgen's
code: it drives Lark's own lexer and LALR tables, and models Python's ``re`` (what Lark's lexer
runs) with a small Pike VM built from ``re``'s own parser, so that a bug shared by structgen and
the oracle would have to be a bug in Lark or in ``re``.

Method
------
Every string Lark accepts is lexed (by Lark) into complete lexemes.  If ``p`` is a viable prefix,
take any accepted ``p + s`` and the lexeme ``L`` that covers the end of ``p`` (the one that
starts at or before ``len(p)`` and ends after it), and let ``k`` be where it starts.  Then:

1. ``k`` is a start of a lexeme (kept or ``%ignore``d) in Lark's lexing of ``p`` alone, or the
   position where lexing/parsing ``p`` fails, or ``len(p)``.  Reason: the lexemes before ``k``
   end at or before ``len(p)``, and a ``re.match`` that returns a lexeme ending there cannot
   have depended on characters after ``len(p)``, so Lark lexes ``p`` exactly like ``p + s`` up
   to ``k``.  (``%ignore``d lexemes are not returned by Lark's lexer; a lexer callback records
   where they start.)
2. Lark lexes and parses ``p[:k]`` without error (fed as a prefix, no ``$END``).
3. If the tail ``p[k:]`` is empty, the parser state can still take a terminal or ``$END``.
   Otherwise, the tail is the beginning of ``L``: in the contextual lexer of that parser state,
   some priority-ordered match that reaches past the tail is still alive, for a terminal that
   the parser can take there (``InteractiveParser.accepts()``, which simulates the reductions on
   the real stack) or an ``%ignore`` terminal.  "Still alive" follows ``re.match``
   semantics exactly (alternation order, greedy and lazy repeats, the keyword retyping that
   Lark's lexer does), so ``"ab"x`` is not taken as the start of one string lexeme.

These are *necessary* conditions, checked for every candidate ``k``; if none passes, the
prefix is **not viable** (``Verdict.NOT_VIABLE``).  If one passes, the oracle looks for a
*witness*: it completes the partial lexeme, finds a shortest sequence of terminals that takes
the LALR stack to ``$END``, writes each terminal out as a short lexeme (with an ignorable
separator between them when the grammar has one), and asks ``Lark.parse`` whether the result is
accepted.  If it is, the prefix is **viable** (``Verdict.VIABLE``, witness attached).  Otherwise
the verdict is ``Verdict.UNKNOWN``.

Bytes: the complete part of ``p`` is decoded as UTF-8; 1-3 trailing bytes of an incomplete
character are viable iff some code point with that UTF-8 prefix makes a viable prefix.  The
oracle tries one representative code point per class of characters that no character class in
the grammar's regexes tells apart (found by running every class over the whole code-point
range).  Invalid UTF-8 anywhere else is not viable.

Where it may be wrong (the residual approximations)
---------------------------------------------------
* ``UNKNOWN`` is an over-approximation: ``is_viable_prefix`` answers True for it (or raises
  ``OracleUndecided`` when built with ``strict=True``).  It happens when the necessary
  conditions pass but the bounded witness search fails, for example when the next lexeme would
  have to avoid merging with the partial one in a grammar without an ignorable separator, or
  when a lexer alternative of higher priority would win for every continuation, or when the
  language is empty past that point (``A: /a+/`` followed by ``B: /a+b/``).  ``VIABLE`` (a
  witness Lark accepted) and ``NOT_VIABLE`` are exact apart from the points below.  On the
  grammars in tests/grammars no ``UNKNOWN`` was seen in ~100k random queries.
* Terminals whose match depends on text after their end (lookahead, ``$``, ``\\b`` at the
  end of a terminal): condition 1 assumes a lexeme does not change when text is appended after
  it.  The tail check itself treats such assertions at the end of the known text as "could go
  either way", which keeps it an over-approximation.
* Python ``re``'s rule that ends a repeat after an empty iteration is not modelled (it only
  matters for patterns like ``(a*)*``).  Possessive repeats, atomic groups, back references and
  conditional groups raise ``OracleError`` when the oracle is built.

Exact by construction: character classes, ``\\w``/``\\d``/``\\s`` (Unicode, as in ``re``)
and case-insensitive matching are decided by ``re`` itself, one class at a time, and the
representatives for incomplete UTF-8 characters come from running those same classes over the
code-point range.  Cost: each query re-lexes the prefix with Lark (linear in its length, about
1-3 ms for short texts); results for prefixes, LALR stacks and regex steps are cached.
"""

from __future__ import annotations

import enum
import heapq
import re
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from lark import Lark
from lark.exceptions import LarkError, UnexpectedCharacters, UnexpectedInput, UnexpectedToken
from lark.lexer import CallChain, UnlessCallback
from lark.parsers.lalr_analysis import Shift

try:  # Python >= 3.11
    import re._constants as _sre
    import re._parser as _sre_parse
except ImportError:  # pragma: no cover - Python 3.10
    import sre_constants as _sre  # type: ignore[no-redef]
    import sre_parse as _sre_parse  # type: ignore[no-redef]

__all__ = ["LarkOracle", "OracleError", "OracleUndecided", "Verdict", "Viability"]


class OracleError(Exception):
    """The grammar uses something the oracle cannot model (e.g. a regex back reference)."""


class OracleUndecided(Exception):
    """Raised by a ``strict`` oracle when it can neither prove nor refute viability."""


class Verdict(enum.Enum):
    VIABLE = "viable"  # a continuation was found and Lark.parse accepted it
    NOT_VIABLE = "not viable"  # no split of the prefix passes the necessary conditions
    UNKNOWN = "unknown"  # the necessary conditions pass, but no witness was found


@dataclass(frozen=True)
class Viability:
    verdict: Verdict
    witness: bytes | None = None  # for VIABLE: data + witness is accepted by Lark


# --------------------------------------------------------------------------------------------
# A Pike VM for Python `re` match() semantics, over the output of re's own parser.
# --------------------------------------------------------------------------------------------

_CHAR, _SPLIT, _JMP, _AT, _LOOK, _MATCH = range(6)
_KEEP_FLAGS = re.IGNORECASE | re.DOTALL | re.ASCII
_CATEGORY = {
    _sre.CATEGORY_DIGIT: r"\d",
    _sre.CATEGORY_NOT_DIGIT: r"\D",
    _sre.CATEGORY_SPACE: r"\s",
    _sre.CATEGORY_NOT_SPACE: r"\S",
    _sre.CATEGORY_WORD: r"\w",
    _sre.CATEGORY_NOT_WORD: r"\W",
}
_MAX_PROGRAM = 50_000
_PRED_CACHE: dict[tuple[str, int], re.Pattern] = {}


def _pred(source: str, flags: int) -> re.Pattern:
    """A compiled one-character class; `re` itself decides membership (Unicode, case)."""
    key = (source, flags & _KEEP_FLAGS)
    pat = _PRED_CACHE.get(key)
    if pat is None:
        pat = _PRED_CACHE[key] = re.compile(source, key[1])
    return pat


def _lit(code: int) -> str:
    return f"\\U{code:08x}"


class _Regex:
    """Ordered alternatives ``(name, regexp)`` compiled to a priority NFA.

    ``run`` simulates ``re.match`` of the alternation (as Lark's Scanner builds it) on
    ``text[start:]``, thread by thread in backtracking priority order (leftmost-first Pike VM).
    """

    def __init__(self, alternatives: Sequence[tuple[str, str]] = (), *, _ast=None, _flags=0):
        self.code: list[list] = []
        self.group_of: list[str | None] = []
        self.preds: list[re.Pattern] = []  # every character class used here (and in asserts)
        self.has_lookbehind = False
        self.alphabet: list[str] | None = None  # witness-search alphabet, filled lazily
        self.owner = None  # the Lark BasicLexer this program models (keeps ids stable)
        self._group: str | None = None
        self._memo: dict[tuple, tuple] = {}
        self._items_memo: dict[tuple, tuple] = {}
        if _ast is not None:
            self._compile(_ast, _flags)
            self._emit(_MATCH, None)
        else:
            n = len(alternatives)
            for i, (name, regexp) in enumerate(alternatives):
                self._group = name
                split = self._emit(_SPLIT, None, None) if i < n - 1 else None
                if split is not None:
                    split[1] = len(self.code)
                try:
                    ast = _sre_parse.parse(regexp, 0)
                except re.error as e:  # pragma: no cover - Lark already compiled it
                    raise OracleError(f"terminal {name}: cannot parse regex {regexp!r}: {e}") from e
                try:
                    self._compile(ast, ast.state.flags)
                except OracleError as e:
                    raise OracleError(f"terminal {name} ({regexp!r}): {e}") from None
                self._emit(_MATCH, name)
                if split is not None:
                    split[2] = len(self.code)
        self.live = self._liveness()

    # -- compilation ---------------------------------------------------------------------------
    def _emit(self, op, a=None, b=None) -> list:
        if len(self.code) > _MAX_PROGRAM:
            raise OracleError("regex too large to model (huge counted repeat?)")
        ins = [op, a, b]
        self.code.append(ins)
        self.group_of.append(self._group)
        return ins

    def _char(self, source: str, flags: int) -> None:
        p = _pred(source, flags)
        self.preds.append(p)
        self._emit(_CHAR, p.fullmatch)

    def _compile(self, items, flags: int) -> None:
        for op, av in items:
            if op is _sre.LITERAL:
                self._char(_lit(av), flags)
            elif op is _sre.NOT_LITERAL:
                self._char("[^" + _lit(av) + "]", flags)
            elif op is _sre.ANY:
                self._char(".", flags)
            elif op is _sre.IN:
                parts, negate = [], False
                for iop, iav in av:
                    if iop is _sre.NEGATE:
                        negate = True
                    elif iop is _sre.LITERAL:
                        parts.append(_lit(iav))
                    elif iop is _sre.RANGE:
                        parts.append(_lit(iav[0]) + "-" + _lit(iav[1]))
                    elif iop is _sre.CATEGORY and iav in _CATEGORY:
                        parts.append(_CATEGORY[iav])
                    else:
                        raise OracleError(f"unsupported character-class item {iop}")
                self._char("[" + ("^" if negate else "") + "".join(parts) + "]", flags)
            elif op is _sre.BRANCH:
                _, alts = av
                jumps = []
                for i, alt in enumerate(alts):
                    split = self._emit(_SPLIT, None, None) if i < len(alts) - 1 else None
                    if split is not None:
                        split[1] = len(self.code)
                    self._compile(alt, flags)
                    jumps.append(self._emit(_JMP, None))
                    if split is not None:
                        split[2] = len(self.code)
                for j in jumps:
                    j[1] = len(self.code)
            elif op is _sre.SUBPATTERN:
                _group, add, remove, sub = av
                self._compile(sub, (flags | add) & ~remove)
            elif op in (_sre.MAX_REPEAT, _sre.MIN_REPEAT):
                lo, hi, sub = av
                greedy = op is _sre.MAX_REPEAT
                for _ in range(lo):
                    self._compile(sub, flags)
                if hi is _sre.MAXREPEAT:
                    top = len(self.code)
                    split = self._emit(_SPLIT, None, None)
                    body = len(self.code)
                    self._compile(sub, flags)
                    self._emit(_JMP, top)
                    end = len(self.code)
                    split[1:] = [body, end] if greedy else [end, body]
                else:
                    pending = []
                    for _ in range(hi - lo):
                        split = self._emit(_SPLIT, None, None)
                        pending.append((split, len(self.code)))
                        self._compile(sub, flags)
                    end = len(self.code)
                    for split, body in pending:
                        split[1:] = [body, end] if greedy else [end, body]
            elif op is _sre.AT:
                if av not in (
                    _sre.AT_BEGINNING,
                    _sre.AT_BEGINNING_STRING,
                    _sre.AT_END,
                    _sre.AT_END_STRING,
                    _sre.AT_BOUNDARY,
                    _sre.AT_NON_BOUNDARY,
                ):
                    raise OracleError(f"unsupported anchor {av}")
                if av in (_sre.AT_BOUNDARY, _sre.AT_NON_BOUNDARY):
                    self.preds.append(_pred(r"\w", flags))
                self._emit(_AT, av, flags)
            elif op in (_sre.ASSERT, _sre.ASSERT_NOT):
                direction, sub = av
                inner = _Regex(_ast=sub, _flags=flags)
                self.preds.extend(inner.preds)
                lo, hi = sub.getwidth()
                if direction < 0:
                    self.has_lookbehind = True
                    if lo != hi:  # pragma: no cover - re rejects these itself
                        raise OracleError("variable-width lookbehind")
                self._emit(_LOOK, (direction, op is _sre.ASSERT_NOT, inner, lo), flags)
            else:
                raise OracleError(f"unsupported regex construct {op}")

    def _liveness(self) -> list[bool]:
        """live[pc]: a MATCH is reachable from pc (assertions and classes assumed passable)."""
        n = len(self.code)
        back: list[list[int]] = [[] for _ in range(n + 1)]
        for pc, (op, a, b) in enumerate(self.code):
            succ = {_SPLIT: (a, b), _JMP: (a,), _MATCH: ()}.get(op, (pc + 1,))
            for s in succ:
                back[s].append(pc)
        live = [False] * (n + 1)
        todo = [pc for pc, ins in enumerate(self.code) if ins[0] == _MATCH]
        for pc in todo:
            live[pc] = True
        while todo:
            pc = todo.pop()
            for q in back[pc]:
                if not live[q]:
                    live[q] = True
                    todo.append(q)
        return live

    # -- simulation ----------------------------------------------------------------------------
    def _assert(self, ins, text: str, pos: int, final: bool) -> bool | None:
        """True / False, or None when it depends on text after the known end."""
        n = len(text)
        if ins[0] == _AT:
            at, flags = ins[1], ins[2]
            if at is _sre.AT_BEGINNING_STRING:
                return pos == 0
            if at is _sre.AT_BEGINNING:
                return pos == 0 or bool(flags & re.MULTILINE and text[pos - 1] == "\n")
            if at is _sre.AT_END_STRING:
                return (True if final else None) if pos == n else False
            if at is _sre.AT_END:
                if pos == n:
                    return True if final else None
                if flags & re.MULTILINE:
                    return text[pos] == "\n"
                if pos == n - 1 and text[pos] == "\n":
                    return True if final else None
                return False
            word = _pred(r"\w", flags).fullmatch
            before = pos > 0 and word(text[pos - 1]) is not None
            if pos == n and not final:
                return None
            after = pos < n and word(text[pos]) is not None
            boundary = before != after
            return boundary if at is _sre.AT_BOUNDARY else not boundary
        direction, negate, inner, width = ins[1]
        if direction < 0:
            if pos < width:
                result: bool | None = False
            else:
                items, _best, _maybe = inner.run(text, pos - width, stop=pos, final=final)
                certain = any(it[0] == _MATCH and not it[2] for it in items)
                result = True if certain else (None if items else False)
        else:
            items, best, maybe = inner.run(text, pos, final=final)
            if best is not None:
                result = True
            elif maybe or (items and not final):
                result = None
            else:
                result = False
        if result is None:
            return None
        return result != negate

    def _closure(self, seeds, text: str, pos: int, final: bool) -> tuple[tuple, bool]:
        """Threads reachable without consuming input, in priority order, and whether an
        assertion was evaluated (if not, the result depends on ``seeds`` alone)."""
        out: list[tuple[int, bool]] = []
        context = False
        seen: set[tuple[int, bool]] = set()
        stack = list(reversed(seeds))
        code = self.code
        while stack:
            pc, unc = stack.pop()
            if (pc, unc) in seen or (pc, False) in seen:
                continue
            seen.add((pc, unc))
            ins = code[pc]
            op = ins[0]
            if op == _CHAR or op == _MATCH:
                out.append((pc, unc))
            elif op == _JMP:
                stack.append((ins[1], unc))
            elif op == _SPLIT:
                stack.append((ins[2], unc))
                stack.append((ins[1], unc))
            else:
                context = True
                ok = self._assert(ins, text, pos, final)
                if ok is not False:
                    stack.append((pc + 1, unc or ok is None))
        return tuple(out), context

    def _step(self, clist: tuple, ch: str, text: str, pos: int, final: bool) -> tuple:
        """The threads after consuming ``ch`` (memoized: a lazily built DFA)."""
        key = (clist, ch)
        nxt = self._memo.get(key)
        if nxt is None:
            code = self.code
            seeds = [(pc + 1, unc) for pc, unc in clist if code[pc][0] == _CHAR and code[pc][1](ch)]
            nxt, context = self._closure(seeds, text, pos, final)
            if not context:
                if len(self._memo) > 200_000:
                    self._memo.clear()
                    self._items_memo.clear()
                self._memo[key] = nxt
        return nxt

    def _items(self, clist: tuple):
        """Cut ``clist`` after its first certain match: ``(items, matched group, uncertain?)``."""
        got = self._items_memo.get(clist)
        if got is None:
            code = self.code
            items = []
            group = None
            maybe = False
            for pc, unc in clist:
                ins = code[pc]
                if ins[0] == _MATCH:
                    items.append((_MATCH, ins[1], unc))
                    if unc:
                        maybe = True
                    else:
                        group = ins[1]
                        break
                else:
                    items.append((_CHAR, pc, unc))
            got = self._items_memo[clist] = (items, group, maybe)
        return got

    def run(self, text: str, start: int, stop: int | None = None, final: bool = False):
        """Match from ``start``; return ``(items, best, maybe)`` at position ``stop``.

        ``items`` lists, in priority order, what is still possible at ``stop``:
        ``(_MATCH, group, uncertain)`` for a match ending exactly there and
        ``(_CHAR, pc, uncertain)`` for a thread that needs more characters.  Threads below a
        certain match were cut, as backtracking would never reach them.  ``best`` is
        ``(end, group)`` of the match ``re.match`` returns if the text really ends at ``stop``
        (with ``final=True``) and ``maybe`` says an uncertain match was seen on the way.
        ``final=False`` means more text may follow ``text``: assertions that would look past
        its end are "uncertain" and never cut other threads.
        """
        stop = len(text) if stop is None else stop
        if not self.code:  # a lexer state with no terminals at all
            return [], None, False
        clist = self._memo.get(())  # the start state, when it does not depend on context
        if clist is None:
            clist, context = self._closure([(0, False)], text, start, final)
            if not context:
                self._memo[()] = clist
        best = None
        maybe = False
        pos = start
        while True:
            items, group, uncertain = self._items(clist)
            maybe = maybe or uncertain
            if group is not None:
                best = (pos, group)
            if pos >= stop:
                return items, best, maybe
            live = tuple((pc, unc) for kind, pc, unc in items if kind == _CHAR)
            pos += 1
            clist = self._step(live, text[pos - 1], text, pos, final)
            if not clist:
                return [], best, maybe

    def match(self, text: str, pos: int = 0) -> tuple[int, str | None] | None:
        """Like ``re.match(pattern, text, pos)``: ``(end, group)`` or None (used by tests)."""
        return self.run(text, pos, final=True)[1]


# --------------------------------------------------------------------------------------------
# UTF-8 helpers
# --------------------------------------------------------------------------------------------


def _utf8_partial_range(tail: bytes) -> tuple[int, int] | None:
    """Code-point range of the characters whose UTF-8 encoding strictly starts with ``tail``."""
    if not tail:
        return None
    b0 = tail[0]
    if 0xC2 <= b0 <= 0xDF:
        n = 2
    elif 0xE0 <= b0 <= 0xEF:
        n = 3
    elif 0xF0 <= b0 <= 0xF4:
        n = 4
    else:
        return None
    if len(tail) >= n:
        return None
    lo2, hi2 = {0xE0: (0xA0, 0xBF), 0xED: (0x80, 0x9F), 0xF0: (0x90, 0xBF), 0xF4: (0x80, 0x8F)}.get(
        b0, (0x80, 0xBF)
    )
    for i, b in enumerate(tail[1:], 1):
        lo_i, hi_i = (lo2, hi2) if i == 1 else (0x80, 0xBF)
        if not lo_i <= b <= hi_i:
            return None
    lo, hi = bytearray(tail), bytearray(tail)
    for i in range(len(tail), n):
        lo.append(lo2 if i == 1 else 0x80)
        hi.append(hi2 if i == 1 else 0xBF)
    return ord(bytes(lo).decode("utf-8")), ord(bytes(hi).decode("utf-8"))


def _split_utf8(data: bytes) -> tuple[str, bytes] | None:
    """``(complete text, trailing incomplete-character bytes)`` or None if not UTF-8."""
    try:
        return data.decode("utf-8"), b""
    except UnicodeDecodeError:
        pass
    for n in (1, 2, 3):
        if len(data) < n or _utf8_partial_range(data[-n:]) is None:
            continue
        try:
            return data[:-n].decode("utf-8"), data[-n:]
        except UnicodeDecodeError:
            return None
    return None


# --------------------------------------------------------------------------------------------
# The oracle
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _PrefixInfo:
    stack: tuple  # LALR state stack after feeding the prefix's tokens (no $END)
    accepts: frozenset  # InteractiveParser.accepts(): terminals (and maybe "$END") it can take


_ACCEPT = ("accept",)
_SEPARATORS = (" ", "\n", "")
_POOL = list(  # characters tried when writing lexemes out, most readable first
    "abcxyz0123456789ABCXYZ_ ;,.:=+-*/()[]{}<>!?\"'#\\@$%^&|~`\n\t"
    "defghijklmnopqrstuvwDEFGHIJKLMNOPQRSTUVW\u00e9\u4e2d\U0001f600"
)
_MAX_LEXEME_NODES = 400
_MAX_LEXEME_EXTRA = 12
_MAX_PARSE_NODES = 3000
_MAX_WITNESS_PARSES = 60


class LarkOracle:
    """Ground truth for structgen's masks, built on ``Lark(parser="lalr", lexer="contextual")``.

    ``accepts(data)`` / ``is_viable_prefix(data)`` take bytes.  ``viability(data)`` gives the
    three-way verdict with a witness continuation; see the module docstring for the method and
    where ``is_viable_prefix`` may over-approximate (``Verdict.UNKNOWN``, answered True unless
    ``strict=True``, which raises ``OracleUndecided`` instead).
    """

    def __init__(self, grammar_text: str, start: str = "start", *, strict: bool = False):
        self.strict = strict
        probe = Lark(grammar_text, parser="lalr", lexer="contextual", start=start)
        self.ignore: frozenset[str] = frozenset(probe.ignore_tokens)
        self._ignored_starts: list[int] = []
        # Same grammar, plus a callback that records where %ignore'd lexemes start
        # (Lark drops them otherwise).  Callbacks do not change what is accepted.
        self._lark = Lark(
            grammar_text,
            parser="lalr",
            lexer="contextual",
            start=start,
            lexer_callbacks={name: self._record_ignored for name in self.ignore},
        )
        conf = self._lark.parse_interactive("").parser_state.parse_conf
        self._states = conf.states
        self._end_state = conf.end_state
        self._terminals = {t.name: t for t in self._lark.terminals}
        self._term_regex = {
            name: _Regex([(name, t.pattern.to_regexp())]) for name, t in self._terminals.items()
        }
        self._contextual = self._lark.parser.lexer
        self._programs: dict[int, _Regex] = {}
        for lexer in self._contextual.lexers.values():
            self._program(lexer)  # compile every state's lexer up front: fail early
        self._preds = sorted(
            {(p.pattern, p.flags): p for prog in self._all_programs() for p in prog.preds}.values(),
            key=lambda p: (p.pattern, p.flags),
        )
        self._seps = [
            s
            for s in _SEPARATORS
            if s == "" or any(self._term_regex[n].match(s) == (len(s), n) for n in self.ignore)
        ]
        self._prefix_cache: dict[str, _PrefixInfo | None] = {}
        self._completion_cache: dict[tuple, list] = {}
        self._sample_cache: dict[tuple, list[str]] = {}
        self._rep_cache: dict[tuple[int, int], list[str]] = {}

    # -- public API ------------------------------------------------------------------------------
    @property
    def lark(self) -> Lark:
        return self._lark

    def accepts(self, data: bytes) -> bool:
        """``data`` is UTF-8 and Lark parses all of it."""
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            return False
        return self._parses(text)

    def is_viable_prefix(self, data: bytes) -> bool:
        """Some continuation ``s`` makes ``data + s`` accepted (UNKNOWN counts as viable)."""
        v = self.viability(data)
        if v.verdict is Verdict.UNKNOWN and self.strict:
            raise OracleUndecided(f"cannot decide viability of {data!r}")
        return v.verdict is not Verdict.NOT_VIABLE

    def viability(self, data: bytes) -> Viability:
        parts = _split_utf8(bytes(data))
        if parts is None:
            return Viability(Verdict.NOT_VIABLE)
        text, partial = parts
        if not partial:
            verdict, rest = self._decide(text)
            return Viability(verdict, None if rest is None else rest.encode("utf-8"))
        unknown = False
        for ch in self._representatives(partial):
            verdict, rest = self._decide(text + ch)
            if verdict is Verdict.VIABLE:
                full = (text + ch + rest).encode("utf-8")
                return Viability(Verdict.VIABLE, full[len(data) :])
            unknown = unknown or verdict is Verdict.UNKNOWN
        return Viability(Verdict.UNKNOWN if unknown else Verdict.NOT_VIABLE)

    def allowed(self, prefix: bytes, tokens: Iterable[bytes]) -> list[bool]:
        """The mask: ``is_viable_prefix(prefix + t)`` for every token ``t``."""
        return [self.is_viable_prefix(prefix + t) for t in tokens]

    # -- Lark plumbing ---------------------------------------------------------------------------
    def _record_ignored(self, token):
        self._ignored_starts.append(token.start_pos)
        return token

    def _parses(self, text: str) -> bool:
        try:
            self._lark.parse(text)
        except LarkError:
            return False
        return True

    def _prefix_info(self, prefix: str) -> _PrefixInfo | None:
        """Lex and parse ``prefix`` as the start of a text (no $END); None on error."""
        if prefix in self._prefix_cache:
            return self._prefix_cache[prefix]
        ip = self._lark.parse_interactive(prefix)
        try:
            ip.exhaust_lexer()
        except UnexpectedInput:
            info = None
        else:
            info = _PrefixInfo(tuple(ip.parser_state.state_stack), frozenset(ip.accepts()))
        if len(self._prefix_cache) > 200_000:
            self._prefix_cache.clear()
        self._prefix_cache[prefix] = info
        return info

    def _split_points(self, text: str) -> list[int]:
        """Candidate starts k of the lexeme covering the end of ``text`` (condition 1)."""
        self._ignored_starts = []
        starts = {0, len(text)}
        fail = None
        ip = self._lark.parse_interactive(text)
        try:
            for tok in ip.iter_parse():
                starts.add(tok.start_pos)
        except UnexpectedCharacters as e:
            fail = e.pos_in_stream
        except UnexpectedToken as e:
            fail = e.token.start_pos if e.token.start_pos is not None else len(text)
        starts.update(self._ignored_starts)
        limit = len(text) if fail is None else fail
        starts.add(limit)
        return sorted((k for k in starts if 0 <= k <= limit), reverse=True)

    def _sim(self, stack: tuple, term: str):
        """Feed a terminal type to a bare LALR stack (as ParserState.feed_token does)."""
        states = self._states
        st = list(stack)
        is_end = term == "$END"
        while True:
            act = states[st[-1]].get(term)
            if act is None:
                return None
            action, arg = act
            if action is Shift:
                if is_end:  # pragma: no cover - Lark never shifts $END
                    return None
                st.append(arg)
                return tuple(st)
            size = len(arg.expansion)
            if size:
                del st[-size:]
            st.append(states[st[-1]][arg.origin.name][1])
            if is_end and st[-1] == self._end_state:
                return _ACCEPT

    def _sim_accepts(self, stack: tuple) -> set[str]:
        """``InteractiveParser.accepts()`` computed on a bare stack (used for the search)."""
        return {
            t for t in self._states[stack[-1]] if t.isupper() and self._sim(stack, t) is not None
        }

    # -- the lexer model -------------------------------------------------------------------------
    def _program(self, lexer) -> _Regex:
        prog = self._programs.get(id(lexer))
        if prog is None:
            terms = lexer.scanner.terminals  # Lark's own priority order (keywords folded in)
            prog = _Regex([(t.name, t.pattern.to_regexp()) for t in terms])
            prog.owner = lexer
            self._programs[id(lexer)] = prog
        return prog

    def _all_programs(self):
        yield from self._programs.values()
        yield from self._term_regex.values()

    def _state_lexer(self, stack: tuple):
        return self._contextual.lexers[stack[-1]]

    @staticmethod
    def _unless(lexer, group: str):
        cb = lexer.callback.get(group)
        while isinstance(cb, CallChain):
            cb = cb.callback1
        return cb if isinstance(cb, UnlessCallback) else None

    def _retype(self, lexer, group: str, value: str) -> str:
        """The type Lark gives a lexeme ``value`` matched by ``group`` (keyword retyping)."""
        cb = self._unless(lexer, group)
        if cb is not None:
            kw = cb.scanner.fullmatch(value)
            if kw is not None:
                return kw
        return group

    def _tail_types(self, text: str, k: int, stack: tuple) -> set[str]:
        """Terminal types the lexeme starting at k can get if it extends to (or past) the end."""
        lexer = self._state_lexer(stack)
        prog = self._program(lexer)
        items, _best, _maybe = prog.run(text, k)
        types: set[str] = set()
        for kind, x, _unc in items:
            if kind == _MATCH:
                types.add(self._retype(lexer, x, text[k:]))
            elif prog.live[x]:
                group = prog.group_of[x]
                types.add(group)
                cb = self._unless(lexer, group)
                if cb is not None:
                    for kw in cb.scanner.terminals:
                        kitems = self._term_regex[kw.name].run(text, k)[0]
                        if any(kk == _CHAR for kk, _x, _u in kitems):
                            types.add(kw.name)
        return types

    # -- viability -------------------------------------------------------------------------------
    def _necessary(self, text: str) -> Iterator[tuple[int, str | None]]:
        """Each (k, terminal) that passes the necessary conditions, latest k first;
        terminal None means an empty tail."""
        for k in self._split_points(text):
            info = self._prefix_info(text[:k])
            if info is None:
                continue
            if k == len(text):
                if info.accepts:
                    yield k, None
                continue
            ok = self._tail_types(text, k, info.stack) & ((info.accepts - {"$END"}) | self.ignore)
            for t in sorted(ok):
                yield k, t

    def _decide(self, text: str) -> tuple[Verdict, str | None]:
        budget = [_MAX_WITNESS_PARSES]
        passed = False
        for k, term in self._necessary(text):
            passed = True
            if budget[0] > 0:
                rest = self._witness(text, k, term, budget)
                if rest is not None:
                    return Verdict.VIABLE, rest
        return (Verdict.UNKNOWN if passed else Verdict.NOT_VIABLE), None

    # -- witness search --------------------------------------------------------------------------
    def _witness(self, text: str, k: int, term: str | None, budget: list[int]) -> str | None:
        info = self._prefix_info(text[:k])
        assert info is not None
        if term is None:
            lexeme_ends, stack = [""], info.stack
        else:
            lexeme_ends = self._lexeme_completions(text, k, term, info.stack)
            stack = info.stack if term in self.ignore else self._sim(info.stack, term)
            if not lexeme_ends or stack is None:
                return None
        tried: set[str] = set()
        for seq in self._parse_completions(stack):
            words = [self._samples(t, state) for t, state in seq]
            if any(not w for w in words):
                continue
            for pick in (0, 1):
                chosen = [w[min(pick, len(w) - 1)] for w in words]
                for x in lexeme_ends:
                    for sep in self._seps:
                        candidate = text + x + (sep + sep.join(chosen) if chosen else "")
                        if candidate in tried:
                            continue
                        tried.add(candidate)
                        budget[0] -= 1
                        if self._parses(candidate):
                            return candidate[len(text) :]
                        if budget[0] <= 0:
                            return None
        return None

    def _lexeme_completions(self, text: str, k: int, term: str, stack: tuple) -> list[str]:
        """Short strings x such that Lark's lexer, at k, can read ``text[k:] + x`` as ``term``."""
        lexer = self._state_lexer(stack)
        prog = self._program(lexer)
        return self._complete_lexeme(prog, lexer, text, k, term)

    def _complete_lexeme(self, prog: _Regex, lexer, text: str, k: int, term: str) -> list[str]:
        pattern = self._terminals[term].pattern
        if pattern.type == "str":  # a literal (keyword, operator): finish spelling it
            tail, value = text[k:], pattern.value
            same = tail.lower() == value[: len(tail)].lower() if "i" in pattern.flags else None
            if value.startswith(tail) or same:
                return [value[len(tail) :]]
            return []
        alphabet = self._alphabet(prog)
        clean: list[str] = []
        other: list[str] = []
        queue = deque([""])
        seen: set = set()
        nodes = 0
        while queue and nodes < _MAX_LEXEME_NODES and len(clean) < 2:
            x = queue.popleft()
            nodes += 1
            s = text + x
            items = prog.run(s, k)[0]
            relevant = False
            above: set[str | None] = set()  # groups of the threads that outrank a match here
            for kind, v, unc in items:
                if kind == _MATCH:
                    if len(s) > k and self._retype(lexer, v, s[k:]) == term:
                        # "clean": nothing but this lexeme's own longer forms outrank it
                        (clean if above <= {v} and not unc else other).append(x)
                    if not unc:
                        break
                    continue
                group = prog.group_of[v]
                above.add(group)
                if prog.live[v]:
                    cb = self._unless(lexer, group)
                    if group == term or (cb is not None and term in cb.scanner.allowed_types):
                        relevant = True
            if not relevant or len(x) >= _MAX_LEXEME_EXTRA:
                continue
            key = (tuple(items), x[-1:] if prog.has_lookbehind else "")
            if key in seen:
                continue
            seen.add(key)
            queue.extend(x + c for c in alphabet)
        return (clean + other)[:3]

    def _alphabet(self, prog: _Regex) -> list[str]:
        alpha = prog.alphabet
        if alpha is None:
            chosen: dict[str, None] = {}
            for ins in prog.code:
                if ins[0] != _CHAR:
                    continue
                hits = [c for c in _POOL if ins[1](c)][:2]
                for c in hits:
                    chosen[c] = None
            alpha = prog.alphabet = list(chosen)
        return alpha

    def _samples(self, term: str, state) -> list[str]:
        """Short lexemes that the lexer of LALR state ``state`` reads as ``term``."""
        key = (term, state)
        if key not in self._sample_cache:
            lexer = self._contextual.lexers[state]
            prog = self._program(lexer)
            self._sample_cache[key] = self._complete_lexeme(prog, lexer, "", 0, term)
        return self._sample_cache[key]

    def _parse_completions(self, stack: tuple) -> list[tuple[tuple[str, int], ...]]:
        """A few short terminal sequences taking the LALR stack to $END.

        Best-first search on (sequence length + stack height), so closing many open brackets
        is found quickly; each step is ``(terminal, state whose lexer must read it)``.
        """
        if stack in self._completion_cache:
            return self._completion_cache[stack]
        results: list[tuple[tuple[str, int], ...]] = []
        heap: list = [(len(stack), 0, stack, ())]
        seen = {stack}
        nodes = 0
        counter = 0
        limit = _MAX_PARSE_NODES
        while heap and nodes < limit and len(results) < 3:
            _prio, _n, st, seq = heapq.heappop(heap)
            nodes += 1
            if self._sim(st, "$END") is _ACCEPT:
                results.append(seq)
                limit = min(limit, nodes + 200)  # a few alternatives, but do not go looking far
            for t in sorted(self._states[st[-1]]):
                if not t.isupper() or t == "$END":
                    continue
                nxt = self._sim(st, t)
                if nxt is None or nxt in seen:
                    continue
                seen.add(nxt)
                counter += 1
                heapq.heappush(heap, (len(seq) + 1 + len(nxt), counter, nxt, seq + ((t, st[-1]),)))
        self._completion_cache[stack] = results
        return results

    # -- incomplete UTF-8 characters -------------------------------------------------------------
    def _representatives(self, partial: bytes) -> list[str]:
        """One code point per class of characters (with this UTF-8 prefix) that no character
        class used by the grammar's regexes tells apart."""
        lo, hi = _utf8_partial_range(partial)  # type: ignore[misc]
        key = (lo, hi)
        if key not in self._rep_cache:
            chars = "".join(map(chr, range(lo, hi + 1)))
            masks = []
            for p in self._preds:
                replaced = p.sub("\x00", chars)  # lo >= 0x80, so NUL marks exactly the members
                codes = np.frombuffer(replaced.encode("utf-32-le"), dtype=np.uint32)
                masks.append(codes == 0)
            if masks:
                packed = np.packbits(np.stack(masks, axis=1), axis=1)
                rows = np.ascontiguousarray(packed).view(
                    np.dtype((np.void, packed.dtype.itemsize * packed.shape[1]))
                )
                _, first = np.unique(rows.ravel(), return_index=True)
                reps = [chr(lo + int(i)) for i in sorted(first)]
            else:
                reps = [chr(lo)]
            self._rep_cache[key] = reps
        return self._rep_cache[key]
