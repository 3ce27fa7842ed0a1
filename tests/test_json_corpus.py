"""The built-in JSON grammar against real JSON corpora, tokenized by real tokenizers.

Issue 2, "How it is checked": for every bundled tokenizer (GPT-2, Llama-3, Qwen3, Mistral
SentencePiece, Mistral Tekken)

* **replay** — every must-accept document (JSONTestSuite ``y_*``, jsonchecker ``pass*``,
  prefixes of the big nativejson-benchmark documents, valid JSONSchemaBench instances), encoded
  by the real encoder, is accepted token by token; at every token boundary EOS is allowed exactly
  when Lark (the oracle) accepts the text so far; at a few positions the full mask contains the
  real next token and agrees with ``accept_token`` on a random sample of ids;
* **rejection** — every must-reject document (JSONTestSuite ``n_*``, jsonchecker ``fail*``) is
  rejected at some token, or is not complete at its end;
* **sampling** — 500 random walks per tokenizer, uniform over the allowed tokens, end in text
  that both ``json.loads`` and Lark accept.
"""

from __future__ import annotations

import codecs
import json
import random
from pathlib import Path

import numpy as np
import pytest
from conftest import DATA, require_data, require_encoder, require_tokenizer
from lark.exceptions import LarkError

from structgen import GrammarMatcher
from structgen.bundled import BUNDLED_NAMES

SUITE = DATA / "json" / "JSONTestSuite" / "test_parsing"
BENCH = DATA / "json" / "nativejson-benchmark"
CHECKER = BENCH / "jsonchecker"
SCHEMABENCH = DATA / "jsonschema" / "jsonschemabench"
BIG_DOCUMENTS = ("canada.json", "citm_catalog.json", "twitter.json")
BIG_PREFIX_TOKENS = 2000

# Must-accept files that are not valid UTF-8 cannot be encoded as text by a tokenizer; they
# would be skipped with this reason. The current JSONTestSuite has none (its non-UTF-8 cases
# are n_ or i_ files); test_non_utf8_must_accept_files_are_listed keeps this list honest.
NON_UTF8_MUST_ACCEPT: dict[str, str] = {}

# jsonchecker predates RFC 8259: a top-level scalar and deep nesting are valid JSON now.
RFC8259_ACCEPTS = {
    "fail01_EXCLUDE.json": "a top-level string is valid JSON since RFC 7159",
    "fail18_EXCLUDE.json": "nesting depth is not limited by RFC 8259",
}

SCHEMA_INSTANCES_PER_FILE = 2
SCHEMA_INSTANCE_MAX_CHARS = 1500


# --- corpus discovery (at collection time, cheap) ----------------------------------------------
def _files(folder: Path, pattern: str, exclude: tuple[str, ...] = ()) -> list[Path]:
    """Files matching ``pattern``; a placeholder path when the folder is missing, so the test
    reports the missing data (skip, or fail under CI) instead of collecting nothing."""
    if not folder.is_dir():
        return [folder / pattern]
    return [p for p in sorted(folder.glob(pattern)) if p.name not in exclude]


def _schema_instances() -> list[tuple[str, str | None]]:
    """A few dozen valid JSONSchemaBench instances, serialized three ways (compact ASCII,
    raw Unicode, indented), as ``(id, text)``; ``(folder, None)`` when the data is missing."""
    if not SCHEMABENCH.is_dir():
        return [(str(SCHEMABENCH), None)]
    out: list[tuple[str, str | None]] = []
    for path in sorted(SCHEMABENCH.glob("*.jsonl")):
        found = 0
        with path.open(encoding="utf-8") as fh:
            for line in fh:
                record = json.loads(line)
                for k, test in enumerate(record.get("tests", [])):
                    if not test.get("valid"):
                        continue
                    style = len(out) % 3
                    try:
                        text = json.dumps(test["data"], allow_nan=False,
                                          ensure_ascii=(style == 0),
                                          indent=2 if style == 2 else None)
                    except ValueError:  # NaN/Infinity are not JSON
                        continue
                    if len(text) > SCHEMA_INSTANCE_MAX_CHARS:
                        continue
                    out.append((f"{record['id']}#{k}", text))
                    found += 1
                    break
                if found >= SCHEMA_INSTANCES_PER_FILE:
                    break
    return out


MUST_ACCEPT = _files(SUITE, "y_*.json") + _files(CHECKER, "pass*.json")
MUST_REJECT = _files(SUITE, "n_*.json") + _files(CHECKER, "fail*.json",
                                                  exclude=tuple(RFC8259_ACCEPTS))
SCHEMA_INSTANCES = _schema_instances()


def _ids(paths: list[Path]) -> list[str]:
    return [p.name for p in paths]


# --- helpers -----------------------------------------------------------------------------------
def _is_document(data: bytes, json_lark) -> bool:
    """Oracle: is ``data`` a complete JSON text? Lark decides; ``json.loads`` (a superset:
    it also takes NaN and Infinity) only filters out the many prefixes that are not."""
    try:
        text = data.decode("utf-8")
        json.loads(text)
    except ValueError:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        return False
    try:
        json_lark.parse(text)
    except LarkError:
        return False
    return True


def _encode_exactly(name: str, text: str, raw: bytes) -> list[int]:
    """Encode ``text`` with the real tokenizer and check the tokens spell exactly its bytes
    (SentencePiece adds one leading space, which JSON ignores)."""
    info = require_tokenizer(name)
    ids = list(require_encoder(name)(text))
    spelled = b"".join(info.token_bytes[t] for t in ids)
    assert spelled in (raw, b" " + raw), (
        f"{name} does not round-trip this text: {spelled[:80]!r} vs {raw[:80]!r}")
    return ids


def _check_mask_here(matcher: GrammarMatcher, info, next_token: int | None, complete: bool,
                     rng: random.Random, where: str) -> None:
    """The full mask holds the real next token and EOS iff complete, and agrees with
    ``accept_token`` on a random sample of ids (masks and accepts are one decision)."""
    allowed = matcher.allowed_token_ids()
    allowed_set = set(allowed.tolist())
    if next_token is not None:
        assert next_token in allowed_set, f"{where}: real next token {next_token} is masked"
    for eos in info.eos_token_ids:
        assert (eos in allowed_set) == complete, f"{where}: EOS in mask != complete ({complete})"
    sample = rng.sample(range(info.vocab_size), 48)
    sample += rng.sample(sorted(allowed_set), min(16, len(allowed_set)))
    for t in sample:
        probe = matcher.fork()
        assert probe.accept_token(t) == (t in allowed_set), (
            f"{where}: accept_token({t}) disagrees with the mask "
            f"(token bytes {info.token_bytes[t] if t < len(info.token_bytes) else None!r})")


def _replay(name: str, compiled, raw: bytes, json_lark, *, complete_at_end: bool,
            n_mask_checks: int, seed: str, engine: str = "native") -> None:
    """Feed the real tokens of ``raw``; every one must be accepted, EOS allowed exactly where
    Lark accepts the text so far."""
    info = compiled.tokenizer_info
    ids = _encode_exactly(name, raw.decode("utf-8"), raw)
    if not complete_at_end:  # a prefix of a big document
        assert len(ids) > BIG_PREFIX_TOKENS + 50, "document shorter than the prefix taken"
        ids = ids[:BIG_PREFIX_TOKENS]
    rng = random.Random(seed)
    mask_at = {0, len(ids)} | {rng.randrange(len(ids) + 1) for _ in range(n_mask_checks)}
    eos = info.eos_token_ids[0]
    matcher = GrammarMatcher(compiled, engine=engine)
    prefix = bytearray()
    for k in range(len(ids) + 1):
        where = f"{name}, after {k} tokens ({bytes(prefix[-40:])!r})"
        complete = _is_document(bytes(prefix), json_lark)
        assert matcher.is_completed() == complete, f"{where}: is_completed() != Lark ({complete})"
        if matcher.accept_token(eos):  # EOS allowed iff complete; undo it to go on
            assert complete, f"{where}: EOS accepted but the text is not a JSON document"
            assert matcher.is_terminated()
            matcher.rollback(1)
        else:
            assert not complete, f"{where}: EOS rejected after a complete JSON document"
        if k in mask_at and n_mask_checks:
            _check_mask_here(matcher, info, ids[k] if k < len(ids) else None, complete, rng, where)
        if k == len(ids):
            break
        t = ids[k]
        assert matcher.accept_token(t), (
            f"{where}: real token {t} ({info.token_bytes[t]!r}) rejected")
        prefix += info.token_bytes[t]
    assert matcher.num_accepted_tokens == len(ids)
    if complete_at_end:
        assert matcher.is_completed(), f"{name}: the whole document is not complete"
        assert matcher.accept_token(eos) and matcher.is_terminated()
    else:
        assert not matcher.is_completed()


def _mask_checks(name: str) -> int:
    """Random full-mask positions per document (besides the first and last). The masks come
    from the native engine and cost milliseconds, so every tokenizer gets a few."""
    return 4 if name in ("gpt2", "mistral-sp") else 2


# --- the corpus itself is what the issue says ----------------------------------------------------
def test_non_utf8_must_accept_files_are_listed():
    """Every must-accept file that is not UTF-8 (and so is skipped) is listed with a reason."""
    require_data(SUITE)
    non_utf8 = set()
    for path in SUITE.glob("y_*.json"):
        try:
            path.read_bytes().decode("utf-8")
        except UnicodeDecodeError:
            non_utf8.add(path.name)
    assert non_utf8 == set(NON_UTF8_MUST_ACCEPT)


def test_oracle_agrees_with_json_test_suite(json_lark):
    """Lark with grammars/json.lark (the oracle) accepts every y_ file and rejects every n_
    file, so the grammar is RFC 8259 JSON and the replays below test the right language."""
    require_data(SUITE)
    wrong = []
    for path in sorted(SUITE.glob("[yn]_*.json")):
        raw = path.read_bytes()
        try:
            json_lark.parse(raw.decode("utf-8"))
            accepted = True
        except (LarkError, UnicodeDecodeError):
            accepted = False
        if accepted != path.name.startswith("y_"):
            wrong.append(path.name)
    assert not wrong


# Both matcher engines: the native one (the default) and the pure-Python reference it must
# agree with. Masks come from the native mask engine either way.
ENGINES = ("native", "reference")


# --- replay ------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", MUST_ACCEPT, ids=_ids(MUST_ACCEPT))
@pytest.mark.parametrize("name", BUNDLED_NAMES)
@pytest.mark.parametrize("engine", ENGINES)
def test_replay_must_accept(engine, name, path, compiled_json, json_lark):
    raw = require_data(path).read_bytes()
    if path.name in NON_UTF8_MUST_ACCEPT:
        pytest.skip(NON_UTF8_MUST_ACCEPT[path.name])
    _replay(name, compiled_json(name), raw, json_lark, complete_at_end=True,
            n_mask_checks=_mask_checks(name), seed=f"{name}/{path.name}", engine=engine)


@pytest.mark.parametrize("doc", BIG_DOCUMENTS)
@pytest.mark.parametrize("name", BUNDLED_NAMES)
@pytest.mark.parametrize("engine", ENGINES)
def test_replay_big_document_prefix(engine, name, doc, compiled_json, json_lark):
    """The first 2,000 tokens of a big real document: every token accepted, EOS never."""
    raw = require_data(BENCH / doc).read_bytes()[:40_000]
    raw = raw[: len(raw.decode("utf-8", errors="ignore").encode("utf-8"))]  # whole characters
    _replay(name, compiled_json(name), raw, json_lark, complete_at_end=False,
            n_mask_checks=_mask_checks(name), seed=f"{name}/{doc}", engine=engine)


@pytest.mark.parametrize(("instance_id", "text"), SCHEMA_INSTANCES,
                         ids=[i for i, _ in SCHEMA_INSTANCES])
@pytest.mark.parametrize("name", BUNDLED_NAMES)
@pytest.mark.parametrize("engine", ENGINES)
def test_replay_schema_instances(engine, name, instance_id, text, compiled_json, json_lark):
    if text is None:
        require_data(Path(instance_id))
    _replay(name, compiled_json(name), text.encode("utf-8"), json_lark, complete_at_end=True,
            n_mask_checks=_mask_checks(name), seed=f"{name}/{instance_id}", engine=engine)


def test_schema_instances_are_a_few_dozen():
    if SCHEMA_INSTANCES and SCHEMA_INSTANCES[0][1] is None:
        require_data(SCHEMABENCH)
    assert 24 <= len(SCHEMA_INSTANCES) <= 60


# --- rejection ---------------------------------------------------------------------------------
def _first_impossible_byte(raw: bytes) -> int:
    """Index of the first byte with which ``raw`` stops being a prefix of any UTF-8 text
    (``len(raw)`` when it only ends inside a character)."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    for i in range(len(raw)):
        try:
            decoder.decode(raw[i:i + 1])
        except UnicodeDecodeError:
            return i
    return len(raw)


@pytest.mark.parametrize("path", MUST_REJECT, ids=_ids(MUST_REJECT))
@pytest.mark.parametrize("name", BUNDLED_NAMES)
@pytest.mark.parametrize("engine", ENGINES)
def test_must_reject(engine, name, path, compiled_json):
    raw = require_data(path).read_bytes()
    compiled = compiled_json(name)
    matcher = GrammarMatcher(compiled, engine=engine)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        # No tokenizer encodes these as text: feed the raw bytes. No viable JSON prefix holds
        # a byte that breaks UTF-8, so the rejection must come at that byte or before (or,
        # for text cut inside a character, the end must not be complete).
        bad = _first_impossible_byte(raw)
        for i in range(len(raw)):
            if not matcher.accept_string(raw[i:i + 1]):
                assert i <= bad, f"accepted byte {bad} ({raw[bad:bad + 1]!r}), invalid UTF-8"
                assert matcher.num_accepted_tokens == i, "a rejected byte changed the state"
                return
        assert bad == len(raw), f"all bytes accepted, including invalid UTF-8 at {bad}"
        assert not matcher.is_completed(), "text cut inside a character accepted as complete"
        return
    ids = _encode_exactly(name, text, raw)
    accepted = 0
    for t in ids:
        if not matcher.accept_token(t):
            assert matcher.num_accepted_tokens == accepted, "a rejected token changed the state"
            break
        accepted += 1
    else:
        assert not matcher.is_completed(), f"{path.name}: whole text accepted as complete JSON"
        assert not matcher.accept_token(compiled.tokenizer_info.eos_token_ids[0])
    assert GrammarMatcher(compiled, engine=engine).validate_tokens(ids) == accepted


# --- sampling ----------------------------------------------------------------------------------
WALKS = 500
WALK_TOKENS = 40
MAX_TRIES = 200
CHECK_EVERY = 10  # every 10th walk also checks each step against the full mask
MAX_FINISH_STEPS = 2000
# Bytes tried in this order to close a document; see _finish.
CLOSERS = b'"]}0:' + bytes(range(0x80, 0xC0))


def _single_byte_tokens(info) -> dict[int, int]:
    """byte -> a non-special token id spelling exactly that byte."""
    special = set(info.special_token_ids) | set(info.eos_token_ids)
    out: dict[int, int] = {}
    for t, data in enumerate(info.token_bytes):
        if len(data) == 1 and t not in special:
            out.setdefault(data[0], t)
    return out


def _sample_allowed(matcher: GrammarMatcher, rng: random.Random, vocab_size: int,
                    mask: set[int] | None, candidates: np.ndarray | None = None) -> int:
    """Accept one token drawn uniformly from the allowed tokens; returns its id.

    Rejection sampling: draw ids uniformly from the whole vocabulary and keep the first that
    ``accept_token`` takes; the first accepted draw is uniform over the allowed tokens. After
    ``MAX_TRIES`` misses, draw uniformly from ``allowed_token_ids()`` instead. Both branches give
    the uniform distribution over the allowed tokens, so the mixture does too, while most steps
    cost a few cheap rejected ``accept_token`` calls instead of a full-vocabulary mask.
    With ``mask`` given, each decision is checked against it. With ``candidates`` (sorted
    ids), the same is done for the uniform distribution over the allowed candidates.
    """
    misses = []
    for _ in range(MAX_TRIES):
        if candidates is None:
            t = rng.randrange(vocab_size)
        else:
            t = int(candidates[rng.randrange(len(candidates))])
        if matcher.accept_token(t):
            assert mask is None or t in mask, f"accept_token took {t}, the mask forbids it"
            return t
        misses.append(t)
    allowed = matcher.allowed_token_ids()
    assert not np.isin(misses, allowed).any(), "the mask allows a token accept_token rejected"
    if candidates is not None:
        allowed = np.intersect1d(allowed, candidates)
    assert len(allowed), "no allowed token after a viable prefix"
    t = int(allowed[rng.randrange(len(allowed))])
    assert matcher.accept_token(t), f"mask allows {t}, accept_token rejects it"
    return t


def _finish(matcher: GrammarMatcher, single: dict[int, int], out: bytearray) -> None:
    """Close the document: try ``"`` (close or open a string), ``]``, ``}``, ``0`` (a digit
    after ``-``, ``.``, ``e``, ``\\u``), ``:`` and UTF-8 continuation bytes, in that order;
    else take the forced text (rest of ``true``...). Each step moves toward the end."""
    eos = matcher.compiled_grammar.tokenizer_info.eos_token_ids[0]
    for _ in range(MAX_FINISH_STEPS):
        if matcher.is_completed():
            assert matcher.accept_token(eos)
            return
        for b in CLOSERS:
            if matcher.accept_token(single[b]):
                out.append(b)
                break
        else:
            forced = matcher.find_jump_forward_string().encode("utf-8")
            assert forced, f"stuck after {bytes(out[-40:])!r}: nothing closes, nothing forced"
            for b in forced:
                assert matcher.accept_token(single[b])
                out.append(b)
    pytest.fail(f"could not finish {bytes(out[-60:])!r} in {MAX_FINISH_STEPS} steps")


@pytest.mark.parametrize("name", BUNDLED_NAMES)
def test_random_walks_end_in_json(name, compiled_json, json_lark):
    """500 walks, each up to 40 tokens drawn uniformly from the allowed tokens (including EOS
    when the text is complete; see _sample_allowed), then closed by _finish; the text must be
    UTF-8 that ``json.loads`` and Lark both accept."""
    compiled = compiled_json(name)
    info = compiled.tokenizer_info
    single = _single_byte_tokens(info)
    assert all(b in single for b in CLOSERS), "tokenizer lacks single-byte tokens"
    eos_ids = set(info.eos_token_ids)
    rng = random.Random(f"walks/{name}")
    containers = 0
    for walk in range(WALKS):
        matcher = GrammarMatcher(compiled)
        out = bytearray()
        check = walk % CHECK_EVERY == 0
        for _ in range(WALK_TOKENS):
            mask = set(matcher.allowed_token_ids().tolist()) if check else None
            t = _sample_allowed(matcher, rng, info.vocab_size, mask)
            if t in eos_ids:
                break
            out += info.token_bytes[t]
        if not matcher.is_terminated():
            _finish(matcher, single, out)
        assert matcher.is_terminated()
        data = bytes(out)
        try:
            text = data.decode("utf-8")
            json.loads(text)
            json_lark.parse(text)
        except (ValueError, LarkError) as exc:
            pytest.fail(f"walk {walk} produced {data!r}, not JSON: {exc}")
        containers += text.lstrip(" \t\r\n")[:1] in ("{", "[")
    # The walks are not degenerate: some reach objects or arrays, not only scalars.
    assert containers > 0


STRUCTURAL_WALKS = 200
STRUCTURAL_WALK_TOKENS = 60
# JSON's punctuation, digits, keyword letters and escape letters.
STRUCTURAL_BYTES = frozenset(b'[]{}":, \n0123456789.-+eEtrufalsn\\/bx')
DIGITS = frozenset(b"0123456789")  # multi-digit tokens (all 3-digit numbers in Llama-3) would
# crowd out the punctuation, so digits come one at a time


@pytest.mark.parametrize("name", BUNDLED_NAMES)
def test_random_structural_walks_end_in_json(name, compiled_json, json_lark):
    """Walks that reach nesting: uniform over the allowed tokens among short (<= 3 bytes)
    tokens spelled with JSON's own characters (digits only as one-byte tokens), plus EOS. Uniform over the whole vocabulary
    mostly writes long strings, numbers and whitespace; these walks nest containers, close
    strings, write escapes and keywords. Every 10th walk checks each step against the full
    mask."""
    compiled = compiled_json(name)
    info = compiled.tokenizer_info
    single = _single_byte_tokens(info)
    eos_ids = set(info.eos_token_ids)
    special = set(info.special_token_ids) | eos_ids
    candidates = np.array(sorted(
        [t for t, b in enumerate(info.token_bytes)
         if 1 <= len(b) <= 3 and STRUCTURAL_BYTES.issuperset(b) and t not in special
         and (len(b) == 1 or not DIGITS.intersection(b))]
        + list(eos_ids)), dtype=np.int64)
    rng = random.Random(f"structural-walks/{name}")
    deepest = 0
    for walk in range(STRUCTURAL_WALKS):
        matcher = GrammarMatcher(compiled)
        out = bytearray()
        check = walk % CHECK_EVERY == 0
        for _ in range(STRUCTURAL_WALK_TOKENS):
            mask = set(matcher.allowed_token_ids().tolist()) if check else None
            t = _sample_allowed(matcher, rng, info.vocab_size, mask, candidates)
            if t in eos_ids:
                break
            out += info.token_bytes[t]
        if not matcher.is_terminated():
            _finish(matcher, single, out)
        data = bytes(out)
        try:
            text = data.decode("utf-8")
            value = json.loads(text)
            json_lark.parse(text)
        except (ValueError, LarkError) as exc:
            pytest.fail(f"walk {walk} produced {data!r}, not JSON: {exc}")
        deepest = max(deepest, _depth(value))
    assert deepest >= 3, "structural walks never nested three containers deep"


def _depth(value) -> int:
    if isinstance(value, dict):
        return 1 + max(map(_depth, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(_depth, value), default=0)
    return 0
