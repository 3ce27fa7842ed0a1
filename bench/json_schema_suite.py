"""JSON-Schema-Test-Suite pass rates per keyword file, beside llguidance's recorded results.

For each case of ``tests/<draft>/*.json`` (draft2020-12 and draft7; ``../shared/data/jsonschema/
json-schema-test-suite``), structgen compiles the schema for the Llama-3.2 tokenizer (strict:
anything it cannot enforce is reported, never ignored) and classifies every instance. Property
order is not part of a JSON document's meaning, while structgen writes properties in schema
order, so an instance counts as accepted when some order of its keys is. A schema reported
unsatisfiable passes its tests when none of its instances is valid.

Printed per keyword file: tests passed / total, and of the others, how many differ by design,
were not compiled (a keyword reported as unsupported) or were answered wrong; ``*`` marks the
keyword files structgen supports in full (every case must compile and pass). For draft2020-12
llguidance's own recorded pass count (``peer_results``) is printed beside ours. Exit status 1
when an answer is wrong or a case of a supported file does not compile.

    python bench/json_schema_suite.py
    python bench/json_schema_suite.py --drafts draft7 --show not_compiled
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "jsonschema"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DRAFTS = ("draft2020-12", "draft7")
DIALECTS = {"draft7": "http://json-schema.org/draft-07/schema#",
            "draft2020-12": "https://json-schema.org/draft/2020-12/schema"}

# Where structgen differs from a required test by design: (draft, file, words in the case or
# test description) -> why. Such tests are counted apart, neither passed nor wrong.
BY_DESIGN = {
    ("draft2020-12", "format", "only an annotation by default"):
        "structgen asserts the formats it knows (the format-assertion vocabulary)",
    ("draft2020-12", "vocabulary", "no validation vocabulary"):
        "a custom metaschema's vocabularies are not read",
}

# Cases of supported keyword files that do not compile, with the keyword they need.
NOT_COMPILED_OK = {
    "dependentSchemas with additionalProperties": "dependentSchemas",
    "allOf combined with anyOf, oneOf": "multipleOf 30 without bounds",
}

# Keyword files whose every case must compile and pass (structgen enforces these keywords).
# format.json is left out: some formats are not enforced (idn-*, iri*, uri-template, regex).
SUPPORTED_FILES = {
    "draft2020-12": {
        "additionalProperties", "allOf", "anyOf", "boolean_schema", "const", "default",
        "dependentRequired", "enum", "exclusiveMaximum", "exclusiveMinimum", "infinite-loop-detection",
        "items", "maxItems", "maxLength", "maxProperties", "maximum", "minItems", "minLength",
        "minProperties", "minimum", "pattern", "patternProperties", "prefixItems",
        "properties", "propertyNames", "required", "type",
    },
    "draft7": {
        "additionalItems", "additionalProperties", "allOf", "anyOf", "boolean_schema",
        "const", "default", "enum", "exclusiveMaximum", "exclusiveMinimum",
        "infinite-loop-detection", "items", "maxItems", "maxLength", "maxProperties",
        "maximum", "minItems", "minLength", "minProperties", "minimum", "pattern",
        "patternProperties", "properties", "propertyNames", "required", "type",
    },
}

LLG_PASS = ("pass", "compile_error_all_invalid")


def run_suite_file(path: Path, compiler, draft: str) -> dict:
    """One keyword file: tests passed, total, differing by design, skipped (not compiled),
    ``not_compiled`` (case description -> error) and ``wrong`` answers."""
    from structgen.errors import UnsupportedFeatureError
    from structgen.json_order import accepts_in_some_order
    from structgen.json_schema import compile_json_schema
    from structgen.json_schema_refs import UnsatisfiableSchemaError

    out = {"passed": 0, "total": 0, "by_design": 0, "skipped": 0, "not_compiled": {},
           "wrong": []}
    for case in json.loads(path.read_text()):
        tests = case["tests"]
        out["total"] += len(tests)
        schema = case["schema"]
        if isinstance(schema, dict) and "$schema" not in schema:
            schema = {"$schema": DIALECTS[draft], **schema}  # the dialect the runner means
        try:
            compiled = compile_json_schema(compiler, schema)
        except UnsupportedFeatureError as exc:
            if isinstance(exc, UnsatisfiableSchemaError) and not any(t["valid"] for t in tests):
                out["passed"] += len(tests)
            else:
                out["skipped"] += len(tests)
                out["not_compiled"][case["description"]] = str(exc).splitlines()[0][:150]
            continue
        for t in tests:
            got = accepts_in_some_order(compiled, t["data"])
            if any(d == draft and f == path.stem and (w in case["description"]
                                                      or w in t["description"])
                   for d, f, w in BY_DESIGN):
                out["by_design"] += 1
            elif got == t["valid"]:
                out["passed"] += 1
            else:
                out["wrong"].append(f"{case['description']} / {t['description']}: "
                                    f"{'rejected' if t['valid'] else 'accepted'} "
                                    f"{json.dumps(t['data'])[:100]}")
    return out


def run_draft(suite: Path, compiler, draft: str) -> dict[str, dict]:
    """Every keyword file of ``draft``, by file stem."""
    folder = suite / "tests" / draft
    return {p.stem: run_suite_file(p, compiler, draft) for p in sorted(folder.glob("*.json"))}


def problems(draft: str, rows: dict[str, dict]) -> list[str]:
    """Wrong answers, and cases of supported files that did not compile."""
    wrong = [f"{name}: {w}" for name, r in rows.items() for w in r["wrong"]]
    missing = [f"{name}: {desc}: {err}" for name, r in rows.items()
               if name in SUPPORTED_FILES[draft]
               for desc, err in r["not_compiled"].items() if desc not in NOT_COMPILED_OK]
    return wrong + missing


def llguidance_passes(data: Path) -> dict:
    """llguidance's recorded results: draft -> file -> (tests passed, tests)."""
    path = data / "peer_results" / "llguidance_expected_json_schema_test_suite.json"
    if not path.exists():
        return {}
    out: dict = {}
    for draft, files in json.loads(path.read_text()).items():
        for name, cases in files.items():
            results = [v for tests in cases.values() for v in tests.values()]
            out.setdefault(draft, {})[name] = (sum(v in LLG_PASS for v in results), len(results))
    return out


def print_table(draft: str, rows: dict[str, dict], llg: dict) -> None:
    print(f"\nJSON-Schema-Test-Suite {draft} (* = supported keyword file)")
    head = f"   {'file':26s} {'passed':>9s} {'%':>6s} {'design':>6s} {'not cmp':>7s} {'wrong':>5s}"
    print(head + (f" | {'llguidance':>10s} {'%':>6s}" if llg else ""))
    for name, r in rows.items():
        flag = "*" if name in SUPPORTED_FILES[draft] else " "
        line = (f" {flag} {name:26s} {r['passed']:4d}/{r['total']:<4d} "
                f"{100 * r['passed'] / max(r['total'], 1):6.1f} {r['by_design']:6d} "
                f"{r['skipped']:7d} {len(r['wrong']):5d}")
        if llg:
            p, n = llg.get(name, (0, 0))
            line += f" | {p:4d}/{n:<5d} {100 * p / n:6.1f}" if n else " |        n/a"
        print(line)
    passed = sum(r["passed"] for r in rows.values())
    total = sum(r["total"] for r in rows.values())
    line = f"   {'all':26s} {passed:4d}/{total:<4d} {100 * passed / max(total, 1):6.1f}"
    if llg:
        p = sum(llg.get(name, (0, 0))[0] for name in rows)
        n = sum(llg.get(name, (0, 0))[1] for name in rows)
        line += f"{'':21s} | {p:4d}/{n:<5d} {100 * p / max(n, 1):6.1f}"
    print(line)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--drafts", default=",".join(DRAFTS))
    ap.add_argument("--tokenizer", default="llama3")
    ap.add_argument("--show", choices=["problems", "not_compiled"], default="problems",
                    help="what to list under each table")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    suite = args.data / "json-schema-test-suite"
    if not (suite / "tests").exists():
        print(f"no JSON-Schema-Test-Suite at {suite}", file=sys.stderr)
        return 2
    import warnings

    from structgen import GrammarCompiler
    from structgen.bundled import load_bundled_tokenizer

    warnings.simplefilter("ignore")
    compiler = GrammarCompiler(load_bundled_tokenizer(args.tokenizer))
    llg = llguidance_passes(args.data)
    report, bad = {}, 0
    for draft in [d for d in args.drafts.split(",") if d]:
        t0 = time.perf_counter()
        rows = run_draft(suite, compiler, draft)
        report[draft] = rows
        print_table(draft, rows, llg.get(draft, {}))
        print(f"   ({time.perf_counter() - t0:.0f} s)")
        found = problems(draft, rows)
        bad += len(found)
        if args.show == "not_compiled":
            for name, r in rows.items():
                for desc, err in r["not_compiled"].items():
                    print(f"   not compiled: {name}: {desc}: {err}")
        for p in found:
            print(f"   PROBLEM {p}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
