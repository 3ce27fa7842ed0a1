"""Mask-cache keys that know more of the stack than its top state (``STACK_LEVELS``).

With ``MAX_UNCERTAIN`` forced to 0 every key deepens as far as the stack goes (partial keys of
4, 16, 64 states, then the whole stack, several threads included), so every entry below is
a derived one: it must still give the reference twin's masks exactly, and an entry derived
from its parent's split must equal a split made from scratch.
"""

from __future__ import annotations

import random

import numpy as np
import pytest
import test_postlex as postlex
from test_native_parity import (
    GRAMMAR_SAMPLES,
    JSON_SAMPLES,
    assert_same_masks,
    compiled_for,
    grammar_text,
    replay_samples_comparing_masks,
    samples_for,
    small_vocab,
)

from structgen import GrammarCompiler, GrammarMatcher, native_engine


@pytest.fixture
def always_deeper(monkeypatch):
    monkeypatch.setattr(native_engine, "MAX_UNCERTAIN", 0)
    monkeypatch.setattr(native_engine, "STACK_LEVELS", (1, 2, 3, 5, 8, 64))


def deep_keys(compiled) -> int:
    return sum(1 for k in compiled.native_masker._cache if isinstance(k, bytes))


@pytest.mark.parametrize("lex_any", [False, True])
@pytest.mark.parametrize("name", sorted(GRAMMAR_SAMPLES))
def test_deep_keys_match_the_reference(always_deeper, monkeypatch, name, lex_any):
    """With and without lexing on with every terminal after an unknown reduction
    (``LEX_ANY_AFTER_UNKNOWN``, off by default)."""
    monkeypatch.setattr(native_engine, "LEX_ANY_AFTER_UNKNOWN", lex_any)
    compiled = replay_samples_comparing_masks(name)
    assert deep_keys(compiled) > 0


def test_deep_keys_on_json_random_walks(always_deeper):
    compiled = GrammarCompiler(small_vocab(JSON_SAMPLES)).compile_builtin("json")
    eos = set(compiled.tokenizer_info.eos_token_ids)
    rng = random.Random(5)
    for _ in range(8):
        m = GrammarMatcher(compiled)
        for _ in range(30):
            assert_same_masks(m)
            ids = [int(t) for t in m.allowed_token_ids() if t not in eos]
            if not ids:
                break
            assert m.accept_token(rng.choice(ids))
    assert deep_keys(compiled) > 0


@pytest.mark.parametrize("kind", ["indent", "semicolons"])
@pytest.mark.parametrize("seed", range(6))
def test_deep_keys_with_post_lexers(always_deeper, kind, seed):
    """Whole-stack keys carry indentation columns (and the column while a line break may be
    in progress): a fresh compile, so the cache holds only deep entries made here."""
    postlex.compiled.cache_clear()
    compiled = postlex.compiled(kind)
    text = postlex.program(kind, seed)
    m = GrammarMatcher(compiled)
    for t in postlex.tokenize(text.encode(), random.Random(seed)):
        assert_same_masks(m)
        assert m.accept_token(t)
    assert_same_masks(m)
    assert deep_keys(compiled) > 0
    postlex.compiled.cache_clear()


def test_derived_split_equals_a_fresh_one(always_deeper):
    """A deeper key's split, made by walking only its parent's uncertain tokens, is the split
    of the whole vocabulary for that key."""
    samples = samples_for("arith.lark")
    compiled = compiled_for(grammar_text("arith.lark"), samples)
    masker = compiled.native_masker
    index = {tok: i for i, tok in enumerate(compiled.tokenizer_info.token_bytes)}
    checked = 0
    for sentence in samples:
        m = GrammarMatcher(compiled)
        for b in sentence.encode("utf-8"):
            m.allowed_token_ids()  # builds the chain of entries for this state
            spec, key = m._backend.spec(m._history[-1][0])
            depth = int(spec[1]) if key is not None else 0
            for k in native_engine.STACK_LEVELS:
                if key is None or k >= depth:
                    break
                known = spec[2 + 2 * (depth - k):2 + 2 * depth].copy()
                thread = np.concatenate([[1, k], known, [key[1], 0, 0]]).astype(np.int32)
                entry = masker._cache.get(b"p" + thread.tobytes())
                if k == 1 or entry is None or not entry.has_split:
                    continue
                fresh = masker._build_entry(thread, partial=True, may_deepen=True)
                assert entry.accepted_token_ids().tolist() == fresh.accepted_token_ids().tolist()
                assert entry.uncertain_pos.tolist() == fresh.uncertain_pos.tolist()
                assert entry.uncertain_lcp.tolist() == fresh.uncertain_lcp.tolist()
                checked += 1
            assert m.accept_token(index[bytes([b])])
    assert checked > 0


def test_a_deeper_marker_is_never_filled():
    compiled = GrammarCompiler(small_vocab(JSON_SAMPLES)).compile_builtin("json")
    m = GrammarMatcher(compiled)
    row, spec, _ = m._native_job(0)
    bitmask = np.zeros((1, compiled.native_masker.width), dtype=np.int32)
    with pytest.raises(ValueError, match="deeper"):
        compiled.native_masker.fill(bitmask, [(row, spec, native_engine._DEEPER)])


def test_top_state_key_only_where_it_is_exact():
    """The saved and precomputed (state, lexer state) entries are split with the top state's
    indentation column 0 and column 0; a top _INDENT node opening column 2 must get a key of
    its own, or a line break in the token would be measured against the wrong level."""
    postlex.compiled.cache_clear()
    compiled = postlex.compiled("indent")
    m = GrammarMatcher(compiled)
    assert m.accept_string("if:\n  ab")
    spec, (top, q) = m._backend.spec(m._history[-1][0])
    assert compiled.native_masker.indent_state[top] == 1 and spec[-4] == 2  # _INDENT, column 2
    assert_same_masks(m)
    assert (top, q) not in compiled.native_masker._cache
    postlex.compiled.cache_clear()


COMMENTED = ("def f(x):\n    if x:\n        y = 1\n\n    # a b  c\n        # d e\n"
             "    return y  # tail\n# end e f\nz = [1,\n  # in brackets\n  2]\n")


def test_comment_lines_do_not_key_on_the_column(always_deeper):
    """Only ending a line break reads the column carried into a token, and a comment line
    inside a line break must end with a line-break byte first, which resets the column: so
    keys drop the column there (one key for "# a b c", not one per space), while after
    "\\n    " it stays in the key. Masks stay the reference twin's throughout."""
    compiled = GrammarCompiler(small_vocab([COMMENTED], seed=3)).compile_builtin("python")
    masker = compiled.native_masker
    index = {tok: i for i, tok in enumerate(compiled.tokenizer_info.token_bytes)}

    def reads_column(m) -> bool:
        spec, _ = m._backend.spec(m._history[-1][0])
        qs, pos = [], 1
        for _ in range(int(spec[0])):
            depth = int(spec[pos])
            qs.append(int(spec[pos + 1 + 2 * depth]))
            pos += 3 + 2 * depth + int(spec[pos + 2 + 2 * depth])
        return any(q >= 0 and masker._column_read[q] for q in qs)

    m = GrammarMatcher(compiled)
    sizes = {}
    for i, b in enumerate(COMMENTED.encode()):
        assert_same_masks(m)
        done = COMMENTED[:i]
        if done.endswith("y = 1\n\n    "):
            assert reads_column(m)  # the line break may end here: its column decides
        if done.endswith(("# a", "# a b  c", "# d e")):
            assert not reads_column(m)
            sizes[done[-3:]] = len(masker._cache)
        assert m.accept_token(index[bytes([b])])
    assert_same_masks(m)
    assert sizes["# a"] == sizes["  c"]  # the spaces of the comment made no new keys
