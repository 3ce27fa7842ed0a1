"""Masks equal the independent Lark oracle (tests/oracle.py) on random prefixes.

For each grammar, random sentences are drawn, cut at a random byte (sometimes with a few random
bytes appended, so dead prefixes appear too), and the matcher's mask after the prefix is
compared with the oracle's verdict for every candidate token: all tokens the mask allows plus a
random sample of the rest. EOS must be allowed iff Lark accepts the prefix as a whole sentence.
A prefix the matcher rejects must be one the oracle calls not viable.
"""

from __future__ import annotations

import functools
import json
import random
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from oracle import LarkOracle, Verdict
from test_oracle import NAMES, random_sentence

from structgen import GrammarCompiler, GrammarMatcher, TokenizerInfo
from structgen.grammar import builtin_grammar_text

GRAMMARS = Path(__file__).resolve().parent / "grammars"
JSON_DOCS = [
    '{"a": [1, -2.5e+3, true, false, null], "b": {"c": "x\\u00e9\\n\\"q"}}',
    '[ {"k" : "v"} , [] , {} , 0.1 , "\u00e9\u4e2d\U0001F600" , 1E5, -0 ]',
    '"just a string"', "12.5e-3", "[[[[]],{}]]", '{"":{"":[""]}}', "null", " true ",
]
EXTRA = [b" ", b"\n", b"e", b"1", b".", b"\"", b"\\", b"/*", b"*/", b"#", b"==", b"\xc3", b"\xa9",
         b"\xe4\xb8", b"}", b"]", b",", b"in", b"int", b"x"]


def sentences_for(name: str, count: int = 25) -> list[str]:
    if name == "json":
        return JSON_DOCS
    rnd = random.Random(7)
    return [random_sentence(name, rnd) for _ in range(count)]


def text_of(name: str) -> str:
    if name == "json":
        return builtin_grammar_text("json")
    return (GRAMMARS / f"{name}.lark").read_text("utf-8")


@functools.cache
def setup(name: str):
    """A vocabulary of all single bytes plus substrings of sample sentences, so tokens span
    lexemes, end mid-character and cut lexemes in odd places."""
    rnd = random.Random(11)
    tokens = {bytes([i]) for i in range(256)} | set(EXTRA)
    blobs = [s.encode("utf-8") for s in sentences_for(name) if s]
    while len(tokens) < 700:
        blob = rnd.choice(blobs)
        i = rnd.randrange(len(blob))
        tokens.add(blob[i:i + rnd.randint(2, 7)])
    ordered = sorted(tokens)
    info = TokenizerInfo.from_byte_strings(ordered + [b""], eos_token_ids=[len(ordered)])
    compiled = GrammarCompiler(info).compile_grammar(text_of(name))
    return info, compiled, LarkOracle(text_of(name))


def check_prefix(name: str, prefix: bytes, rnd: random.Random, sample: int = 40) -> None:
    info, compiled, oracle = setup(name)
    m = GrammarMatcher(compiled)
    if not m.accept_string(prefix):
        verdict = oracle.viability(prefix).verdict
        assert verdict is Verdict.NOT_VIABLE, f"{name}: matcher rejects viable prefix {prefix!r}"
        return
    assert oracle.is_viable_prefix(prefix), f"{name}: matcher accepts dead prefix {prefix!r}"
    allowed = {int(t) for t in m.allowed_token_ids()}
    eos = info.eos_token_ids[0]
    assert (eos in allowed) == oracle.accepts(prefix), f"{name}: EOS after {prefix!r}"
    allowed.discard(eos)
    others = [t for t in range(len(info.token_bytes) - 1) if t not in allowed]
    candidates = sorted(allowed) + rnd.sample(others, min(sample, len(others)))
    verdicts = oracle.allowed(prefix, [info.token_bytes[t] for t in candidates])
    wrong = [(info.token_bytes[t], t in allowed) for t, v in zip(candidates, verdicts, strict=True)
             if v != (t in allowed)]
    assert not wrong, f"{name}: after {prefix!r}, (token, structgen allows) differing: {wrong[:8]}"


@pytest.mark.parametrize("name", [*NAMES, "json"])
@settings(max_examples=25, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_mask_equals_oracle_on_random_prefixes(name, data):
    rnd = data.draw(st.randoms(use_true_random=False))
    text = rnd.choice(sentences_for(name)) if name == "json" else random_sentence(name, rnd)
    raw = text.encode("utf-8")
    prefix = raw[:rnd.randint(0, len(raw))]
    if rnd.random() < 0.3:
        prefix += b"".join(rnd.choice(EXTRA) for _ in range(rnd.randint(1, 3)))
    check_prefix(name, prefix, rnd)


@pytest.mark.parametrize("name", [*NAMES, "json"])
def test_every_prefix_of_sample_sentences(name):
    """Whole sentences, every byte prefix: the mask is checked on a smaller token sample."""
    rnd = random.Random(5)
    for text in sentences_for(name, count=3)[:3]:
        raw = text.encode("utf-8")
        for cut in range(0, len(raw) + 1, max(1, len(raw) // 12)):
            check_prefix(name, raw[:cut], rnd, sample=10)


@pytest.mark.parametrize("tokenizer", ["gpt2", "llama3"])
def test_real_tokenizer_masks_equal_oracle(tokenizer):
    """Real vocabularies: at cut points of real JSON, a few hundred sampled tokens per point
    (all allowed ones would be tens of thousands inside strings) agree with the oracle."""
    from conftest import require_tokenizer

    info = require_tokenizer(tokenizer)
    from structgen.bundled import bundled_encoder

    compiled = GrammarCompiler(info).compile_builtin("json")
    oracle = LarkOracle(builtin_grammar_text("json"))
    rnd = random.Random(1)
    doc = json.dumps({"name": "Zo\u00eb", "tags": ["a", "b\u4e2d"], "n": -12.5e3, "ok": True,
                      "nested": {"x": None, "y": [1, 2, 3]}}, indent=1)
    ids = bundled_encoder(tokenizer)(doc)
    m = GrammarMatcher(compiled)
    eos = set(info.eos_token_ids)
    checked = 0
    for pos, tid in enumerate(ids):
        if pos % 7 == 0:
            prefix = info.decode_bytes(ids[:pos])
            allowed = {int(t) for t in m.allowed_token_ids()} - eos
            pool = list(allowed)
            candidates = rnd.sample(pool, min(150, len(pool)))
            candidates += rnd.sample(range(len(info.token_bytes)), 150)
            candidates = [t for t in dict.fromkeys(candidates) if t not in info.special_token_ids]
            verdicts = oracle.allowed(prefix, [info.token_bytes[t] for t in candidates])
            for t, v in zip(candidates, verdicts, strict=True):
                assert v == (t in allowed), (prefix, info.token_bytes[t], t in allowed)
            checked += len(candidates)
        assert m.accept_token(tid)
    assert checked > 1000
