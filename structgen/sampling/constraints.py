"""Token constraints: "may token t come next?" for one decoding state.

AWRS asks a constraint about single tokens (``check``) and, only when it decides a full mask is
cheaper, for every allowed token at once (``allowed_token_ids``). :class:`MatcherConstraint`
answers both from a :class:`~structgen.GrammarMatcher` and remembers every answer, so tokens
rejected once in a state are never checked again there (several particles that share a state
after resampling share one constraint object).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from ..matcher import GrammarMatcher


@runtime_checkable
class TokenConstraint(Protocol):
    """The constraint of one decoding state.

    ``check(t)`` is exact (True iff ``t`` may come next) and leaves the state unchanged;
    ``allowed_token_ids()`` returns every token for which ``check`` would be True.
    """

    def check(self, token_id: int) -> bool: ...

    def allowed_token_ids(self) -> np.ndarray: ...


class MatcherConstraint:
    """A grammar matcher's current state as a :class:`TokenConstraint`, with memory.

    ``check`` is the matcher's single-token check (``accept_token`` then ``rollback(1)``; the
    matcher ends where it started). Answers are remembered: ``n_evaluations`` counts the checks
    that reached the matcher, ``n_masks`` the full masks computed.
    """

    __slots__ = ("_matcher", "_vocab_size", "_known", "_allowed", "n_evaluations", "n_masks")

    def __init__(self, matcher: GrammarMatcher) -> None:
        self._matcher = matcher
        # a model's logits may be wider than the tokenizer; ids past it are never text
        self._vocab_size = matcher.compiled_grammar.tokenizer_info.vocab_size
        self._known: dict[int, bool] = {}
        self._allowed: np.ndarray | None = None
        self.n_evaluations = 0
        self.n_masks = 0

    def check(self, token_id: int) -> bool:
        token_id = int(token_id)
        known = self._known.get(token_id)
        if known is not None:
            return known
        if not 0 <= token_id < self._vocab_size:
            ok = False
        elif self._allowed is not None:
            ok = bool(_contains(self._allowed, token_id))
        else:
            self.n_evaluations += 1
            ok = self._matcher.accept_token(token_id)
            if ok:
                self._matcher.rollback(1)
        self._known[token_id] = ok
        return ok

    def allowed_token_ids(self) -> np.ndarray:
        if self._allowed is None:
            self.n_masks += 1
            self._allowed = self._matcher.allowed_token_ids()
        return self._allowed

    @property
    def rejected_token_ids(self) -> list[int]:
        """The tokens found invalid in this state so far, sorted."""
        return sorted(t for t, ok in self._known.items() if not ok)


def _contains(sorted_ids: np.ndarray, token_id: int) -> bool:
    i = int(np.searchsorted(sorted_ids, token_id))
    return i < len(sorted_ids) and int(sorted_ids[i]) == token_id
