"""Sequential Monte Carlo over token sequences: the grammar-conditioned distribution of a model.

Locally constrained decoding samples each token from the model's distribution masked to what the
grammar allows *now*; that is myopic: it follows likely prefixes into regions where the model puts
little mass on any valid ending. SMC targets the model's distribution conditioned on the *whole*
output being valid, ``pi(x) = p(x) 1[x valid] / Z``: particles are extended with AWRS (or the full
mask), weighted by the allowed mass of every step, and resampled when the weights degenerate.
The algorithm is the AWRS-SMC of Lipkin et al. (2025, arXiv:2504.05410) built on the standard
bootstrap-style SMC with adaptive resampling (Del Moral, Doucet and Jasra, 2006).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from ..compiler import CompiledGrammar
from ..errors import ConfigurationError
from ..matcher import GrammarMatcher
from .awrs import AWRS, MaskSampler, SamplerStats
from .constraints import MatcherConstraint
from .models import LanguageModel

RESAMPLING = ("multinomial", "systematic")
PROPOSALS = ("awrs", "mask")


class Critic(Protocol):
    """A twist: ``critic(contexts, finished)`` returns log potentials ``log phi``, one per
    context (``-inf`` allowed). With a critic SMC targets ``p(x) 1[x valid] phi(x)``, where
    ``phi`` of a finished sequence (``finished=True``) is what counts in the end; the potentials
    of unfinished prefixes only guide resampling."""

    def __call__(self, contexts: Sequence[tuple[int, ...]],
                 finished: Sequence[bool]) -> np.ndarray: ...


@dataclass(frozen=True)
class Particle:
    """One final particle: its tokens (EOS included when ``finished``), decoded text and
    unnormalized log weight (``-inf`` for a particle that died)."""

    token_ids: tuple[int, ...]
    text: str
    log_weight: float
    finished: bool


@dataclass(frozen=True)
class SMCResult:
    """What :meth:`SMC.run` returns.

    ``weights`` are the normalized particle weights; ``posterior`` the weighted distribution
    over decoded strings (largest first); ``log_marginal_likelihood`` the log of the SMC
    estimate of ``Z = sum_x p(x) 1[x valid] phi(x)`` (unbiased for ``Z`` itself, on the linear
    scale); ``ess_history`` the effective sample size after each step's reweighting and
    ``resampled_at`` the steps after which particles were resampled. ``stats`` counts the
    sampler's work; ``matcher_checks`` and ``matcher_masks`` what reached the grammar matcher
    (particles sharing a state share the answers), ``model_calls`` / ``model_contexts`` the
    batched model evaluations and the distinct contexts they held.
    """

    particles: tuple[Particle, ...]
    weights: np.ndarray
    log_marginal_likelihood: float
    ess_history: tuple[float, ...]
    resampled_at: tuple[int, ...]
    stats: SamplerStats
    matcher_checks: int
    matcher_masks: int
    model_calls: int
    model_contexts: int
    posterior: dict[str, float] = field(repr=False)

    @property
    def samples(self) -> list[str]:
        """The particles' decoded strings (with the weights in :attr:`weights`)."""
        return [p.text for p in self.particles]

    @property
    def log_weights(self) -> np.ndarray:
        return np.array([p.log_weight for p in self.particles])

    @property
    def ess(self) -> float:
        """Effective sample size of the final weights."""
        return float(1.0 / np.sum(self.weights ** 2)) if self.weights.sum() > 0 else 0.0

    @property
    def map_string(self) -> str | None:
        """The string with the largest posterior probability (None if every particle died)."""
        return next(iter(self.posterior), None)

    def __len__(self) -> int:
        return len(self.particles)

    def __repr__(self) -> str:
        top = ", ".join(f"{s!r}: {w:.3f}" for s, w in list(self.posterior.items())[:3])
        return (f"SMCResult(n_particles={len(self.particles)}, "
                f"log_marginal_likelihood={self.log_marginal_likelihood:.4f}, "
                f"ess={self.ess:.2f}, posterior={{{top}}})")


class _State:
    __slots__ = ("tokens", "matcher", "finished", "potential")

    def __init__(self, tokens: list[int], matcher: GrammarMatcher, finished: bool,
                 potential: float) -> None:
        self.tokens = tokens
        self.matcher = matcher
        self.finished = finished
        self.potential = potential

    def clone(self) -> _State:
        return _State(list(self.tokens), self.matcher.fork(), self.finished, self.potential)


def _logsumexp(x: np.ndarray) -> float:
    top = float(np.max(x)) if len(x) else -np.inf
    if top == -np.inf:
        return -np.inf
    return top + math.log(float(np.sum(np.exp(x - top))))


def effective_sample_size(log_weights: np.ndarray) -> float:
    """``(sum w)^2 / sum w^2`` from log weights; 0 when every weight is 0."""
    lse = _logsumexp(log_weights)
    if lse == -np.inf:
        return 0.0
    return float(math.exp(2 * lse - _logsumexp(2 * log_weights)))


def resample(weights: np.ndarray, method: str, rng: np.random.Generator) -> np.ndarray:
    """Ancestor indices for normalized ``weights``: ``"multinomial"`` (i.i.d. draws) or
    ``"systematic"`` (one uniform, N evenly spaced points; lower variance)."""
    n = len(weights)
    if method == "multinomial":
        return rng.choice(n, size=n, p=weights)
    if method == "systematic":
        points = (rng.random() + np.arange(n)) / n
        return np.minimum(np.searchsorted(np.cumsum(weights), points, side="right"), n - 1)
    raise ConfigurationError(f"resampling must be one of {RESAMPLING}, not {method!r}")


class SMC:
    """Sequential Monte Carlo sampling from a model conditioned on a grammar.

    Guarantee. With ``proper_weights=True`` (default) the weighted particles are properly
    weighted for ``pi(x) ∝ p(x) 1[x valid] phi(x)`` over token sequences of at most
    ``max_tokens`` tokens, EOS included (``phi = 1`` without a critic): every step's weight is an
    unbiased estimate of the allowed mass (AWRS) or that mass exactly (the full mask), so
    ``exp(log_marginal_likelihood)`` is an unbiased estimate of the normalizer ``Z`` and the
    weighted posterior converges to ``pi`` as ``n_particles`` grows (Lipkin et al., 2025,
    arXiv:2504.05410; the SMC identities are those of Del Moral, Doucet and Jasra, 2006). A
    sequence still open at the token budget gets EOS forced, weighted by the model's EOS
    probability (0 when the grammar does not allow the text to end). ``proper_weights=False``
    gives plain locally constrained decoding: equal weights, never resampled, biased.

    Each particle is a matcher fork (cheap: persistent stacks) plus the token list the model
    sees; particles with the same tokens share one model evaluation and one constraint memory
    per step. ``model`` is any :class:`~structgen.sampling.LanguageModel` whose vocabulary is
    the grammar's tokenizer (logits may be wider; the extra ids are never allowed).
    """

    def __init__(self, model: LanguageModel, compiled_grammar: CompiledGrammar, *,
                 proposal: str = "awrs", critic: Critic | None = None,
                 estimator: str = "recursive", order: str = "lazy",
                 proper_weights: bool = True, max_rejects: int | None = None,
                 fallback_mass: float | None = 0.9,
                 fallback_rejects: int | None = 32) -> None:
        if not isinstance(compiled_grammar, CompiledGrammar):
            raise ConfigurationError("SMC needs a CompiledGrammar from GrammarCompiler")
        if proposal not in PROPOSALS:
            raise ConfigurationError(f"proposal must be one of {PROPOSALS}, not {proposal!r}")
        if not compiled_grammar.tokenizer_info.eos_token_ids:
            raise ConfigurationError(
                "SMC needs an EOS token to end sequences: give the TokenizerInfo eos_token_ids")
        self.model = model
        self.compiled_grammar = compiled_grammar
        self.proposal = proposal
        self.critic = critic
        self.proper_weights = proper_weights
        self._awrs_options = dict(estimator=estimator, order=order, max_rejects=max_rejects,
                                  fallback_mass=fallback_mass, fallback_rejects=fallback_rejects)
        self._make_sampler()  # validates the options now

    def _make_sampler(self) -> AWRS | MaskSampler:
        if self.proposal == "mask":
            return MaskSampler(proper_weights=self.proper_weights)
        return AWRS(proper_weights=self.proper_weights, **self._awrs_options)

    def __repr__(self) -> str:
        return (f"SMC(proposal={self.proposal!r}, proper_weights={self.proper_weights}, "
                f"critic={self.critic!r})")

    def run(self, n_particles: int, max_tokens: int, *, ess_threshold: float = 0.5,
            resampling: str = "multinomial", seed: int | None = None) -> SMCResult:
        """Run ``n_particles`` particles for at most ``max_tokens`` tokens (EOS included).

        Particles are resampled after a step when the effective sample size falls below
        ``ess_threshold * n_particles`` (0 never resamples: importance sampling; 1 always does).
        """
        if n_particles < 1 or max_tokens < 1:
            raise ConfigurationError("n_particles and max_tokens must be >= 1")
        if not 0.0 <= ess_threshold <= 1.0:
            raise ConfigurationError("ess_threshold is a fraction of n_particles, in [0, 1]")
        if resampling not in RESAMPLING:
            raise ConfigurationError(f"resampling must be one of {RESAMPLING}, not {resampling!r}")
        return _Run(self, n_particles, max_tokens, ess_threshold, resampling,
                    np.random.default_rng(seed)).execute()


class _Run:
    """The state of one :meth:`SMC.run`."""

    def __init__(self, smc: SMC, n: int, max_tokens: int, ess_threshold: float,
                 resampling: str, rng: np.random.Generator) -> None:
        self.smc = smc
        self.n = n
        self.max_tokens = max_tokens
        self.ess_threshold = ess_threshold
        self.resampling = resampling
        self.rng = rng
        self.sampler = smc._make_sampler()
        info = smc.compiled_grammar.tokenizer_info
        self.info = info
        self.eos = np.array(info.eos_token_ids, dtype=np.int64)
        self.eos_set = frozenset(info.eos_token_ids)
        root = GrammarMatcher(smc.compiled_grammar)
        self.states = [_State([], root.fork(), False, 0.0) for _ in range(n)]
        self.log_w = np.zeros(n)
        self.ess_history: list[float] = []
        self.resampled_at: list[int] = []
        self.matcher_checks = 0
        self.matcher_masks = 0
        self.model_calls = 0
        self.model_contexts = 0

    def execute(self) -> SMCResult:
        for step in range(self.max_tokens):
            active = [i for i, s in enumerate(self.states)
                      if not s.finished and self.log_w[i] > -np.inf]
            if not active:
                break
            self._extend(active, forced_eos=step == self.max_tokens - 1)
            if self.smc.critic is not None:
                self._twist(active)
            ess = effective_sample_size(self.log_w)
            self.ess_history.append(ess)
            if ess == 0.0:
                break
            if (self.smc.proper_weights and ess < self.ess_threshold * self.n
                    and step < self.max_tokens - 1):
                self._resample()
                self.resampled_at.append(step)
        return self._result()

    def _extend(self, active: list[int], *, forced_eos: bool) -> None:
        groups: dict[tuple[int, ...], list[int]] = {}
        for i in active:
            groups.setdefault(tuple(self.states[i].tokens), []).append(i)
        contexts = list(groups)
        rows = np.asarray(self.smc.model.next_token_logprobs(contexts), dtype=np.float64)
        self.model_calls += 1
        self.model_contexts += len(contexts)
        if rows.ndim != 2 or rows.shape[0] != len(contexts) or rows.shape[1] < self.info.vocab_size:
            raise ConfigurationError(
                f"model returned log-probabilities of shape {rows.shape}; expected "
                f"({len(contexts)}, >= {self.info.vocab_size}) (the tokenizer's vocab_size)")
        for row, members in zip(rows, groups.values(), strict=True):
            if forced_eos:
                for i in members:
                    self._force_eos(i, row)
                continue
            # a fork: the members advance their own matchers while the constraint is shared
            constraint = MatcherConstraint(self.states[members[0]].matcher.fork())
            for i in members:
                self._advance(i, self.sampler.sample(row, constraint, self.rng))
            self.matcher_checks += constraint.n_evaluations
            self.matcher_masks += constraint.n_masks

    def _advance(self, i: int, draw) -> None:
        state = self.states[i]
        if draw.token_id is None:
            self.log_w[i] = -np.inf
            return
        if not state.matcher.accept_token(draw.token_id):  # pragma: no cover - sampler bug
            raise AssertionError(f"sampled token {draw.token_id} was not allowed")
        state.tokens.append(draw.token_id)
        state.finished = draw.token_id in self.eos_set
        self.log_w[i] += draw.log_weight

    def _force_eos(self, i: int, row: np.ndarray) -> None:
        """The last token of the budget: EOS, weighted by its probability, if the text may end."""
        state = self.states[i]
        if not state.matcher.is_completed():
            self.log_w[i] = -np.inf
            return
        top = float(np.max(row))
        log_norm = top + math.log(float(np.sum(np.exp(row - top))))
        eos_lp = row[self.eos] - log_norm
        log_z = _logsumexp(eos_lp)
        if log_z == -np.inf:
            self.log_w[i] = -np.inf
            return
        k = int(self.rng.choice(len(self.eos), p=np.exp(eos_lp - log_z)))
        token = int(self.eos[k])
        if not state.matcher.accept_token(token):  # pragma: no cover - matcher contract
            raise AssertionError("EOS refused by a completed matcher")
        state.tokens.append(token)
        state.finished = True
        if self.smc.proper_weights:
            self.log_w[i] += log_z

    def _twist(self, active: list[int]) -> None:
        live = [i for i in active if self.log_w[i] > -np.inf]
        if not live:
            return
        contexts = [tuple(self.states[i].tokens) for i in live]
        finished = [self.states[i].finished for i in live]
        scores = np.asarray(self.smc.critic(contexts, finished), dtype=np.float64)
        if scores.shape != (len(live),):
            raise ConfigurationError(f"critic returned shape {scores.shape}; expected ({len(live)},)")
        for i, score in zip(live, scores, strict=True):
            state = self.states[i]
            self.log_w[i] += float(score) - state.potential
            state.potential = float(score)

    def _resample(self) -> None:
        lse = _logsumexp(self.log_w)
        ancestors = resample(np.exp(self.log_w - lse), self.resampling, self.rng)
        used: set[int] = set()
        states = []
        for a in ancestors:
            a = int(a)
            states.append(self.states[a] if a not in used else self.states[a].clone())
            used.add(a)
        self.states = states
        self.log_w = np.full(self.n, lse - math.log(self.n))

    def _result(self) -> SMCResult:
        particles = []
        for state, lw in zip(self.states, self.log_w, strict=True):
            ids = tuple(state.tokens)
            body = [t for t in ids if t not in self.eos_set]
            text = self.info.decode_bytes(body).decode("utf-8", errors="replace")
            dead = not state.finished
            particles.append(Particle(ids, text, -np.inf if dead else float(lw), state.finished))
        log_w = np.array([p.log_weight for p in particles])
        lse = _logsumexp(log_w)
        weights = np.zeros(self.n) if lse == -np.inf else np.exp(log_w - lse)
        posterior: dict[str, float] = {}
        for p, w in zip(particles, weights, strict=True):
            if w > 0:
                posterior[p.text] = posterior.get(p.text, 0.0) + float(w)
        posterior = dict(sorted(posterior.items(), key=lambda kv: (-kv[1], kv[0])))
        return SMCResult(
            particles=tuple(particles), weights=weights,
            log_marginal_likelihood=lse - math.log(self.n),
            ess_history=tuple(self.ess_history), resampled_at=tuple(self.resampled_at),
            stats=self.sampler.stats, matcher_checks=self.matcher_checks,
            matcher_masks=self.matcher_masks,
            model_calls=self.model_calls, model_contexts=self.model_contexts,
            posterior=posterior)
