# Bit operations on int32 token bitmasks: bit i of the row is token i (word i // 32, bit i % 32).
# Python twins: structgen/bitmask.py.

cimport cython
from libc.stdint cimport int32_t, uint32_t, int64_t
from libc.string cimport memset, memcpy

import numpy as np
cimport numpy as cnp

cnp.import_array()


cdef inline void _set_ids(uint32_t* row, const int64_t* ids, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t k
    cdef int64_t t
    for k in range(n):
        t = ids[k]
        row[t >> 5] |= (<uint32_t>1) << (t & 31)


def fill_bitmask_from_ids(int32_t[::1] row, const int64_t[::1] ids, bint clear=True):
    """Set the bits of ``ids`` in ``row`` (clearing it first unless ``clear=False``).

    Releases the GIL. Ids must be in ``[0, 32 * len(row))``; checked before any write.
    """
    cdef Py_ssize_t n = ids.shape[0], k, limit = row.shape[0] * 32
    for k in range(n):
        if ids[k] < 0 or ids[k] >= limit:
            raise IndexError(f"token id {ids[k]} outside a bitmask row of {limit} bits")
    with nogil:
        if clear:
            memset(&row[0], 0, row.shape[0] * sizeof(int32_t))
        if n:
            _set_ids(<uint32_t*>&row[0], &ids[0], n)


def bitmask_to_ids(const int32_t[::1] row, Py_ssize_t vocab_size):
    """Sorted ids of the set bits below ``vocab_size``."""
    cdef Py_ssize_t i, count = 0
    cdef const uint32_t* words = <const uint32_t*>&row[0]
    out = np.empty(vocab_size, dtype=np.int64)
    cdef int64_t[::1] o = out
    with nogil:
        for i in range(vocab_size):
            if (words[i >> 5] >> (i & 31)) & 1:
                o[count] = i
                count += 1
    return out[:count]


def count_allowed(const int32_t[::1] row, Py_ssize_t vocab_size):
    """Number of set bits below ``vocab_size``."""
    cdef Py_ssize_t i, full = vocab_size >> 5, total = 0
    cdef const uint32_t* words = <const uint32_t*>&row[0]
    cdef uint32_t tail
    with nogil:
        for i in range(full):
            total += __builtin_popcount(words[i])
        if vocab_size & 31:
            tail = words[full] & (((<uint32_t>1) << (vocab_size & 31)) - 1)
            total += __builtin_popcount(tail)
    return total


cdef extern from *:
    int __builtin_popcount(unsigned int) nogil


@cython.boundscheck(False)
@cython.wraparound(False)
def apply_bitmask_float32(float[:, ::1] logits, const int32_t[:, ::1] bitmask):
    """Set ``logits[b, i] = -inf`` where bit ``i`` of ``bitmask[b]`` is clear. Releases the GIL.

    Columns past ``32 * bitmask.shape[1]`` (logits wider than the mask) are set to ``-inf``.
    """
    cdef Py_ssize_t b, i, w, n_rows = logits.shape[0], width = logits.shape[1]
    cdef Py_ssize_t bits = bitmask.shape[1] * 32, full_words
    cdef float neg = -float("inf")
    cdef const uint32_t* words
    cdef uint32_t word
    if bitmask.shape[0] < n_rows:
        raise ValueError(f"bitmask has {bitmask.shape[0]} rows for {n_rows} rows of logits")
    full_words = min(width, bits) >> 5
    with nogil:
        for b in range(n_rows):
            words = <const uint32_t*>&bitmask[b, 0]
            for w in range(full_words):
                word = words[w]
                if word == <uint32_t>0xFFFFFFFF:
                    continue  # all allowed: most words inside a string
                if word == 0:
                    for i in range(w << 5, (w << 5) + 32):
                        logits[b, i] = neg
                    continue
                for i in range(w << 5, (w << 5) + 32):
                    if not ((word >> (i & 31)) & 1):
                        logits[b, i] = neg
            for i in range(full_words << 5, width):
                if i >= bits or not ((words[i >> 5] >> (i & 31)) & 1):
                    logits[b, i] = neg
