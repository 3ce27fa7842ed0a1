"""The vLLM v1 logits processor, driven by batch updates shaped exactly as vLLM documents them.

vLLM cannot be installed here (its wheel pins a CUDA build of torch), so these tests play the
engine: a persistent batch of rows, ``BatchUpdate(batch_size, removed, added, moved)`` with
``added`` tuples ``(index, SamplingParams, prompt_tok_ids, output_tok_ids)`` whose output list
is the request's live list, ``moved`` tuples ``(i, j, MoveDirectionality)``, applied in the
order removed, added, moved; ``update_state`` before every step, then ``apply`` on the logits,
then a token is sampled per row and appended to the live list. Every masked row is checked
against an independent matcher of that request. No torch needed (logits are numpy).
"""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from structgen.integrations.vllm import StructgenLogitsProcessor, register_tokenizer_info

from structgen import GrammarCompiler, GrammarMatcher, TokenizerInfo

TOKENS = ([bytes([b]) for b in range(32, 127)] + [b"\n", b'{"', b'":', b'", "', b"true",
                                                  b"12", b'"}', b"<eos>"])
EOS = len(TOKENS) - 1
WIDTH = len(TOKENS) + 20  # the model's logits are wider than the tokenizer
NUMBER = 'start: /[0-9]{1,3}/ "!"\n'


class MoveDirectionality(enum.Enum):  # same names as vllm.v1.sample.logits_processor's
    UNIDIRECTIONAL = enum.auto()
    SWAP = enum.auto()


@dataclass
class SamplingParams:  # the one attribute the processor reads
    extra_args: dict[str, Any] | None = None


@dataclass(frozen=True)
class BatchUpdate:
    batch_size: int
    removed: list[int] = field(default_factory=list)
    added: list[tuple] = field(default_factory=list)
    moved: list[tuple] = field(default_factory=list)


@pytest.fixture(scope="module")
def info():
    info = TokenizerInfo.from_byte_strings(TOKENS, eos_token_ids=[EOS], vocab_size=WIDTH)
    register_tokenizer_info("toy-tokenizer", info)
    return info


@pytest.fixture()
def processor(info):
    config = SimpleNamespace(model_config=SimpleNamespace(tokenizer="toy-tokenizer",
                                                          get_vocab_size=lambda: WIDTH))
    return StructgenLogitsProcessor(config, "cpu", False)


class Engine:
    """The persistent batch: row -> request (grammar spec, live output list)."""

    def __init__(self, processor, info, seed=0):
        self.processor = processor
        self.compiler = GrammarCompiler(info)
        self.rows: dict[int, dict] = {}
        self.rng = random.Random(seed)

    def add(self, index, spec):
        req = {"spec": spec, "output": []}
        self.rows[index] = req
        extra = None if spec is None else {"structgen_grammar": spec}
        return (index, SamplingParams(extra), [1, 2, 3], req["output"])

    def step(self, update):
        self.processor.update_state(update)
        n = update.batch_size if update is not None else len(self.rows)
        logits = np.zeros((n, WIDTH), dtype=np.float32)
        out = self.processor.apply(logits)
        assert out is logits
        for index, req in self.rows.items():
            allowed = np.flatnonzero(np.isfinite(logits[index])).tolist()
            if req["spec"] is None:
                assert len(allowed) == WIDTH
            else:
                matcher = GrammarMatcher(self._compiled(req["spec"]))
                assert all(matcher.accept_token(t) for t in req["output"])
                assert allowed == matcher.allowed_token_ids().tolist(), (index, req["output"])
            choices = [t for t in allowed if t != EOS and t < len(TOKENS)] or [EOS]
            req["output"].append(self.rng.choice(choices))  # vLLM appends to the live list

    def _compiled(self, spec):
        return (self.compiler.compile_builtin(spec) if spec == "json"
                else self.compiler.compile_grammar(spec))


def test_added_removed_and_swapped_rows(processor, info):
    eng = Engine(processor, info)
    eng.step(BatchUpdate(3, added=[eng.add(0, "json"), eng.add(1, NUMBER), eng.add(2, None)]))
    for _ in range(3):
        eng.step(None)
    # remove row 1, add a new JSON request there; swap rows 0 and 2
    del eng.rows[1]
    added = eng.add(1, "json")
    eng.rows[0], eng.rows[2] = eng.rows[2], eng.rows[0]
    eng.step(BatchUpdate(3, removed=[1], added=[added],
                         moved=[(0, 2, MoveDirectionality.SWAP)]))
    for _ in range(3):
        eng.step(None)


def test_one_way_move_condenses_the_batch(processor, info):
    eng = Engine(processor, info, seed=3)
    eng.step(BatchUpdate(3, added=[eng.add(0, NUMBER), eng.add(1, "json"), eng.add(2, "json")]))
    eng.step(None)
    # row 0 finishes; vLLM condenses by moving the last row into the hole (one way)
    del eng.rows[0]
    eng.rows[0] = eng.rows.pop(2)
    eng.step(BatchUpdate(2, removed=[0], moved=[(2, 0, MoveDirectionality.UNIDIRECTIONAL)]))
    eng.step(None)
    assert set(processor._requests) == {0, 1}


def test_added_request_replaces_a_row_and_plain_string_directions(processor, info):
    eng = Engine(processor, info, seed=5)
    eng.step(BatchUpdate(2, added=[eng.add(0, "json"), eng.add(1, NUMBER)]))
    eng.step(None)
    # an added request may replace the one at its index without a removal; no grammar here
    eng.step(BatchUpdate(2, added=[eng.add(1, None)]))
    eng.rows[0], eng.rows[1] = eng.rows[1], eng.rows[0]
    eng.step(BatchUpdate(2, moved=[(0, 1, "swap")]))
    eng.step(None)


def test_requests_without_grammars_leave_logits_alone(processor, info):
    processor.update_state(BatchUpdate(2, added=[(0, SamplingParams(), None, []),
                                                 (1, SamplingParams({"other": 1}), None, [])]))
    logits = np.random.default_rng(0).standard_normal((2, WIDTH)).astype(np.float32)
    before = logits.copy()
    processor.apply(logits)
    assert np.array_equal(logits, before)
    assert processor.is_argmax_invariant() is False


def test_a_forced_token_outside_the_grammar_leaves_only_eos(processor, info):
    output: list[int] = []
    processor.update_state(BatchUpdate(1, added=[(0, SamplingParams({"structgen_grammar": NUMBER}),
                                                  [1], output)]))
    processor.apply(np.zeros((1, WIDTH), dtype=np.float32))
    output.append(TOKENS.index(b"x"))  # something else forced a token the grammar rejects
    processor.update_state(None)
    logits = np.zeros((1, WIDTH), dtype=np.float32)
    processor.apply(logits)
    assert np.flatnonzero(np.isfinite(logits[0])).tolist() == [EOS]


def test_validate_params():
    StructgenLogitsProcessor.validate_params(SamplingParams())
    StructgenLogitsProcessor.validate_params(SamplingParams({"structgen_grammar": "json"}))
    StructgenLogitsProcessor.validate_params(SamplingParams({"structgen_grammar": NUMBER}))
    StructgenLogitsProcessor.validate_params(
        SamplingParams({"structgen_json_schema": {"type": "object"}}))
    with pytest.raises(ValueError, match="structgen_grammar"):
        StructgenLogitsProcessor.validate_params(SamplingParams({"structgen_grammar": "start: ("}))
    with pytest.raises(ValueError, match="must be a string"):
        StructgenLogitsProcessor.validate_params(SamplingParams({"structgen_grammar": 3}))


def test_torch_logits_when_torch_is_installed(processor, info):
    torch = pytest.importorskip("torch")
    processor.update_state(BatchUpdate(1, added=[(0, SamplingParams({"structgen_grammar": NUMBER}),
                                                  None, [])]))
    logits = torch.zeros((1, WIDTH))
    processor.apply(logits)
    allowed = torch.nonzero(torch.isfinite(logits[0])).flatten().tolist()
    digits = [TOKENS.index(bytes([d])) for d in b"0123456789"]
    assert allowed == digits + [TOKENS.index(b"12")]
