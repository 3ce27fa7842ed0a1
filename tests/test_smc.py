"""SMC against the exact grammar-conditioned distribution, computed by enumeration.

A 7-token vocabulary, a grammar with five strings (two of them with two tokenizations) and a
tabular model built to be myopic: 70% of its first-token mass goes to ``a``/``ab``, after which
it rarely continues validly. Locally constrained decoding therefore mostly writes ``ab...``;
the model's distribution conditioned on validity does not. The tests show SMC's weighted
posterior approaching the exact global posterior as particles grow while locally constrained
decoding stays at its own (exactly computed) wrong answer, and the log marginal likelihood
estimating log Z.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from structgen import GrammarCompiler, GrammarMatcher, TokenizerInfo
from structgen.errors import ConfigurationError
from structgen.sampling import SMC, TabularLM, effective_sample_size, resample

TOKENS = [b"a", b"b", b"c", b"d", b"ab", b"cd", b"<eos>"]
EOS = 6
GRAMMAR = 'start: "abc" | "ad" | "b" "c" "d"? | "cd"\n'


@pytest.fixture(scope="module")
def compiled():
    info = TokenizerInfo.from_byte_strings(TOKENS, eos_token_ids=[EOS])
    return GrammarCompiler(info).compile_grammar(GRAMMAR)


@pytest.fixture(scope="module")
def lm() -> TabularLM:
    """Second-order model; rows not listed are seeded Dirichlet(1) draws."""
    #                 a     b     c     d     ab    cd    eos
    table = {
        (-1, -1): [0.45, 0.10, 0.05, 0.05, 0.25, 0.05, 0.05],  # start: "a"/"ab" look good
        (-1, 0): [0.43, 0.05, 0.20, 0.02, 0.10, 0.10, 0.10],  # after "a": rarely b or d
        (-1, 4): [0.30, 0.30, 0.05, 0.10, 0.10, 0.10, 0.05],  # after "ab": rarely c
        (0, 1): [0.30, 0.30, 0.05, 0.10, 0.10, 0.10, 0.05],  # after "a" "b": rarely c
    }
    return TabularLM(len(TOKENS), 2, table, seed=11)


def _text(tokens) -> str:
    return b"".join(TOKENS[t] for t in tokens if t != EOS).decode()


def _enumerate(compiled, lm, max_tokens: int, *, local: bool):
    """Every valid complete token sequence of at most ``max_tokens`` tokens (EOS included) with
    its probability: under the model (``local=False``) or under locally constrained decoding
    (each step renormalized over the allowed tokens; the last step of the budget allows EOS
    only, as SMC does)."""
    out: dict[tuple[int, ...], float] = {}

    def walk(matcher: GrammarMatcher, tokens: list[int], prob: float) -> None:
        last = len(tokens) == max_tokens - 1
        row = np.exp(lm.row(tokens))
        allowed = [t for t in range(len(TOKENS))
                   if (t == EOS or not last) and matcher.fork().accept_token(t)]
        z = sum(row[t] for t in allowed) if local else 1.0
        for t in allowed:
            q = prob * row[t] / z
            if t == EOS:
                out[tuple(tokens + [t])] = q
            else:
                m = matcher.fork()
                m.accept_token(t)
                walk(m, tokens + [t], q)

    walk(GrammarMatcher(compiled), [], 1.0)
    return out


def _by_string(seqs: dict) -> dict[str, float]:
    dist: dict[str, float] = {}
    for seq, q in seqs.items():
        dist[_text(seq)] = dist.get(_text(seq), 0.0) + q
    return dist


def exact(compiled, lm, max_tokens: int = 8) -> tuple[dict[str, float], float]:
    """The global posterior over strings and its normalizer Z = P(valid, within budget)."""
    seqs = _enumerate(compiled, lm, max_tokens, local=False)
    z = sum(seqs.values())
    return {s: q / z for s, q in _by_string(seqs).items()}, z


def exact_local(compiled, lm, max_tokens: int = 8) -> dict[str, float]:
    seqs = _enumerate(compiled, lm, max_tokens, local=True)
    total = sum(seqs.values())
    return {s: q / total for s, q in _by_string(seqs).items()}


def tv(p: dict[str, float], q: dict[str, float]) -> float:
    return 0.5 * sum(abs(p.get(k, 0.0) - q.get(k, 0.0)) for k in set(p) | set(q))


# --- the case is myopic ------------------------------------------------------------------------
def test_enumeration_shows_local_decoding_is_myopic(compiled, lm) -> None:
    target, z = exact(compiled, lm)
    local = exact_local(compiled, lm)
    assert set(target) == {"abc", "ad", "bc", "bcd", "cd"}
    assert sum(target.values()) == pytest.approx(1.0)
    assert local["abc"] + local["ad"] > 0.7  # what locally constrained decoding writes
    assert target["abc"] + target["ad"] < 0.35  # what the model means, conditioned on validity
    assert tv(local, target) > 0.4
    assert 0 < z < 0.01


# --- SMC approaches the global posterior ---------------------------------------------------
def pooled(runs) -> dict[str, float]:
    """Independent SMC runs combined, each weighted by its marginal-likelihood estimate."""
    log_z = np.array([r.log_marginal_likelihood for r in runs])
    w = np.exp(log_z - log_z.max())
    w /= w.sum()
    out: dict[str, float] = {}
    for wi, r in zip(w, runs, strict=True):
        for s, q in r.posterior.items():
            out[s] = out.get(s, 0.0) + wi * q
    return out


def _runs(compiled, lm, n_particles: int, n_runs: int, max_tokens: int = 8, run_options=None,
          **options):
    smc = SMC(lm, compiled, **options)
    return [smc.run(n_particles, max_tokens, seed=seed, **(run_options or {}))
            for seed in range(n_runs)]


def test_smc_posterior_approaches_global_posterior_while_local_decoding_stays_biased(
        compiled, lm) -> None:
    target, _ = exact(compiled, lm)
    local = exact_local(compiled, lm)
    tvs = {n: float(np.mean([tv(r.posterior, target) for r in _runs(compiled, lm, n, 20)]))
           for n in (4, 16, 64, 256)}
    assert tvs[4] > tvs[16] > tvs[64] > tvs[256], tvs
    assert tvs[256] < 0.25, tvs
    assert tv(pooled(_runs(compiled, lm, 256, 10)), target) < 0.12
    # the same sampler without weights is locally constrained decoding: it converges, to the
    # wrong (local) distribution
    lcd = SMC(lm, compiled, proper_weights=False).run(2_000, 8, seed=0)
    assert np.allclose(lcd.weights, 1 / 2_000)
    assert tv(lcd.posterior, local) < 0.03
    assert tv(lcd.posterior, target) > 0.45


VARIANTS = [({"estimator": "two_round"}, {}), ({"estimator": "geometric"}, {}),
            ({"order": "dense"}, {}), ({"proposal": "mask"}, {}),
            ({}, {"ess_threshold": 1.0, "resampling": "systematic"})]


@pytest.mark.parametrize("options,run_options", VARIANTS,
                         ids=["two_round", "geometric", "dense", "mask", "systematic"])
def test_variants_reach_the_global_posterior(compiled, lm, options, run_options) -> None:
    target, z = exact(compiled, lm)
    runs = _runs(compiled, lm, 256, 10, run_options=run_options, **options)
    assert tv(pooled(runs), target) < 0.12
    assert abs(np.mean([r.log_marginal_likelihood for r in runs]) - math.log(z)) < 0.15
    if run_options:
        assert all(r.resampled_at for r in runs)


def test_log_marginal_likelihood_estimates_log_z(compiled, lm) -> None:
    """exp(log_marginal_likelihood) is unbiased for Z; with 256 particles log Z-hat is close."""
    _, z = exact(compiled, lm)
    small = np.array([math.exp(r.log_marginal_likelihood) for r in _runs(compiled, lm, 4, 300)])
    se = small.std(ddof=1) / math.sqrt(len(small))
    assert abs(small.mean() - z) < 4 * se, (small.mean(), z, se)
    big = [r.log_marginal_likelihood for r in _runs(compiled, lm, 256, 10)]
    assert abs(np.mean(big) - math.log(z)) < 0.15, (np.mean(big), math.log(z))


def test_budget_truncates_the_target(compiled, lm) -> None:
    """With max_tokens=3 the target is the valid strings of at most 3 tokens (EOS included):
    ``abc`` survives only as ``ab`` ``c``."""
    target, z = exact(compiled, lm, max_tokens=3)
    assert target != exact(compiled, lm)[0]
    runs = _runs(compiled, lm, 256, 10, max_tokens=3)
    assert tv(pooled(runs), target) < 0.12
    assert abs(np.mean([r.log_marginal_likelihood for r in runs]) - math.log(z)) < 0.15
    assert all(len(p.token_ids) <= 3 for r in runs for p in r.particles)


def test_critic_twists_the_target(compiled, lm) -> None:
    """A critic exp(-len(text)) on every prefix: the target becomes
    p(x) 1[x valid] exp(-len(x))."""

    def critic(contexts, finished):
        return np.array([-1.0 * len(_text(c)) for c in contexts])

    base, _ = exact(compiled, lm)
    seqs = _enumerate(compiled, lm, 8, local=False)
    z = sum(q * math.exp(-len(_text(s))) for s, q in seqs.items())
    twisted = {s: q * math.exp(-len(s)) for s, q in base.items()}
    total = sum(twisted.values())
    twisted = {s: q / total for s, q in twisted.items()}
    assert tv(twisted, base) > 0.1
    runs = _runs(compiled, lm, 256, 10, critic=critic)
    assert tv(pooled(runs), twisted) < 0.12
    assert abs(np.mean([r.log_marginal_likelihood for r in runs]) - math.log(z)) < 0.15


# --- the result object and the API -----------------------------------------------------------
def test_result_object(compiled, lm) -> None:
    r = SMC(lm, compiled).run(16, 8, seed=3)
    assert len(r) == 16 and r.weights.shape == (16,)
    assert r.weights.sum() == pytest.approx(1.0)
    assert sum(r.posterior.values()) == pytest.approx(1.0)
    assert list(r.posterior.values()) == sorted(r.posterior.values(), reverse=True)
    assert r.map_string == next(iter(r.posterior))
    assert len(r.ess_history) >= 2 and all(0 <= e <= 16 + 1e-9 for e in r.ess_history)
    assert all(p.finished and p.token_ids[-1] == EOS for p in r.particles if p.log_weight > -np.inf)
    assert set(r.samples) <= {"abc", "ad", "bc", "bcd", "cd"}
    assert r.stats.steps > 0 and r.stats.checks >= r.matcher_checks > 0
    assert "SMCResult(" in repr(r)
    again = SMC(lm, compiled).run(16, 8, seed=3)
    assert again.samples == r.samples and np.array_equal(again.weights, r.weights)


def test_bad_arguments_raise(compiled, lm) -> None:
    with pytest.raises(ConfigurationError):
        SMC(lm, compiled, proposal="beam")
    with pytest.raises(ConfigurationError):
        SMC(lm, "start: a")
    with pytest.raises(ConfigurationError):
        SMC(lm, compiled).run(4, 8, resampling="stratified")
    with pytest.raises(ConfigurationError):
        SMC(lm, compiled).run(0, 8)
    narrow = TabularLM(3, 0, {(): [1, 1, 1]})
    with pytest.raises(ConfigurationError):
        SMC(narrow, compiled).run(2, 4, seed=0)
    info = TokenizerInfo.from_byte_strings(TOKENS)
    with pytest.raises(ConfigurationError):
        SMC(lm, GrammarCompiler(info).compile_grammar(GRAMMAR))


def test_resampling_helpers() -> None:
    rng = np.random.default_rng(0)
    w = np.array([0.0, 0.5, 0.25, 0.25])
    for method in ("multinomial", "systematic"):
        idx = resample(w, method, rng)
        assert len(idx) == 4 and 0 not in idx
    assert sorted(resample(w, "systematic", np.random.default_rng(1)).tolist()) == [1, 1, 2, 3]
    assert effective_sample_size(np.zeros(5)) == pytest.approx(5.0)
    assert effective_sample_size(np.array([0.0, -np.inf])) == pytest.approx(1.0)
    assert effective_sample_size(np.full(3, -np.inf)) == 0.0


def test_tabular_lm() -> None:
    lm = TabularLM(4, 1, {(-1,): [1, 1, 2, 0]}, seed=5)
    first = lm.next_token_logprobs([[]])[0]
    assert np.allclose(np.exp(first), [0.25, 0.25, 0.5, 0.0])
    again = TabularLM(4, 1, seed=5).row([2])
    assert np.allclose(lm.row([3, 2]), again)  # seeded rows depend on (seed, context) only
    assert np.exp(again).sum() == pytest.approx(1.0)
    assert lm.sequence_logprob([2, 2]) == pytest.approx(math.log(0.5) + float(again[2]))
    with pytest.raises(ConfigurationError):
        TabularLM(4, 1, {(0, 1): [1, 1, 1, 1]})
    with pytest.raises(ConfigurationError):
        TabularLM(4, 0).row([])
