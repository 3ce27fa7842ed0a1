"""Hugging Face ``transformers``: a ``LogitsProcessor`` that keeps ``model.generate`` in a grammar.

::

    from structgen.integrations.hf import StructgenLogitsProcessor

    processor = StructgenLogitsProcessor.from_model(model, tokenizer, "json")
    out = model.generate(**inputs, logits_processor=[processor], max_new_tokens=64)

Works with greedy search, sampling and beam search, a grammar per batch item (or one for all),
logits wider than the tokenizer (the padding ids are masked) and EOS ids from the model's
generation config. One processor can serve any number of ``generate`` calls: it notices a new
call (the sequence did not grow by exactly one token, or the prompt changed) and starts over.

How rows are tracked: ``transformers`` calls the processor with ``input_ids`` of shape
``(batch * num_beams, length)``; under beam search the rows are reordered between steps, so a
row is identified by its batch item's grammar and the tokens generated so far. The matcher of
each such prefix is kept for one step; a new prefix forks its parent's matcher (a pointer
copy: matchers are persistent) and accepts the one new token. Rows with the same prefix share
one mask.

This module imports ``transformers`` and ``torch`` (the ``hf`` extra); ``structgen`` itself
does not.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from transformers import LogitsProcessor, LogitsProcessorList

from structgen.batch import batch_fill_next_token_bitmask
from structgen.bitmask import allocate_token_bitmask, fill_row_from_ids
from structgen.compiler import CompiledGrammar
from structgen.errors import ConfigurationError
from structgen.generate import (
    DecodeStats,
    grammar_compiler_for,
    resolve_grammar,
    tokenizer_info_for,
)
from structgen.matcher import GrammarMatcher
from structgen.overlap import apply_bitmask_fast

__all__ = ["StructgenLogitsProcessor", "generate_with_beams"]

logger = logging.getLogger("structgen")


class _Prefix:
    """The grammar state after one generated prefix: a matcher, or a row that broke."""

    __slots__ = ("matcher", "broken")

    def __init__(self, matcher: GrammarMatcher, broken: bool = False) -> None:
        self.matcher = matcher
        self.broken = broken

    def child(self, token: int, *, fork: bool) -> tuple[_Prefix, bool]:
        """The state after ``token``, and whether the grammar rejected it."""
        if self.broken or self.matcher.is_terminated():
            return self, False  # padding after EOS, or a row already ended
        matcher = self.matcher.fork() if fork else self.matcher
        if matcher.accept_token(token):
            return _Prefix(matcher), False
        return _Prefix(self.matcher, broken=True), True


class StructgenLogitsProcessor(LogitsProcessor):
    """Masks the scores of every row to the tokens its grammar allows next.

    ``grammars`` is one :class:`structgen.CompiledGrammar` for every row, or a sequence with one
    per batch item (``None`` leaves that item unconstrained); under beam search each item's
    ``num_beams`` rows share its grammar. EOS is allowed exactly when the text so far is a
    complete sentence; after a row's EOS only EOS stays allowed (``generate`` pads there).

    A row handed a token its grammar rejects (another processor or the beam search chose a
    token that was masked) "breaks": from then on it allows only EOS, so it ends instead of
    leaving the grammar. Under beam search that is normal for beams whose score is ``-inf``.

    ``num_threads`` is the number of threads filling the masks of one step.
    """

    def __init__(self, grammars: CompiledGrammar | Sequence[CompiledGrammar | None], *,
                 num_threads: int = 1) -> None:
        if isinstance(grammars, CompiledGrammar):
            self._per_item: list[CompiledGrammar | None] | None = None
            items = [grammars]
        else:
            self._per_item = list(grammars)
            items = self._per_item
            if not items:
                raise ConfigurationError("grammars is empty: give one grammar per batch item")
        for g in items:
            if g is not None and not isinstance(g, CompiledGrammar):
                raise ConfigurationError(
                    "StructgenLogitsProcessor takes CompiledGrammar objects; compile with "
                    "GrammarCompiler or use StructgenLogitsProcessor.from_model(model, tokenizer, g)")
        compiled = [g for g in items if g is not None]
        sizes = {g.vocab_size for g in compiled}
        if len(sizes) > 1:
            raise ConfigurationError(
                f"grammars compiled for different vocabularies ({sorted(sizes)}) in one processor")
        self._vocab_size = sizes.pop() if sizes else 1
        # Items with the same compiled grammar share states: the key is the grammar's slot.
        distinct: dict[int, int] = {}
        self._slots = [distinct.setdefault(id(g), len(distinct)) for g in items]
        self._grammar_of_slot = {distinct[id(g)]: g for g in items}
        self.num_threads = num_threads
        self.reset()

    @classmethod
    def from_model(cls, model: Any, tokenizer: Any, grammar: Any, *,
                   num_threads: int = 1) -> StructgenLogitsProcessor:
        """Compile ``grammar`` (anything :func:`structgen.generate.resolve_grammar` takes, or a
        list with one per batch item) for ``tokenizer`` as ``model`` uses it: the model's logits
        width and the EOS ids of its generation config."""
        compiler = grammar_compiler_for(tokenizer_info_for(model, tokenizer))
        if isinstance(grammar, (list, tuple)):
            return cls([None if g is None else resolve_grammar(compiler, g) for g in grammar],
                       num_threads=num_threads)
        return cls(resolve_grammar(compiler, grammar), num_threads=num_threads)

    def reset(self) -> None:
        """Forget the current generation (done automatically when a new one starts)."""
        self._prompt: torch.Tensor | None = None
        self._last_len = -1
        self._states: dict[tuple, _Prefix] = {}
        self._bitmask: np.ndarray | None = None

    # --- transformers entry point ---------------------------------------------------------
    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        rows, length = input_ids.shape
        if self._is_new_generation(input_ids):
            self._begin(input_ids)
        self._last_len = length
        generated = input_ids[:, self._prompt.shape[1]:].tolist()
        slots = self._row_slots(rows)
        beams = self._beams(rows)
        keys = [(slots[r], tuple(generated[r])) for r in range(rows)]
        self._states = self._advance(keys, beams)
        self._apply(keys, scores)
        return scores

    # --- bookkeeping ------------------------------------------------------------------------
    def _is_new_generation(self, input_ids: torch.Tensor) -> bool:
        prompt = self._prompt
        if prompt is None or input_ids.shape[0] != prompt.shape[0]:
            return True
        if input_ids.shape[1] != self._last_len + 1:
            return True
        head = input_ids[:, :prompt.shape[1]]
        return head.device != prompt.device or not torch.equal(head, prompt)

    def _begin(self, input_ids: torch.Tensor) -> None:
        rows = input_ids.shape[0]
        self._beams(rows)  # validates the row count
        self._prompt = input_ids.detach().clone()
        self._states = {}
        for slot, grammar in self._grammar_of_slot.items():
            if grammar is not None:
                self._states[(slot, ())] = _Prefix(GrammarMatcher(grammar))
        self._bitmask = allocate_token_bitmask(rows, self._vocab_size)

    def _beams(self, rows: int) -> int:
        if self._per_item is None:
            return 1
        items = len(self._per_item)
        if rows % items:
            raise ConfigurationError(
                f"the processor has grammars for {items} batch items but generate passed "
                f"{rows} rows (expected a multiple: items x num_beams)")
        return rows // items

    def _row_slots(self, rows: int) -> list[int]:
        if self._per_item is None:
            return [0] * rows
        beams = rows // len(self._per_item)
        return [self._slots[r // beams] for r in range(rows)]

    def _advance(self, keys: list[tuple], beams: int) -> dict[tuple, _Prefix]:
        """States of this step's prefixes, made from the last step's by one token each."""
        old = self._states
        wanted = dict.fromkeys(keys)
        children: dict[tuple, int] = {}
        for key in wanted:
            if key not in old and key[1]:
                parent = (key[0], key[1][:-1])
                children[parent] = children.get(parent, 0) + 1
        new: dict[tuple, _Prefix] = {}
        for key in wanted:
            slot, prefix = key
            state = old.get(key)
            if state is None and self._grammar_of_slot[slot] is not None:
                parent_key = (slot, prefix[:-1])
                parent = old.get(parent_key) if prefix else None
                if parent is None:  # not reachable from the last step: replay from the start
                    state = self._replay(slot, prefix)
                else:
                    state, rejected = parent.child(prefix[-1], fork=children[parent_key] > 1)
                    if rejected:
                        log = logger.debug if beams > 1 else logger.warning
                        log("token %d is outside the grammar; the row can only end now",
                            prefix[-1])
            if state is not None:
                new[key] = state
        return new

    def _replay(self, slot: int, prefix: tuple[int, ...]) -> _Prefix:
        state = _Prefix(GrammarMatcher(self._grammar_of_slot[slot]))
        for token in prefix:
            state, _ = state.child(token, fork=False)
        return state

    def _apply(self, keys: list[tuple], scores: torch.Tensor) -> None:
        bitmask = self._bitmask
        if bitmask is None or bitmask.shape[0] != len(keys):
            bitmask = self._bitmask = allocate_token_bitmask(len(keys), self._vocab_size)
        first_row: dict[tuple, int] = {}
        fill_matchers, fill_rows = [], []
        for r, key in enumerate(keys):
            state = self._states.get(key)
            if state is None:
                bitmask[r].fill(-1)  # an unconstrained row
                continue
            seen = first_row.get(key)
            if seen is not None:
                continue
            first_row[key] = r
            if state.broken:
                eos = state.matcher.compiled_grammar.tokenizer_info.eos_token_ids
                fill_row_from_ids(bitmask[r], np.array(sorted(eos), dtype=np.int64))
            else:
                fill_matchers.append(state.matcher)
                fill_rows.append(r)
        if fill_matchers:
            batch_fill_next_token_bitmask(fill_matchers, bitmask, indices=fill_rows,
                                          num_threads=self.num_threads)
        for r, key in enumerate(keys):
            src = first_row.get(key)
            if src is not None and src != r:
                bitmask[r] = bitmask[src]
        apply_bitmask_fast(scores, bitmask)


def generate_with_beams(model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                        grammars: Sequence[CompiledGrammar | None], *, num_beams: int,
                        max_new_tokens: int, eos_token_ids: Sequence[int], pad_token_id: int,
                        do_sample: bool = False, temperature: float = 1.0, top_k: int = 0,
                        top_p: float = 1.0, seed: int | None = None
                        ) -> tuple[list[list[int]], list[str], DecodeStats]:
    """Beam search through ``model.generate`` with a :class:`StructgenLogitsProcessor`.

    Returns, like :func:`structgen.generate.decode_batch`, the new tokens of each batch item's
    best beam (EOS excluded), why it stopped and the timing.
    """
    import time

    processor = StructgenLogitsProcessor(list(grammars))
    options: dict[str, Any] = dict(max_new_tokens=max_new_tokens, num_beams=num_beams,
                                   do_sample=do_sample, num_return_sequences=1,
                                   eos_token_id=list(eos_token_ids), pad_token_id=pad_token_id,
                                   logits_processor=LogitsProcessorList([processor]))
    if do_sample:
        options.update(temperature=temperature, top_k=top_k, top_p=top_p)
        if seed is not None:
            torch.manual_seed(seed)
    t0 = time.perf_counter()
    with torch.inference_mode():
        out = model.generate(input_ids=input_ids, attention_mask=attention_mask, **options)
    stats = DecodeStats(total_seconds=time.perf_counter() - t0)
    eos = set(eos_token_ids)
    tokens, reasons = [], []
    for row in out[:, input_ids.shape[1]:].tolist():
        cut = next((i for i, t in enumerate(row) if t in eos), None)
        tokens.append(row if cut is None else row[:cut])
        reasons.append("length" if cut is None else "stop")
        stats.new_tokens += len(tokens[-1])
    stats.steps = out.shape[1] - input_ids.shape[1]
    return tokens, reasons, stats
