"""Per-row token masks for a decode loop, computable on a worker thread during the forward pass.

The mask for step ``t`` depends only on the tokens chosen up to step ``t - 1``, so a decode loop
can hand those tokens to :meth:`RowMasks.start` right after sampling and run the model's
forward pass for step ``t`` while a worker thread advances the matchers and fills the bitmask.
:meth:`RowMasks.wait` joins just before the logits are masked. The native fill releases the GIL;
advancing a matcher is a few microseconds of Python per row, so the two threads rarely meet.
:meth:`RowMasks.advance` does the same work on the calling thread (the serial baseline).

Nothing here imports torch: logits are masked through :func:`structgen.apply_token_bitmask_inplace`
or, for CPU float32 tensors, through their numpy view.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np

from .batch import batch_fill_next_token_bitmask
from .bitmask import allocate_token_bitmask, apply_token_bitmask_inplace, fill_row_from_ids
from .errors import ConfigurationError
from .matcher import GrammarMatcher

logger = logging.getLogger("structgen")

_WORKER: ThreadPoolExecutor | None = None
_WORKER_LOCK = threading.Lock()


def mask_worker() -> ThreadPoolExecutor:
    """One process-wide mask thread: a decode loop has at most one mask job in flight."""
    global _WORKER
    with _WORKER_LOCK:
        if _WORKER is None:
            _WORKER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="structgen-overlap")
        return _WORKER


class RowMasks:
    """The matchers of a batch (``None`` for an unconstrained row) and their bitmask.

    Row ``r`` of :attr:`bitmask` always holds the mask for the next token of row ``r``; rows
    without a matcher, finished rows and rows whose grammar broke allow every token. A row
    "breaks" when it is handed a token its grammar rejects (only possible when something
    other than this mask chose the token): it is logged and from then on allows only EOS, so
    the row ends at once instead of producing text outside the grammar.

    Timing is recorded: :attr:`work_seconds` is the time spent advancing matchers and filling
    masks (on whichever thread), :attr:`blocked_seconds` the time the caller waited for it,
    :attr:`apply_seconds` the time spent masking logits.
    """

    def __init__(self, matchers: Sequence[GrammarMatcher | None], *,
                 num_threads: int = 1) -> None:
        if not matchers:
            raise ConfigurationError("RowMasks needs at least one row")
        vocab = {m.compiled_grammar.vocab_size for m in matchers if m is not None}
        if len(vocab) > 1:
            raise ConfigurationError(
                "the grammars of one batch must be compiled for the same tokenizer "
                f"(vocabulary sizes {sorted(vocab)})")
        self.matchers = list(matchers)
        self.vocab_size = vocab.pop() if vocab else 0
        self.bitmask = allocate_token_bitmask(len(self.matchers), max(self.vocab_size, 1))
        self.bitmask.fill(-1)
        self.broken = [False] * len(self.matchers)
        self.num_threads = num_threads
        self.work_seconds = 0.0
        self.blocked_seconds = 0.0
        self.apply_seconds = 0.0
        self._future: Future | None = None
        self._active = [m is not None for m in self.matchers]

    @property
    def is_constrained(self) -> bool:
        return any(m is not None for m in self.matchers)

    # --- the work ---------------------------------------------------------------------------
    def advance(self, tokens: Sequence[int] | None = None,
                finished: Sequence[bool] | None = None) -> None:
        """Accept ``tokens[r]`` into row ``r``'s matcher (``None``: the first step, nothing to
        accept), then fill the masks of the rows still running. Rows marked ``finished`` are
        left alone and allow everything."""
        t0 = time.perf_counter()
        rows = []
        for r, matcher in enumerate(self.matchers):
            if matcher is None or not self._active[r]:
                continue
            if finished is not None and finished[r]:
                self._active[r] = False
                self.bitmask[r].fill(-1)
                continue
            if tokens is not None and not self.broken[r] and not matcher.accept_token(int(tokens[r])):
                logger.warning("row %d: token %d is outside its grammar; ending the row", r, tokens[r])
                self.broken[r] = True
            if self.broken[r]:
                self._allow_only_eos(r)
                continue
            rows.append(r)
        if rows:
            batch_fill_next_token_bitmask([self.matchers[r] for r in rows], self.bitmask,
                                          indices=rows, num_threads=self.num_threads)
        self.work_seconds += time.perf_counter() - t0

    def _allow_only_eos(self, row: int) -> None:
        eos = self.matchers[row].compiled_grammar.tokenizer_info.eos_token_ids
        if eos:
            fill_row_from_ids(self.bitmask[row], np.array(sorted(eos), dtype=np.int64))
        else:  # nothing can end the row: leave it unconstrained rather than all -inf
            self.bitmask[row].fill(-1)

    def start(self, tokens: Sequence[int] | None = None,
              finished: Sequence[bool] | None = None) -> None:
        """Run :meth:`advance` on the mask thread; :meth:`wait` joins it."""
        if self._future is not None:
            raise ConfigurationError("a mask job is already running; call wait() first")
        self._future = mask_worker().submit(self.advance, list(tokens) if tokens is not None else None,
                                        list(finished) if finished is not None else None)

    def wait(self) -> None:
        """Join the job started by :meth:`start` (no-op when none runs); re-raises its error."""
        future, self._future = self._future, None
        if future is None:
            return
        t0 = time.perf_counter()
        future.result()
        self.blocked_seconds += time.perf_counter() - t0

    # --- applying ---------------------------------------------------------------------------
    def apply(self, logits: Any) -> None:
        """Mask ``logits`` (rows = batch rows; numpy or torch, any width) in place."""
        self.wait()
        if not self.is_constrained:
            return
        t0 = time.perf_counter()
        apply_bitmask_fast(logits, self.bitmask)
        self.apply_seconds += time.perf_counter() - t0

    def is_completed(self, row: int) -> bool:
        """Does row ``row``'s text so far form a complete sentence of its grammar?"""
        matcher = self.matchers[row]
        return matcher is None or (not self.broken[row] and matcher.is_completed())


def apply_bitmask_fast(logits: Any, bitmask: np.ndarray) -> None:
    """:func:`apply_token_bitmask_inplace`, taking the native path for CPU float32 tensors.

    The generic torch path unpacks the bitmask to a boolean matrix; for CPU float32 logits
    the numpy view shares memory and the native loop masks them in place with no copy.
    Tensors on an accelerator get the mask unpacked on the device (one small copy of the
    int32 words, not of a boolean matrix).
    """
    if isinstance(logits, np.ndarray):
        apply_token_bitmask_inplace(logits, bitmask)
        return
    device = str(getattr(logits, "device", "cpu"))
    if device == "cpu" and str(logits.dtype) == "torch.float32" and logits.is_contiguous():
        apply_token_bitmask_inplace(logits.numpy(), bitmask)
        return
    if device != "cpu":
        _apply_on_device(logits, bitmask)
        return
    apply_token_bitmask_inplace(logits, bitmask)


def _apply_on_device(logits: Any, bitmask: np.ndarray) -> None:
    import torch

    rows = logits if logits.dim() == 2 else logits.unsqueeze(0)
    n, width = rows.shape
    words = torch.from_numpy(np.ascontiguousarray(bitmask[:n])).to(rows.device, non_blocking=True)
    shifts = torch.arange(32, device=rows.device, dtype=torch.int32)
    allowed = ((words.unsqueeze(-1) >> shifts) & 1).bool().reshape(n, -1)
    if allowed.shape[1] < width:
        pad = torch.zeros((n, width - allowed.shape[1]), dtype=torch.bool, device=rows.device)
        allowed = torch.cat([allowed, pad], dim=1)
    rows.masked_fill_(~allowed[:, :width], float("-inf"))
