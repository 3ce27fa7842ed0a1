"""The Hugging Face logits processor on a small byte-level vocabulary, driven step by step.

No model here: the tests play ``generate``'s part (greedy rows, beam rows that reorder and
share parents, a new call, padded logits) and check every row's mask against an independent
matcher fed that row's tokens. Needs torch and transformers; they skip without them (and fail
under ``CI=true``). The same processor inside a real ``model.generate`` is tested in
``tests/test_generate_smollm2.py``.
"""

from __future__ import annotations

import importlib.util
import os
import random

import numpy as np
import pytest


def _require(*modules: str) -> None:
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        reason = f"{', '.join(missing)} not installed (pip install -e '.[hf]')"
        if os.environ.get("CI", "").strip().lower() == "true":
            pytest.fail(f"CI=true and {reason}")
        pytest.skip(reason)


_require("torch", "transformers")

import torch  # noqa: E402
from structgen.integrations.hf import StructgenLogitsProcessor  # noqa: E402

from structgen import GrammarCompiler, GrammarMatcher, TokenizerInfo  # noqa: E402

TOKENS = ([bytes([b]) for b in range(32, 127)] + [b"\n", b'{"', b'":', b'", "', b"true",
                                                  b"null", b"  ", b"12", b'"}', b"<eos>"])
EOS = len(TOKENS) - 1
NUMBER = 'start: /[0-9]{1,3}/ "!"\n'


@pytest.fixture(scope="module")
def info():
    return TokenizerInfo.from_byte_strings(TOKENS, eos_token_ids=[EOS])


@pytest.fixture(scope="module")
def compiler(info):
    return GrammarCompiler(info)


def _allowed(scores_row: torch.Tensor) -> list[int]:
    return torch.nonzero(torch.isfinite(scores_row)).flatten().tolist()


def _expected(compiled, generated: list[int]) -> list[int] | None:
    """Allowed ids after ``generated``; None when the grammar rejected one of them."""
    matcher = GrammarMatcher(compiled)
    for t in generated:
        if matcher.is_terminated():
            continue  # padding after EOS
        if not matcher.accept_token(t):
            return None
    return matcher.allowed_token_ids().tolist()


def _check_rows(processor, input_ids, grammars_of_rows, prompt_len, width):
    scores = torch.zeros((input_ids.shape[0], width))
    out = processor(input_ids, scores)
    assert out is scores  # masked in place
    for r in range(input_ids.shape[0]):
        generated = input_ids[r, prompt_len:].tolist()
        want = _expected(grammars_of_rows[r], generated)
        got = _allowed(scores[r])
        assert got == (want if want is not None else [EOS]), (r, generated)
    return scores


def test_greedy_rows_each_with_its_grammar(compiler):
    json_g, num_g = compiler.compile_builtin("json"), compiler.compile_grammar(NUMBER)
    processor = StructgenLogitsProcessor([json_g, num_g])
    rng = random.Random(0)
    ids = torch.zeros((2, 3), dtype=torch.long)
    for _ in range(12):
        scores = _check_rows(processor, ids, [json_g, num_g], 3, len(TOKENS))
        nxt = []
        for r in range(2):
            allowed = _allowed(scores[r])
            nxt.append(EOS if ids[r, -1].item() == EOS else rng.choice(allowed))
        ids = torch.cat([ids, torch.tensor(nxt)[:, None]], dim=1)


def test_beam_rows_reorder_and_share_parents(compiler):
    """Rows are (batch item x beam); each step every row continues some row of its item."""
    grammars = [compiler.compile_builtin("json"), compiler.compile_grammar(NUMBER)]
    beams = 3
    processor = StructgenLogitsProcessor(grammars)
    rng = random.Random(1)
    rows_grammar = [grammars[r // beams] for r in range(2 * beams)]
    ids = torch.full((2 * beams, 4), 7, dtype=torch.long)
    for step in range(10):
        scores = _check_rows(processor, ids, rows_grammar, 4, len(TOKENS))
        new_rows = []
        for r in range(2 * beams):
            item = r // beams
            parent = item * beams + rng.randrange(beams)  # beams of one item share parents
            allowed = _allowed(scores[parent])
            token = rng.choice(allowed)
            if step == 5 and r == 1:  # a -inf beam: a token the grammar rejects
                token = next(t for t in range(len(TOKENS)) if t not in allowed)
            new_rows.append(torch.cat([ids[parent], torch.tensor([token])]))
        ids = torch.stack(new_rows)


def test_reused_processor_resets_on_a_new_generate_call(compiler):
    json_g = compiler.compile_builtin("json")
    processor = StructgenLogitsProcessor(json_g)
    ids = torch.tensor([[5, 5, TOKENS.index(b"{")]])
    _check_rows(processor, ids[:, :2], [json_g], 2, len(TOKENS))
    _check_rows(processor, ids, [json_g], 2, len(TOKENS))
    # A second call: a different prompt of the same length as the sequence now.
    again = torch.tensor([[6, 6, 6]])
    _check_rows(processor, again, [json_g], 3, len(TOKENS))
    # A third: the prompt shrinks.
    third = torch.tensor([[9]])
    _check_rows(processor, third, [json_g], 1, len(TOKENS))
    # Same length + 1 but a different prompt: also a new call.
    fourth = torch.tensor([[8, TOKENS.index(b"{")]])
    _check_rows(processor, fourth, [json_g], 2, len(TOKENS))


def test_logits_wider_than_the_tokenizer_are_masked(compiler):
    processor = StructgenLogitsProcessor(compiler.compile_builtin("json"))
    scores = torch.full((1, len(TOKENS) + 45), 1e4)
    processor(torch.tensor([[3, 3]]), scores)
    assert torch.isinf(scores[0, len(TOKENS):]).all()
    assert torch.isfinite(scores[0, : len(TOKENS)]).any()


def test_log_softmax_scores_and_other_dtypes(compiler):
    processor = StructgenLogitsProcessor(compiler.compile_builtin("json"))
    scores = torch.log_softmax(torch.randn((2, len(TOKENS)), dtype=torch.float64), dim=-1)
    processor(torch.tensor([[1], [1]]), scores)
    want = GrammarMatcher(compiler.compile_builtin("json")).allowed_token_ids().tolist()
    assert _allowed(scores[0]) == want == _allowed(scores[1])
    assert np.all(scores[0, want].numpy() < 0)


def test_unconstrained_item_and_row_count_check(compiler):
    processor = StructgenLogitsProcessor([compiler.compile_builtin("json"), None])
    scores = torch.zeros((2, len(TOKENS)))
    processor(torch.tensor([[1], [1]]), scores)
    assert torch.isfinite(scores[1]).all() and not torch.isfinite(scores[0]).all()
    from structgen import ConfigurationError

    with pytest.raises(ConfigurationError, match="multiple"):
        processor(torch.tensor([[1], [1], [1]]), torch.zeros((3, len(TOKENS))))
    with pytest.raises(ConfigurationError, match="CompiledGrammar"):
        StructgenLogitsProcessor(["json"])
