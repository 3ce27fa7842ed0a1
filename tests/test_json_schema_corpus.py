"""The JSON Schema front end on real schemas: JSONSchemaBench and the JSON-Schema-Test-Suite.

JSONSchemaBench (``../shared/data/jsonschema/jsonschemabench``), for every schema structgen
compiles (strict: anything it cannot enforce is an error; a schema that only compiles with
``lenient=True`` is checked too, its ignored keywords counted):

* every valid instance, compact and ``indent=2``, replays token by token with the real
  Llama-3.2 tokenizer, each token allowed by the filled mask and EOS allowed at the end;
* every invalid instance is rejected, unless every error ``jsonschema`` finds in it is about a
  keyword reported as not enforced (counted, and only possible for lenient compiles);
* random walks under the masks end in documents that ``jsonschema`` validates (formats
  included), or whose only errors are about keywords reported as not enforced.

By default a fixed, deterministic sample of each group runs (sized for a slow CI machine);
``STRUCTGEN_FULL_CORPUS=1`` runs every schema with 20 walks each.

The JSON-Schema-Test-Suite (draft2020-12 and draft7, required tests), run by
``bench/json_schema_suite.py``: every case whose schema compiles must classify every one of its
instances right (an instance counts as accepted when some order of its keys is), and every case
of a supported keyword file must compile. The table of pass rates per keyword file is printed
(``pytest -s``).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from conftest import DATA, require_data, require_encoder, require_tokenizer

from structgen.errors import StructgenError, UnsupportedFeatureError
from structgen.json_order import NOT_ACCEPTED, accepts_in_some_order, order_keys

if str(Path(__file__).resolve().parents[1]) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench import json_schema_suite  # noqa: E402  (the Test-Suite runner and its table)

CORPUS = DATA / "jsonschema" / "jsonschemabench"
SUITE = DATA / "jsonschema" / "json-schema-test-suite"
FULL = os.environ.get("STRUCTGEN_FULL_CORPUS", "").strip() == "1"
PER_GROUP = None if FULL else 3  # schemas per group in the default (CI) sample
WALKS = 20 if FULL else 2
MAX_WALK_TOKENS = 600
GROUPS = sorted(p.stem for p in CORPUS.glob("*.jsonl")) if CORPUS.exists() else ["(missing)"]


# ----------------------------------------------------------------------------------------------
# Shared plumbing (also used by scratch drivers over the whole corpus)
# ----------------------------------------------------------------------------------------------

def load_group(group: str, per_group: int | None = PER_GROUP) -> list[dict]:
    """The group's rows in a fixed pseudo-random order (sha256 of the id), the first
    ``per_group`` of them (all when None)."""
    path = require_data(CORPUS / f"{group}.jsonl")
    rows = [json.loads(line) for line in path.open(encoding="utf-8")]
    rows.sort(key=lambda r: hashlib.sha256(f"corpus-test:{r['id']}".encode()).hexdigest())
    return rows if per_group is None else rows[:per_group]


def serializations(doc) -> list[str]:
    compact = json.dumps(doc, ensure_ascii=False, separators=(",", ":"))
    pretty = json.dumps(doc, ensure_ascii=False, indent=2)
    return [compact] if pretty == compact else [compact, pretty]


def make_validator(schema, registry=None):
    """A ``jsonschema`` validator for ``schema`` that checks formats and never goes online."""
    from jsonschema import FormatChecker, validators
    from referencing import Registry
    from referencing.exceptions import NoSuchResource

    def offline(uri: str):
        raise NoSuchResource(ref=uri)

    cls = validators.validator_for(schema, default=validators.Draft202012Validator)
    return cls(schema, format_checker=FormatChecker(),
               registry=registry if registry is not None else Registry(retrieve=offline))


# Keywords that act together: ignoring one ignores what its partners check.
KEYWORD_FAMILIES = {"if": {"if", "then", "else"}, "contains": {"contains", "minContains",
                                                                "maxContains"}}


def errors_only_in(errors, ignored_keywords: set[str]) -> bool:
    """True when every error is about one of ``ignored_keywords`` (the keyword failed, the
    error lies below it in the schema, or, for combinators, every error below it is): the
    instance breaks only keywords reported as not enforced."""
    if not ignored_keywords:
        return False
    ignored_keywords = set().union(*(KEYWORD_FAMILIES.get(k, {k}) for k in ignored_keywords))
    for err in errors:
        if err.validator in ignored_keywords or ignored_keywords.intersection(
                str(k) for k in err.absolute_schema_path):
            continue
        if err.context and errors_only_in(err.context, ignored_keywords):
            continue
        return False
    return True


class Replayer:
    """Token-level replay and random walks with the real tokenizer (one per process)."""

    def __init__(self, info, encode) -> None:
        from structgen import GrammarCompiler

        self.info = info
        self.encode = encode
        self.compiler = GrammarCompiler(info, cache_enabled=False)
        self.eos = info.eos_token_ids[0]
        self.eos_ids = np.array(sorted(info.eos_token_ids), dtype=np.int64)
        tb = info.token_bytes
        n = self.n_tokens = len(tb)
        self.closer = np.zeros(info.vocab_size, dtype=bool)
        for i in range(n):
            b = tb[i]
            if b and any(c in b for c in b'"}],') and len(b) <= 3:
                self.closer[i] = True

    def replay(self, compiled, text: str) -> str | None:
        """None when every token of ``text`` is allowed by the mask (and EOS at the end);
        otherwise where it stopped."""
        from structgen import GrammarMatcher, allocate_token_bitmask

        m = GrammarMatcher(compiled)
        bm = allocate_token_bitmask(1, compiled.vocab_size)
        ids = self.encode(text)
        done = b""
        for t in ids:
            m.fill_next_token_bitmask(bm, 0)
            if not (int(bm[0, t >> 5]) >> (t & 31)) & 1:
                return f"token {self.info.token_bytes[t]!r} masked after {done[-80:]!r}"
            if not m.accept_token(t):
                return f"token {self.info.token_bytes[t]!r} allowed but not accepted"
            done += self.info.token_bytes[t]
        m.fill_next_token_bitmask(bm, 0)
        if not (int(bm[0, self.eos >> 5]) >> (self.eos & 31)) & 1:
            return "EOS masked at the end"
        return None if m.is_completed() else "not completed at the end"

    def walk(self, compiled, rng: random.Random) -> bytes | None:
        """A random document under the masks: uniform over allowed tokens at first, then
        steering to short closing tokens and EOS so that it ends. None when it did not end
        within ``MAX_WALK_TOKENS`` tokens. Every chosen token must be accepted."""
        from structgen import GrammarMatcher

        m = GrammarMatcher(compiled)
        out = bytearray()
        for step in range(MAX_WALK_TOKENS):
            ids = m.allowed_token_ids()
            assert len(ids), f"dead end after {bytes(out)!r}"
            is_eos = np.isin(ids, self.eos_ids)
            eos_ok = bool(is_eos.any())
            ids = ids[~is_eos & (ids < self.n_tokens)]
            if eos_ok and (rng.random() < 0.25 + step / 40 or not len(ids)):
                return bytes(out)
            if not len(ids):
                return None
            if step > 24 and rng.random() < 0.85:
                close = ids[self.closer[ids]]
                if len(close):
                    ids = close
            t = int(ids[rng.randrange(len(ids))])
            assert m.accept_token(t), f"allowed token {self.info.token_bytes[t]!r} rejected"
            out += self.info.token_bytes[t]
        return None


@dataclass
class SchemaReport:
    id: str
    status: str = "compiled"  # compiled | lenient | unsupported | error
    error: str = ""
    ignored: list = field(default_factory=list)
    compile_s: float = 0.0
    valid: int = 0
    valid_ok: int = 0
    reordered: int = 0  # valid instances whose keys were not in the order the grammar writes
    invalid: int = 0
    invalid_rejected: int = 0
    invalid_unsupported: int = 0  # accepted, but only breaks keywords reported as ignored
    walks: int = 0
    walks_ended: int = 0
    walks_unsupported: int = 0  # valid except for keywords reported as ignored
    failures: list = field(default_factory=list)


def check_schema(row: dict, rp: Replayer, walks: int = WALKS) -> SchemaReport:
    """Compile one JSONSchemaBench schema and check it in every direction."""
    import time

    from structgen.json_schema import compile_json_schema

    rep = SchemaReport(row["id"])
    schema = row["schema"]
    t0 = time.perf_counter()
    try:
        compiled = compile_json_schema(rp.compiler, schema)
    except UnsupportedFeatureError as exc:
        rep.error = str(exc).splitlines()[0][:200]
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                compiled = compile_json_schema(rp.compiler, schema, lenient=True)
            rep.status = "lenient"
        except StructgenError as exc2:
            rep.status = "unsupported"
            rep.error = str(exc2).splitlines()[0][:200]
            return rep
    except StructgenError as exc:
        rep.status = "error"
        rep.error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
        return rep
    rep.compile_s = time.perf_counter() - t0
    rep.ignored = sorted({kw for kw, _, _ in getattr(compiled, "ignored_keywords", ())})
    ignored = set(rep.ignored)
    validator = make_validator(schema)
    for test in row.get("tests", []):
        if test["valid"]:
            doc = test["data"]
            ordered = order_keys(compiled, doc)
            if ordered is NOT_ACCEPTED:
                rep.valid += 1
                rep.failures.append(f"valid rejected (in every key order): "
                                    f"{json.dumps(doc, ensure_ascii=False)[:300]}")
                continue
            if json.dumps(ordered) != json.dumps(doc):
                rep.reordered += 1
            for text in serializations(ordered):
                rep.valid += 1
                why = rp.replay(compiled, text)
                if why is None:
                    rep.valid_ok += 1
                else:
                    rep.failures.append(f"valid rejected ({why}): {text[:300]}")
        else:
            rep.invalid += 1
            text = json.dumps(test["data"], ensure_ascii=False)
            if not accepts_some_order(compiled, test["data"]):
                rep.invalid_rejected += 1
            elif errors_only_in(list(validator.iter_errors(test["data"])), ignored):
                rep.invalid_unsupported += 1
            else:
                rep.failures.append(f"invalid accepted: {text[:300]}")
    rng = random.Random(row["id"])
    for _ in range(walks):
        rep.walks += 1
        try:
            out = rp.walk(compiled, rng)
        except AssertionError as exc:
            rep.failures.append(f"walk: {exc}")
            continue
        if out is None:
            continue
        rep.walks_ended += 1
        try:
            doc = json.loads(out.decode("utf-8"))
        except ValueError as exc:
            rep.failures.append(f"walk produced invalid JSON ({exc}): {out[:300]!r}")
            continue
        errors = list(validator.iter_errors(doc))
        if not errors:
            continue
        if errors_only_in(errors, ignored):
            rep.walks_unsupported += 1
        else:
            rep.failures.append(f"walk produced an invalid document ({errors[0].message[:150]}):"
                                f" {out[:300]!r}")
    return rep


@pytest.fixture(scope="module")
def replayer():
    return Replayer(require_tokenizer("llama3"), require_encoder("llama3"))


# ----------------------------------------------------------------------------------------------
# JSONSchemaBench
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("group", GROUPS)
def test_jsonschemabench_group(group, replayer):
    require_data(CORPUS)
    reports = [check_schema(row, replayer) for row in load_group(group)]
    compiled = [r for r in reports if r.status in ("compiled", "lenient")]
    failures = [f"{r.id}: {f}" for r in compiled for f in r.failures]
    tot = {k: sum(getattr(r, k) for r in compiled) for k in (
        "valid", "valid_ok", "reordered", "invalid", "invalid_rejected", "invalid_unsupported",
        "walks", "walks_ended", "walks_unsupported")}
    print(f"\n{group}: {len(reports)} schemas, "
          f"{sum(r.status == 'compiled' for r in reports)} compiled, "
          f"{sum(r.status == 'lenient' for r in reports)} only lenient; valid "
          f"{tot['valid_ok']}/{tot['valid']} ({tot['reordered']} instances in another key "
          f"order); invalid rejected {tot['invalid_rejected']}/"
          f"{tot['invalid']} (+{tot['invalid_unsupported']} breaking only ignored keywords); "
          f"walks ended {tot['walks_ended']}/{tot['walks']} "
          f"({tot['walks_unsupported']} breaking only ignored keywords)")
    for r in reports:
        assert r.status != "error", f"{r.id}: {r.error}"
    assert not failures, "\n".join(failures[:20])


# ----------------------------------------------------------------------------------------------
# JSON-Schema-Test-Suite
# ----------------------------------------------------------------------------------------------

def accepts_some_order(compiled, doc) -> bool:
    """Whether the grammar accepts ``doc`` with its object keys in some order."""
    return accepts_in_some_order(compiled, doc)


@pytest.mark.parametrize("draft", ["draft2020-12", "draft7"])
def test_json_schema_test_suite(draft, replayer):
    """Every answer right; every case of a supported keyword file compiles (the table is
    ``bench/json_schema_suite.py``'s, printed with ``pytest -s``)."""
    require_data(SUITE / "tests" / draft)
    rows = json_schema_suite.run_draft(SUITE, replayer.compiler, draft)
    json_schema_suite.print_table(draft, rows, {})
    found = json_schema_suite.problems(draft, rows)
    assert not found, "\n".join(found[:30])


# ----------------------------------------------------------------------------------------------
# bench/jsonschema.py stays runnable
# ----------------------------------------------------------------------------------------------

def test_bench_runs_on_a_small_sample(tmp_path):
    import subprocess
    import sys

    require_data(CORPUS)
    require_tokenizer("llama3")
    out = tmp_path / "bench.json"
    root = Path(__file__).resolve().parents[1]
    run = subprocess.run([sys.executable, str(root / "bench" / "jsonschema.py"), "--limit", "1",
                          "--groups", "JME,Handwritten", "--workers", "1", "--json", str(out)],
                         capture_output=True, text=True, timeout=600, cwd=root)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert "TOTAL" in run.stdout and "llg(rec)" in run.stdout
    results = json.loads(out.read_text())
    assert {r["group"] for r in results["results"]} == {"JME", "Handwritten"}
