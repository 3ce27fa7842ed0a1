"""Token bitmasks: int32 words of shape ``(batch, ceil(vocab / 32))``; bit ``i`` = token ``i``.

The same layout as xgrammar and llguidance, so a mask filled here can be applied by their
kernels and theirs by ours. numpy arrays are handled natively; torch tensors on the CPU are
viewed as numpy without copying, and torch is never imported by this module.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _native
from .errors import ConfigurationError


def bitmask_width(vocab_size: int) -> int:
    return (vocab_size + 31) // 32


def allocate_token_bitmask(batch_size: int, vocab_size: int) -> np.ndarray:
    """A zeroed int32 bitmask ``(batch_size, ceil(vocab_size / 32))`` (numpy).

    Use ``torch.from_numpy`` for a tensor that shares the memory.
    """
    if batch_size < 1 or vocab_size < 1:
        raise ConfigurationError("batch_size and vocab_size must be positive")
    return np.zeros((batch_size, bitmask_width(vocab_size)), dtype=np.int32)


def as_numpy_bitmask(bitmask: Any) -> np.ndarray:
    """View ``bitmask`` (numpy array or CPU torch tensor, int32, 2-D, C-contiguous) as numpy."""
    if isinstance(bitmask, np.ndarray):
        arr = bitmask
    elif hasattr(bitmask, "numpy") and hasattr(bitmask, "device"):
        if str(bitmask.device) != "cpu":
            raise ConfigurationError("fill the bitmask on a CPU tensor, then move it to the device")
        arr = bitmask.numpy()
    else:
        raise ConfigurationError(f"bitmask must be a numpy array or torch tensor, got {type(bitmask).__name__}")
    if not arr.flags.writeable:
        raise ConfigurationError("bitmask is read-only; pass a writable array")
    if arr.dtype != np.int32 or arr.ndim != 2 or not arr.flags.c_contiguous:
        raise ConfigurationError(
            "bitmask must be a C-contiguous int32 array of shape (batch, ceil(vocab/32)); "
            "use allocate_token_bitmask")
    return arr


def fill_row_from_ids(row: np.ndarray, ids: np.ndarray, *, clear: bool = True) -> None:
    """Set the bits of ``ids`` in ``row`` (cleared first unless ``clear=False``)."""
    _native.fill_bitmask_from_ids(row, np.ascontiguousarray(ids, dtype=np.int64), clear)


def bitmask_to_ids(row: np.ndarray, vocab_size: int) -> np.ndarray:
    """Allowed token ids of one bitmask row, sorted."""
    return _native.bitmask_to_ids(np.ascontiguousarray(row, dtype=np.int32), vocab_size)


def bitmask_to_ids_python(row: np.ndarray, vocab_size: int) -> np.ndarray:
    """Pure-Python twin of :func:`bitmask_to_ids` (tests compare them)."""
    bits = np.unpackbits(row.view(np.uint8), bitorder="little")[:vocab_size]
    return np.flatnonzero(bits).astype(np.int64)


def apply_token_bitmask_inplace(logits: Any, bitmask: Any) -> None:
    """Set masked-out logits to ``-inf`` in place (numpy float32, or a torch tensor).

    Logits wider than the mask (padding ids of the model) are masked too. Rows of ``logits``
    take rows of ``bitmask`` in order.
    """
    if isinstance(logits, np.ndarray):
        arr = logits if logits.ndim == 2 else logits[None, :]
        mask = np.asarray(bitmask, dtype=np.int32)
        mask = mask if mask.ndim == 2 else mask[None, :]
        if arr.dtype == np.float32 and arr.flags.c_contiguous:
            _native.apply_bitmask_float32(arr, np.ascontiguousarray(mask))
            return
        allowed = _unpack(mask, arr.shape[1])
        arr[~allowed[: arr.shape[0]]] = -np.inf
        return
    import torch  # only when a tensor is given

    mask = bitmask if isinstance(bitmask, torch.Tensor) else torch.from_numpy(np.asarray(bitmask))
    if mask.dim() == 1:
        mask = mask.unsqueeze(0)
    rows = logits if logits.dim() == 2 else logits.unsqueeze(0)
    width = rows.shape[1]
    allowed = torch.from_numpy(_unpack(mask.cpu().numpy(), width)).to(rows.device)
    rows.masked_fill_(~allowed[: rows.shape[0]], float("-inf"))


def _unpack(mask: np.ndarray, width: int) -> np.ndarray:
    bits = np.unpackbits(np.ascontiguousarray(mask).view(np.uint8), axis=1, bitorder="little")
    out = np.zeros((mask.shape[0], width), dtype=bool)
    n = min(width, bits.shape[1])
    out[:, :n] = bits[:, :n].astype(bool)
    return out
