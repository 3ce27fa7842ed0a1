"""A Hugging Face transformers causal LM as a batched :class:`LanguageModel`, with a prefix KV cache.

torch and transformers are imported when an adapter is made, never by ``structgen.sampling``
itself (``pip install structgen[hf]``).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import ConfigurationError


class _Entry:
    """The model state after one token sequence: its KV cache (one ``(keys, values)`` pair per
    layer, batch dimension 1) and the next-token log-probabilities."""

    __slots__ = ("length", "kv", "logprobs")

    def __init__(self, length: int, kv: list, logprobs: np.ndarray) -> None:
        self.length = length
        self.kv = kv
        self.logprobs = logprobs


def _cache_layers(cache: Any) -> list[tuple[Any, Any]]:
    """``(keys, values)`` per layer from a transformers cache object (any recent version)."""
    if hasattr(cache, "layers"):  # transformers >= 4.56
        return [(layer.keys, layer.values) for layer in cache.layers]
    if hasattr(cache, "key_cache"):
        return list(zip(cache.key_cache, cache.value_cache, strict=True))
    return [(layer[0], layer[1]) for layer in cache]  # legacy tuples


def _make_cache(layers: list[tuple[Any, Any]]) -> Any:
    from transformers import DynamicCache

    from_legacy = getattr(DynamicCache, "from_legacy_cache", None)
    if from_legacy is not None:
        return from_legacy(tuple(layers))
    return DynamicCache(ddp_cache_data=layers)


class HFCausalLM:
    """Next-token log-probabilities from a transformers causal LM, batched over contexts.

    ``contexts`` are the generated tokens; ``prompt`` (text, encoded with ``tokenizer``, or token
    ids) comes before each of them. The KV cache of every evaluated sequence is kept (an LRU of
    ``cache_size`` entries; the prompt's is pinned), so a context that extends a cached one by a
    token costs one token of forward pass, and particles that share a prefix share its cache.
    Contexts are grouped by cached-prefix length and suffix length so each forward pass is one
    padding-free batch of at most ``max_batch_size`` rows. Keep ``cache_size`` at least twice the
    number of particles. ``vocab_size`` is the width of the model's logits.
    """

    def __init__(self, model: Any, tokenizer: Any = None, *, prompt: str | Sequence[int] = (),
                 cache_size: int = 256, max_batch_size: int = 64) -> None:
        import torch

        self._torch = torch
        self.model = model
        self.tokenizer = tokenizer
        if isinstance(prompt, str):
            if tokenizer is None:
                raise ConfigurationError("a text prompt needs the tokenizer; or pass token ids")
            ids = list(tokenizer(prompt)["input_ids"]) if prompt else []
        else:
            ids = [int(t) for t in prompt]
        if not ids:
            bos = getattr(tokenizer, "bos_token_id", None)
            if bos is None:
                bos = getattr(model.config, "bos_token_id", None)
            if bos is None:
                raise ConfigurationError(
                    "the model needs at least one input token: give a prompt (or a BOS token)")
            ids = [int(bos)]
        if cache_size < 1 or max_batch_size < 1:
            raise ConfigurationError("cache_size and max_batch_size must be >= 1")
        self.prompt_ids = tuple(ids)
        out = model.get_output_embeddings()
        self._vocab_size = int(out.weight.shape[0]) if out is not None else int(model.config.vocab_size)
        self._device = next(model.parameters()).device
        self.cache_size = cache_size
        self.max_batch_size = max_batch_size
        self._cache: OrderedDict[tuple[int, ...], _Entry] = OrderedDict()
        self._root: _Entry | None = None
        self.n_forward_tokens = 0  # tokens run through the model (prompt included)
        self.n_forward_calls = 0
        self.n_cache_hits = 0

    @property
    def vocab_size(self) -> int:
        return self._vocab_size

    def __repr__(self) -> str:
        name = type(self.model).__name__
        return f"HFCausalLM({name}, prompt={len(self.prompt_ids)} tokens, vocab_size={self._vocab_size})"

    def clear_cache(self) -> None:
        self._cache.clear()
        self._root = None

    # --- the protocol ----------------------------------------------------------------------
    def next_token_logprobs(self, contexts: Sequence[Sequence[int]]) -> np.ndarray:
        out = np.empty((len(contexts), self._vocab_size), dtype=np.float64)
        root = self._root_entry()
        todo: dict[tuple[int, ...], list[int]] = {}
        for i, ctx in enumerate(contexts):
            key = self.prompt_ids + tuple(int(t) for t in ctx)
            entry = root if len(key) == root.length else self._cache.get(key)
            if entry is not None:
                self.n_cache_hits += 1
                if entry is not root:
                    self._cache.move_to_end(key)
                out[i] = entry.logprobs
            else:
                todo.setdefault(key, []).append(i)
        groups: dict[tuple[int, int], list[tuple[tuple[int, ...], _Entry]]] = {}
        for key in todo:
            prefix = self._longest_prefix(key, root)
            groups.setdefault((prefix.length, len(key) - prefix.length), []).append((key, prefix))
        for members in groups.values():
            for lo in range(0, len(members), self.max_batch_size):
                chunk = members[lo:lo + self.max_batch_size]
                for (key, _), entry in zip(chunk, self._forward(chunk), strict=True):
                    for i in todo[key]:
                        out[i] = entry.logprobs
        return out

    # --- the cache ---------------------------------------------------------------------------
    def _root_entry(self) -> _Entry:
        if self._root is None:
            self._root = self._forward([(self.prompt_ids, None)])[0]
        return self._root

    def _longest_prefix(self, key: tuple[int, ...], root: _Entry, *, depth: int = 64) -> _Entry:
        for n in range(len(key) - 1, max(root.length, len(key) - depth) - 1, -1):
            if n == root.length:
                return root
            entry = self._cache.get(key[:n])
            if entry is not None:
                return entry
        return root

    def _store(self, key: tuple[int, ...], entry: _Entry) -> None:
        self._cache[key] = entry
        self._cache.move_to_end(key)
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)

    def _forward(self, members: list[tuple[tuple[int, ...], _Entry | None]]) -> list[_Entry]:
        """One batched forward pass: every member extends its cached prefix (same lengths)."""
        torch = self._torch
        prefix = members[0][1]
        start = prefix.length if prefix is not None else 0
        ids = torch.tensor([list(key[start:]) for key, _ in members], dtype=torch.long,
                           device=self._device)
        kwargs: dict[str, Any] = {"use_cache": True}
        if prefix is not None:
            layers = [(torch.cat([p.kv[i][0] for _, p in members], dim=0),
                       torch.cat([p.kv[i][1] for _, p in members], dim=0))
                      for i in range(len(prefix.kv))]
            kwargs["past_key_values"] = _make_cache(layers)
        kwargs["attention_mask"] = torch.ones((len(members), start + ids.shape[1]),
                                              dtype=torch.long, device=self._device)
        with torch.no_grad():
            result = self.model(input_ids=ids, **kwargs)
        self.n_forward_calls += 1
        self.n_forward_tokens += int(ids.numel())
        logits = result.logits[:, -1, :].float()
        logprobs = torch.log_softmax(logits, dim=-1).double().cpu().numpy()
        new_layers = _cache_layers(result.past_key_values)
        entries = []
        for j, (key, _) in enumerate(members):
            kv = [(k[j:j + 1], v[j:j + 1]) for k, v in new_layers]
            entry = _Entry(len(key), kv, logprobs[j])
            if prefix is not None:  # the prompt's entry is pinned separately
                self._store(key, entry)
            entries.append(entry)
        return entries
