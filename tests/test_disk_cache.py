"""Compiled grammars kept on disk between processes (structgen.disk_cache)."""

from __future__ import annotations

import numpy as np
import pytest
from test_native_parity import JSON_SAMPLES, small_vocab

from structgen import CompiledGrammar, GrammarCompiler, GrammarMatcher, disk_cache

SAMPLE = JSON_SAMPLES[0]


@pytest.fixture
def folder(tmp_path, monkeypatch):
    monkeypatch.setenv("STRUCTGEN_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(disk_cache, "MIN_SECONDS", 0.0)  # store even fast compiles
    return tmp_path


def masks_along(compiled, text: str) -> list[list[int]]:
    m = GrammarMatcher(compiled)
    out = [m.allowed_token_ids().tolist()]
    for ch in text.encode("utf-8"):
        assert m.accept_string(bytes([ch]))
        out.append(m.allowed_token_ids().tolist())
    return out


def test_a_second_compiler_loads_what_the_first_saved(folder):
    info = small_vocab(JSON_SAMPLES)
    first = GrammarCompiler(info).compile_builtin("json")
    files = list(folder.glob("*.sgc"))
    assert len(files) == 1
    loaded = GrammarCompiler(info).compile_builtin("json")  # a new compiler: no memory cache
    assert loaded is not first
    assert masks_along(loaded, SAMPLE) == masks_along(first, SAMPLE)
    assert list(folder.glob("*.sgc")) == files  # nothing new written


def test_keys_separate_grammars_and_tokenizers(folder):
    info = small_vocab(JSON_SAMPLES)
    other = small_vocab(JSON_SAMPLES, seed=1)
    GrammarCompiler(info).compile_builtin("json")
    GrammarCompiler(info).compile_grammar('start: "a"+')
    GrammarCompiler(other).compile_builtin("json")
    assert len(list(folder.glob("*.sgc"))) == 3


def test_a_damaged_file_is_compiled_again_and_replaced(folder):
    info = small_vocab(JSON_SAMPLES)
    GrammarCompiler(info).compile_builtin("json")
    (path,) = folder.glob("*.sgc")
    path.write_bytes(b"not a grammar")
    again = GrammarCompiler(info).compile_builtin("json")
    assert masks_along(again, SAMPLE)[-1]
    CompiledGrammar.load(path, info)  # replaced by a good file


def test_off_and_disabled_write_nothing(tmp_path, monkeypatch):
    info = small_vocab(JSON_SAMPLES)
    monkeypatch.setattr(disk_cache, "MIN_SECONDS", 0.0)
    monkeypatch.setenv("STRUCTGEN_CACHE_DIR", str(tmp_path))
    GrammarCompiler(info, disk_cache=False).compile_builtin("json")
    assert not list(tmp_path.iterdir())
    monkeypatch.setenv("STRUCTGEN_CACHE_DIR", "off")
    assert disk_cache.cache_folder() is None
    GrammarCompiler(info).compile_builtin("json")
    assert not list(tmp_path.iterdir())


def test_a_loaded_grammar_splits_like_a_fresh_one(tmp_path):
    """Partial-stack splits of a loaded grammar equal the freshly compiled one's."""
    info = small_vocab(JSON_SAMPLES)
    fresh = GrammarCompiler(info, disk_cache=False).compile_builtin("json")
    fresh.save(tmp_path / "g.sgc")
    loaded = CompiledGrammar.load(tmp_path / "g.sgc", info)
    a, b = fresh.native_masker.engine, loaded.native_masker.engine
    for state in range(fresh.grammar.n_states):
        for split_a, split_b in zip(a.classify(state, -1), b.classify(state, -1), strict=True):
            assert np.array_equal(split_a, split_b)
