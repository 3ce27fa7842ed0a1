"""The built-in Python and Go grammars through the matcher, not just the parser.

Real files (Python's standard library, Go's), tokenized with Llama-3.2: every next token is in
the native mask when it comes, and EOS is allowed after a whole file. Mutated files: the matcher
accepts exactly what the Lark harness (the grammar's meaning, tests/python_oracle.py and
tests/go_oracle.py) accepts. The post-lexers (indentation, semicolon insertion) run inside the
matcher, so this is where they meet real code.
"""

from __future__ import annotations

import random
import sysconfig
from pathlib import Path

import numpy as np
import pytest
from conftest import DATA, require_data, require_encoder, require_tokenizer

from structgen import GrammarCompiler, GrammarMatcher, allocate_token_bitmask

GO_ROOTS = (Path("/usr/share/go-1.19/src"), Path("/usr/lib/go-1.19/src"))
MAX_TOKENS = 250  # per file: the mask cache fills lazily, so CI pays for the first masks


def python_files(n: int) -> list[str]:
    root = Path(sysconfig.get_paths()["stdlib"])
    names = require_data(DATA / "python" / "stdlib-files.txt").read_text().split()
    picked = random.Random(5).sample(names, n)
    return [(root / name).read_text("utf-8") for name in picked]


def go_files(n: int) -> list[str]:
    root = next((r for r in GO_ROOTS if r.exists()), None)
    if root is None:
        require_data(GO_ROOTS[0])  # skips, or fails under CI=true
    files = sorted(p for p in root.rglob("*.go") if "testdata" not in p.parts)
    return [p.read_text("utf-8") for p in random.Random(5).sample(files, n)]


@pytest.fixture(scope="module")
def llama():
    return require_tokenizer("llama3"), require_encoder("llama3")


@pytest.fixture(scope="module")
def compiled(llama):
    info, _ = llama
    compiler = GrammarCompiler(info)
    return {name: compiler.compile_builtin(name) for name in ("python", "go")}


def replay(compiled, encode, text: str) -> None:
    ids = encode(text)
    whole = len(ids) <= MAX_TOKENS
    matcher = GrammarMatcher(compiled)
    assert matcher.engine == "native"
    vocab = compiled.tokenizer_info.vocab_size
    bitmask = np.asarray(allocate_token_bitmask(1, vocab))
    for i, t in enumerate(ids[:MAX_TOKENS]):
        matcher.fill_next_token_bitmask(bitmask)
        assert (int(bitmask[0, t >> 5]) >> (t & 31)) & 1, (i, text[:200])
        assert matcher.accept_token(t)
    if whole:
        assert matcher.is_completed()
        eos = compiled.tokenizer_info.eos_token_ids[0]
        matcher.fill_next_token_bitmask(bitmask)
        assert (int(bitmask[0, eos >> 5]) >> (eos & 31)) & 1


@pytest.mark.parametrize("index", range(2))
def test_python_files_replay_without_a_masked_token(compiled, llama, index):
    replay(compiled["python"], llama[1], python_files(2)[index])


@pytest.mark.parametrize("index", range(2))
def test_go_files_replay_without_a_masked_token(compiled, llama, index):
    replay(compiled["go"], llama[1], go_files(2)[index])


def test_a_short_python_file_ends_where_python_says(compiled, llama):
    m = GrammarMatcher(compiled["python"])
    assert m.accept_string("def f(x):\n    if x:\n        return 1\n    return 2")
    assert m.is_completed()  # the final line break and dedents are implied, as in CPython
    m = GrammarMatcher(compiled["python"])
    assert m.accept_string("def f(x):\n")
    assert not m.is_completed()  # a block must follow
    assert not m.accept_string("return 1")  # ... indented


def mutants(text: str, rng: random.Random, count: int) -> list[str]:
    """Deletions and duplications of short spans (characters, not tokens: cheaper)."""
    out = []
    for _ in range(count):
        i = rng.randrange(len(text))
        j = min(len(text), i + rng.randint(1, 4))
        out.append(text[:i] + text[j:] if rng.random() < 0.5 else text[:j] + text[i:j] + text[j:])
    return out


@pytest.mark.parametrize("language", ["python", "go"])
def test_matcher_accepts_exactly_what_lark_accepts(compiled, language):
    if language == "python":
        from python_oracle import lark_accepts

        texts = [t for t in python_files(12) if len(t) < 4000][:3]
    else:
        from go_oracle import lark_accepts

        texts = [t for t in go_files(12) if len(t) < 4000][:3]
    assert texts
    rng = random.Random(11)
    agree = accepted = 0
    for text in texts:
        for mutated in [text] + mutants(text, rng, 10):
            m = GrammarMatcher(compiled[language])
            ours = m.accept_string(mutated) and m.is_completed()
            theirs = lark_accepts(mutated)
            assert ours == theirs, mutated
            agree += 1
            accepted += theirs
    assert accepted >= len(texts)  # the originals, at least
    assert agree > accepted  # and some rejected mutants
