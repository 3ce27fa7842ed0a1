"""vLLM (v1 engine): a custom logits processor that keeps each request in its grammar.

Load it into the engine and give a request its grammar in ``SamplingParams.extra_args``::

    from vllm import LLM, SamplingParams
    from structgen.integrations.vllm import StructgenLogitsProcessor

    llm = LLM(model, logits_processors=[StructgenLogitsProcessor])
    params = SamplingParams(max_tokens=128, extra_args={"structgen_grammar": "json"})

or ``vllm serve MODEL --logits-processors structgen.integrations.vllm:StructgenLogitsProcessor``
with ``"vllm_xargs": {"structgen_grammar": "..."}`` in the request body. The grammar is anything
:func:`structgen.generate.resolve_grammar` takes: a built-in name (``"json"``), Lark text, or a
JSON Schema (a dict, or JSON text; ``structgen_json_schema`` is an alias key). Requests without
one are left alone.

The processor follows vLLM's documented v1 interface (``vllm.v1.sample.logits_processor``):
``validate_params`` checks the grammar text before a request is admitted; ``update_state`` is
called before every forward pass, applies the batch changes in vLLM's order (removed, added,
moved: one-way ``i -> j`` or a swap ``i <-> j``), reads the new tokens from each request's live
``output_tok_ids`` list and starts computing the next masks on a worker thread, so the masks
are filled while the model runs; ``apply`` joins and masks the logits rows in place;
``is_argmax_invariant`` is False (masking changes the argmax). Rows are batch indices, so a
row's state follows its request through moves. A request whose output holds a token its grammar
rejects (only possible if something else forced that token) is logged and allowed only EOS.

How far this is tested: vLLM cannot run here (no GPU; its wheel pins a CUDA build of torch), so
``tests/test_vllm_adapter.py`` drives the processor with objects shaped exactly like vLLM's
(``BatchUpdate`` with ``batch_size`` / ``removed`` / ``added`` / ``moved``, ``AddedRequest``
tuples ``(index, params, prompt_tok_ids, output_tok_ids)`` with a live output list,
``MoveDirectionality.UNIDIRECTIONAL`` / ``SWAP``) through adds, removals, one-way moves, swaps
and requests without a grammar, checking every row's mask against an independent matcher. It
has not been run inside a vLLM engine. When vLLM is importable the class subclasses its
``LogitsProcessor``; otherwise it is a plain class with the same methods.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from concurrent.futures import Future
from typing import Any

import numpy as np

from structgen.batch import batch_fill_next_token_bitmask
from structgen.bitmask import allocate_token_bitmask, fill_row_from_ids
from structgen.compiler import CompiledGrammar
from structgen.errors import ConfigurationError, StructgenError
from structgen.generate import grammar_compiler_for, resolve_grammar
from structgen.matcher import GrammarMatcher
from structgen.overlap import apply_bitmask_fast, mask_worker
from structgen.tokenizer_info import TokenizerInfo

try:  # subclass vLLM's base when it is installed; the adapter never needs it otherwise
    from vllm.v1.sample.logits_processor import LogitsProcessor as _VllmLogitsProcessor
except Exception:  # any failure to import vLLM means "not installed here"
    _VllmLogitsProcessor = object

__all__ = ["GRAMMAR_KEYS", "StructgenLogitsProcessor", "register_tokenizer_info"]

logger = logging.getLogger("structgen")

#: ``SamplingParams.extra_args`` keys read for a request's grammar, in this order.
GRAMMAR_KEYS = ("structgen_grammar", "structgen_json_schema")

_registered: dict[str, TokenizerInfo] = {}
_registered_lock = threading.Lock()


def register_tokenizer_info(tokenizer: str, info: TokenizerInfo) -> None:
    """Use ``info`` for engines whose ``model_config.tokenizer`` is ``tokenizer`` instead of
    loading the tokenizer again (also how tests give the processor a tokenizer)."""
    with _registered_lock:
        _registered[tokenizer] = info


def _grammar_spec(params: Any) -> Any:
    extra = getattr(params, "extra_args", None) or {}
    for key in GRAMMAR_KEYS:
        if extra.get(key) is not None:
            return extra[key]
    return None


class _Request:
    """One request's grammar state: its matcher, its live output list and how much of it
    the matcher has consumed."""

    __slots__ = ("matcher", "output", "consumed", "broken")

    def __init__(self, matcher: GrammarMatcher, output: list[int]) -> None:
        self.matcher = matcher
        self.output = output
        self.consumed = 0
        self.broken = False

    def catch_up(self, new_tokens: Sequence[int]) -> None:
        for token in new_tokens:
            self.consumed += 1
            if self.broken or self.matcher.is_terminated():
                continue
            if not self.matcher.accept_token(int(token)):
                logger.warning("token %d is outside the request's grammar; only EOS is "
                               "allowed from now on", token)
                self.broken = True


class StructgenLogitsProcessor(_VllmLogitsProcessor):
    """vLLM v1 logits processor: per-request grammars from ``SamplingParams.extra_args``."""

    @classmethod
    def validate_params(cls, sampling_params: Any) -> None:
        """Raise ``ValueError`` for a grammar that is not a string, a dict or valid Lark text.

        (JSON Schemas are checked when the request is added, where the tokenizer is known.)
        """
        spec = _grammar_spec(sampling_params)
        if spec is None or isinstance(spec, (dict, bool, CompiledGrammar)):
            return
        if not isinstance(spec, str):
            raise ValueError(f"{GRAMMAR_KEYS[0]} must be a string (a built-in grammar name, "
                             f"Lark text or JSON Schema text) or a dict, not {type(spec).__name__}")
        from structgen.grammar import BUILTIN_GRAMMARS, Grammar

        text = spec.strip()
        if text in BUILTIN_GRAMMARS or text.startswith("{"):
            return
        try:
            Grammar.from_lark(spec)
        except StructgenError as exc:
            raise ValueError(f"{GRAMMAR_KEYS[0]}: {exc}") from exc

    def __init__(self, vllm_config: Any, device: Any, is_pin_memory: bool) -> None:
        self.device = device
        self.is_pin_memory = is_pin_memory
        self.tokenizer_info = _tokenizer_info_of(vllm_config)
        self._compiler = grammar_compiler_for(self.tokenizer_info)
        self._requests: dict[int, _Request] = {}
        self._bitmask = allocate_token_bitmask(1, self.tokenizer_info.vocab_size)
        self._future: Future | None = None

    def is_argmax_invariant(self) -> bool:
        return False

    # --- batch changes -------------------------------------------------------------------------
    def update_state(self, batch_update: Any) -> None:
        """Apply the batch changes (removed, then added, then moved), then start filling the
        masks of the coming step on the mask thread."""
        self._join()
        if batch_update is not None:
            for index in batch_update.removed:
                self._requests.pop(index, None)
            for added in batch_update.added:
                self._add(added)
            for moved in batch_update.moved:
                self._move(*moved)
        if not self._requests:
            return
        rows = 1 + max(max(self._requests), getattr(batch_update, "batch_size", 0) - 1)
        if self._bitmask.shape[0] < rows:
            self._bitmask = allocate_token_bitmask(rows, self.tokenizer_info.vocab_size)
        # Copy what is new now: vLLM appends to the live lists only after this step samples.
        work = [(index, req, list(req.output[req.consumed:]))
                for index, req in self._requests.items()]
        self._future = mask_worker().submit(self._fill, work)

    def _add(self, added: Sequence[Any]) -> None:
        index, params = added[0], added[1]
        output = added[-1]  # (index, params, prompt_tok_ids, output_tok_ids); older: 3-tuples
        spec = _grammar_spec(params)
        if spec is None:
            self._requests.pop(index, None)  # a request without a grammar replaces this row
            return
        try:
            compiled = resolve_grammar(self._compiler, spec)
        except StructgenError as exc:
            raise ValueError(f"request at row {index}: {exc}") from exc
        self._requests[index] = _Request(GrammarMatcher(compiled), output)

    def _move(self, src: int, dst: int, direction: Any) -> None:
        a = self._requests.pop(src, None)
        b = self._requests.pop(dst, None)
        if a is not None:
            self._requests[dst] = a
        if _is_swap(direction) and b is not None:
            self._requests[src] = b

    # --- masks ---------------------------------------------------------------------------------
    def _fill(self, work: list[tuple[int, _Request, list[int]]]) -> None:
        bitmask = self._bitmask
        bitmask.fill(-1)
        matchers, rows = [], []
        for index, req, new_tokens in work:
            req.catch_up(new_tokens)
            if req.broken:
                eos = self.tokenizer_info.eos_token_ids
                fill_row_from_ids(bitmask[index], np.array(sorted(eos), dtype=np.int64))
            else:
                matchers.append(req.matcher)
                rows.append(index)
        if matchers:
            batch_fill_next_token_bitmask(matchers, bitmask, indices=rows)

    def _join(self) -> None:
        future, self._future = self._future, None
        if future is not None:
            future.result()

    def apply(self, logits: Any) -> Any:
        """Mask the rows of requests with a grammar (in place) and return ``logits``."""
        self._join()
        if not self._requests:
            return logits
        n = logits.shape[0]
        if self._bitmask.shape[0] < n:
            grown = allocate_token_bitmask(n, self.tokenizer_info.vocab_size)
            grown.fill(-1)
            grown[: self._bitmask.shape[0]] = self._bitmask
            self._bitmask = grown
        apply_bitmask_fast(logits, self._bitmask[:n])
        return logits


def _is_swap(direction: Any) -> bool:
    name = getattr(direction, "name", direction)
    return str(name).upper() == "SWAP"


def _tokenizer_info_of(vllm_config: Any) -> TokenizerInfo:
    model_config = getattr(vllm_config, "model_config", None)
    if model_config is None:
        raise ConfigurationError("vllm_config has no model_config: cannot find the tokenizer")
    name = str(getattr(model_config, "tokenizer", None) or getattr(model_config, "model", ""))
    with _registered_lock:
        info = _registered.get(name)
    if info is not None:
        return info
    tokenizer = _load_tokenizer(model_config, name)
    width = None
    if hasattr(model_config, "get_vocab_size"):
        width = int(model_config.get_vocab_size())
    eos: list[int] = []
    hf_eos = getattr(getattr(model_config, "hf_config", None), "eos_token_id", None)
    if hf_eos is not None:
        eos.extend([int(hf_eos)] if isinstance(hf_eos, int) else (int(i) for i in hf_eos))
    vocab = max(width or 0, len(tokenizer)) or None
    info = TokenizerInfo.from_huggingface(tokenizer, vocab_size=vocab, eos_token_ids=eos)
    register_tokenizer_info(name, info)
    return info


def _load_tokenizer(model_config: Any, name: str) -> Any:
    try:  # vLLM's own loader knows its tokenizer modes and revisions
        from vllm.transformers_utils.tokenizer import cached_tokenizer_from_config

        return cached_tokenizer_from_config(model_config)
    except Exception:  # not installed, or moved in this vLLM version
        pass
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(
        name, revision=getattr(model_config, "tokenizer_revision", None),
        trust_remote_code=bool(getattr(model_config, "trust_remote_code", False)))
