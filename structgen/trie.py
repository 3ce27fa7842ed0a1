"""The vocabulary as a sorted byte trie, flattened for walking.

Tokens are sorted by their bytes; ``lcp[i]`` is how many leading bytes token ``i`` shares with
token ``i - 1``. Walking the sorted list with a stack of per-depth states visits every trie node
once, and when a byte kills every thread all following tokens that share that byte are skipped.
Special tokens and empty tokens are never text, so they are left out.
"""

from __future__ import annotations

import numpy as np

from . import _native


class TokenTrie:
    """Sorted token bytes with their ids and common-prefix lengths."""

    def __init__(self, token_bytes: list[bytes], excluded: set[int] | frozenset[int]) -> None:
        entries = sorted((b, i) for i, b in enumerate(token_bytes) if b and i not in excluded)
        self.tokens: list[bytes] = [b for b, _ in entries]
        self.ids = np.array([i for _, i in entries], dtype=np.int64)
        self.lengths = np.array([len(b) for b in self.tokens], dtype=np.int32)
        # flat byte buffer + offsets, for native walkers
        self.offsets = np.zeros(len(entries) + 1, dtype=np.int64)
        np.cumsum(self.lengths, out=self.offsets[1:])
        self.data = np.frombuffer(b"".join(self.tokens), dtype=np.uint8).copy()
        self.lcp = _native.sorted_lcp(self.data, self.offsets)
        self._summary_nodes: dict[int, tuple] = {}

    def __len__(self) -> int:
        return len(self.tokens)

    def summary_nodes(self, min_tokens: int) -> tuple:
        """The trie nodes with at least ``min_tokens`` tokens below them, which every grammar
        of this vocabulary summarizes (native/summary.pxi); computed once per size."""
        found = self._summary_nodes.get(min_tokens)
        if found is None:
            found = _native.trie_summary_nodes(self.lcp, self.offsets, min_tokens)
            self._summary_nodes[min_tokens] = found
        return found


def lcp_python(tokens: list[bytes]) -> np.ndarray:
    """Pure-Python twin of ``_native.sorted_lcp`` (tests compare them)."""
    lcp = np.zeros(len(tokens), dtype=np.int32)
    for k in range(1, len(tokens)):
        a, b = tokens[k - 1], tokens[k]
        n = min(len(a), len(b))
        j = 0
        while j < n and a[j] == b[j]:
            j += 1
        lcp[k] = j
    return lcp


_TRIES: dict[str, TokenTrie] = {}


def trie_for(tokenizer_info) -> TokenTrie:
    """The trie of a tokenizer, built once per process and shared by every compiler and every
    loaded grammar of that tokenizer (keyed by its fingerprint)."""
    key = tokenizer_info.fingerprint
    found = _TRIES.get(key)
    if found is None:
        excluded = set(tokenizer_info.special_token_ids) | set(tokenizer_info.eos_token_ids)
        found = _TRIES[key] = TokenTrie(list(tokenizer_info.token_bytes), excluded)
    return found
