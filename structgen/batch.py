"""Filling the masks of a whole batch at once, on several cores.

Rows are split over ``num_threads`` plain threads. Each thread gathers a few rows at a time
under the GIL (each matcher's state and cache entry) and fills them in one native call with
the GIL released, so one thread's gathering overlaps another's filling.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from .bitmask import as_numpy_bitmask
from .errors import ConfigurationError
from .matcher import GrammarMatcher
from .native_engine import _pool


def batch_fill_next_token_bitmask(matchers: Sequence[GrammarMatcher], bitmask: Any, *,
                                  indices: Sequence[int] | None = None,
                                  num_threads: int | None = None) -> None:
    """Fill row ``indices[i]`` (default ``i``) of ``bitmask`` for ``matchers[i]``.

    Matchers may use different compiled grammars. ``num_threads`` defaults to the number of
    cores. Gives the same masks as calling ``fill_next_token_bitmask`` row by row.
    """
    arr = as_numpy_bitmask(bitmask)
    rows = list(range(len(matchers))) if indices is None else [int(i) for i in indices]
    if len(rows) != len(matchers):
        raise ConfigurationError("indices must have one row per matcher")
    if any(not 0 <= r < arr.shape[0] for r in rows):
        raise ConfigurationError(f"a row index is outside a bitmask of {arr.shape[0]} rows")
    if len(set(rows)) != len(rows):
        raise ConfigurationError("two matchers would fill the same bitmask row")
    for matcher in matchers:
        if not isinstance(matcher, GrammarMatcher):
            raise ConfigurationError("batch_fill_next_token_bitmask takes GrammarMatcher objects")
        if arr.shape[1] * 32 < matcher._vocab_size:
            raise ConfigurationError(
                f"bitmask row holds {arr.shape[1] * 32} bits, vocabulary has {matcher._vocab_size}")
    pairs = list(zip(matchers, rows, strict=True))
    workers = min(num_threads or os.cpu_count() or 1, len(pairs))
    if workers <= 1:
        _fill_rows(arr, pairs)
        return
    pool = _pool(workers)
    chunks = [pairs[i::workers] for i in range(workers)]
    futures = [pool.submit(_fill_rows, arr, chunk) for chunk in chunks[1:]]
    _fill_rows(arr, chunks[0])
    for future in futures:
        future.result()


def _fill_rows(arr, pairs, step: int = 4) -> None:
    """Fill rows a few at a time: while this thread gathers the next few (holding the GIL),
    another thread's native fill (GIL released) runs, so the two overlap."""
    for start in range(0, len(pairs), step):
        groups: dict[int, tuple[Any, list[tuple], dict[int, GrammarMatcher]]] = {}
        for matcher, row in pairs[start:start + step]:
            job = matcher._native_job(row)
            if job is None:
                matcher._fill_fallback(arr, row)
                continue
            group = groups.setdefault(id(matcher._masker), (matcher._masker, [], {}))
            group[1].append(job)
            group[2][row] = matcher
        for masker, jobs, by_row in groups.values():
            for row in masker.fill(arr, jobs):
                by_row[row]._fill_fallback(arr, row)
