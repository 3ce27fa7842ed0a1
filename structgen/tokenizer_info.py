"""What each token id of a model's tokenizer spells, as exact bytes.

Constrained decoding works on bytes, not on token strings: a grammar accepts a token when the
bytes it decodes to extend an accepted prefix. :class:`TokenizerInfo` is the per-model object
that holds that mapping, read once from whatever format the tokenizer ships in
(``tokenizer.json``, GPT-2 ``encoder.json``, SentencePiece, tiktoken, Mistral Tekken) and never
changed afterwards, so compiled grammars can be cached and shared by its :attr:`fingerprint`.

Nothing here imports ``transformers``, ``sentencepiece`` or ``tiktoken`` at import time; each
``from_*`` constructor imports (or duck-types) only what it needs.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from structgen.errors import TokenizerError

__all__ = ["TokenizerInfo", "EOS_TOKEN_NAMES", "gpt2_bytes_to_unicode"]

logger = logging.getLogger("structgen")

#: Token texts taken as end-of-sequence when no EOS id is given. All that a tokenizer defines
#: are used (Llama-3 has both ``<|end_of_text|>`` and ``<|eot_id|>``; Qwen has
#: ``<|endoftext|>`` and ``<|im_end|>``), because a chat model may stop with either.
EOS_TOKEN_NAMES: tuple[str, ...] = (
    "<|endoftext|>", "</s>", "<|end_of_text|>", "<|eot_id|>", "<|eom_id|>", "<|im_end|>",
    "<eos>", "<end_of_turn>", "<|end|>", "<|return|>", "<|EOT|>", "<｜end▁of▁sentence｜>",
)

_BYTE_PIECE = re.compile(r"^<0x([0-9A-Fa-f]{2})>$")
_FINGERPRINT_VERSION = b"structgen-tokenizer-v1"


def gpt2_bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> printable character table, used by every byte-level BPE vocabulary.

    Bytes that are printable Latin-1 stand for themselves; the other 68 bytes are given the
    characters from U+0100 on, in byte order, so that no token string holds whitespace or
    control characters.
    """
    printable = [*range(0x21, 0x7F), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    table = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return table


_GPT2_UNICODE_TO_BYTE = {c: b for b, c in gpt2_bytes_to_unicode().items()}


def _byte_level_to_bytes(token: str) -> bytes:
    # Characters outside the table are kept as UTF-8, as the `tokenizers` ByteLevel decoder does.
    out = bytearray()
    for ch in token:
        b = _GPT2_UNICODE_TO_BYTE.get(ch)
        if b is None:
            out += ch.encode("utf-8")
        else:
            out.append(b)
    return bytes(out)


def _metaspace_to_bytes(token: str, space_char: str, byte_fallback: bool) -> bytes:
    if byte_fallback:
        m = _BYTE_PIECE.match(token)
        if m:
            return bytes([int(m.group(1), 16)])
    return token.replace(space_char, " ").encode("utf-8")


class TokenizerInfo:
    """The bytes of every token of one tokenizer; immutable and shared per model.

    ``token_bytes[i]`` is exactly what id ``i`` adds to the text. Tokens that end in the middle
    of a UTF-8 character keep their raw bytes (that is why this is ``bytes``, never ``str``).
    Special and control tokens (EOS, BOS, chat markers, ``<unk>``) map to ``b""``: they are
    never text, and a grammar allows them only explicitly (EOS when the grammar is complete).

    ``vocab_size`` is the width of the model's logits, which may exceed the number of ids the
    tokenizer defines because models pad their output layer; ids in
    ``[len(token_bytes), vocab_size)`` are padding and never allowed.

    Build one with a ``from_*`` constructor; ``__init__`` takes the same arguments as
    :meth:`from_byte_strings`. Do not mutate ``token_bytes``: the fingerprint is taken at
    construction and compiled grammars are keyed by it.
    """

    __slots__ = ("_token_bytes", "_vocab_size", "_eos_token_ids", "_special_token_ids",
                 "_fingerprint")
    _token_bytes: list[bytes]
    _vocab_size: int
    _eos_token_ids: tuple[int, ...]
    _special_token_ids: frozenset[int]
    _fingerprint: str

    def __init__(self, token_bytes: Sequence[bytes], *, eos_token_ids: Iterable[int] = (),
                 special_token_ids: Iterable[int] = (), vocab_size: int | None = None) -> None:
        tokens = list(token_bytes)
        n = len(tokens)
        for i, tok in enumerate(tokens):
            if not isinstance(tok, bytes):
                raise TokenizerError(f"token {i} is {type(tok).__name__}, expected bytes")
        eos = tuple(dict.fromkeys(int(i) for i in eos_token_ids))
        special = frozenset(int(i) for i in special_token_ids) | frozenset(eos)
        bad = sorted(i for i in special if not 0 <= i < n)
        if bad:
            raise TokenizerError(
                f"special/EOS token ids {bad[:5]} are outside the tokenizer's {n} ids")
        if vocab_size is None:
            vocab_size = n
        if vocab_size < n:
            raise TokenizerError(
                f"vocab_size={vocab_size} is smaller than the tokenizer's {n} token ids; "
                "pass the model's logits width (it may only add padding ids)")
        for i in special:
            tokens[i] = b""
        set_ = object.__setattr__
        set_(self, "_token_bytes", tokens)
        set_(self, "_vocab_size", int(vocab_size))
        set_(self, "_eos_token_ids", eos)
        set_(self, "_special_token_ids", special)
        set_(self, "_fingerprint", self._compute_fingerprint())

    # -- attributes -------------------------------------------------------------------------

    @property
    def token_bytes(self) -> list[bytes]:
        """Bytes of each id the tokenizer defines (``b""`` for special ids); do not mutate."""
        return self._token_bytes

    @property
    def vocab_size(self) -> int:
        """Logits width: the number of ids a mask covers (>= ``len(token_bytes)``)."""
        return self._vocab_size

    @property
    def eos_token_ids(self) -> tuple[int, ...]:
        """Ids that end generation; all of them are also in :attr:`special_token_ids`."""
        return self._eos_token_ids

    @property
    def special_token_ids(self) -> frozenset[int]:
        """Ids that are never text (EOS, BOS, control and added special tokens)."""
        return self._special_token_ids

    @property
    def fingerprint(self) -> str:
        """sha256 hex of what decoding depends on; equal in any process for the same tokenizer.

        Saved compiled grammars carry it, so loading one for another tokenizer is an error.
        """
        return self._fingerprint

    def _compute_fingerprint(self) -> str:
        h = hashlib.sha256(_FINGERPRINT_VERSION)
        h.update(self._vocab_size.to_bytes(8, "little"))
        h.update(len(self._token_bytes).to_bytes(8, "little"))
        for tok in self._token_bytes:
            # Length prefix: without it [b"ab", b"c"] and [b"a", b"bc"] would collide.
            h.update(len(tok).to_bytes(4, "little"))
            h.update(tok)
        for ids in (self._eos_token_ids, sorted(self._special_token_ids)):
            h.update(len(ids).to_bytes(8, "little"))
            for i in ids:
                h.update(i.to_bytes(8, "little"))
        return h.hexdigest()

    # -- queries ----------------------------------------------------------------------------

    def is_special(self, token_id: int) -> bool:
        """True when ``token_id`` is a special/control token (never text)."""
        return token_id in self._special_token_ids

    def check_token_id(self, token_id: int) -> None:
        """Raise :class:`TokenizerError` unless ``0 <= token_id < vocab_size``."""
        if not 0 <= token_id < self._vocab_size:
            raise TokenizerError(
                f"token id {token_id} is out of range: this tokenizer's vocab_size is "
                f"{self._vocab_size} (valid ids 0..{self._vocab_size - 1})")

    def decode_bytes(self, token_ids: Iterable[int]) -> bytes:
        """Concatenate the bytes of ``token_ids``; special and padding ids add nothing.

        Unlike a tokenizer's ``decode`` this never strips a leading space or merges
        replacement characters: it is exactly what the grammar saw.
        """
        tokens = self._token_bytes
        n = len(tokens)
        parts = []
        for i in token_ids:
            self.check_token_id(i)
            if i < n:
                parts.append(tokens[i])
        return b"".join(parts)

    # -- value semantics --------------------------------------------------------------------

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("TokenizerInfo is immutable")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TokenizerInfo):
            return NotImplemented
        return self._fingerprint == other._fingerprint

    def __hash__(self) -> int:
        return hash(self._fingerprint)

    def __reduce__(self) -> tuple[Any, ...]:
        # Slots plus a refusing __setattr__ defeat default pickling; rebuild through __init__.
        return (_rebuild, (self._token_bytes, self._eos_token_ids,
                           sorted(self._special_token_ids), self._vocab_size))

    def __repr__(self) -> str:
        return (f"TokenizerInfo(tokens={len(self._token_bytes)}, vocab_size={self._vocab_size}, "
                f"eos_token_ids={self._eos_token_ids}, fingerprint={self._fingerprint[:12]}...)")

    # -- constructors -----------------------------------------------------------------------

    @classmethod
    def from_byte_strings(cls, tokens: Sequence[bytes], *, eos_token_ids: Iterable[int] = (),
                          special_token_ids: Iterable[int] = (),
                          vocab_size: int | None = None) -> TokenizerInfo:
        """From the bytes of each id; EOS and special ids get ``b""`` whatever was passed."""
        return cls(tokens, eos_token_ids=eos_token_ids, special_token_ids=special_token_ids,
                   vocab_size=vocab_size)

    @classmethod
    def from_tokenizer_json(cls, path_or_dict: str | os.PathLike[str] | Mapping[str, Any], *,
                            eos_token_ids: Iterable[int] | None = None,
                            vocab_size: int | None = None) -> TokenizerInfo:
        """From a Hugging Face ``tokenizer.json`` (a path, or the parsed dict).

        Two families are read: byte-level BPE (GPT-2, Llama-3, Qwen; found by a ``ByteLevel``
        decoder or pre-tokenizer), where each character stands for one byte through GPT-2's
        table; and SentencePiece-style (Llama-2, Mistral, T5; found by a ``Metaspace``
        decoder/pre-tokenizer, a ``Replace`` of ``▁``, a ``ByteFallback`` decoder or
        ``model.byte_fallback``), where ``▁`` is a space and ``<0xNN>`` is the single byte NN.
        Other vocabularies are taken as plain UTF-8; WordPiece is refused because a token's
        bytes depend on its neighbours.

        ``added_tokens`` marked ``special`` (and the model's ``unk_token``) are special;
        other added tokens are text, their ``content`` in UTF-8.

        EOS, unless ``eos_token_ids`` is given: **a guess** — every special added token whose
        text is one of :data:`EOS_TOKEN_NAMES` (any vocabulary entry when the file marks no
        special tokens). Pass the ids from the model's ``generation_config`` when it
        matters.
        """
        data = _load_json(path_or_dict)
        model = data.get("model") or {}
        kind = model.get("type")
        if kind == "WordPiece":
            raise TokenizerError("WordPiece tokenizers are not supported: whether a token "
                                 "starts with a space depends on the token before it")
        vocab = _model_vocab(model)
        decode = _pick_decoder(data)
        by_id: dict[int, bytes] = {i: decode(s) for s, i in vocab.items()}
        special_text: dict[str, int] = {}
        special: set[int] = set()
        unk = model.get("unk_token")
        if isinstance(unk, str) and unk in vocab:
            special.add(vocab[unk])
        if kind == "Unigram" and isinstance(model.get("unk_id"), int):
            special.add(model["unk_id"])
        for added in data.get("added_tokens") or []:
            i, content = int(added["id"]), str(added["content"])
            by_id[i] = content.encode("utf-8")
            if added.get("special"):
                special.add(i)
                special_text[content] = i
        if eos_token_ids is not None:
            eos = list(eos_token_ids)
        else:
            # Only special tokens: Qwen's byte-level vocabulary has "</s>" as plain text.
            eos = _guess_eos(special_text or vocab)
        return cls(_dense(by_id, special), eos_token_ids=eos, special_token_ids=special,
                   vocab_size=vocab_size)

    @classmethod
    def from_huggingface(cls, tokenizer: Any, *, vocab_size: int | None = None,
                         eos_token_ids: Iterable[int] | None = None) -> TokenizerInfo:
        """From a ``transformers`` tokenizer (duck-typed; ``transformers`` is not imported).

        A fast tokenizer is read through its ``backend_tokenizer.to_str()`` JSON; a slow one
        through ``get_vocab()`` and ``convert_ids_to_tokens``, byte-level when it has GPT-2's
        ``byte_decoder``, SentencePiece-style otherwise. EOS is ``tokenizer.eos_token_id``
        plus ``eos_token_ids``; ``all_special_ids`` are special.
        """
        eos: list[int] = []
        if getattr(tokenizer, "eos_token_id", None) is not None:
            eos.append(int(tokenizer.eos_token_id))
        eos.extend(int(i) for i in eos_token_ids or ())
        specials = {int(i) for i in getattr(tokenizer, "all_special_ids", None) or ()}
        backend = getattr(tokenizer, "backend_tokenizer", None)
        if backend is not None:
            base = cls.from_tokenizer_json(json.loads(backend.to_str()),
                                           eos_token_ids=eos or None)
            tokens = list(base.token_bytes)
            specials |= base.special_token_ids
            eos = eos or list(base.eos_token_ids)
        else:
            tokens, more = _slow_hf_tokens(tokenizer)
            specials |= more
            eos = eos or _guess_eos(tokenizer.get_vocab())
        # len(tokenizer) may count ids the vocabulary dict lacks; those are never text.
        n = len(tokenizer) if hasattr(tokenizer, "__len__") else 0
        specials |= set(range(len(tokens), n))
        tokens.extend([b""] * (n - len(tokens)))
        return cls(tokens, eos_token_ids=eos, special_token_ids=specials, vocab_size=vocab_size)

    @classmethod
    def from_gpt2_files(cls, encoder_json_path: str | os.PathLike[str],
                        vocab_bpe_path: str | os.PathLike[str] | None = None, *,
                        eos_token_ids: Iterable[int] | None = None,
                        vocab_size: int | None = None) -> TokenizerInfo:
        """From GPT-2's original ``encoder.json`` (byte-level token -> id).

        ``vocab.bpe`` (the merges) is not needed for the bytes; when given, it is checked to
        belong to this ``encoder.json`` (every merge result must be a token), which catches
        mismatched file pairs. EOS unless given: tokens named in :data:`EOS_TOKEN_NAMES`
        (``<|endoftext|>``, id 50256, for GPT-2).
        """
        with open(encoder_json_path, encoding="utf-8") as f:
            encoder: dict[str, int] = json.load(f)
        if vocab_bpe_path is not None:
            _check_merges(vocab_bpe_path, encoder)
        eos = _guess_eos(encoder) if eos_token_ids is None else list(eos_token_ids)
        by_id = {int(i): _byte_level_to_bytes(s) for s, i in encoder.items()}
        return cls(_dense(by_id, set()), eos_token_ids=eos, vocab_size=vocab_size)

    @classmethod
    def from_sentencepiece(cls, model_path_or_processor: Any, *,
                           eos_token_ids: Iterable[int] | None = None,
                           vocab_size: int | None = None) -> TokenizerInfo:
        """From a SentencePiece model file or a loaded ``SentencePieceProcessor``.

        ``▁`` becomes a space; byte pieces ``<0xNN>`` become the single byte NN; control,
        unknown and unused pieces are special (the encoder never produces unused ones). EOS is
        the model's ``eos_id()`` plus ``eos_token_ids``.
        """
        sp = model_path_or_processor
        if isinstance(sp, (str, os.PathLike)):
            try:
                import sentencepiece
            except ImportError as exc:
                raise TokenizerError("reading a SentencePiece model needs "
                                     "`pip install sentencepiece`") from exc
            sp = sentencepiece.SentencePieceProcessor(model_file=os.fspath(sp))
        tokens: list[bytes] = []
        special: set[int] = set()
        for i in range(sp.get_piece_size()):
            piece = sp.id_to_piece(i)
            if sp.is_control(i) or sp.is_unknown(i) or sp.is_unused(i):
                special.add(i)
                tokens.append(b"")
            else:
                tokens.append(_metaspace_to_bytes(piece, "▁", bool(sp.is_byte(i))))
        eos = [sp.eos_id()] if sp.eos_id() >= 0 else []
        eos.extend(eos_token_ids or ())
        return cls(tokens, eos_token_ids=eos, special_token_ids=special, vocab_size=vocab_size)

    @classmethod
    def from_tiktoken(cls, encoding: Any, *, eos_token_ids: Iterable[int] | None = None,
                      vocab_size: int | None = None) -> TokenizerInfo:
        """From a ``tiktoken.Encoding``: ranks are ids, special tokens are special.

        Ids the encoding leaves undefined (gaps below ``n_vocab``) are special. EOS unless
        given: special tokens named in :data:`EOS_TOKEN_NAMES`.
        """
        special_ids = {name: encoding.encode_single_token(name)
                       for name in encoding.special_tokens_set}
        special = set(special_ids.values())
        tokens: list[bytes] = []
        for i in range(encoding.n_vocab):
            if i in special:
                tokens.append(b"")
                continue
            try:
                tokens.append(encoding.decode_single_token_bytes(i))
            except KeyError:
                special.add(i)
                tokens.append(b"")
        eos = _guess_eos(special_ids) if eos_token_ids is None else list(eos_token_ids)
        return cls(tokens, eos_token_ids=eos, special_token_ids=special, vocab_size=vocab_size)

    @classmethod
    def from_mistral_tekken(cls, path: str | os.PathLike[str], *,
                            eos_token_ids: Iterable[int] | None = None,
                            vocab_size: int | None = None) -> TokenizerInfo:
        """From a Mistral Tekken ``tekken.json``.

        Layout (as mistral-common's ``Tekkenizer`` builds it): the first
        ``config.default_num_special_tokens`` ids are special tokens (those listed in
        ``special_tokens``, or for files up to v7 mistral-common's fixed list with ``</s>`` at
        2; the rest are fillers); vocabulary entry of rank r is id ``r + num_special``, and
        only the first ``default_vocab_size - num_special`` entries are used. EOS unless given
        is ``</s>``.
        """
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        try:
            config = data["config"]
            n_special = int(config["default_num_special_tokens"])
            n_total = int(config["default_vocab_size"])
            vocab = data["vocab"][: n_total - n_special]
        except (KeyError, TypeError) as exc:
            raise TokenizerError(f"{path} is not a Tekken tokenizer file: {exc}") from exc
        tokens = [b""] * n_special
        for expected, entry in enumerate(vocab):
            if entry["rank"] != expected:
                raise TokenizerError(f"{path}: vocab entry {expected} has rank {entry['rank']}")
            tokens.append(base64.b64decode(entry["token_bytes"]))
        if len(tokens) != n_total:
            raise TokenizerError(f"{path}: {len(tokens)} ids, config says {n_total}")
        if eos_token_ids is None:
            listed = {t["token_str"]: int(t["rank"]) for t in data.get("special_tokens") or ()}
            if listed:
                eos = [listed["</s>"]] if "</s>" in listed else []
            else:
                eos = [2]  # mistral-common's default special-token list puts </s> at rank 2
        else:
            eos = list(eos_token_ids)
        return cls(tokens, eos_token_ids=eos, special_token_ids=range(n_special),
                   vocab_size=vocab_size)


def _rebuild(tokens: list[bytes], eos: tuple[int, ...], special: list[int],
             vocab_size: int) -> TokenizerInfo:
    return TokenizerInfo(tokens, eos_token_ids=eos, special_token_ids=special,
                         vocab_size=vocab_size)


def _load_json(path_or_dict: str | os.PathLike[str] | Mapping[str, Any]) -> Mapping[str, Any]:
    if isinstance(path_or_dict, Mapping):
        return path_or_dict
    try:
        with open(path_or_dict, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as exc:
        raise TokenizerError(f"cannot read tokenizer.json {path_or_dict!s}: {exc}") from exc


def _model_vocab(model: Mapping[str, Any]) -> dict[str, int]:
    vocab = model.get("vocab")
    if isinstance(vocab, Mapping):
        return {str(k): int(v) for k, v in vocab.items()}
    if isinstance(vocab, list):  # Unigram: [[piece, score], ...], id = position
        return {str(entry[0]): i for i, entry in enumerate(vocab)}
    raise TokenizerError(f"tokenizer.json model {model.get('type')!r} has no readable vocab")


def _walk(component: Any) -> list[Mapping[str, Any]]:
    """A decoder/pre-tokenizer/normalizer and, for a ``Sequence``, its members, flattened."""
    if not isinstance(component, Mapping):
        return []
    found = [component]
    for key in ("decoders", "pretokenizers", "normalizers"):
        for sub in component.get(key) or ():
            found.extend(_walk(sub))
    return found


def _pick_decoder(data: Mapping[str, Any]) -> Any:
    decoders = _walk(data.get("decoder"))
    pre = _walk(data.get("pre_tokenizer"))
    types = {d.get("type") for d in decoders} | {p.get("type") for p in pre}
    if "ByteLevel" in types:
        return _byte_level_to_bytes
    space = None
    for d in decoders + pre:
        if d.get("type") == "Metaspace":
            space = d.get("replacement") or "▁"
        elif d.get("type") == "Replace" and d.get("content") == " ":
            space = (d.get("pattern") or {}).get("String") or space
    for n in _walk(data.get("normalizer")):
        if n.get("type") == "Replace" and (n.get("pattern") or {}).get("String") == " ":
            space = n.get("content") or space
    byte_fallback = bool((data.get("model") or {}).get("byte_fallback")) or "ByteFallback" in types
    if space is None and byte_fallback:
        space = "▁"
    if space is None:
        return lambda s: s.encode("utf-8")
    return lambda s: _metaspace_to_bytes(s, space, byte_fallback)


def _guess_eos(text_to_id: Mapping[str, int]) -> list[int]:
    eos = [int(text_to_id[name]) for name in EOS_TOKEN_NAMES if name in text_to_id]
    if not eos:
        logger.warning("no EOS token found among %s; pass eos_token_ids", EOS_TOKEN_NAMES[:6])
    return eos


def _dense(by_id: Mapping[int, bytes], special: set[int]) -> list[bytes]:
    """Ids 0..max as a list; ids the tokenizer skips become special (they are never text)."""
    if not by_id:
        raise TokenizerError("the tokenizer defines no tokens")
    if min(by_id) < 0:
        raise TokenizerError(f"negative token id {min(by_id)}")
    n = max(by_id) + 1
    tokens = [b""] * n
    for i, tok in by_id.items():
        tokens[i] = tok
    special.update(i for i in range(n) if i not in by_id)
    return tokens


def _check_merges(vocab_bpe_path: str | os.PathLike[str], encoder: Mapping[str, int]) -> None:
    with open(vocab_bpe_path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if line.startswith("#version") or not line.strip():
                continue
            parts = line.rstrip("\n").split(" ")
            if len(parts) != 2 or "".join(parts) not in encoder:
                raise TokenizerError(f"{vocab_bpe_path}:{lineno}: merge {line.strip()!r} "
                                     "does not match encoder.json (mismatched file pair?)")


def _slow_hf_tokens(tokenizer: Any) -> tuple[list[bytes], set[int]]:
    vocab: dict[str, int] = dict(tokenizer.get_vocab())
    n = max(vocab.values()) + 1 if vocab else 0
    pieces = tokenizer.convert_ids_to_tokens(list(range(n)))
    byte_decoder = getattr(tokenizer, "byte_decoder", None)
    specials: set[int] = set()
    added = getattr(tokenizer, "added_tokens_decoder", None) or {}
    tokens: list[bytes] = []
    for i, piece in enumerate(pieces):
        if piece is None:
            specials.add(i)
            tokens.append(b"")
        elif i in added:
            tokens.append(str(piece).encode("utf-8"))
            if getattr(added[i], "special", False):
                specials.add(i)
        elif byte_decoder is not None:
            tokens.append(bytes(byte_decoder[c] for c in piece) if all(
                c in byte_decoder for c in piece) else piece.encode("utf-8"))
        else:
            tokens.append(_metaspace_to_bytes(piece, "▁", True))
    return tokens, specials
