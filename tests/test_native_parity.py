"""The native engine must give exactly the reference engine's masks (its pure-Python twin).

Random prefixes and random interleavings of accept / rollback / fork are generated with
hypothesis; masks are compared bit for bit on small vocabularies (the whole vocabulary walked by
both engines) and on a real tokenizer at a few positions.
"""

from __future__ import annotations

import random
import threading
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from structgen import (
    CompiledGrammar,
    GrammarCompiler,
    GrammarMatcher,
    SerializationError,
    TokenizerInfo,
    allocate_token_bitmask,
    batch_fill_next_token_bitmask,
    bitmask_to_ids,
)
from structgen.bitmask import bitmask_to_ids_python
from structgen.trie import TokenTrie, lcp_python

GRAMMARS = Path(__file__).resolve().parent / "grammars"

JSON_SAMPLES = [
    '{"a": [1, -2.5e+3, true, false, null], "b": {"c": "x\\u00e9\\n"}}',
    '[ {"k" : "v"} , [] , {} , 0.1 , "\u00e9\u4e2d\U0001F600" ]',
    '  "just a string"  ',
    '-0.0e-0',
]
GRAMMAR_SAMPLES = {
    "keywords.lark": None, "numbers.lark": None, "comments.lark": None,
    "spanning.lark": None, "arith.lark": None,
}


def small_vocab(samples: list[str], seed: int = 0, size: int = 600) -> TokenizerInfo:
    """All single bytes plus random substrings of the samples: many tokens span lexemes."""
    rnd = random.Random(seed)
    tokens = {bytes([i]) for i in range(256)}
    blobs = [s.encode("utf-8") for s in samples if s]
    for _ in range(20 * size):
        if len(tokens) >= size:
            break
        blob = rnd.choice(blobs)
        i = rnd.randrange(len(blob))
        tokens.add(blob[i:i + rnd.randint(2, 8)])
    ordered = sorted(tokens)
    return TokenizerInfo.from_byte_strings(ordered + [b""], eos_token_ids=[len(ordered)],
                                           vocab_size=len(ordered) + 7)


def grammar_text(name: str) -> str:
    return (GRAMMARS / name).read_text("utf-8")


def samples_for(name: str) -> list[str]:
    """Random sentences of the grammar (the oracle tests' generator), non-empty ones."""
    from test_oracle import lark_accepts, random_sentence

    short = name.removesuffix(".lark")
    rnd = random.Random(4)
    found = [random_sentence(short, rnd) for _ in range(30)]
    return [s for s in found if s.strip() and lark_accepts(short, s.encode("utf-8"))][:6]


def compiled_for(text: str, samples: list[str], info: TokenizerInfo | None = None) -> CompiledGrammar:
    return GrammarCompiler(info or small_vocab(samples)).compile_grammar(text)


def assert_same_masks(matcher: GrammarMatcher) -> None:
    ref = matcher.allowed_token_ids(engine="reference")
    nat = matcher.allowed_token_ids()
    assert np.array_equal(ref, nat), (
        f"after {matcher.num_accepted_tokens} tokens: native-only "
        f"{sorted(set(nat) - set(ref))[:10]}, reference-only {sorted(set(ref) - set(nat))[:10]}")


@pytest.fixture(scope="module")
def json_compiled() -> CompiledGrammar:
    return GrammarCompiler(small_vocab(JSON_SAMPLES)).compile_builtin("json")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_json_random_walk_parity(json_compiled, data):
    """Walk random allowed tokens; at each step both engines agree on the whole vocabulary."""
    m = GrammarMatcher(json_compiled)
    for _ in range(data.draw(st.integers(1, 25))):
        assert_same_masks(m)
        ids = m.allowed_token_ids()
        ids = [int(t) for t in ids if t not in json_compiled.tokenizer_info.eos_token_ids]
        if not ids:
            break
        assert m.accept_token(data.draw(st.sampled_from(ids)))
    assert_same_masks(m)


def replay_samples_comparing_masks(name: str, vocab=small_vocab) -> CompiledGrammar:
    """Every prefix of every sample sentence of grammar ``name``, fed as single bytes: the
    native masks equal the reference ones (with the tokenizer ``vocab(samples)``). Returns
    the compiled grammar."""
    samples = samples_for(name)
    compiled = compiled_for(grammar_text(name), samples, vocab(samples))
    index = {tok: i for i, tok in enumerate(compiled.tokenizer_info.token_bytes)}
    for sentence in samples:
        m = GrammarMatcher(compiled)
        for b in sentence.encode("utf-8"):
            assert_same_masks(m)
            assert m.accept_token(index[bytes([b])]), (name, sentence, m.num_accepted_tokens)
        assert_same_masks(m)
    return compiled


@pytest.mark.parametrize("name", sorted(GRAMMAR_SAMPLES))
def test_tricky_grammar_parity_on_sample_prefixes(name):
    """Every prefix of every sample sentence, fed as single bytes: masks agree."""
    replay_samples_comparing_masks(name)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.lists(st.tuples(st.sampled_from(["accept", "rollback", "fork"]),
                              st.integers(0, 10_000)), min_size=1, max_size=30))
def test_accept_rollback_fork_interleavings(json_compiled, ops):
    """Interleave accept / rollback / fork; the native mask always equals the reference mask
    and a forked matcher is unaffected by its parent's later moves."""
    m = GrammarMatcher(json_compiled)
    forks: list[tuple[GrammarMatcher, np.ndarray]] = []
    eos = set(json_compiled.tokenizer_info.eos_token_ids)
    for op, arg in ops:
        if op == "accept":
            ids = [int(t) for t in m.allowed_token_ids() if t not in eos]
            if ids:
                assert m.accept_token(ids[arg % len(ids)])
        elif op == "rollback" and m.num_accepted_tokens:
            m.rollback(1 + arg % m.num_accepted_tokens)
        elif op == "fork":
            f = m.fork()
            forks.append((f, f.allowed_token_ids()))
        assert_same_masks(m)
    for f, mask in forks:
        assert np.array_equal(f.allowed_token_ids(), mask)


def test_rejected_token_leaves_state_unchanged(json_compiled):
    m = GrammarMatcher(json_compiled)
    assert m.accept_string('{"a":')
    before = m.allowed_token_ids()
    closing = json_compiled.tokenizer_info.token_bytes.index(b"}")
    assert not m.accept_token(closing)
    assert np.array_equal(m.allowed_token_ids(), before)


def test_real_tokenizer_parity(request):
    """GPT-2 vocabulary, JSON: both engines agree over all 50,257 tokens at a few positions."""
    from conftest import require_tokenizer  # noqa: PLC0415 - shared CI/skip rule

    info = require_tokenizer("gpt2")
    from structgen.bundled import bundled_encoder

    compiled = GrammarCompiler(info).compile_builtin("json")
    ids = bundled_encoder("gpt2")(JSON_SAMPLES[0])
    m = GrammarMatcher(compiled)
    for i, tid in enumerate(ids):
        if i in (0, 2, 5, len(ids) - 1):
            assert_same_masks(m)
        assert m.accept_token(tid)
    assert_same_masks(m)


def test_batch_fill_matches_serial_and_threads(json_compiled):
    """Batch fills (2 plain threads), from several caller threads at once, equal serial fills."""
    info = json_compiled.tokenizer_info
    rnd = random.Random(3)
    matchers = []
    for _ in range(12):
        m = GrammarMatcher(json_compiled)
        for _ in range(rnd.randint(0, 15)):
            ids = [int(t) for t in m.allowed_token_ids() if t not in info.eos_token_ids]
            if not ids:
                break
            m.accept_token(rnd.choice(ids))
        matchers.append(m)
    serial = allocate_token_bitmask(len(matchers), info.vocab_size)
    for i, m in enumerate(matchers):
        m.fill_next_token_bitmask(serial, i)
    results = [allocate_token_bitmask(len(matchers), info.vocab_size) for _ in range(4)]
    errors = []

    def work(out):
        try:
            for _ in range(20):
                batch_fill_next_token_bitmask(matchers, out, num_threads=2)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    workers = [threading.Thread(target=work, args=(r,)) for r in results]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert not errors
    for r in results:
        assert np.array_equal(r, serial)


def test_save_load_roundtrip(tmp_path, json_compiled):
    info = json_compiled.tokenizer_info
    compiled = GrammarCompiler(info, cache_enabled=False).compile_builtin("json", precompute=True)
    path = tmp_path / "json.sgc"
    compiled.save(path)
    loaded = CompiledGrammar.load(path, info)
    assert loaded.native_masker.cache_entries == compiled.native_masker.cache_entries
    a, b = GrammarMatcher(compiled), GrammarMatcher(loaded)
    for ch in JSON_SAMPLES[0].encode("utf-8"):
        assert np.array_equal(a.allowed_token_ids(), b.allowed_token_ids())
        assert a.accept_string(bytes([ch])) and b.accept_string(bytes([ch]))
    other = small_vocab(JSON_SAMPLES, seed=9)
    with pytest.raises(SerializationError, match="another tokenizer"):
        CompiledGrammar.load(path, other)
    broken = tmp_path / "broken.sgc"
    broken.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(SerializationError):
        CompiledGrammar.load(broken, info)
    with pytest.raises(SerializationError):
        CompiledGrammar.load(tmp_path / "missing.sgc", info)


def test_precompute_gives_same_masks_as_lazy(json_compiled):
    info = json_compiled.tokenizer_info
    full = GrammarCompiler(info, cache_enabled=False).compile_builtin("json", precompute=True)
    a, b = GrammarMatcher(json_compiled), GrammarMatcher(full)
    for ch in JSON_SAMPLES[1].encode("utf-8"):
        assert np.array_equal(a.allowed_token_ids(), b.allowed_token_ids())
        assert a.accept_string(bytes([ch])) and b.accept_string(bytes([ch]))


def test_deep_nesting_is_linear():
    """100,000 nested arrays: accepted, masked and closed without quadratic blow-up or crash."""
    info = TokenizerInfo.from_byte_strings([bytes([i]) for i in range(256)] + [b""],
                                           eos_token_ids=[256])
    compiled = GrammarCompiler(info).compile_builtin("json")
    m = GrammarMatcher(compiled)
    assert m.accept_string(b"[" * 100_000)
    allowed = set(m.allowed_token_ids().tolist())
    assert ord("]") in allowed and ord("}") not in allowed and 256 not in allowed
    assert m.accept_string(b"]" * 100_000)
    assert m.is_completed()


@settings(max_examples=50, deadline=None)
@given(st.lists(st.binary(max_size=6), min_size=1, max_size=60))
def test_native_lcp_twin(tokens):
    trie = TokenTrie(tokens, set())
    assert np.array_equal(trie.lcp, lcp_python(trie.tokens))


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 300), st.data())
def test_bitmask_to_ids_twin(vocab, data):
    row = np.array(data.draw(st.lists(st.integers(-2**31, 2**31 - 1),
                                      min_size=(vocab + 31) // 32, max_size=(vocab + 31) // 32)),
                   dtype=np.int32)
    assert np.array_equal(bitmask_to_ids(row, vocab), bitmask_to_ids_python(row, vocab))
