"""The two implementations of a matcher's state: native (default) and the Python reference.

Both expose the same small interface to ``GrammarMatcher``: make the initial state, advance a
state by bytes, say whether a state ends a sentence, describe it for the native mask filler,
and hand it over as reference threads. The reference backend is the twin that tests compare the
native one against; the native backend falls back to it for thread sets beyond its fixed limits.
"""

from __future__ import annotations

import numpy as np

from . import _native

OVERFLOW = object()  # the native thread set outgrew its limits


class ReferenceBackend:
    """States are tuples of reference threads (structgen.reference)."""

    name = "reference"

    def __init__(self, compiled) -> None:
        self.engine = compiled.reference
        self.masker = compiled.native_masker

    def initial(self):
        return self.engine.initial()

    def advance(self, state, data: bytes):
        nxt = self.engine.advance(state, data)
        if not nxt or not self.engine.any_viable(nxt):
            return None
        return nxt

    def can_end(self, state) -> bool:
        return self.engine.can_end(state)

    def threads(self, state) -> tuple:
        return state

    def spec(self, state):
        return self.masker.spec_of(state)

    def fork(self) -> ReferenceBackend:
        return self

    def truncate(self, state) -> None:
        """Nothing to free: Python reclaims unreferenced stacks."""


class NativeBackend:
    """States are native snapshots over a node arena shared with forks."""

    name = "native"

    def __init__(self, compiled, arena=None) -> None:
        masker = compiled.native_masker
        self.masker = masker
        self.core = masker.core
        self.arena = arena if arena is not None else _native.NodeArena()
        self.start_state = compiled.grammar.start_state

    def initial(self):
        return self.core.initial(self.arena, self.start_state)

    def advance(self, state, data: bytes):
        out = self.core.advance(self.arena, state, data)
        if out is False:
            return OVERFLOW
        return out

    def can_end(self, state) -> bool:
        return self.core.can_end(self.arena, state)

    def spec(self, state):
        return self.core.spec(self.arena, state)

    def threads(self, state) -> tuple:
        """The same state as reference threads (nested-tuple stacks, per-context lexer states)."""
        masker = self.masker
        offsets = masker.offsets
        out = []
        threads, col = self.core.threads(self.arena, state)
        for states, qg, shadows, aux in threads:
            post = None
            if masker.indent_state is not None:
                depth = int(sum(int(masker.bracket_delta[s]) for s in states))
                kinds = [int(masker.indent_state[s]) for s in states]
                opened = [x for k, x in zip(kinds, aux, strict=True) if k == 1]
                closed = kinds.count(2)  # shifted _DEDENTs close the top-most levels
                levels = (0,) + tuple(opened[: len(opened) - closed])
                post = (col, depth, levels)
            stack = None
            for st in states:
                stack = (st, stack)
            ctx = int(masker.state_context[states[-1]])
            q = qg - int(offsets[ctx]) if qg >= 0 else -1
            sh = []
            for g in shadows:
                c = int(np.searchsorted(offsets, g, side="right") - 1)
                sh.append((c, g - int(offsets[c])))
            out.append((stack, q, tuple(sorted(sh)), post))
        return tuple(out)

    def fork(self) -> NativeBackend:
        self.arena.shared = True
        other = object.__new__(NativeBackend)
        other.__dict__.update(self.__dict__)
        return other

    def truncate(self, state) -> None:
        self.core.truncate(self.arena, state)
