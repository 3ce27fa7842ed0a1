"""Adaptive weighted rejection sampling (AWRS) of one constrained token.

Lipkin et al., "Fast Controlled Generation from Language Models with Adaptive Weighted Rejection
Sampling" (COLM 2025, arXiv:2504.05410). Instead of checking the whole vocabulary, AWRS visits
tokens in Gumbel-max order -- sampling without replacement from the model's next-token
distribution ``p`` -- checks each visited token alone, and stops at the first one the constraint
allows. That token is an exact sample of ``p`` restricted to the allowed tokens and renormalized.
A little more sampling gives an unbiased estimate of the allowed mass ``Z = sum of p over allowed
tokens``, the importance weight SMC needs (:mod:`structgen.sampling.smc`).

:class:`MaskSampler` is the full-mask baseline with the same interface: an exact sample and the
exact ``Z``, at the price of checking every token.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np

from ..errors import ConfigurationError
from .constraints import TokenConstraint

ESTIMATORS = ("recursive", "two_round", "geometric")
ORDERS = ("lazy", "dense")


@dataclass(frozen=True)
class TokenSample:
    """One sampled token and its importance weight.

    ``token_id`` is None when no token could be returned: a dead end (no allowed token has
    probability) or, with ``max_rejects``, giving up; ``log_weight`` is then ``-inf``. With
    ``proper_weights=False`` the weight is not estimated and ``log_weight`` is 0.
    """

    token_id: int | None
    log_weight: float
    n_checks: int
    rejected: tuple[int, ...]
    used_mask: bool = False
    gave_up: bool = False

    @property
    def weight(self) -> float:
        return math.exp(self.log_weight)

    @property
    def n_rejections(self) -> int:
        return len(self.rejected)


@dataclass
class SamplerStats:
    """Counters over every :meth:`sample` call of one sampler.

    ``checks`` counts single-token checks asked of the constraints, ``masks`` full masks (the
    fallback, or every step for :class:`MaskSampler`), ``fallbacks`` the AWRS steps that switched
    to a full mask, ``gave_up`` the steps stopped by ``max_rejects``.
    """

    steps: int = 0
    checks: int = 0
    rejections: int = 0
    masks: int = 0
    fallbacks: int = 0
    gave_up: int = 0
    dead_ends: int = 0

    def record(self, sample: TokenSample) -> None:
        self.steps += 1
        self.checks += sample.n_checks
        self.rejections += sample.n_rejections
        self.masks += int(sample.used_mask)
        self.gave_up += int(sample.gave_up)
        self.dead_ends += int(sample.token_id is None and not sample.gave_up)

    @property
    def checks_per_step(self) -> float:
        return self.checks / self.steps if self.steps else 0.0

    @property
    def fallback_rate(self) -> float:
        return self.fallbacks / self.steps if self.steps else 0.0

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


# --- visiting tokens in Gumbel-max order -------------------------------------------------------
class _DenseGumbelOrder:
    """Tokens by decreasing Gumbel key ``log p_t + G_t``: sampling without replacement from p.

    The keys of the whole vocabulary are drawn at once; the order is sorted lazily, a chunk of
    the largest remaining keys at a time (chunks grow 8, 32, 128, ...).
    """

    def __init__(self, p: np.ndarray, rng: np.random.Generator) -> None:
        self._ids = np.flatnonzero(p > 0)
        u = rng.random(len(self._ids))
        np.maximum(u, np.finfo(np.float64).tiny, out=u)  # U = 0 (p = 2**-53) would give -inf
        self._keys = np.log(p[self._ids]) - np.log(-np.log(u))
        self._left = len(self._ids)
        self._chunk = 8
        self._buffer: list[int] = []

    def next(self) -> int | None:
        if not self._buffer:
            self._refill()
            if not self._buffer:
                return None
        return self._buffer.pop()

    def _refill(self) -> None:
        if self._left == 0:
            return
        keys = self._keys
        k = min(self._chunk, self._left)
        self._chunk *= 4
        top = np.argpartition(-keys, k - 1)[:k] if k < len(keys) else np.arange(len(keys))
        top = top[np.argsort(-keys[top], kind="stable")][:k]
        keys[top] = -np.inf  # visited keys sink below every finite one
        self._left -= k
        self._buffer = [int(t) for t in self._ids[top][::-1]]


class _LazyGumbelOrder:
    """The same Gumbel-max order, with keys drawn only where they are needed.

    Top-down construction of the Gumbel process (Maddison, Tarlow and Minka, "A* Sampling",
    NeurIPS 2014): the largest key in a block of tokens with mass ``P`` is ``log P + G``, it sits
    on a token drawn from ``p`` within the block, and once that token is taken the block's next
    largest key is a Gumbel with location ``log(P - p_t)`` truncated below the key just used.
    So one key per block of 256 tokens is drawn up front and each visited token costs one draw
    inside its block: O(V) only for the block sums, no per-token noise.
    """

    __slots__ = ("_p", "_rng", "_size", "_mass", "_top", "_local")

    def __init__(self, p: np.ndarray, rng: np.random.Generator) -> None:
        n = len(p)
        size = min(256, max(n, 1))
        blocks = -(-n // size)
        padded = p if n == blocks * size else np.concatenate([p, np.zeros(blocks * size - n)])
        self._p = p
        self._rng = rng
        self._size = size
        self._mass = padded.reshape(blocks, size).sum(axis=1)
        with np.errstate(divide="ignore"):
            self._top = np.log(self._mass) + rng.gumbel(size=blocks)
        self._local: dict[int, np.ndarray] = {}  # blocks already visited: p with visits zeroed

    def next(self) -> int | None:
        b = int(np.argmax(self._top))
        key = float(self._top[b])
        if key == -np.inf:
            return None
        lo = b * self._size
        local = self._local.get(b)
        if local is None:
            local = self._local[b] = self._p[lo:lo + self._size].copy()
        cdf = np.cumsum(local)
        while True:
            j = min(int(np.searchsorted(cdf, self._rng.random() * cdf[-1], side="right")),
                    len(local) - 1)
            if local[j] > 0.0:
                break  # else a rounding edge (probability ~1e-16): draw again
        local[j] = 0.0
        rest = float(local.sum())
        if rest > 0.0:
            g = math.log(rest) + float(self._rng.gumbel())
            # Gumbel(log rest) truncated below key: -log(exp(-key) + exp(-g))
            self._top[b] = min(key, g) - math.log1p(math.exp(-abs(key - g)))
        else:
            self._top[b] = -np.inf
        return lo + j


class _Step:
    """One AWRS step's bookkeeping: the visiting order, the checks, the rejected tokens."""

    __slots__ = ("p", "scale", "order", "constraint", "rejected", "rejected_mass", "n_checks")

    def __init__(self, p: np.ndarray, scale: float, order, constraint: TokenConstraint) -> None:
        self.p = p  # unnormalized; probabilities are p * scale
        self.scale = scale
        self.order = order
        self.constraint = constraint
        self.rejected: list[int] = []
        self.rejected_mass = 0.0
        self.n_checks = 0

    def visit(self) -> tuple[int | None, bool]:
        """The next token in the order and whether the constraint allows it."""
        t = self.order.next()
        if t is None:
            return None, False
        self.n_checks += 1
        if self.constraint.check(t):
            return t, True
        self.rejected.append(t)
        self.rejected_mass += self.prob(t)
        return t, False

    def prob(self, t: int) -> float:
        return float(self.p[t]) * self.scale


def _normalize(logprobs) -> tuple[np.ndarray, float, float]:
    """``exp(logprobs - max)`` (unnormalized, to skip a pass over the vocabulary), the factor
    that normalizes it, and the log normalizer of ``logprobs``."""
    logp = np.asarray(logprobs, dtype=np.float64).ravel()
    top = float(logp.max()) if len(logp) else -np.inf
    if math.isnan(top) or top == np.inf:  # max propagates NaN
        raise ConfigurationError("next-token log-probabilities contain NaN or +inf")
    if top == -np.inf:
        return np.zeros(len(logp)), 0.0, -np.inf
    p = np.subtract(logp, top)
    np.exp(p, out=p)
    total = float(p.sum())
    return p, 1.0 / total, top + math.log(total)


def _phantoms(rng: np.random.Generator, rejected_mass: float) -> int:
    """Repeat draws of already-rejected tokens before a draw outside them, when sampling with
    replacement: Geometric(1 - rejected mass) - 1."""
    if rejected_mass <= 0.0:
        return 0
    return int(rng.geometric(max(1.0 - rejected_mass, 1e-300))) - 1


def _race_rejections(p: np.ndarray, valid: np.ndarray, candidates: np.ndarray,
                     rng: np.random.Generator) -> np.ndarray:
    """Invalid candidates that come before the first valid one in a fresh random order.

    Exponential race: key ``E_t / p_t`` ascending is the Gumbel-max order (``-log`` of it is
    ``log p_t + G_t``), drawn for every candidate at once now that validity is known.
    """
    idx = np.flatnonzero(candidates & (p > 0))
    keys = rng.standard_exponential(len(idx)) / p[idx]
    ok = valid[idx]
    if not ok.any():
        return idx
    first = keys[ok].min()
    return idx[~ok & (keys < first)]


class AWRS:
    """Adaptive weighted rejection sampling of one token (Lipkin et al., 2025, arXiv:2504.05410).

    Guarantee. ``sample`` returns a token distributed *exactly* as ``p`` restricted to the allowed
    tokens and renormalized, and (with ``proper_weights=True``) a weight ``w`` that is an
    unbiased estimate of the allowed mass ``Z`` (times the normalizer of ``logprobs`` when its
    rows do not sum to one): ``E[w f(token)] = Z E_{p|allowed}[f]`` for every ``f``, so the pair
    is *properly weighted* for the target ``p(t) 1[t allowed]``. Both hold whichever estimator
    or visiting order is chosen and whether or not the full-mask fallback fires. Only
    ``max_rejects`` trades exactness for bounded work: a step that gives up returns no token and
    weight 0 (biasing ``Z`` down by the probability of giving up).

    How. Tokens are visited in Gumbel-max order, keys ``log p_t + G_t`` by decreasing value:
    ``order="lazy"`` (default) draws the keys top-down, one per block of 256 tokens and one per
    visited token; ``order="dense"`` draws a key for every token and sorts lazily (the plain
    form; the same distribution). Each visited token is checked alone; the first allowed one is
    returned. The weight, with ``R1`` the mass rejected before it and ``n`` rejections counted:

    * ``"two_round"`` (the paper's): sample a second round without replacement from ``p`` minus
      the round-1 rejections, counting rejections until an allowed token:
      ``w = (1 - R1) / (n1 + n2 + 1)``.
    * ``"recursive"`` (default): ``w = p_x + M * c`` where ``x`` is the accepted token, ``M``
      the mass never visited and ``c`` one coin: is the next token in the order allowed. Its
      conditional mean at any point of the step is ``Z``; one extra check per step.
    * ``"geometric"``: simulate sampling *with* replacement (add Geometric(1 - rejected mass) - 1
      repeat draws of known rejections before every fresh token) until two acceptances;
      ``w = 1 / (n + 1)`` is Haldane's unbiased estimator for a negative binomial. Lowest cost
      when the top token is very likely.

    Fallback: when the rejected mass reaches ``fallback_mass`` or the rejections reach
    ``fallback_rejects``, most of the mass is invalid or the checks cost more than a mask, so the
    full mask is computed once and the rest of the same random process is simulated with known
    validity (no more checks): the output distribution is unchanged. ``stats.fallbacks`` counts
    how often. The rejected tokens of a step are returned in :attr:`TokenSample.rejected`.
    """

    def __init__(self, *, estimator: str = "recursive", order: str = "lazy",
                 proper_weights: bool = True, max_rejects: int | None = None,
                 fallback_mass: float | None = 0.9, fallback_rejects: int | None = 32) -> None:
        if estimator not in ESTIMATORS:
            raise ConfigurationError(f"estimator must be one of {ESTIMATORS}, not {estimator!r}")
        if order not in ORDERS:
            raise ConfigurationError(f"order must be one of {ORDERS}, not {order!r}")
        if max_rejects is not None and max_rejects < 0:
            raise ConfigurationError("max_rejects must be None or >= 0")
        if fallback_mass is not None and not 0.0 < fallback_mass <= 1.0:
            raise ConfigurationError("fallback_mass must be None or in (0, 1]")
        if fallback_rejects is not None and fallback_rejects < 1:
            raise ConfigurationError("fallback_rejects must be None or >= 1")
        self.estimator = estimator
        self.order = order
        self.proper_weights = proper_weights
        self.max_rejects = max_rejects
        self.fallback_mass = fallback_mass
        self.fallback_rejects = fallback_rejects
        self.stats = SamplerStats()

    def __repr__(self) -> str:
        return (f"AWRS(estimator={self.estimator!r}, order={self.order!r}, "
                f"proper_weights={self.proper_weights}, max_rejects={self.max_rejects})")

    # --- the step ---------------------------------------------------------------------------
    def sample(self, logprobs, constraint: TokenConstraint,
               rng: np.random.Generator) -> TokenSample:
        """One token from ``softmax(logprobs)`` restricted to what ``constraint`` allows."""
        result = self._sample(logprobs, constraint, rng)
        self.stats.record(result)
        return result

    def _sample(self, logprobs, constraint: TokenConstraint,
                rng: np.random.Generator) -> TokenSample:
        p, scale, log_norm = _normalize(logprobs)
        if log_norm == -np.inf:
            return TokenSample(None, -np.inf, 0, ())
        order = _LazyGumbelOrder(p, rng) if self.order == "lazy" else _DenseGumbelOrder(p, rng)
        st = _Step(p, scale, order, constraint)
        geometric = self.proper_weights and self.estimator == "geometric"
        phantom = 0
        while True:  # round 1: the token
            stop = self._stop_reason(st)
            if stop == "mask":
                return self._finish_with_mask(st, log_norm, rng, phantom=phantom)
            if stop == "give_up":
                return TokenSample(None, -np.inf, st.n_checks, tuple(st.rejected), gave_up=True)
            if geometric:
                phantom += _phantoms(rng, st.rejected_mass)
            x, ok = st.visit()
            if x is None:  # every token with probability was rejected: Z = 0
                return TokenSample(None, -np.inf, st.n_checks, tuple(st.rejected))
            if ok:
                break
        if not self.proper_weights:
            return TokenSample(x, 0.0, st.n_checks, tuple(st.rejected))
        if self.estimator == "recursive":
            return self._recursive(st, x, log_norm)
        if self.estimator == "two_round":
            return self._two_round(st, x, log_norm, rng)
        return self._geometric(st, x, log_norm, rng, len(st.rejected) + phantom)

    def _stop_reason(self, st: _Step) -> str | None:
        n = len(st.rejected)
        if self.fallback_mass is not None and st.rejected_mass >= self.fallback_mass:
            return "mask"
        if self.fallback_rejects is not None and n >= self.fallback_rejects:
            return "mask"
        if self.max_rejects is not None and n >= self.max_rejects:
            return "give_up"
        return None

    # --- the weight ---------------------------------------------------------------------------
    def _recursive(self, st: _Step, x: int, log_norm: float) -> TokenSample:
        p_x = st.prob(x)
        tail = 1.0 - st.rejected_mass - p_x  # mass never visited
        z = p_x
        if tail > 0.0:
            t, ok = st.visit()
            if t is not None and ok:
                z += tail
        return TokenSample(x, log_norm + math.log(z), st.n_checks, tuple(st.rejected))

    def _two_round(self, st: _Step, x: int, log_norm: float,
                   rng: np.random.Generator) -> TokenSample:
        r1 = st.rejected_mass
        p_x = st.prob(x)
        while True:
            stop = self._stop_reason(st)
            if stop == "mask":
                return self._finish_with_mask(st, log_norm, rng, x=x, r1=r1)
            if stop == "give_up":
                return TokenSample(None, -np.inf, st.n_checks, tuple(st.rejected), gave_up=True)
            # round 2 draws without replacement from {x} and the unvisited tokens
            if rng.random() * (1.0 - st.rejected_mass) < p_x:
                break
            t, ok = st.visit()
            if t is None or ok:
                break
        n = len(st.rejected)  # round-1 and round-2 rejections
        log_w = log_norm + math.log(max(1.0 - r1, 0.0) or 1e-300) - math.log(n + 1)
        return TokenSample(x, log_w, st.n_checks, tuple(st.rejected))

    def _geometric(self, st: _Step, x: int, log_norm: float, rng: np.random.Generator,
                   n: int) -> TokenSample:
        known_valid = st.prob(x)
        while True:
            stop = self._stop_reason(st)
            if stop == "mask":
                return self._finish_with_mask(st, log_norm, rng, x=x, n_geometric=n)
            if stop == "give_up":
                return TokenSample(None, -np.inf, st.n_checks, tuple(st.rejected), gave_up=True)
            n += _phantoms(rng, st.rejected_mass)
            # the draw that misses the known rejections hits x with this probability
            if rng.random() * (1.0 - st.rejected_mass) < known_valid:
                break
            t, ok = st.visit()
            if t is None or ok:
                break
            n += 1
        return TokenSample(x, log_norm - math.log(n + 1), st.n_checks, tuple(st.rejected))

    # --- the fallback -------------------------------------------------------------------------
    def _finish_with_mask(self, st: _Step, log_norm: float, rng: np.random.Generator, *,
                          x: int | None = None, phantom: int = 0, r1: float = 0.0,
                          n_geometric: int = 0) -> TokenSample:
        """Finish the step from the full mask, continuing the same random process with known
        validity; ``x`` is set when the token was already accepted (the fallback fired during the
        weight's second round)."""
        self.stats.fallbacks += 1
        p = st.p
        allowed = np.asarray(st.constraint.allowed_token_ids(), dtype=np.int64)
        allowed = allowed[(allowed >= 0) & (allowed < len(p))]
        valid = np.zeros(len(p), dtype=bool)
        valid[allowed] = True
        z = float(p[valid].sum()) * st.scale
        rejected = tuple(st.rejected)
        if z <= 0.0:
            return TokenSample(None, -np.inf, st.n_checks, rejected, used_mask=True)
        visited = np.zeros(len(p), dtype=bool)
        visited[st.rejected] = True
        if x is None:
            live = allowed[p[allowed] > 0]
            x = int(rng.choice(live, p=p[live] / p[live].sum()))
            if not self.proper_weights:
                return TokenSample(x, 0.0, st.n_checks, rejected, used_mask=True)
            if self.estimator == "recursive":  # its conditional mean here is Z itself
                log_w = math.log(z)
            elif self.estimator == "geometric":
                n = len(st.rejected) + phantom + int(rng.geometric(z)) - 1 + int(rng.geometric(z)) - 1
                log_w = -math.log(n + 1)
            else:
                more = _race_rejections(p, valid, ~visited, rng)  # rest of round 1
                visited[more] = True
                keep = float(p[~visited].sum()) * st.scale  # 1 - R1
                n2 = len(_race_rejections(p, valid, ~visited, rng))
                log_w = math.log(keep) - math.log(int(visited.sum()) + n2 + 1)
        elif self.estimator == "geometric":
            n = n_geometric + int(rng.geometric(z)) - 1
            log_w = -math.log(n + 1)
        else:  # two_round, during round 2: x and the unvisited tokens remain
            more = _race_rejections(p, valid, ~visited, rng)
            n = len(st.rejected) + len(more)
            log_w = math.log(max(1.0 - r1, 1e-300)) - math.log(n + 1)
        return TokenSample(x, log_norm + log_w, st.n_checks, rejected, used_mask=True)


class MaskSampler:
    """Locally constrained sampling with the full mask: the exact baseline AWRS is measured
    against.

    Guarantee: the token is an exact sample of ``p`` restricted to the allowed tokens and
    renormalized, and the weight is the exact allowed mass ``Z`` (zero variance; trivially
    properly weighted). Costs one full mask per step. ``proper_weights=False`` gives weight 1
    (plain locally constrained decoding).
    """

    def __init__(self, *, proper_weights: bool = True) -> None:
        self.proper_weights = proper_weights
        self.stats = SamplerStats()

    def __repr__(self) -> str:
        return f"MaskSampler(proper_weights={self.proper_weights})"

    def sample(self, logprobs, constraint: TokenConstraint,
               rng: np.random.Generator) -> TokenSample:
        result = self._sample(logprobs, constraint, rng)
        self.stats.record(result)
        return result

    def _sample(self, logprobs, constraint: TokenConstraint,
                rng: np.random.Generator) -> TokenSample:
        p, scale, log_norm = _normalize(logprobs)
        allowed = np.asarray(constraint.allowed_token_ids(), dtype=np.int64)
        allowed = allowed[(allowed >= 0) & (allowed < len(p))]
        mass = p[allowed]
        z = float(mass.sum())
        if log_norm == -np.inf or z <= 0.0:
            return TokenSample(None, -np.inf, 0, (), used_mask=True)
        x = int(allowed[rng.choice(len(allowed), p=mass / z)])
        log_w = log_norm + math.log(z * scale) if self.proper_weights else 0.0
        return TokenSample(x, log_w, 0, (), used_mask=True)
