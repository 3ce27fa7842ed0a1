"""Contextual lexers: for each LALR state, one DFA over the terminals that state can accept.

Lark's contextual lexer only tries the terminals the parser can take next (plus ``%ignore``d
ones), so ``if`` is a keyword where a keyword fits and a name where only a name fits. Each
distinct terminal set gets one combined DFA, the product of its terminals' byte DFAs, built on
first use. A combined state records which terminal wins if the lexeme ends there (longest match;
at equal length the higher priority, then a string literal over a regex, then Lark's order) and
which terminals can still be completed from it.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from .errors import GrammarError
from .grammar import Grammar
from .postlex import NewlineSemicolons, PythonIndenter
from .regex_dfa import ByteDFA, literal_to_dfa, regex_to_dfa

MAX_CONTEXT_STATES = 200_000


@dataclass(frozen=True)
class ContextDFA:
    """Combined DFA of one terminal set. State 0 is the start of a lexeme; -1 is dead."""

    terminals: tuple[int, ...]  # terminal ids in this context
    transitions: np.ndarray  # int32 [n_states, 256]
    winner: np.ndarray  # int32 [n_states]: terminal id matched if the lexeme ends here, or -1
    alive: np.ndarray  # bool [n_states, n_terminals]: terminal still completable from here
    final_only: np.ndarray  # bool [n_states]: a lexeme ends here and cannot grow

    @property
    def n_states(self) -> int:
        return int(self.transitions.shape[0])

    @property
    def is_final_only(self) -> np.ndarray:
        """bool [n_states]: a lexeme ends here and no byte can extend it."""
        return self.final_only


_NOTHING = ByteDFA(transitions=np.full((1, 256), -1, dtype=np.int32),
                   accepting=np.zeros(1, dtype=bool))


def _context_terminal_sets(grammar: Grammar, ignored: frozenset[int]) -> list[frozenset[int]]:
    """Per LALR state, the terminals its lexer tries: the ones the parser has an action for,
    plus the ignored ones, adjusted for the grammar's post-lexer.

    ``PythonIndenter``: the newline lexes everywhere (inside brackets it is dropped, so the
    parser need not take it). ``NewlineSemicolons``: right after a terminal that ends a statement
    the newline is the statement terminator (lexed even where the parser rejects it, which
    is then an error, as in Go); elsewhere only its whitespace twin lexes.
    """
    declared = {i for i, t in enumerate(grammar.terminals) if t.is_declared}
    names = {t.name: i for i, t in enumerate(grammar.terminals)}
    postlex = grammar.postlex
    sets = []
    access = grammar.accessing_terminals() if isinstance(postlex, NewlineSemicolons) else None
    for s in range(grammar.n_states):
        key = (set(grammar.acceptable_terminals(s)) - declared) | ignored
        if isinstance(postlex, PythonIndenter):
            key.add(names[postlex.newline])
        elif isinstance(postlex, NewlineSemicolons):
            nl = names[postlex.newline]
            twin = names[f"{postlex.newline}(as whitespace)"]
            if access[s] >= 0 and grammar.terminals[access[s]].name in postlex.after:
                key.add(nl)
                key.discard(twin)
            else:
                key.discard(nl)
        sets.append(frozenset(key))
    return sets


class LexerContexts:
    """Terminal DFAs and the lazily built combined DFA of each LALR state's terminal set."""

    def __init__(self, grammar: Grammar, *, prebuilt: list[ContextDFA] | None = None) -> None:
        self.grammar = grammar
        self.terminal_dfas: list[ByteDFA] = []
        if prebuilt is None:
            for t in grammar.terminals:
                if t.is_declared:  # never lexed: a post-lexer makes it
                    self.terminal_dfas.append(_NOTHING)
                    continue
                try:
                    self.terminal_dfas.append(literal_to_dfa(t.literal) if t.literal
                                              else regex_to_dfa(t.regex))
                except GrammarError as exc:
                    raise type(exc)(f"terminal {t.name}: {exc.detail}") from exc
        ignored = {i for i, t in enumerate(grammar.terminals) if t.is_ignored}
        self.ignored = frozenset(ignored)
        keys: dict[frozenset[int], int] = {}
        state_context = np.zeros(grammar.n_states, dtype=np.int32)
        for s, key in enumerate(_context_terminal_sets(grammar, self.ignored)):
            state_context[s] = keys.setdefault(key, len(keys))
        self.state_context = state_context
        self.context_terminals: list[tuple[int, ...]] = [tuple(sorted(k)) for k in keys]
        self._built: dict[int, ContextDFA] = dict(enumerate(prebuilt or ()))
        self._any: ContextDFA | bool | None = None
        if prebuilt is not None and len(prebuilt) != len(self.context_terminals):
            raise GrammarError("saved lexer contexts do not match the grammar")
        # tie-break key when several terminals match the same longest lexeme
        self._order = [(-t.priority, not t.is_literal, t.rank) for t in grammar.terminals]

    def any_context(self) -> ContextDFA | None:
        """The lexer over every terminal (for context expansion in the mask cache); None when
        it would be too large or the terminal DFAs are not at hand (a loaded grammar)."""
        if self._any is None and self.terminal_dfas:
            try:
                self._any = self._build(tuple(i for i, t in enumerate(self.grammar.terminals)
                                              if not t.is_declared))
            except GrammarError:
                self._any = False
        return self._any or None

    @property
    def n_contexts(self) -> int:
        return len(self.context_terminals)

    def context_of_state(self, state: int) -> int:
        return int(self.state_context[state])

    def dfa(self, context: int) -> ContextDFA:
        found = self._built.get(context)
        if found is None:
            found = self._build(self.context_terminals[context])
            self._built[context] = found
        return found

    def _build(self, terms: tuple[int, ...]) -> ContextDFA:
        dfas = [self.terminal_dfas[t] for t in terms]
        n_terms = self.grammar.n_terminals
        start = tuple(0 if d.n_states and (d.transitions[0] >= 0).any() or d.accepting[0] else -1
                      for d in dfas)
        index = {start: 0}
        order = [start]
        rows: list[np.ndarray] = []
        queue = deque([start])
        dead = np.full(256, -1, dtype=np.int64)
        while queue:
            st = queue.popleft()
            comps = np.stack([d.transitions[s].astype(np.int64) if s >= 0 else dead
                              for d, s in zip(dfas, st, strict=True)]) if dfas else np.empty((0, 256))
            row = np.full(256, -1, dtype=np.int32)
            cols = comps.T  # [256, n_terms_in_ctx]
            alive_cols = (cols >= 0).any(axis=1)
            for b in np.flatnonzero(alive_cols):
                nxt = tuple(int(x) for x in cols[b])
                j = index.get(nxt)
                if j is None:
                    j = len(order)
                    if j >= MAX_CONTEXT_STATES:
                        raise GrammarError(
                            f"the lexer for terminals {[self.grammar.terminals[t].name for t in terms]} "
                            f"needs over {MAX_CONTEXT_STATES} states; simplify overlapping terminals")
                    index[nxt] = j
                    order.append(nxt)
                    queue.append(nxt)
                row[b] = j
            rows.append(row)
        transitions = np.stack(rows).astype(np.int32)
        winner = np.full(len(order), -1, dtype=np.int32)
        alive = np.zeros((len(order), n_terms), dtype=bool)
        for i, st in enumerate(order):
            matched = [t for t, d, s in zip(terms, dfas, st, strict=True) if s >= 0 and d.accepting[s]]
            if matched:
                winner[i] = min(matched, key=lambda t: self._order[t])
            for t, s in zip(terms, st, strict=True):
                if s >= 0:
                    alive[i, t] = True
        final_only = (winner >= 0) & (transitions < 0).all(axis=1)
        return ContextDFA(terminals=terms, transitions=transitions, winner=winner, alive=alive,
                          final_only=final_only)
