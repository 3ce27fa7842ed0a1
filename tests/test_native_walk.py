"""The native walk's shortcuts change no answer.

A walk jumps over every token under a rejected prefix, steps the lexer alone inside a lexeme,
memoizes thread viability per (stack node, lexer state) on walks of 1,024 tokens or more, and
collects each uncertain token's common prefix with the uncertain one before; ``precompute``
runs the walks on OpenMP threads. Each is checked here against the plain computation, on
vocabularies long enough for the memo.
"""

from __future__ import annotations

import random

import numpy as np
import pytest
from test_native_parity import (
    GRAMMAR_SAMPLES,
    compiled_for,
    grammar_text,
    replay_samples_comparing_masks,
    samples_for,
)

from structgen import TokenizerInfo, native_engine

LONG_VOCAB = 3000  # over the walk's memo threshold (MEMO_MIN_TOKENS = 1024)


def long_vocab(samples: list[str]) -> TokenizerInfo:
    """Every byte, substrings of the samples and pairs of them joined (tokens that span
    lexemes and sentences), ``LONG_VOCAB`` in all."""
    rnd = random.Random(1)
    blobs = [s.encode("utf-8") for s in samples if s]
    pieces = {b[i:i + k] for b in blobs for i in range(len(b)) for k in range(1, 7)}
    pieces = sorted(p for p in pieces if p)
    tokens = {bytes([i]) for i in range(256)} | set(pieces)
    while len(tokens) < LONG_VOCAB:
        tokens.add(rnd.choice(pieces) + rnd.choice(pieces))
    ordered = sorted(tokens)[:LONG_VOCAB]
    return TokenizerInfo.from_byte_strings(ordered + [b""], eos_token_ids=[len(ordered)])


def top_state_keys(masker) -> list[tuple[int, int]]:
    keys = [(masker.start_state, -1)]
    for s in range(masker.n_states):
        ctx = int(masker.state_context[s])
        keys += [(s, int(masker.offsets[ctx]) + k) for k in range(masker.context_sizes[ctx])]
    return keys


def key_spec(state: int, q: int) -> np.ndarray:
    return np.array([1, 1, state, 0, q, 0, 0], dtype=np.int32)


@pytest.fixture(scope="module", params=sorted(GRAMMAR_SAMPLES))
def long_compiled(request):
    name = request.param
    samples = samples_for(name)
    return compiled_for(grammar_text(name), samples, long_vocab(samples))


@pytest.mark.parametrize("name", sorted(GRAMMAR_SAMPLES))
def test_long_vocabulary_masks_match_the_reference(name):
    compiled = replay_samples_comparing_masks(name, long_vocab)
    assert len(compiled.tokenizer_info.token_bytes) > 1024


@pytest.mark.parametrize("name", ["arith.lark", "spanning.lark"])
def test_long_vocabulary_deep_keys_match_the_reference(monkeypatch, name):
    monkeypatch.setattr(native_engine, "MAX_UNCERTAIN", 0)
    monkeypatch.setattr(native_engine, "STACK_LEVELS", (1, 2, 3, 5, 8, 64))
    compiled = replay_samples_comparing_masks(name, long_vocab)
    assert any(isinstance(k, bytes) for k in compiled.native_masker._cache)


def test_jumps_over_rejected_prefixes_change_nothing(long_compiled):
    """The whole vocabulary (jumps along the shorter-prefix chain) against the same tokens
    passed as explicit positions (visited one by one)."""
    masker = long_compiled.native_masker
    n = len(masker.trie_ids)
    every = np.arange(n, dtype=np.int32)
    for state, q in top_state_keys(masker):
        jumped = masker.engine.classify_spec(key_spec(state, q), True)
        visited = masker.engine.classify_spec(key_spec(state, q), True, every, masker.trie_lcp)
        assert (jumped is None) == (visited is None)
        if jumped is not None:
            assert all(np.array_equal(a, b) for a, b in zip(jumped, visited, strict=True))


def test_uncertain_prefix_lengths(long_compiled):
    """Each uncertain token's prefix length is the least trie lcp since the uncertain one
    before (what the fill walk needs to step shared prefixes once)."""
    masker = long_compiled.native_masker
    lcp = masker.trie_lcp
    checked = 0
    for state, q in top_state_keys(masker):
        entry = masker._build_entry(key_spec(state, q), partial=True, may_deepen=False)
        if entry is None or len(entry.uncertain_pos) < 2:
            continue
        pos = entry.uncertain_pos
        expected = [0] + [int(lcp[a + 1:b + 1].min()) for a, b in zip(pos[:-1], pos[1:], strict=True)]
        assert entry.uncertain_lcp.tolist() == expected
        checked += 1
    assert checked > 0


def test_precompute_equals_entries_built_one_by_one(long_compiled):
    """Batched OpenMP walks on two threads (stopping deeper keys early) against lazy ones."""
    masker = long_compiled.native_masker
    masker.precompute(num_threads=2)
    items = masker.cache_items()
    assert len(items) > 10
    for (state, q), entry in items:
        alone = masker._build_entry(key_spec(state, q), partial=True, may_deepen=True)
        assert alone is not None and entry.deeper == alone.deeper
        if not entry.deeper:
            assert np.array_equal(entry.accepted_token_ids(), alone.accepted_token_ids())
            assert np.array_equal(entry.uncertain_pos, alone.uncertain_pos)
            assert np.array_equal(entry.uncertain_lcp, alone.uncertain_lcp)


def entry_fields(entry):
    if entry is None or entry is False:
        return entry
    return (entry.deeper, entry.accepted_token_ids().tolist(), entry.uncertain_pos.tolist(),
            entry.uncertain_lcp.tolist())


@pytest.mark.parametrize("limit", [-1, 3])
def test_walks_cut_into_pieces_change_nothing(long_compiled, limit):
    """A whole-vocabulary split walked in 2-5 pieces at once against one walk."""
    masker = long_compiled.native_masker
    engine = masker.engine
    engine.parallel_min_tokens = 1
    try:
        for state, q in top_state_keys(masker):
            spec = key_spec(state, q)
            one = engine.split(spec, True, width=masker.width, max_uncertain=limit,
                               deepen_above=2)
            for pieces in (2, 3, 5):
                cut = engine.split(spec, True, width=masker.width, max_uncertain=limit,
                                   deepen_above=2, num_threads=pieces)
                assert entry_fields(cut) == entry_fields(one), (state, q, pieces)
    finally:
        engine.parallel_min_tokens = 4096
