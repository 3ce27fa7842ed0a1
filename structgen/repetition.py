"""RPG: a repetition penalty that sees grammar structure, not tokens.

Code models loop on *structure*: the same statement shape again and again with different names
and numbers, never reaching EOS. A token-level repetition penalty cannot see that; the grammar
can. Following "Rethinking Repetition Problems of LLMs in Code Generation" (RPG, ACL 2025):

1. **Units.** The matcher's grammar events (:mod:`structgen.events`) give every reduction with its
   span. Reductions of *unit* rules (statements, by default the items of the grammar's ``*`` and
   ``+`` repetitions) are the sequence we watch. Each unit is summarized by its *shape*: the
   rules reduced and the terminals shifted inside its span, in parse order, adjacent repeats
   merged, with keywords and punctuation kept and every name, number or string one symbol --
   so ``x = f(1)`` and ``y = g(z)`` have one shape.
2. **Detection.** A tandem repeat at the end of the shape sequence: the largest ``count`` such
   that the last ``count * p`` units are ``count`` copies of one pattern of ``p`` units
   (``min_length <= p``, within ``window`` units). Checked incrementally for every period, which
   is what a suffix array with LCP would answer for the suffix that ends now.
3. **Penalty.** When ``count >= min_count``, the tokens that would begin or extend one more copy
   -- a token after which every unit completed so far still follows the pattern and the
   unfinished unit's reductions are a prefix of the next shape -- have their probability
   multiplied by ``penalty ** count``: ``count * log(penalty)`` is *added* to their logits (or
   log-probabilities). Scaling a logit by 0.9 would raise a negative one; adding in log space
   is right for both. Tokens that end the block, change the shape, or end the text are left
   alone, so the model's own way out gets relatively likelier with every repeat.

Only the best-scoring ``top_k`` tokens are checked (a candidate costs a few tens of
microseconds: the bytes are fed to a fork of the event recorder); candidates are re-ranked
after each penalty so that the final top ``top_k`` are always checked ones.
"""

from __future__ import annotations

import math
import re
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


class RepetitionTracker:
    """Follows one sequence: its grammar events, unit shapes and the tandem repeat at its end."""

    def __init__(self, compiled: CompiledGrammar, units: frozenset[str], *, window: int,
                 min_length: int) -> None:
        self.compiled = compiled
        self.units = units
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
        self._unit_syms = frozenset(-1 - r for r, name in enumerate(g.rule_names) if name in units)
        self._shape_ids: dict[tuple[int, ...], int] = {}
        self.shapes: list[int] = []  # shape id per unit, in order
        self.unit_events: list[int] = []  # index of each unit's reduction in the event list
        self._seen = 0  # committed events already turned into units

    def fork(self) -> RepetitionTracker:
        other = object.__new__(RepetitionTracker)
        other.__dict__.update(self.__dict__)
        other.recorder = self.recorder.fork()
        other.shapes = list(self.shapes)
        other.unit_events = list(self.unit_events)
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

    def _update(self) -> None:
        events = self.recorder.committed
        rule_nt = self._rule_nt
        for i in range(self._seen, len(events)):
            if events[i][0] not in self._unit_syms:
                continue
            key = tuple(_merged(rule_nt.get(ev[0]) for ev in events[events[i][3]:i + 1]))
            self.shapes.append(self._shape_ids.setdefault(key, len(self._shape_ids)))
            self.unit_events.append(i)
        self._seen = len(events)

    def repeat(self) -> tuple[int, int]:
        """(period, count) of the longest tandem repeat ending at the last unit; (0, 1) when
        no pattern repeats."""
        u = self.shapes[-self.window:]
        n = len(u)
        best = (0, 1)
        for p in range(max(1, self.min_length), n // 2 + 1):
            run = 0
            i = n - 1
            while i - p >= 0 and u[i] == u[i - p]:
                run += 1
                i -= 1
            count = (run + p) // p
            if count > best[1]:
                best = (p, count)
        return best

    def partial_shape(self) -> list[int]:
        """The shape so far of the unit being written (after the last complete unit)."""
        events = self.recorder.committed
        since = self.unit_events[-1] + 1 if self.unit_events else 0
        return _merged(self._rule_nt.get(ev[0]) for ev in events[since:])

    def shape_of(self, shape_id: int) -> tuple[int, ...]:
        for key, i in self._shape_ids.items():
            if i == shape_id:
                return key
        raise KeyError(shape_id)


class GrammarRepetitionPenalty:
    """RPG as a logits processor (Hugging Face ``generate``-compatible) and an SMC critic.

    ``penalty`` (default 0.9, the paper's) scales the probability of a token that begins or
    extends another copy of a repeated pattern by ``penalty ** count``. ``units`` names the rules
    whose reductions are watched (default: :func:`default_units`), ``window`` bounds how many
    recent units are searched, ``min_length`` is the shortest pattern (in units) and
    ``min_count`` the number of copies before anything is penalized. ``scores="logits"`` or
    ``"logprobs"`` (then the result is renormalized). Put it after the grammar mask processor.
    """

    def __init__(self, compiled_grammar: CompiledGrammar, *, penalty: float = 0.9,
                 units: Sequence[str] | None = None, window: int = 64, min_length: int = 1,
                 min_count: int = 2, top_k: int = 16, max_checks: int = 256,
                 scores: str = "logits") -> None:
        if not isinstance(compiled_grammar, CompiledGrammar):
            raise ConfigurationError("GrammarRepetitionPenalty needs a CompiledGrammar")
        if not 0.0 < penalty <= 1.0:
            raise ConfigurationError(f"penalty must be in (0, 1], got {penalty}")
        if scores not in ("logits", "logprobs"):
            raise ConfigurationError("scores must be 'logits' or 'logprobs'")
        if window < 2 or min_length < 1 or min_count < 2 or top_k < 1:
            raise ConfigurationError("need window >= 2, min_length >= 1, min_count >= 2, top_k >= 1")
        self.compiled = compiled_grammar
        self.units = frozenset(units) if units is not None else default_units(compiled_grammar)
        unknown = self.units - set(compiled_grammar.grammar.rule_names)
        if units is not None and unknown:
            raise ConfigurationError(f"no such rules in the grammar: {', '.join(sorted(unknown))}")
        self.penalty = penalty
        self.log_penalty = math.log(penalty)
        self.window, self.min_length, self.min_count = window, min_length, min_count
        self.top_k, self.max_checks = top_k, max_checks
        self.scores_kind = scores
        self._token_bytes = compiled_grammar.tokenizer_info.token_bytes
        self._rows: list[tuple[list[int], RepetitionTracker]] = []
        self._prompt_len = -1
        self.stats = {"steps": 0, "penalized_steps": 0, "checks": 0}

    def new_tracker(self) -> RepetitionTracker:
        return RepetitionTracker(self.compiled, self.units, window=self.window,
                                 min_length=self.min_length)

    # --- one sequence ---------------------------------------------------------------------
    def _bytes(self, token: int) -> bytes:
        return self._token_bytes[token] if 0 <= token < len(self._token_bytes) else b""

    def repeat_extended_by(self, tracker: RepetitionTracker, token: int) -> int:
        """The number of copies of the repeated pattern if ``token`` begins or extends one more
        copy (counting the units the token itself completes), else 0.

        A unit is only known once the parser reduces it, which can take the next lexeme (a
        statement ends at the line break *and* the indentation after it), so the count is
        taken after the token: it includes the unit the token completes.
        """
        return self.repeat_extended_by_text(tracker, self._bytes(token))

    def repeat_extended_by_text(self, tracker: RepetitionTracker, data: bytes) -> int:
        """:meth:`repeat_extended_by` for raw bytes instead of a token."""
        if not data or not tracker.alive:
            return 0
        trial = tracker.fork()
        if not trial.feed(data):
            return 0
        period, count = trial.repeat()
        if count < self.min_count:
            return 0
        # the next copy: its units complete in pattern order, but a unit that encloses others
        # (an ``elif`` clause around its statements) begins first, so the text written since
        # the last complete unit may begin any unit of the pattern, after some glue (line
        # breaks, indentation) that belongs to no unit
        shapes = trial.shapes
        partial = trial.partial_shape()
        pending = trial.recorder.pending_terminals()
        for sid in set(shapes[len(shapes) - period:]):
            if self._could_begin(trial, trial.shape_of(sid), partial, pending):
                return count
        return 0

    @staticmethod
    def _could_begin(trial: RepetitionTracker, expected: tuple[int, ...], partial: list[int],
                     pending: set[int] | None) -> bool:
        for skip in range(len(partial) + 1):
            if skip and partial[skip - 1] < 0 and partial[skip - 1] != CONTENT:
                return False  # glue is line breaks, indentation and rules, never a keyword
            head = partial[skip:]
            if tuple(head) != expected[: len(head)]:
                continue
            rest = expected[len(head):]
            if not rest or rest[0] >= 0 or pending is None:
                return True
            if rest[0] == CONTENT:  # the word being written must be able to become it
                if any(not trial.is_literal[t] for t in pending):
                    return True
            elif -1 - rest[0] in pending:  # not ``else`` where ``elif`` was
                return True
        return False

    def extends_repeat(self, tracker: RepetitionTracker, token: int) -> bool:
        """Would ``token`` begin or extend one more copy of a repeated pattern?"""
        return self.repeat_extended_by(tracker, token) > 0

    def penalize_row(self, tracker: RepetitionTracker, scores: np.ndarray) -> int:
        """Apply the penalty to one row of scores (float array, changed in place); returns the
        largest repeat count used (0 if nothing was penalized)."""
        self.stats["steps"] += 1
        if not tracker.alive:
            return 0
        if len(tracker.shapes) + 1 < self.min_count * self.min_length:
            return 0  # too few units for any repeat, even with the one being written
        used = 0
        checked: set[int] = set()
        k = min(self.top_k, scores.shape[0])
        while len(checked) < self.max_checks:
            top = np.argpartition(-scores, k - 1)[:k]
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
                _, count = tr.repeat()
                if count >= self.min_count:
                    out[i] = count * self.log_penalty
            return out

        return score
