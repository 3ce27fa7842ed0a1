"""Pure-Python reference engine: the exact semantics every faster path must reproduce.

The state after a prefix is a small set of *threads*. A thread is one way to read the prefix
under Lark's contextual, longest-match lexer:

* ``stack`` — the LALR stack after the complete lexemes, a persistent linked list
  ``(state, parent)``: pushing makes a node and popping follows a pointer, so threads and
  matcher versions share their stacks and nothing is copied;
* ``q`` — the state of the context DFA over the partial last lexeme (``-1``: no partial lexeme,
  only before the first byte);
* ``shadows`` — longest-match obligations: when a lexeme was ended although a longer one was
  still possible, the longer candidate keeps running as a shadow and the thread dies if the
  shadow ever completes a lexeme (the lexer would have taken the longer match).

Usually there is exactly one thread; two appear while a lexeme boundary is undecided (``1e``
may become ``1e5`` or the number ``1`` followed by a name ``e``). A token is allowed iff some
thread survives its bytes and stays viable: its partial lexeme can still be completed into a
terminal that the parser accepts on the real stack (LALR may accept a lookahead and reject it
only after reductions, so the stack is always consulted).
"""

from __future__ import annotations

from collections.abc import Iterable

from .grammar import Grammar
from .lexer import LexerContexts

Stack = tuple  # (state, parent) or None below the bottom
Thread = tuple  # (stack, q, shadows) ; shadows: tuple of (context, dfa state)


class ReferenceEngine:
    """Stateless stepping of thread sets; one per compiled grammar."""

    def __init__(self, grammar: Grammar, lexers: LexerContexts) -> None:
        self.grammar = grammar
        self.lexers = lexers
        self.action = grammar.action.tolist()
        self.goto = grammar.goto.tolist()
        self.rule_lhs = grammar.rule_lhs.tolist()
        self.rule_len = grammar.rule_len.tolist()
        self.end = grammar.end_terminal
        self.ignored = lexers.ignored

    # --- parser -------------------------------------------------------------------------
    def feed(self, stack: Stack, terminal: int) -> Stack | None:
        """Stack after shifting ``terminal`` (reducing first as needed), or None if rejected."""
        while True:
            act = self.action[stack[0]][terminal]
            if act > 0:
                return (act - 1, stack)
            if act == 0:
                return None
            rule = -act - 1
            for _ in range(self.rule_len[rule]):
                stack = stack[1]
            nxt = self.goto[stack[0]][self.rule_lhs[rule]]
            if nxt < 0:
                return None
            stack = (nxt, stack)

    def feed_end(self, stack: Stack) -> bool:
        """Whether end of input is accepted with this stack."""
        end_state = self.grammar.end_state
        while True:
            act = self.action[stack[0]][self.end]
            if act >= 0:
                return False  # error, or a shift: $END is never shifted
            rule = -act - 1
            for _ in range(self.rule_len[rule]):
                stack = stack[1]
            nxt = self.goto[stack[0]][self.rule_lhs[rule]]
            if nxt < 0:
                return False
            stack = (nxt, stack)
            if nxt == end_state:
                return True

    # --- threads ------------------------------------------------------------------------
    def initial(self) -> tuple[Thread, ...]:
        return (((self.grammar.start_state, None), -1, ()),)

    def step(self, threads: Iterable[Thread], byte: int) -> tuple[Thread, ...]:
        out: list[Thread] = []
        seen = set()
        for stack, q, shadows in threads:
            for th in self._step_thread(stack, q, shadows, byte):
                if th not in seen:
                    seen.add(th)
                    out.append(th)
        return tuple(out)

    def advance(self, threads: tuple[Thread, ...], data: bytes) -> tuple[Thread, ...]:
        for b in data:
            threads = self.step(threads, b)
            if not threads:
                break
        return threads

    def _step_thread(self, stack: Stack, q: int, shadows: tuple, byte: int) -> list[Thread]:
        lexers = self.lexers
        kept = []
        for ctx, s in shadows:
            d = lexers.dfa(ctx)
            s2 = int(d.transitions[s, byte])
            if s2 < 0:
                continue  # the longer candidate died: obligation met for good
            if d.winner[s2] >= 0:
                return []  # a longer lexeme exists, so the earlier cut was not longest-match
            kept.append((ctx, s2))
        shadows = tuple(kept)
        ctx = lexers.context_of_state(stack[0])
        dfa = lexers.dfa(ctx)
        out: list[Thread] = []
        if q < 0:
            r = int(dfa.transitions[0, byte])
            if r >= 0:
                out.append((stack, r, shadows))
            return out
        q2 = int(dfa.transitions[q, byte])
        if q2 >= 0:
            out.append((stack, q2, shadows))
        term = int(dfa.winner[q])
        if term >= 0 and not (q2 >= 0 and dfa.winner[q2] >= 0):
            stack2 = stack if term in self.ignored else self.feed(stack, term)
            if stack2 is not None:
                ctx2 = lexers.context_of_state(stack2[0])
                r = int(lexers.dfa(ctx2).transitions[0, byte])
                if r >= 0:
                    extra = ((ctx, q2),) if q2 >= 0 else ()
                    out.append((stack2, r, tuple(sorted(shadows + extra))))
        return out

    def is_viable(self, thread: Thread) -> bool:
        """Can this thread's partial lexeme still end as a terminal the parser takes?"""
        stack, q, _ = thread
        if q < 0:
            return True
        dfa = self.lexers.dfa(self.lexers.context_of_state(stack[0]))
        alive = dfa.alive[q]
        for term in dfa.terminals:
            if alive[term] and (term in self.ignored or self.feed(stack, term) is not None):
                return True
        return False

    def any_viable(self, threads: Iterable[Thread]) -> bool:
        return any(self.is_viable(th) for th in threads)

    def can_end(self, threads: Iterable[Thread]) -> bool:
        """Is the prefix a complete sentence under some thread?"""
        for stack, q, _ in threads:
            if q < 0:
                if self.feed_end(stack):
                    return True
                continue
            dfa = self.lexers.dfa(self.lexers.context_of_state(stack[0]))
            term = int(dfa.winner[q])
            if term < 0:
                continue
            stack2 = stack if term in self.ignored else self.feed(stack, term)
            if stack2 is not None and self.feed_end(stack2):
                return True
        return False
