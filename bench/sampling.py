"""Per-token cost of constrained sampling: AWRS beside full-mask sampling.

Run from the repository root::

    python bench/sampling.py              # GPT-2 vocabulary, JSON grammar, three synthetic models
    python bench/sampling.py --quick      # a few short sequences (seconds; what the tests run)
    python bench/sampling.py --json out.json

Both samplers draw from the same distribution -- the model's next-token distribution masked to
what the JSON grammar allows, renormalized -- so their per-token costs are comparable. The full
mask decides every one of the 50,257 tokens at every step (structgen's native mask fill, then
sampling from the allowed ids); AWRS (``structgen.sampling.AWRS``) checks only the tokens it
draws, and with proper weights also estimates the allowed mass. Times are the sampler call only
(the synthetic models cost a table lookup and are not counted); "checks" are single-token
grammar checks, "masks" full-vocabulary masks (AWRS computes one when it falls back).

The models are synthetic, built in this file from token statistics of generated JSON documents
(nothing is downloaded): ``bigram`` (a bigram model of JSON token sequences with 1% background
mass; a good model), ``bigram-noisy`` (25% background), ``unigram`` (token frequencies only: a
poor model, most of its mass invalid at most steps). The AWRS paper's claim to check: the better
the model, the fewer checks. genlm-control (the only peer with AWRS) is not measured here: it
needs its own environment (transformers 5 pins) and a model adapter of its own.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # `python bench/sampling.py` puts bench/ on sys.path, not the root
    sys.path.insert(0, str(REPO))

from structgen import GrammarCompiler, GrammarMatcher  # noqa: E402
from structgen.bundled import bundled_encoder, load_bundled_tokenizer  # noqa: E402
from structgen.sampling import AWRS, SMC, MaskSampler, MatcherConstraint  # noqa: E402

WORDS = ("name id value type items count enabled user email city price tags status "
         "created description score level data result message error code list title").split()


# --- synthetic JSON documents and models -------------------------------------------------------
def _value(rng: random.Random, depth: int):
    kind = rng.random()
    if depth < 3 and kind < 0.15:
        return {rng.choice(WORDS): _value(rng, depth + 1) for _ in range(rng.randint(1, 4))}
    if depth < 3 and kind < 0.3:
        return [_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    if kind < 0.55:
        return rng.randint(-1000, 100000)
    if kind < 0.65:
        return round(rng.uniform(-100, 100), rng.randint(1, 4))
    if kind < 0.75:
        return rng.choice([True, False, None])
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 3)))


def json_documents(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    docs = []
    for _ in range(n):
        doc = {rng.choice(WORDS): _value(rng, 1) for _ in range(rng.randint(2, 6))}
        docs.append(json.dumps(doc, indent=rng.choice([None, 2])))
    return docs


class UnigramLM:
    """Next-token distribution independent of the context."""

    def __init__(self, logprobs: np.ndarray) -> None:
        self._row = logprobs
        self.vocab_size = len(logprobs)

    def next_token_logprobs(self, contexts) -> np.ndarray:
        return np.broadcast_to(self._row, (len(contexts), self.vocab_size))


class BigramLM:
    """p(next | previous token) from counts, mixed with a background unigram distribution."""

    def __init__(self, sequences: list[list[int]], background: np.ndarray, mix: float) -> None:
        self.vocab_size = len(background)
        self._background = background
        self._mix = mix
        self._counts: dict[int, Counter] = {}
        for seq in sequences:
            for prev, nxt in zip([-1] + seq[:-1], seq, strict=True):
                self._counts.setdefault(prev, Counter())[nxt] += 1
        self._rows: dict[int, np.ndarray] = {}

    def _row(self, prev: int) -> np.ndarray:
        row = self._rows.get(prev)
        if row is None:
            counts = self._counts.get(prev)
            if counts is None:
                p = self._background
            else:
                p = self._mix * self._background
                ids = np.fromiter(counts.keys(), dtype=np.int64)
                freq = np.fromiter(counts.values(), dtype=np.float64)
                p = p.copy()
                p[ids] += (1 - self._mix) * freq / freq.sum()
            row = self._rows[prev] = np.log(p)
        return row

    def next_token_logprobs(self, contexts) -> np.ndarray:
        return np.stack([self._row(int(c[-1]) if len(c) else -1) for c in contexts])


def build_models(info, n_docs: int) -> dict[str, object]:
    encode = bundled_encoder("gpt2")
    eos = info.eos_token_ids[0]
    sequences = [encode(doc) + [eos] for doc in json_documents(n_docs)]
    freq = np.full(info.vocab_size, 0.01)  # every token keeps a little mass
    for seq in sequences:
        np.add.at(freq, seq, 1.0)
    unigram = freq / freq.sum()
    uniform = np.full(info.vocab_size, 1.0 / info.vocab_size)
    background = 0.5 * unigram + 0.5 * uniform
    return {
        "bigram": BigramLM(sequences, background, mix=0.01),
        "bigram-noisy": BigramLM(sequences, background, mix=0.25),
        "unigram": UnigramLM(np.log(unigram)),
    }


# --- measuring -----------------------------------------------------------------------------------
def run_sequences(model, compiled, sampler, *, sequences: int, max_tokens: int, seed: int):
    """Sample ``sequences`` sequences token by token; per-token (seconds, checks, masks)."""
    rng = np.random.default_rng(seed)
    eos = set(compiled.tokenizer_info.eos_token_ids)
    steps = []
    for _ in range(sequences):
        matcher = GrammarMatcher(compiled)
        tokens: list[int] = []
        for _ in range(max_tokens):
            row = model.next_token_logprobs([tokens])[0]
            constraint = MatcherConstraint(matcher)
            t0 = time.perf_counter()
            draw = sampler.sample(row, constraint, rng)
            steps.append((time.perf_counter() - t0, constraint.n_evaluations, constraint.n_masks))
            if draw.token_id is None:
                break
            matcher.accept_token(draw.token_id)
            tokens.append(draw.token_id)
            if draw.token_id in eos:
                break
    return steps


def summarize(name: str, sampler_name: str, steps, vocab: int, fallbacks: int) -> dict:
    times = np.array([s[0] for s in steps]) * 1e6
    checks = np.array([s[1] for s in steps], dtype=np.float64)
    masks = np.array([s[2] for s in steps], dtype=np.float64)
    decided = checks + masks * vocab  # tokens whose validity was computed
    return {
        "model": name, "sampler": sampler_name, "tokens": len(steps),
        "checks_per_token": float(checks.mean()), "masks_per_token": float(masks.mean()),
        "fallback_share": fallbacks / len(steps) if steps else 0.0,
        "decided_per_token": float(decided.mean()),
        "us_p50": float(np.percentile(times, 50)), "us_mean": float(times.mean()),
        "us_p99": float(np.percentile(times, 99)),
    }


def print_table(rows: list[dict], vocab: int) -> None:
    head = (f"{'model':<13} {'sampler':<22} {'tokens':>6} {'checks/tok':>10} {'masks/tok':>9} "
            f"{'decided/tok':>11} {'vs mask':>8} {'p50 µs':>8} {'mean µs':>8} {'p99 µs':>8}")
    print(head)
    print("-" * len(head))
    for r in rows:
        ratio = vocab / r["decided_per_token"] if r["decided_per_token"] else float("inf")
        print(f"{r['model']:<13} {r['sampler']:<22} {r['tokens']:>6} {r['checks_per_token']:>10.2f} "
              f"{r['masks_per_token']:>9.3f} {r['decided_per_token']:>11.1f} {ratio:>7.0f}x "
              f"{r['us_p50']:>8.0f} {r['us_mean']:>8.0f} {r['us_p99']:>8.0f}")


def smc_rows(models, compiled, *, particles: int, max_tokens: int, seeds: range) -> list[dict]:
    rows = []
    for name, model in models.items():
        for proposal in ("awrs", "mask"):
            steps = checks = masks = 0
            elapsed = 0.0
            log_ml = []
            for seed in seeds:
                t0 = time.perf_counter()
                result = SMC(model, compiled, proposal=proposal).run(particles, max_tokens,
                                                                     seed=seed)
                elapsed += time.perf_counter() - t0
                steps += result.stats.steps
                checks += result.matcher_checks
                masks += result.matcher_masks
                log_ml.append(result.log_marginal_likelihood)
            finite = [v for v in log_ml if v > -np.inf]
            rows.append({
                "model": name, "proposal": proposal, "runs": len(seeds),
                "particle_tokens_per_run": steps / len(seeds),
                "matcher_checks_per_token": checks / max(steps, 1),
                "masks_per_token": masks / max(steps, 1),
                "ms_per_particle_token": 1e3 * elapsed / max(steps, 1),
                "runs_with_a_sample": len(finite),
                "median_log_ml": float(np.median(finite)) if finite else float("-inf"),
            })
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="a few short sequences (seconds)")
    ap.add_argument("--sequences", type=int, default=None)
    ap.add_argument("--max-tokens", type=int, default=None)
    ap.add_argument("--particles", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = ap.parse_args(argv)
    sequences = args.sequences or (3 if args.quick else 12)
    max_tokens = args.max_tokens or (24 if args.quick else 96)

    info = load_bundled_tokenizer("gpt2")
    t0 = time.perf_counter()
    compiled = GrammarCompiler(info).compile_builtin("json")
    compile_ms = 1e3 * (time.perf_counter() - t0)
    models = build_models(info, 40 if args.quick else 300)
    if args.quick:
        models = {k: models[k] for k in ("bigram", "unigram")}
    print(f"# GPT-2 vocabulary ({info.vocab_size} ids), built-in JSON grammar "
          f"(compiled in {compile_ms:.0f} ms); {sequences} sequences x <= {max_tokens} tokens "
          f"per row; {platform.python_implementation()} {platform.python_version()}, "
          f"{platform.machine()}")
    samplers = {
        "full mask": lambda: MaskSampler(),
        "AWRS recursive": lambda: AWRS(estimator="recursive"),
        "AWRS two-round": lambda: AWRS(estimator="two_round"),
        "AWRS geometric": lambda: AWRS(estimator="geometric"),
        "AWRS no weight (LCD)": lambda: AWRS(proper_weights=False),
    }
    rows = []
    for name, model in models.items():
        for sampler_name, make in samplers.items():
            sampler = make()
            steps = run_sequences(model, compiled, sampler, sequences=sequences,
                                  max_tokens=max_tokens, seed=args.seed)
            fallbacks = getattr(sampler.stats, "fallbacks", 0) if sampler_name != "full mask" else 0
            rows.append(summarize(name, sampler_name, steps, info.vocab_size, fallbacks))
    print()
    print_table(rows, info.vocab_size)
    print()
    print("decided/tok: tokens whose validity was computed per step (checks + masks x vocab);")
    print("vs mask: vocabulary size / decided (how many times fewer than a full mask).")
    for r in rows:
        if r["sampler"] != "full mask":
            r["fallback_pct"] = 100 * r["fallback_share"]
    fb = ", ".join(f"{r['model']} {r['fallback_pct']:.1f}%" for r in rows
                   if r["sampler"] == "AWRS recursive")
    print(f"AWRS recursive fallback to a full mask: {fb} of steps.")
    awrs = [r for r in rows if r["sampler"].startswith("AWRS")]
    worst = max(r["decided_per_token"] for r in awrs)
    bar = info.vocab_size / worst
    print(f"bar (>= 10x fewer token checks per step than a full mask): worst AWRS row "
          f"{bar:.0f}x -> {'PASS' if bar >= 10 else 'FAIL'}")

    smc_budget = 2 * max_tokens
    seeds = range(args.seed, args.seed + (2 if args.quick else 4))
    smc = smc_rows(models, compiled, particles=args.particles, max_tokens=smc_budget, seeds=seeds)
    print()
    print(f"SMC, {args.particles} particles, <= {smc_budget} tokens, {len(seeds)} runs per row "
          f"(time includes the synthetic model; log ML estimates log P(the model writes valid "
          f"JSON within the budget); a run without a sample had every particle die):")
    print(f"{'model':<13} {'proposal':<8} {'tokens/run':>10} {'checks/tok':>10} {'masks/tok':>9} "
          f"{'ms/tok':>7} {'runs ok':>7} {'median log ML':>13}")
    for r in smc:
        print(f"{r['model']:<13} {r['proposal']:<8} {r['particle_tokens_per_run']:>10.0f} "
              f"{r['matcher_checks_per_token']:>10.2f} {r['masks_per_token']:>9.3f} "
              f"{r['ms_per_particle_token']:>7.2f} {r['runs_with_a_sample']:>4}/{r['runs']:<2} "
              f"{r['median_log_ml']:>13.2f}")
    if args.json:
        args.json.write_text(json.dumps({"vocab_size": info.vocab_size, "rows": rows,
                                         "smc": smc, "bar": bar}, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
