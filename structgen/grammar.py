"""Lark grammar text to structgen's grammar IR: terminals, ignore set, and LALR(1) tables.

Lark is the oracle of what a grammar means, so its own loader and LALR analysis are used: the
grammar is built once as ``Lark(text, parser="lalr", lexer="contextual")`` (which also resolves
``%import``, templates, ``?rule`` inlining and aliases) and its parse table is copied into dense
integer arrays that the matchers (Python reference and native) walk.

Action encoding in ``action[state, terminal]``: ``0`` error, ``s + 1`` shift to state ``s``,
``-(r + 1)`` reduce by rule ``r``. Terminal id ``n_terminals`` is end of input (``$END``).
"""

from __future__ import annotations

import logging
import re
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources

import lark
import numpy as np
from lark.exceptions import GrammarError as LarkGrammarError
from lark.exceptions import LarkError, UnexpectedCharacters, UnexpectedInput, UnexpectedToken
from lark.lexer import PatternStr
from lark.parsers.lalr_analysis import Shift

from .errors import GrammarError, RegexError
from .postlex import NewlineSemicolons, Postlex, PythonIndenter, check_postlex

logger = logging.getLogger("structgen")

BUILTIN_GRAMMARS = ("json", "sql", "python", "go")

# Go inserts a semicolon at a line break after these tokens (the Go spec, "Semicolons");
# the names are grammars/go.lark's.
GO_SEMICOLON_AFTER: tuple[str, ...] = (
    "IDENT", "INT", "FLOAT", "IMAG", "RUNE", "STRING", "RAW_STRING",
    "BREAK", "CONTINUE", "FALLTHROUGH", "RETURN", "INC", "DEC", "RPAREN", "RBRACK", "RBRACE",
)


@dataclass(frozen=True)
class Terminal:
    """One lexeme kind: its regex (Python syntax, flags inlined) and lexing priority."""

    name: str
    regex: str
    priority: int
    is_literal: bool  # a string literal in the grammar (wins ties against regexes, as in Lark)
    is_ignored: bool
    rank: int  # position in Lark's lexer order (priority, max width, pattern length, name)
    literal: str | None = None  # the exact text, for a string literal without flags
    is_declared: bool = False  # %declare'd: only a post-lexer makes it (never lexed)


@dataclass(frozen=True)
class Grammar:
    """A grammar ready for compiling: what Lark built, flattened into arrays."""

    source: str
    start: str
    terminals: tuple[Terminal, ...]
    action: np.ndarray  # int32 [n_states, n_terminals + 1]
    goto: np.ndarray  # int32 [n_states, n_nonterminals], -1 = none
    rule_lhs: np.ndarray  # int32 [n_rules]
    rule_len: np.ndarray  # int32 [n_rules]
    rule_names: tuple[str, ...]  # the rule's origin name, per rule
    nonterminal_names: tuple[str, ...]
    start_state: int
    end_state: int
    postlex: Postlex | None = None  # run inside the matcher (structgen.postlex)
    # the PythonIndenter's state can be read off the parser stack: every rule opens and closes
    # its own brackets and indentation levels (so the native engine can run it)
    postlex_on_stack: bool = False

    @property
    def n_terminals(self) -> int:
        return len(self.terminals)

    @property
    def end_terminal(self) -> int:
        """Terminal id used for end of input."""
        return len(self.terminals)

    @property
    def n_states(self) -> int:
        return int(self.action.shape[0])

    def terminal_id(self, name: str) -> int:
        for i, t in enumerate(self.terminals):
            if t.name == name:
                return i
        raise KeyError(name)

    def acceptable_terminals(self, state: int) -> tuple[int, ...]:
        """Terminals with an action in ``state`` (LALR lookaheads; may reject after reducing)."""
        row = self.action[state, : self.n_terminals]
        return tuple(int(i) for i in np.flatnonzero(row))

    def accessing_terminals(self) -> np.ndarray:
        """int32 [n_states]: the terminal shifted to enter each state, or -1 (entered by a goto
        or the start). In an LR automaton every state has one accessing symbol."""
        access = np.full(self.n_states, -1, dtype=np.int32)
        states, terms = np.nonzero(self.action[:, : self.n_terminals] > 0)
        access[self.action[states, terms] - 1] = terms
        return access

    @classmethod
    def from_lark(cls, text: str, *, start: str = "start",
                  postlex: Postlex | None = None) -> Grammar:
        """Build from Lark grammar text; a :class:`GrammarError` names line and column.

        ``postlex`` is a :class:`structgen.postlex.PythonIndenter` or
        :class:`~structgen.postlex.NewlineSemicolons`, run exactly inside the matcher.
        """
        parser = _build_lark(text, start)
        return _from_lark_instance(parser, text, start, postlex)

    @classmethod
    def builtin(cls, name: str) -> Grammar:
        """One of the grammars shipped in ``structgen.grammars`` (see ``BUILTIN_GRAMMARS``)."""
        return cls.from_lark(builtin_grammar_text(name), start=builtin_start(name),
                             postlex=builtin_postlex(name))

    @classmethod
    def from_json_schema(cls, schema, *, strict: bool = False, whitespace: str = "flexible",
                         indent: int | None = None, separators: tuple[str, str] | None = None,
                         max_whitespace: int = 64, lenient: bool = False) -> Grammar:
        """The grammar of the JSON documents ``schema`` (a dict, a bool or JSON text) accepts.

        Options as for ``GrammarCompiler.compile_json_schema`` (see :mod:`structgen.json_schema`);
        a keyword it cannot enforce raises :class:`UnsupportedFeatureError` naming the keyword
        and its JSON pointer, or with ``lenient=True`` warns and is ignored.
        """
        from .json_schema import json_schema_grammar

        return json_schema_grammar(schema, strict=strict, whitespace=whitespace, indent=indent,
                                   separators=separators, max_whitespace=max_whitespace,
                                   lenient=lenient)


def builtin_start(name: str) -> str:
    """The start rule of a built-in grammar."""
    return "file_input" if name == "python" else "start"


def builtin_postlex(name: str) -> Postlex | None:
    """The post-lexer a built-in grammar is written for."""
    if name == "python":
        return PythonIndenter()
    if name == "go":
        return NewlineSemicolons(after=GO_SEMICOLON_AFTER)
    return None


def builtin_grammar_text(name: str) -> str:
    if name not in BUILTIN_GRAMMARS:
        raise GrammarError(f"no built-in grammar {name!r}; choose one of {', '.join(BUILTIN_GRAMMARS)}")
    return resources.files("structgen.grammars").joinpath(f"{name}.lark").read_text("utf-8")


class _AnalysisOnlyLexer(lark.lexer.Lexer):
    """Stands in for Lark's lexer: structgen lexes with its own DFAs and only needs Lark's
    grammar loading and LALR analysis, so Lark's regex compilation and collision checks
    (seconds on big grammars) are skipped."""

    def __init__(self, lexer_conf) -> None:
        self.lexer_conf = lexer_conf

    def lex(self, lexer_state, parser_state):  # pragma: no cover - never used for parsing
        raise NotImplementedError("structgen's Lark instance is for analysis only")


_LARK_LOCK = threading.Lock()


@contextmanager
def _without_collision_checks():
    """Lark checks every lexer's terminals for regex collisions with interegular when it is
    installed (which structgen needs). The check only warns, and for Lark's own grammar-of-
    grammars it costs ~0.3 s on the first grammar of each process; structgen lexes with its
    own DFAs, so the check is switched off while Lark analyses a grammar."""
    import lark.lexer as lark_lexer

    with _LARK_LOCK:
        saved = getattr(lark_lexer, "has_interegular", False)
        lark_lexer.has_interegular = False
        try:
            yield
        finally:
            lark_lexer.has_interegular = saved


def _build_lark(text: str, start: str) -> lark.Lark:
    if not isinstance(text, str):
        raise GrammarError(f"grammar text must be a str, got {type(text).__name__}")
    try:
        with _without_collision_checks():
            return lark.Lark(text, parser="lalr", lexer=_AnalysisOnlyLexer, start=start)
    except UnexpectedInput as exc:
        line, column = getattr(exc, "line", None), getattr(exc, "column", None)
        what = _describe_unexpected(exc)
        raise GrammarError(f"grammar syntax error: {what}", line=line, column=column,
                           source=text) from exc
    except LarkGrammarError as exc:
        raise GrammarError(_describe_grammar_error(str(exc), text), **_place_of(str(exc), text),
                           source=text) from exc
    except LarkError as exc:
        raise GrammarError(f"invalid grammar: {exc}", **_place_of(str(exc), text),
                           source=text) from exc
    except KeyError as exc:  # lark raises a bare KeyError for some undefined names
        raise GrammarError(f"invalid grammar: undefined name {exc}", **_place_of(str(exc), text),
                           source=text) from exc
    except Exception as exc:  # e.g. a regex error raised while Lark measures a terminal
        raise GrammarError(f"invalid grammar: {type(exc).__name__}: {exc}",
                           **_place_of(str(exc), text), source=text) from exc


def _describe_unexpected(exc: UnexpectedInput) -> str:
    if isinstance(exc, UnexpectedCharacters):
        return f"unexpected character {exc.char!r}"
    if isinstance(exc, UnexpectedToken):
        return f"unexpected {exc.token!r}"
    return str(exc).splitlines()[0]


def _describe_grammar_error(message: str, text: str) -> str:
    first = message.strip().splitlines()[0] if message.strip() else "invalid grammar"
    if "Reduce/Reduce" in message:
        return ("grammar is not LALR(1): " + first +
                " (two rules can end at the same place with the same lookahead; "
                "rewrite one of them)\n" + message)
    if "Shift/Reduce" in message:
        return "grammar is not LALR(1): " + message
    return first if len(message) < 400 else first + " ..."


def _place_of(message: str, text: str) -> dict:
    """Find where a name from an error message is defined (else first used) in the grammar."""
    names = re.findall(r"'([A-Za-z_][A-Za-z_0-9]*)'", message) + re.findall(
        r"\b([A-Za-z_][A-Za-z_0-9]*)\b", message.split(":")[-1])
    lines = text.splitlines()
    for name in names:
        for lineno, line in enumerate(lines, start=1):
            m = re.match(rf"\s*[?!]?({re.escape(name)})(\.\d+)?\s*:", line)
            if m:
                return {"line": lineno, "column": m.start(1) + 1}
    for name in names:
        for lineno, line in enumerate(lines, start=1):
            col = line.find(name)
            if col >= 0 and not line.lstrip().startswith("//"):
                return {"line": lineno, "column": col + 1}
    return {}


def _from_lark_instance(parser: lark.Lark, text: str, start: str,
                        postlex: Postlex | None = None) -> Grammar:
    ignore = set(parser.lexer_conf.ignore)
    lark_terms = list(parser.terminals)
    for t in lark_terms:
        try:
            re.compile(t.pattern.to_regexp())
        except (re.error, OverflowError, RecursionError) as exc:
            raise RegexError(f"terminal {t.name}: invalid regex {t.pattern.to_regexp()!r}: {exc}",
                             **_place_of(f"'{t.name}'", text), source=text) from exc
    if any(t.pattern.min_width == 0 for t in lark_terms):
        bad = [t.name for t in lark_terms if t.pattern.min_width == 0]
        raise GrammarError(f"terminals {bad} can match the empty string", source=text)
    lark_order = sorted(lark_terms, key=lambda x: (-x.priority, -x.pattern.max_width,
                                                   -len(x.pattern.value), x.name))
    rank = {t.name: i for i, t in enumerate(lark_order)}
    terminals = tuple(
        Terminal(name=t.name, regex=t.pattern.to_regexp(), priority=t.priority,
                 is_literal=isinstance(t.pattern, PatternStr), is_ignored=t.name in ignore,
                 rank=rank[t.name],
                 literal=t.pattern.value if isinstance(t.pattern, PatternStr)
                 and not t.pattern.flags else None)
        for t in lark_terms)
    table = parser.parser.parser._parse_table
    states = table.states
    n_states = max(states) + 1
    rules = list(parser.rules)
    rule_index = {r: i for i, r in enumerate(rules)}
    nonterminals = sorted({r.origin.name for r in rules})
    defined = {t.name for t in terminals}
    declared = sorted({sym for acts in states.values() for sym in acts}
                      - defined - set(nonterminals) - {"$END"})
    check_postlex(postlex, defined, set(declared))
    terminals += tuple(Terminal(name=n, regex="", priority=0, is_literal=False, is_ignored=False,
                                rank=len(terminals) + i, is_declared=True)
                       for i, n in enumerate(declared))
    if isinstance(postlex, NewlineSemicolons):
        # the newline's second reading: whitespace, where no semicolon is inserted
        nl = next(t for t in terminals if t.name == postlex.newline)
        terminals += (Terminal(name=f"{nl.name}(as whitespace)", regex=nl.regex,
                               priority=nl.priority, is_literal=nl.is_literal, is_ignored=True,
                               rank=nl.rank, literal=nl.literal),)
    term_index = {t.name: i for i, t in enumerate(terminals)}
    nt_index = {n: i for i, n in enumerate(nonterminals)}
    action = np.zeros((n_states, len(terminals) + 1), dtype=np.int32)
    goto = np.full((n_states, len(nonterminals)), -1, dtype=np.int32)
    for s, acts in states.items():
        for sym, (kind, arg) in acts.items():
            if sym == "$END":
                col = len(terminals)
            elif sym in term_index:
                col = term_index[sym]
            elif sym in nt_index:
                if kind is not Shift:
                    raise GrammarError(f"unexpected reduce on nonterminal {sym}")
                goto[s, nt_index[sym]] = arg
                continue
            else:  # pragma: no cover - every symbol is a terminal, nonterminal or $END
                raise GrammarError(f"unknown symbol {sym} in Lark's parse table")
            if kind is Shift:
                action[s, col] = arg + 1
            else:
                action[s, col] = -(rule_index[arg] + 1)
    rule_lhs = np.array([nt_index[r.origin.name] for r in rules], dtype=np.int32)
    rule_len = np.array([len(r.expansion) for r in rules], dtype=np.int32)
    start_state, end_state = int(table.start_states[start]), int(table.end_states[start])
    action, goto, (start_state, end_state) = _renumber_states(action, goto,
                                                              (start_state, end_state))
    return Grammar(
        source=text, start=start, terminals=terminals, action=action, goto=goto,
        rule_lhs=rule_lhs, rule_len=rule_len,
        rule_names=tuple(str(r.origin.name) for r in rules),
        nonterminal_names=tuple(str(n) for n in nonterminals),
        start_state=start_state, end_state=end_state,
        postlex=postlex, postlex_on_stack=_nests_within_rules(rules, postlex, start))


def _renumber_states(action: np.ndarray, goto: np.ndarray,
                     named: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray, tuple[int, ...]]:
    """Number the LALR states breadth first from the first of ``named`` (successors by shift
    terminal, then by goto nonterminal, in column order), so the same grammar gets the same
    tables in every process: Lark numbers its states in the order of a set of item sets that
    hash by identity. Returns the renumbered tables and ``named`` states."""
    n = action.shape[0]
    new_of = np.full(n, -1, dtype=np.int64)
    order: list[int] = []
    for root in (*named, *range(n)):  # the unreachable (if any) after, in Lark's order
        if new_of[root] >= 0:
            continue
        new_of[root] = len(order)
        order.append(root)
        i = len(order) - 1
        while i < len(order):
            s = order[i]
            shifts = action[s][action[s] > 0] - 1
            for t in np.concatenate([shifts, goto[s][goto[s] >= 0]]).tolist():
                if new_of[t] < 0:
                    new_of[t] = len(order)
                    order.append(t)
            i += 1
    idx = np.array(order, dtype=np.int64)
    action, goto = action[idx], goto[idx]
    shift = action > 0
    action[shift] = new_of[action[shift] - 1] + 1
    moves = goto >= 0
    goto[moves] = new_of[goto[moves]]
    return action, goto, tuple(int(new_of[s]) for s in named)


def _nests_within_rules(rules, postlex, start: str) -> bool:
    """Does every rule a parse can use close the brackets and indentation levels it opens, in
    order? Then the open ones are exactly the shifted opening terminals still on the parser
    stack.

    An alternative of the start rule that begins with ``_INDENT`` is never used (the indenter
    emits a line break before any indentation; grammars use such alternatives to add lookahead
    to states), so the rules only it reaches are not checked.
    """
    if not isinstance(postlex, PythonIndenter):
        return False
    by_origin: dict[str, list] = {}
    for rule in rules:
        by_origin.setdefault(str(rule.origin.name), []).append(rule)
    used, todo = [], [start]
    seen = {start}
    while todo:
        name = todo.pop()
        for rule in by_origin.get(name, ()):
            names = [str(sym.name) for sym in rule.expansion]
            if name == start and names[:1] == [postlex.indent]:
                continue
            used.append(rule)
            for sym in rule.expansion:
                if not sym.is_term and str(sym.name) not in seen:
                    seen.add(str(sym.name))
                    todo.append(str(sym.name))
    pairs = [(set(postlex.open_brackets), set(postlex.close_brackets)),
             ({postlex.indent}, {postlex.dedent})]
    for rule in used:
        names = [str(sym.name) for sym in rule.expansion]
        for opens, closes in pairs:
            depth = 0
            for name in names:
                depth += (name in opens) - (name in closes)
                if depth < 0:
                    return False
            if depth:
                return False
    return True
