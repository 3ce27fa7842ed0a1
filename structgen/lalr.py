"""LALR(1) parse tables for a plain BNF grammar, built without Lark.

The JSON Schema front end writes machine-made BNF (named rules of plain symbol sequences, named
terminals). Having Lark parse that text and analyse it with an object per LR item cost most of a
schema's compile; this module builds the same automaton from integer items:

* LR(0) states from kernels of ``(rule, dot)`` items, closures taken per nonterminal;
* lookaheads by DeRemer and Pennello's relations (reads, includes, lookback), with the two
  digraph passes done as one strongly-connected-components pass each;
* conflicts resolved as Lark resolves them: shift/reduce in favour of the shift (reported to the
  caller, who decides whether that is acceptable), reduce/reduce an error.

Lark stays the oracle: ``tests/test_lalr.py`` compares these tables with Lark's on the built-in
grammars' shapes and on generated schema grammars.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import GrammarError

__all__ = ["BnfRule", "LalrTables", "ReduceReduceConflict", "lalr_tables"]


@dataclass(frozen=True)
class BnfRule:
    """``lhs -> rhs``: a nonterminal id and a sequence of symbols. Terminal ``t`` is ``t``
    (``0 <= t < n_terminals``); nonterminal ``n`` is ``~n`` (negative)."""

    lhs: int
    rhs: tuple[int, ...]


@dataclass
class LalrTables:
    """Tables in :class:`structgen.grammar.Grammar`'s encoding (``action``: 0 error, ``s + 1``
    shift, ``-(r + 1)`` reduce by rule ``r``; column ``n_terminals`` is end of input; ``goto``:
    -1 none), states numbered breadth first from the start (successors by terminal, then by
    nonterminal, in column order), as ``grammar._renumber_states`` numbers Lark's."""

    action: np.ndarray
    goto: np.ndarray
    start_state: int
    end_state: int
    shift_reduce: list[tuple[int, int]]  # (terminal, rule) reductions dropped for a shift


def lalr_tables(rules: list[BnfRule], n_terminals: int, n_nonterminals: int,
                start: int) -> LalrTables:
    """LALR(1) tables of ``rules`` for start nonterminal ``start``.

    Raises :class:`GrammarError` on a reduce/reduce conflict; shift/reduce conflicts are
    resolved as shifts and listed in ``shift_reduce``.
    """
    return _Analysis(rules, n_terminals, n_nonterminals, start).tables()


class _Analysis:
    def __init__(self, rules: list[BnfRule], n_terminals: int, n_nonterminals: int,
                 start: int) -> None:
        self.n_t = n_terminals
        self.end = n_terminals  # end of input, shifted by the root rule
        self.n_nt = n_nonterminals
        # the root rule: $root -> start; end of input is what follows it (as in Lark's LR(0)
        # automaton, whose end state is the one after the start symbol)
        self.rules = list(rules) + [BnfRule(n_nonterminals, (~start,))]
        self.root = len(rules)
        self.by_lhs: list[list[int]] = [[] for _ in range(n_nonterminals + 1)]
        for r, rule in enumerate(self.rules):
            self.by_lhs[rule.lhs].append(r)
        self.nullable = self._nullable()
        self.reach = self._leftmost_reach()
        # advancing past the first symbol, per nonterminal: {symbol: [(rule, 1), ...]}
        self.first_moves: list[dict[int, list[tuple[int, int]]]] = []
        for a in range(n_nonterminals + 1):
            moves: dict[int, list[tuple[int, int]]] = {}
            for r in self.by_lhs[a]:
                rhs = self.rules[r].rhs
                if rhs:
                    moves.setdefault(rhs[0], []).append((r, 1))
            self.first_moves.append(moves)

    # -- grammar properties ---------------------------------------------------------------
    def _nullable(self) -> list[bool]:
        nullable = [False] * (self.n_nt + 1)
        changed = True
        while changed:
            changed = False
            for rule in self.rules:
                if not nullable[rule.lhs] and all(s < 0 and nullable[~s] for s in rule.rhs):
                    nullable[rule.lhs] = changed = True
        return nullable

    def _leftmost_reach(self) -> list[frozenset[int]]:
        """Per nonterminal, the nonterminals whose dot-0 items its closure holds (itself
        included): those reachable through first symbols."""
        firsts = [{~self.rules[r].rhs[0] for r in self.by_lhs[a]
                   if self.rules[r].rhs and self.rules[r].rhs[0] < 0}
                  for a in range(self.n_nt + 1)]
        reach: list[frozenset[int] | None] = [None] * (self.n_nt + 1)
        for a in range(self.n_nt + 1):
            seen = {a}
            todo = [a]
            while todo:
                for b in firsts[todo.pop()]:
                    if b not in seen:
                        seen.add(b)
                        todo.append(b)
            reach[a] = frozenset(seen)
        return reach  # type: ignore[return-value]

    # -- LR(0) ------------------------------------------------------------------------------
    def _lr0(self) -> None:
        rules = self.rules
        start_kernel = ((self.root, 0),)
        self.kernels: list[tuple[tuple[int, int], ...]] = [start_kernel]
        self.closure_nts: list[frozenset[int]] = []
        self.trans: list[dict[int, int]] = []
        index = {start_kernel: 0}
        s = 0
        while s < len(self.kernels):
            kernel = self.kernels[s]
            moves: dict[int, list[tuple[int, int]]] = {}
            nts: set[int] = set()
            for r, dot in kernel:
                rhs = rules[r].rhs
                if dot < len(rhs):
                    sym = rhs[dot]
                    moves.setdefault(sym, []).append((r, dot + 1))
                    if sym < 0:
                        nts |= self.reach[~sym]
            for a in nts:
                for sym, items in self.first_moves[a].items():
                    moves.setdefault(sym, []).extend(items)
            out: dict[int, int] = {}
            # successors by shifted terminal, then by nonterminal, each in column order: the
            # states come out numbered breadth first as grammar._renumber_states numbers them
            for sym in sorted(moves, key=_column_order):
                items = moves[sym]
                k = tuple(sorted(items))
                t = index.get(k)
                if t is None:
                    t = index[k] = len(self.kernels)
                    self.kernels.append(k)
                out[sym] = t
            self.trans.append(out)
            self.closure_nts.append(frozenset(nts))
            s += 1

    # -- lookaheads -------------------------------------------------------------------------
    def _lookaheads(self) -> list[dict[int, int]]:
        """Per state, {rule: bitset of lookahead terminals} for its complete items."""
        rules, trans, nullable = self.rules, self.trans, self.nullable
        nt_trans: dict[tuple[int, int], int] = {}  # (state, nonterminal) -> index
        for p, out in enumerate(trans):
            for sym in out:
                if sym < 0:
                    nt_trans[(p, ~sym)] = len(nt_trans)
        n = len(nt_trans)
        direct = [0] * n
        reads: list[list[int]] = [[] for _ in range(n)]
        for (p, a), i in nt_trans.items():
            q = trans[p][~a]
            bits = 0
            for sym in trans[q]:
                if sym >= 0:
                    bits |= 1 << sym
                elif nullable[~sym]:
                    reads[i].append(nt_trans[(q, ~sym)])
            direct[i] = bits
        direct[nt_trans[(0, ~self.rules[self.root].rhs[0])]] |= 1 << self.end
        includes: list[list[int]] = [[] for _ in range(n)]
        lookback: list[tuple[int, int, int]] = []  # (state, rule, nt transition)
        for (p, a), i in nt_trans.items():
            # walk each of a's rules from p: (q, B) includes (p, a) where a -> beta B gamma,
            # gamma can be empty and p --beta--> q; the rule's end state looks back to (p, a)
            for r in self.by_lhs[a]:
                rhs = rules[r].rhs
                q = p
                for j, sym in enumerate(rhs):
                    if sym < 0 and all(x < 0 and nullable[~x] for x in rhs[j + 1:]):
                        includes[nt_trans[(q, ~sym)]].append(i)
                    q = trans[q][sym]
                lookback.append((q, r, i))
        read_sets = _digraph(reads, direct)
        follow = _digraph(includes, read_sets)
        la: list[dict[int, int]] = [{} for _ in trans]
        for q, r, i in lookback:
            la[q][r] = la[q].get(r, 0) | follow[i]
        return la

    # -- tables -----------------------------------------------------------------------------
    def tables(self) -> LalrTables:
        self._lr0()
        la = self._lookaheads()
        n_states = len(self.kernels)
        action = np.zeros((n_states, self.n_t + 1), dtype=np.int32)
        goto = np.full((n_states, self.n_nt), -1, dtype=np.int32)
        shift_reduce: list[tuple[int, int]] = []
        reduce_reduce: list[tuple[int, list[int]]] = []
        for s, out in enumerate(self.trans):
            for sym, t in out.items():
                if sym >= 0:
                    action[s, sym] = t + 1
                elif ~sym < self.n_nt:
                    goto[s, ~sym] = t
            by_terminal: dict[int, list[int]] = {}
            for r, bits in la[s].items():
                while bits:
                    low = bits & -bits
                    by_terminal.setdefault(low.bit_length() - 1, []).append(r)
                    bits ^= low
            for term, rs in by_terminal.items():
                if len(rs) > 1:
                    reduce_reduce.append((term, rs))
                elif term in out:
                    shift_reduce.append((term, rs[0]))
                else:
                    action[s, term] = -(rs[0] + 1)
        if reduce_reduce:
            raise ReduceReduceConflict(reduce_reduce)
        end_state = next(s for s, k in enumerate(self.kernels) if (self.root, 1) in k)
        return LalrTables(action, goto, 0, end_state, shift_reduce)


def _column_order(sym: int) -> tuple[bool, int]:
    return (sym < 0, sym if sym >= 0 else ~sym)


class ReduceReduceConflict(GrammarError):
    """Two rules reduce on the same lookahead in one state: the grammar is not LALR(1).
    ``conflicts`` lists (terminal, rules) pairs."""

    def __init__(self, conflicts: list[tuple[int, list[int]]]) -> None:
        self.conflicts = conflicts
        super().__init__(f"Reduce/Reduce collision in {len(conflicts)} place(s)")


def _digraph(edges: list[list[int]], base: list[int]) -> list[int]:
    """F(x) = base(x) | F(y) for every edge x -> y (DeRemer and Pennello's ``digraph``):
    Tarjan's strongly connected components, iteratively, each component's members sharing one
    set. Sets are int bitmasks."""
    n = len(base)
    out = list(base)
    index = [-1] * n
    low = [0] * n
    on_stack = [False] * n
    stack: list[int] = []
    counter = 0
    for root in range(n):
        if index[root] >= 0:
            continue
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack[root] = True
        work = [(root, 0)]
        while work:
            x, k = work[-1]
            ex = edges[x]
            if k < len(ex):
                work[-1] = (x, k + 1)
                y = ex[k]
                if index[y] < 0:
                    index[y] = low[y] = counter
                    counter += 1
                    stack.append(y)
                    on_stack[y] = True
                    work.append((y, 0))
                elif on_stack[y] and index[y] < low[x]:
                    low[x] = index[y]
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                if low[x] < low[parent]:
                    low[parent] = low[x]
            if low[x] == index[x]:
                members = []
                while True:
                    z = stack.pop()
                    on_stack[z] = False
                    members.append(z)
                    if z == x:
                        break
                bits = 0
                for z in members:
                    bits |= out[z]
                    for y in edges[z]:
                        if not on_stack[y]:
                            bits |= out[y]
                for z in members:
                    out[z] = bits
    return out
