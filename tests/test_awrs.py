"""AWRS against exact distributions: the token is an exact sample of the masked, renormalized
distribution (chi-square over 20,000 draws) and every weight estimator is unbiased for the
allowed mass (mean within its confidence interval). Seeds are fixed, so each test is
deterministic; the negative controls show the same checks do reject a wrong distribution and a
biased estimator."""

from __future__ import annotations

import math

import numpy as np
import pytest

from structgen import GrammarMatcher
from structgen.errors import ConfigurationError
from structgen.sampling import AWRS, ESTIMATORS, MaskSampler, MatcherConstraint

DRAWS = 20_000


class SetConstraint:
    """A constraint given by its allowed set (exact answers, no grammar)."""

    def __init__(self, allowed) -> None:
        self.ids = np.array(sorted(int(t) for t in allowed), dtype=np.int64)
        self._set = set(self.ids.tolist())
        self.checks = 0
        self.masks = 0

    def check(self, token_id: int) -> bool:
        self.checks += 1
        return int(token_id) in self._set

    def allowed_token_ids(self) -> np.ndarray:
        self.masks += 1
        return self.ids


def chi2_sf(x: float, df: int) -> float:
    """P(chi2_df >= x): the regularized upper incomplete gamma Q(df/2, x/2)."""
    a, z = df / 2.0, x / 2.0
    if z <= 0:
        return 1.0
    log_front = a * math.log(z) - z - math.lgamma(a)
    if z < a + 1:  # series for P, then Q = 1 - P
        term = total = 1.0 / a
        k = a
        while term > total * 1e-15:
            k += 1
            term *= z / k
            total += term
        return max(0.0, 1.0 - total * math.exp(log_front))
    # Lentz's continued fraction for Q
    tiny = 1e-300
    b = z + 1.0 - a
    c = 1.0 / tiny
    d = 1.0 / b
    h = d
    for i in range(1, 1000):
        an = -i * (i - a)
        b += 2.0
        d = an * d + b
        d = tiny if abs(d) < tiny else d
        c = b + an / c
        c = tiny if abs(c) < tiny else c
        d = 1.0 / d
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-15:
            break
    return h * math.exp(log_front)


def chi_square_pvalue(counts: dict[int, int], probs: dict[int, float]) -> tuple[float, int]:
    """Pearson's test of ``counts`` against ``probs`` (bins with expected < 5 pooled)."""
    n = sum(counts.values())
    if set(counts) - set(probs):
        return 0.0, 0  # a sample outside the support
    bins, pool_obs, pool_exp = [], 0, 0.0
    for t, q in probs.items():
        e = q * n
        if e < 5:
            pool_obs += counts.get(t, 0)
            pool_exp += e
        else:
            bins.append((counts.get(t, 0), e))
    if pool_exp > 0:
        bins.append((pool_obs, pool_exp))
    stat = sum((o - e) ** 2 / e for o, e in bins)
    df = len(bins) - 1
    return chi2_sf(stat, df), df


def test_chi2_sf_matches_known_quantiles() -> None:
    assert chi2_sf(3.841458820694124, 1) == pytest.approx(0.05, rel=1e-6)
    assert chi2_sf(11.070497693516351, 5) == pytest.approx(0.05, rel=1e-6)
    assert chi2_sf(2.0, 10) == pytest.approx(0.9963401531726, rel=1e-6)


# --- scenarios with exact answers -------------------------------------------------------------
def _scenario(name: str):
    """(logprobs, allowed ids) over 12 tokens (1,000 for "blocks"); Z = allowed mass."""
    rng = np.random.default_rng(2024)
    if name == "blocks":  # mass over 4 blocks of the lazy order, the likely tokens invalid
        p = np.full(1000, 1e-4)
        heavy = rng.choice(1000, 24, replace=False)
        p[heavy] += rng.dirichlet(np.ones(24))
        p /= p.sum()
        order = heavy[np.argsort(-p[heavy])]
        return np.log(p), np.sort(order[[2, 5, 9, 14, 20]])
    p = rng.dirichlet(np.full(12, 0.7))
    order = np.argsort(-p)
    if name == "scattered":  # Z ~ 0.2: the likely tokens are mostly invalid
        allowed = order[[1, 4, 7, 9]]
    elif name == "peaked":  # the top token is valid: AWRS' best case
        allowed = order[[0, 3, 6]]
    else:  # "rare": under 10% valid mass, the fallback fires often
        allowed = order[[5, 8, 10, 11]]
    return np.log(p), np.sort(allowed)


def _draw(sampler, logp, constraint, seed: int, n: int = DRAWS):
    rng = np.random.default_rng(seed)
    tokens = np.empty(n, dtype=np.int64)
    weights = np.empty(n)
    for i in range(n):
        s = sampler.sample(logp, constraint, rng)
        tokens[i] = s.token_id
        weights[i] = s.weight
    return tokens, weights


def _target(logp: np.ndarray, allowed: np.ndarray) -> tuple[dict[int, float], float]:
    p = np.exp(logp)
    z = float(p[allowed].sum())
    return {int(t): float(p[t] / z) for t in allowed}, z


# (scenario, estimator, order, options, draws): "rare" forces the fallback (one mask, then the
# same random process simulated with known validity) in most steps, in both rounds
CASES = ([("scattered", est, order, {}, DRAWS) for est in ESTIMATORS for order in ("lazy", "dense")]
         + [("rare", est, "lazy", {"fallback_rejects": 2}, DRAWS // 2) for est in ESTIMATORS]
         + [("peaked", est, "dense", {}, DRAWS) for est in ESTIMATORS]
         + [("blocks", "recursive", order, {}, DRAWS) for order in ("lazy", "dense")])


@pytest.mark.parametrize("scenario,estimator,order,options,draws", CASES,
                         ids=[f"{c[0]}-{c[1]}-{c[2]}" for c in CASES])
def test_awrs_exact_token_and_unbiased_weight(scenario, estimator, order, options, draws) -> None:
    logp, allowed = _scenario(scenario)
    target, z = _target(logp, allowed)
    sampler = AWRS(estimator=estimator, order=order, **options)
    tokens, weights = _draw(sampler, logp, SetConstraint(allowed), seed=7, n=draws)
    ids, counts = np.unique(tokens, return_counts=True)
    pvalue, df = chi_square_pvalue(dict(zip(ids.tolist(), counts.tolist(), strict=True)), target)
    assert pvalue > 1e-3, f"token frequencies differ from the masked distribution (p={pvalue:.2e})"
    se = weights.std(ddof=1) / math.sqrt(len(weights))
    zscore = (weights.mean() - z) / se
    assert abs(zscore) < 4, f"mean weight {weights.mean():.5f} vs Z={z:.5f} ({zscore:.1f} SE)"
    if options:
        assert sampler.stats.fallbacks > draws // 10  # the fallback path was exercised


def test_chi_square_has_power_against_a_small_error() -> None:
    """The same test rejects a target off by 3 points of probability on two tokens."""
    logp, allowed = _scenario("scattered")
    target, _ = _target(logp, allowed)
    tokens, _ = _draw(AWRS(), logp, SetConstraint(allowed), seed=7)
    ids, counts = np.unique(tokens, return_counts=True)
    wrong = dict(target)
    a, b = list(wrong)[:2]
    wrong[a] += 0.03
    wrong[b] -= 0.03
    pvalue, _ = chi_square_pvalue(dict(zip(ids.tolist(), counts.tolist(), strict=True)), wrong)
    assert pvalue < 1e-5


def test_naive_weight_is_detected_as_biased() -> None:
    """The unbiasedness check has power: ``1 - R1`` (mass not rejected before the accepted
    token, an upper bound of Z) fails it."""
    logp, allowed = _scenario("scattered")
    _, z = _target(logp, allowed)
    p = np.exp(logp)
    sampler = AWRS(proper_weights=False)
    rng = np.random.default_rng(7)
    naive = np.array([1.0 - p[list(sampler.sample(logp, SetConstraint(allowed), rng).rejected)].sum()
                      for _ in range(5_000)])
    zscore = (naive.mean() - z) / (naive.std(ddof=1) / math.sqrt(len(naive)))
    assert zscore > 10


def test_estimator_variances_rank_as_expected_when_the_top_token_is_valid() -> None:
    logp, allowed = _scenario("peaked")
    variances = {}
    for est in ESTIMATORS:
        _, w = _draw(AWRS(estimator=est), logp, SetConstraint(allowed), seed=3, n=4_000)
        variances[est] = w.var()
    # the recursive estimator only randomizes the unvisited tail; two-round is the noisiest
    assert variances["recursive"] < variances["two_round"]


def test_plain_locally_constrained_sampling_is_exact_with_unit_weight() -> None:
    logp, allowed = _scenario("scattered")
    target, _ = _target(logp, allowed)
    tokens, weights = _draw(AWRS(proper_weights=False), logp, SetConstraint(allowed), seed=11)
    assert np.all(weights == 1.0)
    ids, counts = np.unique(tokens, return_counts=True)
    pvalue, _ = chi_square_pvalue(dict(zip(ids.tolist(), counts.tolist(), strict=True)), target)
    assert pvalue > 1e-3


def test_mask_sampler_is_exact_with_exact_weight() -> None:
    logp, allowed = _scenario("rare")
    target, z = _target(logp, allowed)
    tokens, weights = _draw(MaskSampler(), logp, SetConstraint(allowed), seed=5, n=5_000)
    assert np.allclose(weights, z)
    ids, counts = np.unique(tokens, return_counts=True)
    assert chi_square_pvalue(dict(zip(ids.tolist(), counts.tolist(), strict=True)), target)[0] > 1e-3


def test_unnormalized_logprobs_scale_the_weight() -> None:
    logp, allowed = _scenario("peaked")
    _, z = _target(logp, allowed)
    _, w = _draw(AWRS(), logp + 3.0, SetConstraint(allowed), seed=1, n=3_000)
    assert w.mean() == pytest.approx(z * math.exp(3.0), rel=0.05)


# --- bounded work, fallback, dead ends -----------------------------------------------------
def test_max_rejects_gives_up_with_zero_weight() -> None:
    logp, allowed = _scenario("rare")
    sampler = AWRS(max_rejects=1, fallback_mass=None, fallback_rejects=None)
    rng = np.random.default_rng(0)
    results = [sampler.sample(logp, SetConstraint(allowed), rng) for _ in range(500)]
    gave_up = [r for r in results if r.gave_up]
    assert gave_up and all(r.token_id is None and r.weight == 0.0 for r in gave_up)
    assert all(r.n_checks <= 2 for r in results)  # one rejection, then one more check at most
    assert sampler.stats.gave_up == len(gave_up)


def test_fallback_uses_one_mask_and_is_counted() -> None:
    logp, allowed = _scenario("rare")
    sampler = AWRS(fallback_rejects=1, estimator="recursive")
    rng = np.random.default_rng(0)
    constraint = SetConstraint(allowed)
    results = [sampler.sample(logp, constraint, rng) for _ in range(300)]
    used = sum(r.used_mask for r in results)
    assert used == sampler.stats.fallbacks == constraint.masks > 0
    _, z = _target(logp, allowed)
    assert all(r.weight == pytest.approx(z) for r in results if r.used_mask)


def test_dead_end_returns_no_token() -> None:
    logp, _ = _scenario("scattered")
    for sampler in (AWRS(), AWRS(fallback_mass=None, fallback_rejects=None), MaskSampler()):
        s = sampler.sample(logp, SetConstraint([]), np.random.default_rng(0))
        assert s.token_id is None and s.log_weight == -np.inf
    # the only valid token has probability 0
    logp2 = logp.copy()
    logp2[3] = -np.inf
    s = AWRS().sample(logp2, SetConstraint([3]), np.random.default_rng(0))
    assert s.token_id is None and s.weight == 0.0


def test_bad_options_and_inputs_raise() -> None:
    with pytest.raises(ConfigurationError):
        AWRS(estimator="nope")
    with pytest.raises(ConfigurationError):
        AWRS(order="gumbel")
    with pytest.raises(ConfigurationError):
        AWRS(fallback_mass=1.5)
    with pytest.raises(ConfigurationError):
        AWRS().sample(np.array([0.0, np.nan]), SetConstraint([0]), np.random.default_rng(0))


# --- with the real grammar matcher -------------------------------------------------------
def test_awrs_with_json_matcher_is_exact_and_remembers_rejections(compiled_json) -> None:
    """GPT-2 vocabulary, JSON grammar, inside an array: a model whose mass sits on 40 tokens,
    half of them invalid here. The sampled tokens follow the exact masked distribution and each
    rejected token is checked against the grammar once, however many draws revisit it."""
    compiled = compiled_json("gpt2")
    info = compiled.tokenizer_info
    matcher = GrammarMatcher(compiled)
    assert matcher.accept_string('{"name": "x", "values": [1, 2')
    allowed = matcher.allowed_token_ids()
    rng = np.random.default_rng(42)
    invalid = np.setdiff1d(np.arange(info.vocab_size), allowed)
    support = np.concatenate([rng.choice(allowed, 20, replace=False),
                              rng.choice(invalid, 20, replace=False)])
    logp = np.full(info.vocab_size, -np.inf)
    logp[support] = np.log(rng.dirichlet(np.full(40, 0.5)))
    valid_support = np.intersect1d(support, allowed)
    target, z = _target(logp, valid_support)

    constraint = MatcherConstraint(matcher.fork())
    sampler = AWRS(estimator="recursive")
    tokens, weights = _draw(sampler, logp, constraint, seed=9, n=5_000)
    ids, counts = np.unique(tokens, return_counts=True)
    pvalue, _ = chi_square_pvalue(dict(zip(ids.tolist(), counts.tolist(), strict=True)), target)
    assert pvalue > 1e-3
    se = weights.std(ddof=1) / math.sqrt(len(weights))
    assert abs(weights.mean() - z) < 4 * se
    assert constraint.n_evaluations <= 40  # every answer remembered
    assert set(constraint.rejected_token_ids) <= set(np.setdiff1d(support, allowed).tolist())
    assert sampler.stats.checks > 10 * constraint.n_evaluations
    assert matcher.num_accepted_tokens == 1  # the matcher itself never moved
