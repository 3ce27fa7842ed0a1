"""Reordering a JSON document's object keys into an order a compiled grammar accepts.

JSON objects are unordered, while grammars compiled from JSON Schemas write properties in
schema order (as the peers do). To check a document written in another order against a
compiled schema, or to replay it token by token, :func:`order_keys` finds an order the grammar
accepts: a search with forked matchers that tries the keys in the document's order and, where
the grammar wants another one first, the key after which the others can still follow.
"""

from __future__ import annotations

import json

__all__ = ["NOT_ACCEPTED", "accepts_in_some_order", "order_keys"]


class _NotAccepted:
    def __repr__(self) -> str:
        return "NOT_ACCEPTED"


NOT_ACCEPTED = _NotAccepted()


def order_keys(compiled, document, *, budget: int = 20_000):
    """``document`` with the keys of each object in an order ``compiled`` accepts as compact
    JSON (``json.dumps(..., ensure_ascii=False, separators=(",", ":"))``), or
    :data:`NOT_ACCEPTED` when no order is (within ``budget`` values tried)."""
    from .matcher import GrammarMatcher

    left = [budget]

    def feed(m, text: str):
        m2 = m.fork()
        return m2 if m2.accept_string(text) else None

    def value(m, v):
        left[0] -= 1
        if left[0] < 0:
            return None
        if isinstance(v, dict):
            m = feed(m, "{")
            return None if m is None else members(m, list(v.items()), True)
        if isinstance(v, list):
            m = feed(m, "[")
            out = []
            for i, x in enumerate(v):
                if m is not None and i:
                    m = feed(m, ",")
                if m is None:
                    return None
                got = value(m, x)
                if got is None:
                    return None
                m, x2 = got
                out.append(x2)
            m = None if m is None else feed(m, "]")
            return None if m is None else (m, out)
        m = feed(m, json.dumps(v, ensure_ascii=False))
        return None if m is None else (m, v)

    def members(m, items, first):
        if not items:
            m = feed(m, "}")
            return None if m is None else (m, {})
        sep = "" if first else ","
        keys = [sep + json.dumps(k, ensure_ascii=False) + ":" for k, _ in items]
        # A fixed-order grammar takes the earliest declared key first: among the keys it
        # accepts now, that is the one after which all the others can still come next. Try
        # the keys in the document's order; rank them all only when none is such a key.
        now = [i for i in range(len(items)) if feed(m, keys[i]) is not None]

        def after(i):
            got = value(feed(m, keys[i]), items[i][1])
            if got is None:
                return None, -1
            score = sum(feed(got[0], "," + keys[j].lstrip(",")) is not None
                        for j in now if j != i)
            return got, score

        def rest_after(i, got):
            rest = members(got[0], items[:i] + items[i + 1:], False)
            return None if rest is None else (rest[0], {items[i][0]: got[1], **rest[1]})

        ranked = []
        for i in now:
            got, score = after(i)
            if got is None:
                continue
            if score == len(now) - 1:
                found = rest_after(i, got)
                if found is not None:
                    return found
                continue
            ranked.append((-score, i, got))
        ranked.sort(key=lambda x: (x[0], x[1]))
        for _, i, got in ranked:
            found = rest_after(i, got)
            if found is not None:
                return found
        return None

    got = value(GrammarMatcher(compiled), document)
    if got is None or not got[0].is_completed():
        return NOT_ACCEPTED
    return got[1]


def accepts_in_some_order(compiled, document) -> bool:
    """Whether ``compiled`` accepts ``document`` (compact JSON) with its keys in some order."""
    return order_keys(compiled, document) is not NOT_ACCEPTED
