"""RPG: a repetition penalty that sees grammar structure, not tokens.

Code models loop on *structure*: the same statement shape again and again with different names
and numbers, never reaching EOS. A token-level repetition penalty cannot see that; the grammar
can. Following "Rethinking Repetition Problems of LLMs in Code Generation" (RPG, ACL 2025):

1. **Units.** The matcher's grammar events (:mod:`structgen.events`) give every reduction with its
   span. Reductions of *unit* rules (statements, by default the items of the grammar's ``*`` and
   ``+`` repetitions) are the sequence we watch. Each unit is summarized by its *shape*: the
   rules reduced and the terminals shifted inside its span, in parse order, adjacent repeats
   merged, with keywords and punctuation kept and every name, number or string one symbol --
   so ``x = f(1)`` and ``y = g(z)`` have one shape. *Item* units (Python's list, tuple, set and
   dict elements, call arguments, subscripts) are a second sequence, searched on its own among
   the items of the statement being written: a 64-element list literal is one statement but
   64 items.
2. **Detection.** A tandem repeat at the end of each sequence: the largest ``count`` such
   that the last ``count * p`` units are ``count`` copies of one pattern of ``p`` units
   (``min_length <= p``, within ``window`` units). Checked incrementally for every period, which
   is what a suffix array with LCP would answer for the suffix that ends now.
3. **Penalty.** When ``count >= min_count`` (``item_min_count`` for items), the tokens that
   would begin or extend one more copy -- a token after which every unit completed so far
   still follows the pattern and the unfinished unit's reductions are a prefix of the next
   shape, after glue seen between the copies (line breaks, ``,``) -- have their probability
   multiplied by ``penalty ** count``: ``count * log(penalty)`` is *added* to their logits (or
   log-probabilities). Scaling a logit by 0.9 would raise a negative one; adding in log space
   is right for both. Tokens that end the block, change the shape, or end the text are left
   alone, so the model's own way out gets relatively likelier with every repeat.

Only the best-scoring ``top_k`` tokens are checked, each by parsing its bytes from the
tracker's state without copying it (:meth:`EventRecorder.try_feed`, about 0.1 ms a token);
candidates are re-ranked after each penalty so that the final top ``top_k`` are always checked
ones. Comments are invisible: grammars ``%ignore`` them, so a loop of comment lines is no
repeat to RPG.
"""

from __future__ import annotations

import math
import re
from bisect import bisect_right
from collections.abc import Sequence
from functools import cache, lru_cache
from typing import Any

import numpy as np

from .compiler import CompiledGrammar
from .errors import ConfigurationError
from .events import EventRecorder
from .grammar import BUILTIN_GRAMMARS, builtin_grammar_text

CONTENT = -(1 << 30)  # shape symbol of a name, number or string (any non-literal terminal)
_REPEAT_RULE = re.compile(r"^__.+_(star|plus)_\d+$")

# Statement-level units of the built-in grammars (rules of grammars/*.lark).
BUILTIN_UNITS: dict[str, tuple[str, ...]] = {
    "python": ("stmt", "elif_clause", "except_clause", "except_star_clause", "case_block",
               "decorator"),
    "go": ("statement", "top_level_decl", "case_clause", "comm_clause", "field_decl",
           "import_spec", "const_spec", "var_spec", "type_spec"),
    "sql": ("result_column", "join_clause", "compound_operator", "ordering_term", "column_def",
            "assignment", "values_row", "when_clause"),
}


# Expression-level units: one reduction per element of a list, tuple, set or dict display, per
# call argument and per subscript item (``pany_item`` and ``any_item`` wrap some of these, so
# they are left out: one unit per element). Statement targets and values (``x = 1``) are
# t_item / n_item too.
BUILTIN_ITEM_UNITS: dict[str, tuple[str, ...]] = {
    "python": ("t_item", "n_item", "pn_item", "dict_item", "set_item", "_arg_pos", "kwarg",
               "dstar_arg", "slice_item"),
}


def default_units(compiled: CompiledGrammar) -> frozenset[str]:
    """The unit rules for a grammar: a built-in grammar's statement rules, else the items of
    its ``*`` / ``+`` repetitions (``stmt`` in ``start: stmt*``)."""
    names = set(compiled.grammar.rule_names)
    source = compiled.grammar.source
    for name in BUILTIN_GRAMMARS:
        if name in BUILTIN_UNITS and source == _builtin_text(name):
            found = names & set(BUILTIN_UNITS[name])
            if found:
                return frozenset(found)
    return _repeated_items(source, compiled.grammar.start)


def default_item_units(compiled: CompiledGrammar) -> frozenset[str]:
    """The expression-level units for a grammar: a built-in grammar's (Python's list elements,
    call arguments...), else none."""
    names = set(compiled.grammar.rule_names)
    source = compiled.grammar.source
    for name, items in BUILTIN_ITEM_UNITS.items():
        if source == _builtin_text(name):
            return frozenset(names & set(items))
    return frozenset()


@cache
def _builtin_text(name: str) -> str | None:
    try:
        return builtin_grammar_text(name)
    except OSError:  # pragma: no cover - a broken installation
        return None


@lru_cache(maxsize=32)
def _repeated_items(source: str, start: str) -> frozenset[str]:
    from .grammar import _build_lark

    parser = _build_lark(source, start)
    items = set()
    for rule in parser.rules:
        if _REPEAT_RULE.match(str(rule.origin.name)):
            for sym in rule.expansion:
                if not sym.is_term and not _REPEAT_RULE.match(str(sym.name)):
                    items.add(str(sym.name))
    return frozenset(items)


def _merged(symbols) -> list[int]:
    """The symbols without Nones, adjacent repeats merged."""
    out: list[int] = []
    for s in symbols:
        if s is not None and (not out or out[-1] != s):
            out.append(s)
    return out


class _Level:
    """One sequence of units (statements, or expression items) and their shapes."""

    __slots__ = ("name", "unit_syms", "min_count", "shape_ids", "shape_keys", "shapes",
                 "unit_events")

    def __init__(self, name: str, unit_syms: frozenset[int], min_count: int) -> None:
        self.name = name
        self.unit_syms = unit_syms
        self.min_count = min_count
        self.shape_ids: dict[tuple[int, ...], int] = {}
        self.shape_keys: list[tuple[int, ...]] = []  # shape id -> shape
        self.shapes: list[int] = []  # shape id per unit, in order
        self.unit_events: list[int] = []  # index of each unit's reduction in the event list

    def copy(self) -> _Level:
        other = object.__new__(_Level)
        for name in _Level.__slots__:
            setattr(other, name, getattr(self, name))
        other.shapes = list(self.shapes)
        other.unit_events = list(self.unit_events)
        return other

    def shape_id(self, key: tuple[int, ...]) -> int:
        found = self.shape_ids.get(key)
        if found is None:
            found = self.shape_ids[key] = len(self.shape_keys)
            self.shape_keys.append(key)
        return found


def tandem_repeat(u: Sequence[int], min_length: int) -> tuple[int, int]:
    """(period, count) of the longest tandem repeat ending at the last item of ``u``: the
    largest ``count`` such that the last ``count * period`` items are ``count`` copies of one
    pattern of ``period >= min_length`` items; (0, 1) when none."""
    n = len(u)
    best = (0, 1)
    if n < 2:
        return best
    last = u[n - 1]
    for p in range(max(1, min_length), n // 2 + 1):
        if n // p <= best[1]:  # no longer period can give more copies
            break
        if u[n - 1 - p] != last:  # no copy ends here with this period
            continue
        run = 1
        i = n - 2
        while i - p >= 0 and u[i] == u[i - p]:
            run += 1
            i -= 1
        count = (run + p) // p
        if count > best[1]:
            best = (p, count)
    return best


class _Trial:
    """A tracker after a tried continuation, computed without copying the tracker: the
    recorder's new events and, per level, the units they complete."""

    __slots__ = ("tracker", "threads", "new", "new_units")

    def __init__(self, tracker: RepetitionTracker, threads, new: list) -> None:
        self.tracker = tracker
        self.threads = threads
        self.new = new
        base = tracker.recorder.committed
        n0 = len(base)
        self.new_units: list[list[tuple[int, tuple[int, ...]]]] = []
        for level in tracker.levels:
            found = []
            for k, ev in enumerate(new):
                if ev[0] in level.unit_syms:
                    found.append((n0 + k, tracker.shape_key(ev[3], n0 + k, new)))
            self.new_units.append(found)

    def event(self, j: int) -> tuple[int, int, int, int]:
        base = self.tracker.recorder.committed
        return base[j] if j < len(base) else self.new[j - len(base)]

    def shapes(self, li: int) -> tuple[list, list[int]]:
        """The last ``window`` unit shapes of level ``li`` (ids, or the shape itself for one
        not seen before) and the event indices of those units."""
        level, window = self.tracker.levels[li], self.tracker.window
        new = self.new_units[li]
        shapes = level.shapes[-window:] + [level.shape_ids.get(key, key) for _, key in new]
        events = level.unit_events[-window:] + [i for i, _ in new]
        shapes, events = shapes[-window:], events[-window:]
        if li:  # items are siblings within one statement
            stmts = self.new_units[0] or self.tracker.levels[0].unit_events
            if stmts:
                last = stmts[-1][0] if self.new_units[0] else stmts[-1]
                cut = bisect_right(events, last)
                shapes, events = shapes[cut:], events[cut:]
        return shapes, events

    def partial_shape(self, since: int) -> list[int]:
        n = len(self.tracker.recorder.committed) + len(self.new)
        return self.tracker.shape_key(since, n - 1, self.new, whole=False)


class RepetitionTracker:
    """Follows one sequence: its grammar events, unit shapes and the tandem repeats at its end.

    Level 0 holds the statement units; level 1, when item units are given, the expression items
    (list elements, call arguments...). Each level is searched for repeats on its own.
    """

    def __init__(self, compiled: CompiledGrammar, units: frozenset[str], *, window: int,
                 min_length: int, item_units: frozenset[str] = frozenset(),
                 min_count: int = 2, item_min_count: int = 4) -> None:
        self.compiled = compiled
        self.units = units
        self.item_units = item_units
        self.window = window
        self.min_length = min_length
        self.recorder = EventRecorder(compiled)
        g = compiled.grammar
        lhs = g.rule_lhs.tolist()
        # event symbol -> shape symbol: a rule's nonterminal (alternatives of one rule look
        # alike), -1 - t for a terminal spelled literally in the grammar (keywords and
        # punctuation), CONTENT for any other (names, numbers, strings: content, not structure)
        self._rule_nt = {-1 - r: lhs[r] for r in range(len(lhs))}
        self._rule_nt.update({t: -1 - t if term.is_literal else CONTENT
                              for t, term in enumerate(g.terminals) if not term.is_ignored})
        self.is_literal = [t.is_literal for t in g.terminals]
        # literal terminals that may separate copies (``,`` between list items), never words
        # (``else`` must not pass for the glue before an ``elif``)
        self._separators = frozenset(
            -1 - t for t, term in enumerate(g.terminals)
            if term.is_literal and term.literal and not any(c.isalnum() or c == "_"
                                                            for c in term.literal))

        def syms(names: frozenset[str]) -> frozenset[int]:
            return frozenset(-1 - r for r, name in enumerate(g.rule_names) if name in names)

        self.levels = [_Level("statements", syms(units), min_count)]
        if item_units:
            self.levels.append(_Level("items", syms(item_units), item_min_count))
        self._seen = 0  # committed events already turned into units
        self._glue_cache: dict[tuple[int, int], frozenset[int]] = {}  # (unit, unit) -> separators

    # level 0, under the names the tracker has always had
    @property
    def shapes(self) -> list[int]:
        return self.levels[0].shapes

    @shapes.setter
    def shapes(self, value: list[int]) -> None:
        self.levels[0].shapes = value

    @property
    def unit_events(self) -> list[int]:
        return self.levels[0].unit_events

    def fork(self) -> RepetitionTracker:
        other = object.__new__(RepetitionTracker)
        other.__dict__.update(self.__dict__)
        other.recorder = self.recorder.fork()
        other.levels = [level.copy() for level in self.levels]
        other._glue_cache = {}  # event indices past the fork point mean other events
        return other

    @property
    def alive(self) -> bool:
        """False once the text left the grammar (no events are tracked after that)."""
        return not self.recorder.dead

    def feed(self, data: bytes) -> bool:
        if not self.recorder.feed(data):
            return False
        self._update()
        return True

    def shape_key(self, first: int, last: int, new: list | None = None, *,
                  whole: bool = True) -> tuple[int, ...]:
        """The shape of events ``first..last`` (committed, then ``new``)."""
        base = self.recorder.committed
        n0 = len(base)
        rule_nt = self._rule_nt
        if last < n0:
            evs = base[first:last + 1]
        else:
            evs = (base[first:] if first < n0 else []) + new[max(0, first - n0):last + 1 - n0]
        key = _merged(rule_nt.get(ev[0]) for ev in evs)
        return tuple(key) if whole else key

    def _update(self) -> None:
        events = self.recorder.committed
        for i in range(self._seen, len(events)):
            sym = events[i][0]
            for level in self.levels:
                if sym in level.unit_syms:
                    level.shapes.append(level.shape_id(self.shape_key(events[i][3], i)))
                    level.unit_events.append(i)
        self._seen = len(events)

    def repeat(self, level: int = 0) -> tuple[int, int]:
        """(period, count) of the longest tandem repeat ending at the last unit of ``level``
        (0: statements, 1: items); (0, 1) when no pattern repeats."""
        lv = self.levels[level]
        shapes = lv.shapes[-self.window:]
        if level and self.levels[0].unit_events:  # items are siblings within one statement
            events = lv.unit_events[-self.window:]
            shapes = shapes[bisect_right(events, self.levels[0].unit_events[-1]):]
        return tandem_repeat(shapes, self.min_length)

    def partial_shape(self, level: int = 0) -> list[int]:
        """The shape so far of the unit being written (after the last complete unit)."""
        lv = self.levels[level]
        since = lv.unit_events[-1] + 1 if lv.unit_events else 0
        return self.shape_key(since, len(self.recorder.committed) - 1, whole=False)

    def shape_of(self, shape_id: int, level: int = 0) -> tuple[int, ...]:
        return self.levels[level].shape_keys[shape_id]

    def try_feed(self, data: bytes) -> _Trial | None:
        """This tracker after ``data``, without changing it; None if the grammar rejects it."""
        got = self.recorder.try_feed(data)
        return None if got is None else _Trial(self, *got)


class GrammarRepetitionPenalty:
    """RPG as a logits processor (Hugging Face ``generate``-compatible) and an SMC critic.

    ``penalty`` (default 0.9, the paper's) scales the probability of a token that begins or
    extends another copy of a repeated pattern by ``penalty ** count``. ``units`` names the rules
    whose reductions are watched (default: :func:`default_units`), ``window`` bounds how many
    recent units are searched, ``min_length`` is the shortest pattern (in units) and
    ``min_count`` the number of copies before anything is penalized. ``item_units`` are
    expression-level units searched as a sequence of their own (default: the built-in
    grammar's, e.g. Python's list elements and call arguments; none for other grammars), with
    ``item_min_count`` copies before a penalty (items repeat legitimately more often than
    statements: ``f(a, b, c)``). ``scores="logits"`` or ``"logprobs"`` (then the result is
    renormalized). Put it after the grammar mask processor, if there is one.
    """

    def __init__(self, compiled_grammar: CompiledGrammar, *, penalty: float = 0.9,
                 units: Sequence[str] | None = None, window: int = 64, min_length: int = 1,
                 min_count: int = 2, item_units: Sequence[str] | None = None,
                 item_min_count: int = 4, top_k: int = 16, max_checks: int = 256,
                 scores: str = "logits") -> None:
        if not isinstance(compiled_grammar, CompiledGrammar):
            raise ConfigurationError("GrammarRepetitionPenalty needs a CompiledGrammar")
        if not 0.0 < penalty <= 1.0:
            raise ConfigurationError(f"penalty must be in (0, 1], got {penalty}")
        if scores not in ("logits", "logprobs"):
            raise ConfigurationError("scores must be 'logits' or 'logprobs'")
        if window < 2 or min_length < 1 or min(min_count, item_min_count) < 2 or top_k < 1:
            raise ConfigurationError("need window >= 2, min_length >= 1, min_count >= 2, "
                                     "item_min_count >= 2, top_k >= 1")
        self.compiled = compiled_grammar
        rules = set(compiled_grammar.grammar.rule_names)
        self.units = frozenset(units) if units is not None else default_units(compiled_grammar)
        self.item_units = (frozenset(item_units) if item_units is not None
                           else default_item_units(compiled_grammar))
        for given, chosen in ((units, self.units), (item_units, self.item_units)):
            unknown = chosen - rules
            if given is not None and unknown:
                raise ConfigurationError(f"no such rules in the grammar: {', '.join(sorted(unknown))}")
        self.penalty = penalty
        self.log_penalty = math.log(penalty)
        self.window, self.min_length = window, min_length
        self.min_count, self.item_min_count = min_count, item_min_count
        self.top_k, self.max_checks = top_k, max_checks
        self.scores_kind = scores
        self._token_bytes = compiled_grammar.tokenizer_info.token_bytes
        self._rows: list[tuple[list[int], RepetitionTracker]] = []
        self._prompt_len = -1
        self.stats = {"steps": 0, "penalized_steps": 0, "checks": 0, "penalized_tokens": 0}

    @classmethod
    def from_builtin(cls, name: str, tokenizer_info, **options) -> GrammarRepetitionPenalty:
        """RPG for a built-in grammar (``"python"``, ``"go"``, ``"sql"``) when decoding is not
        constrained: the grammar is bound to the tokenizer without building mask tables, which
        RPG never reads (it parses the text the model writes)."""
        from .grammar import Grammar, builtin_postlex, builtin_start
        from .trie import trie_for

        grammar = Grammar.from_lark(builtin_grammar_text(name), start=builtin_start(name),
                                    postlex=builtin_postlex(name))
        return cls(CompiledGrammar(grammar, tokenizer_info, trie_for(tokenizer_info)), **options)

    def new_tracker(self) -> RepetitionTracker:
        return RepetitionTracker(self.compiled, self.units, window=self.window,
                                 min_length=self.min_length, item_units=self.item_units,
                                 min_count=self.min_count, item_min_count=self.item_min_count)

    # --- one sequence ---------------------------------------------------------------------
    def _bytes(self, token: int) -> bytes:
        return self._token_bytes[token] if 0 <= token < len(self._token_bytes) else b""

    def repeat_extended_by(self, tracker: RepetitionTracker, token: int) -> int:
        """The number of copies of the repeated pattern if ``token`` begins or extends one more
        copy (counting the units the token itself completes), else 0.

        A unit is only known once the parser reduces it, which can take the next lexeme (a
        statement ends at the line break *and* the indentation after it), so the count is
        taken after the token: it includes the unit the token completes. With several levels
        (statements, items) the largest count of a level the token extends is returned.
        """
        return self.repeat_extended_by_text(tracker, self._bytes(token))

    def repeat_extended_by_text(self, tracker: RepetitionTracker, data: bytes) -> int:
        """:meth:`repeat_extended_by` for raw bytes instead of a token."""
        if not data or not tracker.alive:
            return 0
        trial = tracker.try_feed(data)
        if trial is None:
            return 0
        best = 0
        pending: set[int] | None | bool = False  # computed when first needed
        for li, level in enumerate(tracker.levels):
            shapes, events = trial.shapes(li)
            period, count = tandem_repeat(shapes, self.min_length)
            if count < level.min_count or count <= best:
                continue
            # the next copy: its units complete in pattern order, but a unit that encloses
            # others (an ``elif`` clause around its statements) begins first, so the text
            # written since the last complete unit may begin any unit of the pattern, after
            # glue that belongs to no unit: line breaks, indentation, rules, and separators
            # seen between the copies (``,`` between list items)
            partial = trial.partial_shape(events[-1] + 1)
            glue = self._glue(tracker, trial, events[-min(len(events), 2 * period + 1):])
            if pending is False:
                pending = tracker.recorder.pending_terminals(trial.threads)
            for sid in set(shapes[len(shapes) - period:]):
                key = sid if isinstance(sid, tuple) else level.shape_keys[sid]
                if self._could_begin(tracker, key, partial, pending, glue):
                    best = count
                    break
        return best

    @staticmethod
    def _glue(tracker: RepetitionTracker, trial: _Trial, unit_events: list[int]) -> frozenset:
        """Separator terminals seen between consecutive units among ``unit_events``."""
        seps, cache = tracker._separators, tracker._glue_cache
        n0 = len(tracker.recorder.committed)
        out: set[int] = set()
        for a, b in zip(unit_events, unit_events[1:], strict=False):
            found = cache.get((a, b)) if b < n0 else None
            if found is None:
                found = frozenset(sym for j in range(a + 1, trial.event(b)[3])
                                  if (sym := tracker._rule_nt.get(trial.event(j)[0])) in seps)
                if b < n0:  # committed events never change
                    cache[(a, b)] = found
            out |= found
        return frozenset(out)

    @staticmethod
    def _could_begin(tracker: RepetitionTracker, expected: tuple[int, ...], partial: list[int],
                     pending: set[int] | None, glue: frozenset = frozenset()) -> bool:
        for skip in range(len(partial) + 1):
            if skip:
                g = partial[skip - 1]
                if g < 0 and g != CONTENT and g not in glue:
                    return False  # glue is never a keyword, nor punctuation not seen there
            head = partial[skip:]
            if tuple(head) != expected[: len(head)]:
                continue
            rest = expected[len(head):]
            if not rest or rest[0] >= 0 or pending is None:
                return True
            if rest[0] == CONTENT:  # the word being written must be able to become it
                if any(not tracker.is_literal[t] for t in pending):
                    return True
            elif -1 - rest[0] in pending:  # not ``else`` where ``elif`` was
                return True
        return False

    def extends_repeat(self, tracker: RepetitionTracker, token: int) -> bool:
        """Would ``token`` begin or extend one more copy of a repeated pattern?"""
        return self.repeat_extended_by(tracker, token) > 0

    def _may_repeat(self, tracker: RepetitionTracker) -> bool:
        """False when no level has units enough for a repeat, even with one more unit."""
        return any(len(level.shapes) + 1 >= level.min_count * self.min_length
                   for level in tracker.levels)

    def penalize_row(self, tracker: RepetitionTracker, scores: np.ndarray) -> int:
        """Apply the penalty to one row of scores (float array, changed in place); returns the
        largest repeat count used (0 if nothing was penalized).

        The ``top_k`` best tokens after the penalties are always checked ones: a token is
        checked, penalized if it extends a repeat, and the ranking redone, until the top
        ``top_k`` are all checked (or ``max_checks`` tokens were). Penalties only lower
        scores, so the tokens that can ever reach the top are among the best
        ``top_k + max_checks`` at the start, and the re-ranking works on those alone.
        """
        self.stats["steps"] += 1
        if not tracker.alive or not self._may_repeat(tracker):
            return 0
        used = 0
        checked: set[int] = set()
        vocab = scores.shape[0]
        k = min(self.top_k, vocab)
        pool_size = min(vocab, k + self.max_checks)
        pool = (np.argpartition(-scores, pool_size - 1)[:pool_size] if pool_size < vocab
                else np.arange(vocab))
        pool_scores = scores[pool]
        while len(checked) < self.max_checks:
            top = pool[np.argpartition(-pool_scores, k - 1)[:k]] if k < len(pool) else pool
            new = [int(t) for t in top if int(t) not in checked and np.isfinite(scores[t])]
            if not new:
                break
            for t in new:
                checked.add(t)
                self.stats["checks"] += 1
                count = self.repeat_extended_by(tracker, t)
                if count:
                    scores[t] += count * self.log_penalty
                    used = max(used, count)
                    self.stats["penalized_tokens"] += 1
            pool_scores = scores[pool]
        if not used:
            return 0
        self.stats["penalized_steps"] += 1
        if self.scores_kind == "logprobs":
            finite = np.isfinite(scores)
            if finite.any():
                m = scores[finite].max()
                scores[finite] -= m + np.log(np.exp(scores[finite] - m).sum())
        return used

    # --- Hugging Face LogitsProcessor protocol ----------------------------------------------
    def __call__(self, input_ids: Any, scores: Any) -> Any:
        """``transformers`` calls this with ``input_ids`` [rows, length] and ``scores``
        [rows, vocab]; the scores come back penalized (a new tensor)."""
        rows, length = input_ids.shape
        if (len(self._rows) != rows or self._prompt_len < 0
                or length != self._prompt_len + len(self._rows[0][0]) + 1):
            self._prompt_len = length
            self._rows = [([], self.new_tracker()) for _ in range(rows)]
        ids = input_ids[:, self._prompt_len:].tolist() if length > self._prompt_len else [[]] * rows
        as_numpy = scores.detach().float().cpu().numpy().copy() if hasattr(scores, "detach") \
            else np.array(scores, dtype=np.float64)
        changed = False
        for r in range(rows):
            seen, tracker = self._rows[r]
            for t in ids[r][len(seen):]:
                seen.append(t)
                tracker.feed(self._bytes(t))
            if self.penalize_row(tracker, as_numpy[r]):
                changed = True
        if not changed:
            return scores
        if hasattr(scores, "detach"):
            import torch

            return torch.as_tensor(as_numpy, dtype=scores.dtype, device=scores.device)
        return as_numpy

    def reset(self) -> None:
        self._rows = []
        self._prompt_len = -1

    # --- SMC critic ---------------------------------------------------------------------------
    def critic(self):
        """An SMC critic (``structgen.sampling.SMC(..., critic=...)``): the log potential of a
        sequence is ``count * log(penalty)`` for the repeat at its end (0 without one), so SMC
        targets the model's distribution tilted away from structural loops."""
        cache: dict[tuple[int, ...], RepetitionTracker] = {}

        def tracker_for(ctx: tuple[int, ...]) -> RepetitionTracker:
            found = cache.get(ctx)
            if found is not None:
                return found
            base = tracker_for(ctx[:-1]).fork() if ctx else self.new_tracker()
            if ctx:
                base.feed(self._bytes(ctx[-1]))
            cache[ctx] = base
            return base

        def score(contexts, finished) -> np.ndarray:
            out = np.zeros(len(contexts))
            for i, ctx in enumerate(contexts):
                tr = tracker_for(tuple(ctx))
                counts = [tr.repeat(li)[1] for li in range(len(tr.levels))]
                count = max((c for c, level in zip(counts, tr.levels, strict=True)
                             if c >= level.min_count), default=0)
                out[i] = count * self.log_penalty
            return out

        return score
