"""Contextual lexers: for each LALR state, one DFA over the terminals that state can accept.

Lark's contextual lexer only tries the terminals the parser can take next (plus ``%ignore``d
ones), so ``if`` is a keyword where a keyword fits and a name where only a name fits. Each
distinct terminal set gets one combined DFA, the product of its terminals' byte DFAs, built on
first use. A combined state records which terminal wins if the lexeme ends there (longest match;
at equal length the higher priority, then a string literal over a regex, then Lark's order) and
which terminals can still be completed from it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import _native
from .errors import GrammarError
from .grammar import Grammar
from .postlex import NewlineSemicolons, PythonIndenter
from .regex_dfa import ByteDFA, literal_to_dfa, regex_to_dfa

MAX_CONTEXT_STATES = 200_000
_BATCH = 64  # product states expanded per numpy step


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


_HASH = np.random.default_rng(20261123).integers(1, 2**63, size=4096, dtype=np.uint64) | 1


def _unique_rows(cols: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``np.unique(cols, axis=0, return_index=True, return_inverse=True)``, fast: rows are
    grouped by a 64-bit hash, and the grouping is checked exactly (falling back on a clash)."""
    k = cols.shape[1]
    if k <= len(_HASH):
        with np.errstate(over="ignore"):
            h = (cols.astype(np.uint64) * _HASH[:k]).sum(axis=1)
        _, first, inverse = np.unique(h, return_index=True, return_inverse=True)
        uniq = cols[first]
        if np.array_equal(uniq[inverse], cols):
            return uniq, first, inverse
    return np.unique(cols, axis=0, return_index=True, return_inverse=True)


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
        self._table: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self._term_classes: dict[int, np.ndarray] = {}
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

    def _all_terminals_table(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every terminal DFA in one table of global state ids (row 0: the dead state), so a
        combined state's successors over all 256 bytes are one fancy-indexing step."""
        if self._table is None:
            offsets = np.zeros(len(self.terminal_dfas) + 1, dtype=np.int64)
            rows = [np.zeros((1, 256), dtype=np.int32)]
            accepting = [np.zeros(1, dtype=bool)]
            total = 1
            for t, d in enumerate(self.terminal_dfas):
                offsets[t] = total
                rows.append(np.where(d.transitions >= 0, d.transitions + total, 0).astype(np.int32))
                accepting.append(np.asarray(d.accepting, dtype=bool))
                total += d.n_states
            offsets[-1] = total
            self._table = (np.concatenate(rows), np.concatenate(accepting), offsets)
        return self._table

    def _terminal_byte_classes(self, t: int) -> np.ndarray:
        """Per byte, its class for terminal ``t`` alone (bytes with the same successor from
        every state of ``t``), computed once per terminal: a grammar's contexts share most
        of their terminals."""
        found = self._term_classes.get(t)
        if found is None:
            table, _, offsets = self._all_terminals_table()
            cols = np.ascontiguousarray(table[offsets[t]:offsets[t + 1]].T)
            found = self._term_classes[t] = _unique_rows(cols)[2].reshape(-1)
        return found

    def _byte_classes(self, terms: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
        """Bytes that every terminal of ``terms`` treats alike (the same successor from each
        of their states) form a class; a product state's successors are computed once per
        class. Returns each class's smallest byte, in byte order (so new states are still
        met in byte order), and each byte's class."""
        if not terms:
            return np.zeros(1, dtype=np.int64), np.zeros(256, dtype=np.int64)
        # two bytes are alike for the set when they are alike for each terminal
        per_terminal = np.stack([self._terminal_byte_classes(t) for t in terms], axis=1)
        _, first, inverse = _unique_rows(np.ascontiguousarray(per_terminal))
        by_byte = np.argsort(first)
        rank = np.empty(len(first), dtype=np.int64)
        rank[by_byte] = np.arange(len(first))
        return first[by_byte], rank[inverse.reshape(-1)]

    def _build(self, terms: tuple[int, ...]) -> ContextDFA:
        """The product DFA of ``terms`` (breadth-first from the start, natively; the twin is
        :func:`_product_python`). A combined state is the vector of the terminals'
        global states (0 where a terminal died); bytes with the same successor vector are
        handled once."""
        table, accepting, offsets = self._all_terminals_table()
        n_terms = self.grammar.n_terminals
        starts = []
        for t in terms:
            d = self.terminal_dfas[t]
            alive = d.n_states and ((d.transitions[0] >= 0).any() or d.accepting[0])
            starts.append(int(offsets[t]) if alive else 0)
        start = np.array(starts, dtype=np.int32)
        rep, class_of = self._byte_classes(terms)
        built = _native.product_dfa(table, rep, class_of, start, MAX_CONTEXT_STATES)
        if built is None:
            raise GrammarError(
                f"the lexer for terminals {[self.grammar.terminals[t].name for t in terms]} "
                f"needs over {MAX_CONTEXT_STATES} states; simplify overlapping terminals")
        states, transitions = built
        term_ids = np.array(terms, dtype=np.int64)
        live = states > 0
        matched = accepting[states] & live
        winner = np.full(len(states), -1, dtype=np.int32)
        # the winner is the matched terminal that comes first in Lark's order
        by_rank = np.empty(len(terms), dtype=np.int64)
        by_rank[sorted(range(len(terms)), key=lambda i: self._order[terms[i]])] = \
            np.arange(len(terms))
        some = matched.any(axis=1)
        if some.any():
            first = np.where(matched[some], by_rank, len(terms)).argmin(axis=1)
            winner[some] = term_ids[first]
        alive = np.zeros((len(states), n_terms), dtype=bool)
        if len(terms):
            alive[:, term_ids] = live
        final_only = (winner >= 0) & (transitions < 0).all(axis=1)
        return ContextDFA(terminals=terms, transitions=transitions, winner=winner, alive=alive,
                          final_only=final_only)


def _product_python(table: np.ndarray, rep: np.ndarray, class_of: np.ndarray, start: np.ndarray,
                    max_states: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Python twin of ``_native.product_dfa``: the product states (int32 [n, k]) and their
    transitions (int32 [n, 256], -1 dead), breadth first with successors in byte order; None
    past ``max_states`` states. A batch of states is expanded per numpy step."""
    index = {start.tobytes(): 0}
    order = [start]
    rows: dict[int, np.ndarray] = {}
    frontier = [0]
    n_classes, k = len(rep), len(start)
    while frontier:
        batch, frontier = frontier[:_BATCH], frontier[_BATCH:]
        vecs = np.stack([order[i] for i in batch])  # [B, k]
        cols = table[vecs][:, :, rep].transpose(0, 2, 1).reshape(len(batch) * n_classes, k)
        uniq, first, inverse = _unique_rows(cols)
        targets = np.full(len(uniq), -1, dtype=np.int32)
        live = uniq.any(axis=1)  # rows where every terminal died are the dead state
        for u in np.argsort(first):  # number new states in byte order, as a plain BFS would
            if not live[u]:
                continue
            vec = uniq[u]
            key = vec.tobytes()
            j = index.get(key)
            if j is None:
                j = len(order)
                if j >= max_states:
                    return None
                index[key] = j
                order.append(vec)
                frontier.append(j)
            targets[u] = j
        block = targets[inverse.reshape(-1)].reshape(len(batch), n_classes)[:, class_of]
        for i, state in enumerate(batch):
            rows[state] = block[i]
    transitions = np.stack([rows[i] for i in range(len(order))]).astype(np.int32)
    return np.stack(order).astype(np.int32), transitions
