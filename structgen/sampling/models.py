"""Language models as the samplers see them: batched next-token log-probabilities.

A model is anything with ``vocab_size`` and ``next_token_logprobs(contexts)``; the samplers need
nothing else. :class:`TabularLM` is a small exact model for tests (its probabilities are known,
so the distributions the samplers target can be computed by enumeration). The Hugging Face
adapter lives in :mod:`structgen.sampling.hf` so that torch is imported only when it is used.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from ..errors import ConfigurationError

Context = Sequence[int]


@runtime_checkable
class LanguageModel(Protocol):
    """The one interface the samplers use.

    ``next_token_logprobs(contexts)`` takes a batch of token-id sequences (the tokens generated so
    far; a prompt, if any, is the model's own business) and returns a float array of shape
    ``(len(contexts), vocab_size)`` whose rows are log-probabilities (``-inf`` allowed; rows that
    do not sum to one are renormalized by the samplers and the normalizer enters the weights).
    """

    @property
    def vocab_size(self) -> int: ...

    def next_token_logprobs(self, contexts: Sequence[Context]) -> np.ndarray: ...


def log_softmax(scores: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax in float64; rows that are all ``-inf`` stay ``-inf``."""
    x = np.asarray(scores, dtype=np.float64)
    top = np.max(x, axis=-1, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    with np.errstate(divide="ignore"):
        return x - top - np.log(np.sum(np.exp(x - top), axis=-1, keepdims=True))


class TabularLM:
    """A k-th order Markov language model: the next-token distribution is a table lookup on the
    last ``order`` tokens.

    Contexts shorter than ``order`` are padded on the left with ``-1`` (a begin-of-text marker),
    so ``table`` keys are always tuples of length ``order``. A context missing from ``table`` uses
    ``default`` when given, or else (with ``seed``) a Dirichlet(``concentration``) row drawn
    deterministically from ``(seed, context)``, so a seeded model is defined everywhere and is the
    same in every process.
    """

    def __init__(self, vocab_size: int, order: int, table: Mapping[tuple[int, ...], Sequence[float]]
                 | None = None, *, default: Sequence[float] | None = None, seed: int | None = None,
                 concentration: float = 1.0) -> None:
        if vocab_size < 1 or order < 0:
            raise ConfigurationError("TabularLM needs vocab_size >= 1 and order >= 0")
        self._vocab_size = int(vocab_size)
        self.order = int(order)
        self._seed = seed
        self._concentration = float(concentration)
        self._rows: dict[tuple[int, ...], np.ndarray] = {}
        for key, probs in (table or {}).items():
            key = tuple(int(t) for t in key)
            if len(key) != self.order:
                raise ConfigurationError(
                    f"table key {key} has {len(key)} tokens; this model's order is {self.order}")
            self._rows[key] = self._as_logprobs(probs)
        self._default = None if default is None else self._as_logprobs(default)

    @property
    def vocab_size(self) -> int:
        return self._vocab_size

    def _as_logprobs(self, probs: Sequence[float]) -> np.ndarray:
        p = np.asarray(probs, dtype=np.float64)
        if p.shape != (self._vocab_size,) or np.any(p < 0) or not np.isfinite(p).all() or p.sum() <= 0:
            raise ConfigurationError(
                f"a TabularLM row must be {self._vocab_size} non-negative finite numbers, not all 0")
        with np.errstate(divide="ignore"):
            return np.log(p / p.sum())

    def key_of(self, context: Context) -> tuple[int, ...]:
        """The table key (last ``order`` tokens, left-padded with -1) for ``context``."""
        if self.order == 0:
            return ()
        tail = [int(t) for t in context[-self.order:]]
        return (-1,) * (self.order - len(tail)) + tuple(tail)

    def row(self, context: Context) -> np.ndarray:
        """Next-token log-probabilities after ``context`` (a shared array; do not modify)."""
        key = self.key_of(context)
        row = self._rows.get(key)
        if row is None:
            if self._default is not None:
                return self._default
            if self._seed is None:
                raise ConfigurationError(
                    f"TabularLM has no row for context {key}; give default= or seed=")
            digest = hashlib.sha256(repr((self._seed, key)).encode()).digest()
            rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))
            row = self._rows[key] = self._as_logprobs(
                rng.dirichlet(np.full(self._vocab_size, self._concentration)))
        return row

    def next_token_logprobs(self, contexts: Sequence[Context]) -> np.ndarray:
        out = np.empty((len(contexts), self._vocab_size), dtype=np.float64)
        for i, ctx in enumerate(contexts):
            out[i] = self.row(ctx)
        return out

    def sequence_logprob(self, tokens: Context) -> float:
        """log p(tokens) = sum of the next-token log-probabilities along the sequence."""
        total = 0.0
        for i, t in enumerate(tokens):
            total += float(self.row(tokens[:i])[int(t)])
        return total
