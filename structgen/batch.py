"""Filling the masks of a whole batch at once, on several cores.

The rows are gathered under the GIL (each matcher's state and cache entry, about a microsecond
a row), then one native call fills them all with the GIL released, spreading the rows over
``num_threads`` OpenMP threads. Plain Python threads were tried first: each has to win the GIL
back after its native part, and that hand-off (up to the 5 ms switch interval) cost more than
the work.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .bitmask import as_numpy_bitmask
from .errors import ConfigurationError
from .matcher import GrammarMatcher


def batch_fill_next_token_bitmask(matchers: Sequence[GrammarMatcher], bitmask: Any, *,
                                  indices: Sequence[int] | None = None,
                                  num_threads: int | None = None) -> None:
    """Fill row ``indices[i]`` (default ``i``) of ``bitmask`` for ``matchers[i]``.

    Matchers may use different compiled grammars. ``num_threads`` > 1 spreads the rows over
    that many cores; the default is one, because on a machine whose cores are busy with other
    work (the model's own threads, say) a parallel region can wait milliseconds for a worker
    to be scheduled. Gives the same masks as calling ``fill_next_token_bitmask`` row by row.
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
    workers = max(1, min(num_threads or 1, len(matchers)))
    groups: dict[int, tuple[Any, list[tuple], dict[int, GrammarMatcher]]] = {}
    for matcher, row in zip(matchers, rows, strict=True):
        job = matcher._native_job(row)
        if job is None:
            matcher._fill_fallback(arr, row)
            continue
        group = groups.setdefault(id(matcher._masker), (matcher._masker, [], {}))
        group[1].append(job)
        group[2][row] = matcher
    for masker, jobs, by_row in groups.values():
        for row in masker.fill(arr, jobs, workers):
            by_row[row]._fill_fallback(arr, row)
