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
  shadow ever completes a lexeme (the lexer would have taken the longer match);
* ``post`` — the post-lexer's state (:mod:`structgen.postlex`): for ``PythonIndenter``, the
  column after the last line break, the bracket depth and the stack of open indentation
  columns; ``None`` for grammars without one.

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
from .postlex import PythonIndenter

Stack = tuple  # (state, parent) or None below the bottom
Thread = tuple  # (stack, q, shadows, post) ; shadows: tuple of (context, dfa state)
Post = tuple | None  # PythonIndenter: (column, bracket depth, open indentation columns)


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
        self.state_context = lexers.state_context.tolist()
        self._ctx: dict[int, _Ctx] = {}
        self.indenter = _Indenter.of(grammar)

    def ctx(self, context: int) -> _Ctx:
        """A context DFA as plain Python lists (numpy scalar indexing is slow per byte)."""
        found = self._ctx.get(context)
        if found is None:
            found = self._ctx[context] = _Ctx(self.lexers.dfa(context), self.ignored)
        return found

    def ctx_of(self, stack: Stack) -> _Ctx:
        return self.ctx(self.state_context[stack[0]])

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
        post = (0, 0, (0,)) if self.indenter is not None else None
        return (((self.grammar.start_state, None), -1, (), post),)

    def complete(self, stack: Stack, post: Post, terminal: int) -> tuple[Stack, Post] | None:
        """End a lexeme of ``terminal``: skip it if ignored, else hand it to the parser through
        the post-lexer. Returns the new (stack, post), or None if the parser rejects it."""
        if terminal in self.ignored:
            return stack, post
        ind = self.indenter
        if ind is None:
            stack = self.feed(stack, terminal)
            return None if stack is None else (stack, post)
        column, depth, levels = post
        if terminal == ind.newline:
            if depth:
                return stack, post  # inside brackets a line break is whitespace
            stack = self.feed(stack, terminal)
            if stack is None:
                return None
            if column > levels[-1]:
                stack = self.feed(stack, ind.indent)
                return None if stack is None else (stack, (column, depth, levels + (column,)))
            while column < levels[-1]:
                stack = self.feed(stack, ind.dedent)
                if stack is None:
                    return None
                levels = levels[:-1]
            if column != levels[-1]:
                return None  # a dedent to a column that was never opened
            return stack, (column, depth, levels)
        stack = self.feed(stack, terminal)
        if stack is None:
            return None
        if terminal in ind.opens:
            post = (column, depth + 1, levels)
        elif terminal in ind.closes:
            if not depth:
                return None
            post = (column, depth - 1, levels)
        return stack, post

    def step(self, threads: Iterable[Thread], byte: int) -> tuple[Thread, ...]:
        if len(threads) == 1:
            return tuple(self._step_thread(*threads[0], byte))
        out: list[Thread] = []
        seen = set()
        for th0 in threads:
            for th in self._step_thread(*th0, byte):
                key = _thread_key(th)
                if key not in seen:
                    seen.add(key)
                    out.append(th)
        return tuple(out)

    def advance(self, threads: tuple[Thread, ...], data: bytes) -> tuple[Thread, ...]:
        """Threads after ``data``, with forced lexeme ends taken eagerly (see ``settle``)."""
        i, n = 0, len(data)
        while i < n:
            if len(threads) == 1 and threads[0][1] >= 0 and not threads[0][2] \
                    and self.indenter is None:
                # fast path: one thread inside a lexeme that cannot end at this byte
                stack, q, _, post = threads[0]
                dfa = self.ctx_of(stack)
                trans, winner = dfa.trans, dfa.winner
                start = i
                while i < n:
                    q2 = trans[q][data[i]]
                    if q2 < 0 or (winner[q] >= 0 and winner[q2] < 0):
                        break
                    q = q2
                    i += 1
                if i > start:
                    threads = ((stack, q, (), post),)
                    if i == n:
                        break
            threads = self.step(threads, data[i])
            i += 1
            if not threads:
                return threads
        return self.settle(threads)

    def settle(self, threads: tuple[Thread, ...]) -> tuple[Thread, ...]:
        """End lexemes that cannot grow: a partial lexeme whose DFA state accepts and has no
        way on (``,``, ``]``, ``true``) must end before the next byte, so feed it now.

        The text read is the same; only the bookkeeping moves, so that the thread's parser
        stack already holds the lexeme. Mask-cache keys then see the state after it, where
        far fewer tokens depend on the stack below the top.
        """
        out = []
        changed = False
        for th in threads:
            stack, q, shadows, post = th
            if q >= 0:
                dfa = self.ctx_of(stack)
                term = dfa.winner[q]
                if term >= 0 and dfa.final_only[q]:
                    changed = True
                    done = self.complete(stack, post, term)
                    if done is not None:
                        out.append((done[0], -1, shadows, done[1]))
                    continue
            out.append(th)
        if not changed:
            return threads
        return tuple({_thread_key(th): th for th in out}.values())

    def _step_thread(self, stack: Stack, q: int, shadows: tuple, post: Post,
                     byte: int) -> list[Thread]:
        if shadows:
            kept = []
            for ctx, s in shadows:
                d = self.ctx(ctx)
                s2 = d.trans[s][byte]
                if s2 < 0:
                    continue  # the longer candidate died: obligation met for good
                if d.winner[s2] >= 0:
                    return []  # a longer lexeme exists: the earlier cut was not longest-match
                kept.append((ctx, s2))
            shadows = tuple(kept)
        ctx = self.state_context[stack[0]]
        dfa = self.ctx(ctx)
        post2 = post if self.indenter is None else _column_after(post, byte, self.indenter)
        if q < 0:
            r = dfa.trans[0][byte]
            return [(stack, r, shadows, post2)] if r >= 0 else []
        out: list[Thread] = []
        q2 = dfa.trans[q][byte]
        if q2 >= 0:
            out.append((stack, q2, shadows, post2))
        term = dfa.winner[q]
        if term >= 0 and not (q2 >= 0 and dfa.winner[q2] >= 0):
            done = self.complete(stack, post, term)
            if done is not None:
                stack2 = done[0]
                r = self.ctx_of(stack2).trans[0][byte]
                if r >= 0:
                    extra = ((ctx, q2),) if q2 >= 0 else ()
                    post3 = done[1] if self.indenter is None else _column_after(
                        done[1], byte, self.indenter)
                    out.append((stack2, r, tuple(sorted(shadows + extra)), post3))
        return out

    def is_viable(self, thread: Thread) -> bool:
        """Can this thread's partial lexeme still end as a terminal the parser takes?"""
        stack, q, _, post = thread
        if q < 0:
            return True
        dfa = self.ctx_of(stack)
        if dfa.alive_ignored[q]:
            return True
        if self.indenter is not None:
            return any(self.complete(stack, post, term) is not None
                       or term == self.indenter.newline  # may still end at any column
                       and self.feed(stack, term) is not None
                       for term in dfa.alive_terms[q])
        return any(self.feed(stack, term) is not None for term in dfa.alive_terms[q])

    def any_viable(self, threads: Iterable[Thread]) -> bool:
        return any(self.is_viable(th) for th in threads)

    def can_end(self, threads: Iterable[Thread]) -> bool:
        """Is the prefix a complete sentence under some thread?

        With a post-lexer the text is read as followed by one line break (as Python's and Go's
        tokenizers read a file), and open indentation levels are closed."""
        if self.grammar.postlex is not None:
            threads = self.step(tuple(threads), 10)
        for stack, q, _, post in threads:
            if q >= 0:
                dfa = self.ctx_of(stack)
                term = dfa.winner[q]
                if term < 0:
                    continue
                done = self.complete(stack, post, term)
                if done is None:
                    continue
                stack, post = done
            if post is not None:
                for _ in post[2][1:]:
                    stack = self.feed(stack, self.indenter.dedent)
                    if stack is None:
                        break
                if stack is None:
                    continue
            if self.feed_end(stack):
                return True
        return False


def _thread_key(thread: Thread) -> tuple:
    """Identity of a thread for de-duplication. Stacks are compared by identity: hashing a
    nested stack would cost its depth on every byte (quadratic on deeply nested input)."""
    stack, q, shadows, post = thread
    return (id(stack), q, shadows, post)


class _Indenter:
    """A ``PythonIndenter`` with terminal names resolved to ids."""

    __slots__ = ("newline", "indent", "dedent", "opens", "closes", "tab_len")

    @classmethod
    def of(cls, grammar: Grammar) -> _Indenter | None:
        pl = grammar.postlex
        if not isinstance(pl, PythonIndenter):
            return None
        ids = {t.name: i for i, t in enumerate(grammar.terminals)}
        ind = cls()
        ind.newline, ind.indent, ind.dedent = ids[pl.newline], ids[pl.indent], ids[pl.dedent]
        ind.opens = frozenset(ids[n] for n in pl.open_brackets)
        ind.closes = frozenset(ids[n] for n in pl.close_brackets)
        ind.tab_len = pl.tab_len
        return ind


def _column_after(post: tuple, byte: int, ind: _Indenter) -> tuple:
    """The indentation column after ``byte``: Lark counts the spaces and tabs after the last
    line break of a newline lexeme (other bytes there are comments and count nothing)."""
    if byte == 10:
        return (0, post[1], post[2]) if post[0] else post
    if byte == 32:
        return (post[0] + 1, post[1], post[2])
    if byte == 9:
        return (post[0] + ind.tab_len, post[1], post[2])
    return post


class _Ctx:
    """One context DFA in list form, with per-state alive terminals split by ``%ignore``."""

    __slots__ = ("trans", "winner", "final_only", "alive_terms", "alive_ignored")

    def __init__(self, dfa, ignored: frozenset[int]) -> None:
        self.trans = dfa.transitions.tolist()
        self.winner = dfa.winner.tolist()
        self.final_only = dfa.final_only.tolist()
        alive = [tuple(int(t) for t in row.nonzero()[0]) for row in dfa.alive]
        self.alive_terms = [tuple(t for t in ts if t not in ignored) for ts in alive]
        self.alive_ignored = [any(t in ignored for t in ts) for ts in alive]
