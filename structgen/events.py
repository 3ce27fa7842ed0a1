"""Grammar events: which rules the parser reduced, and which text each one covers.

Repetition penalties that look at structure (:mod:`structgen.repetition`) need to know that
``x = f(a)`` and ``y = g(b)`` are the same statement shape. The parser knows: every reduction
names a rule and covers a span of the text. This module records those reductions, and the
terminals shifted, beside a matcher, without touching its mask path: a recorder is a separate
copy of the reference engine whose parser-stack nodes carry their spans and a persistent log
of the events so far, so nothing is paid when nobody asks for events, and a recorder replays
only the bytes accepted since it last looked.

Only *committed* events are reported: while the lexer has more than one reading of the text
(a lexeme boundary not yet decided), the events all readings agree on.
"""

from __future__ import annotations

import copy
from bisect import bisect_right
from typing import NamedTuple

from .reference import ReferenceEngine, Stack


class GrammarEvent(NamedTuple):
    """One reduction (``kind="rule"``) or shifted terminal (``kind="terminal"``).

    ``start``/``end`` are byte offsets in the accepted text; ``first_token``/``last_token`` the
    indices of the accepted tokens that hold those bytes (``-1`` when not known). A span starts
    where the previous symbol ended, so whitespace before a symbol belongs to it.
    """

    kind: str
    name: str
    start: int
    end: int
    first_token: int = -1
    last_token: int = -1


# A log is a persistent list: (symbol, start, end, previous log, length, first) or None, where
# ``first`` is the index of the first event of the symbol's subtree (events are in postorder, so
# a reduction's descendants are exactly the events from ``first`` up to it).
_Log = tuple | None


class _RecordingEngine(ReferenceEngine):
    """The reference engine with stack nodes ``(state, parent, start, end, log, first)``.

    ``pos`` is the byte offset where a lexeme fed now ends; the recorder sets it before every
    step. Symbols are ints: terminal ids, and ``-1 - rule`` for rules.
    """

    pos = 0

    @classmethod
    def from_engine(cls, engine: ReferenceEngine) -> _RecordingEngine:
        rec = copy.copy(engine)  # shares the tables and built lexer contexts
        rec.__class__ = cls
        rec.default_reduce = _default_reductions(engine.action)
        return rec

    def initial(self):
        threads = super().initial()
        (_, q, shadows, post), = threads
        return (((self.grammar.start_state, None, 0, 0, None, 0), q, shadows, post),)

    def feed(self, stack: Stack, terminal: int) -> Stack | None:
        action = self.action
        while True:
            act = action[stack[0]][terminal]
            if act > 0:
                end = stack[3]
                log = stack[4]
                idx = log[4] if log else 0
                log = (terminal, end, self.pos, log, idx + 1, idx)
                stack = (act - 1, stack, end, self.pos, log, idx)
                # reduce now where every lookahead would: the rule is finished, so report it
                # without waiting for the next lexeme
                while stack is not None and (rule := self.default_reduce[stack[0]]) >= 0:
                    stack = self._reduce(stack, rule)
                return stack
            if act == 0:
                return None
            stack = self._reduce(stack, -act - 1)
            if stack is None:
                return None

    def _reduce(self, stack: Stack, rule: int) -> Stack | None:
        top = stack
        end = stack[3]
        start = end
        log = top[4]
        idx = log[4] if log else 0
        first = idx
        for _ in range(self.rule_len[rule]):
            start = stack[2]
            first = stack[5]
            stack = stack[1]
        nxt = self.goto[stack[0]][self.rule_lhs[rule]]
        if nxt < 0:
            return None
        log = (-1 - rule, start, end, log, idx + 1, first)
        return (nxt, stack, start, end, log, first)


def _default_reductions(action: list[list[int]]) -> list[int]:
    """Per state, the rule it reduces by whatever comes next (its only action), else -1."""
    out = []
    for row in action:
        acts = {a for a in row if a != 0}
        only = acts.pop() if len(acts) == 1 else 0
        out.append(-only - 1 if only < 0 else -1)
    return out


class EventRecorder:
    """Follows a byte stream (the text a matcher accepted) and reports its grammar events."""

    def __init__(self, compiled_grammar) -> None:
        self.grammar = compiled_grammar.grammar
        self._engine = _RecordingEngine.from_engine(compiled_grammar.reference)
        self._names = [t.name for t in self.grammar.terminals]
        self._rule_names = self.grammar.rule_names
        self.reset()

    def reset(self) -> None:
        self._threads = self._engine.initial()
        self._pos = 0
        # (symbol, start, end, first event of its subtree): symbol a terminal id, or -1 - rule
        self.committed: list[tuple[int, int, int, int]] = []
        # one snapshot per chunk fed: (threads, pos, committed length); threads None once dead
        self._snapshots = [(self._threads, 0, 0)]
        self.fed: list[bytes] = []  # the chunks read, one per snapshot after the first
        self.dead = False

    @property
    def num_chunks(self) -> int:
        return len(self._snapshots) - 1

    def feed(self, data: bytes) -> bool:
        """Read ``data``; False (and the recorder is dead until rolled back) if the grammar
        rejects it."""
        self.fed.append(data)
        stepped = None if self.dead else self._stepped(data)
        if stepped is None:
            self.dead = True
            self._snapshots.append((None, self._pos, len(self.committed)))
            return False
        self._threads, self._pos = stepped
        self._commit()
        self._snapshots.append((*stepped, len(self.committed)))
        return True

    def rollback(self, num_chunks: int) -> None:
        if num_chunks:
            del self._snapshots[-num_chunks:]
            del self.fed[-num_chunks:]
        threads, pos, n = self._snapshots[-1]
        if threads is not None:
            self._threads, self._pos = threads, pos
        del self.committed[n:]
        self.dead = threads is None

    def fork(self) -> EventRecorder:
        other = copy.copy(self)
        other.committed = list(self.committed)
        other._snapshots = list(self._snapshots)
        other.fed = list(self.fed)
        return other

    def try_feed(self, data: bytes) -> tuple[tuple, list[tuple[int, int, int, int]]] | None:
        """What :meth:`feed` would do, without doing it: ``(threads, new committed events)``
        after ``data``, or None if the grammar rejects it. Nothing is copied, so trying many
        candidate continuations costs only the bytes they hold."""
        stepped = None if self.dead else self._stepped(data)
        if stepped is None:
            return None
        return stepped[0], self._agreed(stepped[0])

    def _stepped(self, data: bytes) -> tuple[tuple, int] | None:
        """(threads, position) after ``data`` from the current state, or None if the grammar
        rejects it; the recorder itself is not changed."""
        engine = self._engine
        threads, pos = self._threads, self._pos
        for b in data:
            engine.pos = pos
            threads = engine.step(threads, b)
            pos += 1
            if not threads:
                return None
        engine.pos = pos
        threads = engine.settle(threads)
        if not threads or not engine.any_viable(threads):
            return None
        return threads, pos

    def _commit(self) -> None:
        """Append the events every thread agrees on."""
        self.committed.extend(self._agreed(self._threads))

    def _agreed(self, threads) -> list[tuple[int, int, int, int]]:
        """The events after the committed ones that all ``threads`` agree on."""
        have = len(self.committed)
        tails = []
        for stack, _q, _sh, _post in threads:
            log = stack[4]
            new = []
            while log is not None and log[4] > have:
                new.append((log[0], log[1], log[2], log[5]))
                log = log[3]
            new.reverse()
            tails.append(new)
        first = tails[0]
        n = len(first)
        for other in tails[1:]:
            k = 0
            while k < min(n, len(other)) and other[k] == first[k]:
                k += 1
            n = k
        return first[:n]

    def pending_terminals(self, threads=None) -> set[int] | None:
        """Ids of the terminals the unfinished last lexeme could still become; None when it
        could also be skipped whitespace, or no lexeme is open (anything may come next).
        ``threads`` (from :meth:`try_feed`) asks it of a tried continuation instead."""
        out: set[int] = set()
        for stack, q, _sh, _post in (self._threads if threads is None else threads):
            if q < 0:
                return None
            dfa = self._engine.ctx_of(stack)
            if dfa.alive_ignored[q]:
                return None
            out.update(dfa.alive_terms[q])
        return out

    def events(self, token_ends: list[int] | None = None) -> list[GrammarEvent]:
        """The committed events in the order the parser made them (children before parents).

        ``token_ends[i]`` is the byte offset where accepted token ``i`` ends; with it each
        event also names the tokens that hold its first and last byte.
        """
        out = []
        for sym, start, end, _first in self.committed:
            if sym >= 0:
                kind, name = "terminal", self._names[sym]
            else:
                kind, name = "rule", self._rule_names[-1 - sym]
            first = last = -1
            if token_ends is not None:
                first = bisect_right(token_ends, start)
                last = bisect_right(token_ends, max(start, end - 1))
            out.append(GrammarEvent(kind, name, start, end, first, last))
        return out

    def symbols(self) -> list[tuple[str, int, int]]:
        """Committed events as (name, start, end), names of rules and terminals alike."""
        names, rules = self._names, self._rule_names
        return [(names[s] if s >= 0 else rules[-1 - s], a, b) for s, a, b, _ in self.committed]
