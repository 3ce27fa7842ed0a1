"""The command line, run as a person would: through a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from structgen import CompiledGrammar, GrammarCompiler, GrammarMatcher
from structgen.bundled import load_bundled_tokenizer


def run(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "structgen", *args], capture_output=True,
                          text=True, timeout=300, cwd=cwd)


def test_compile_writes_a_file_that_loads_to_identical_masks(tmp_path):
    out = tmp_path / "json.sgc"
    result = run("compile", "json", "--tokenizer", "gpt2", "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert "mask cache" in result.stderr and out.exists()
    info = load_bundled_tokenizer("gpt2")
    loaded = CompiledGrammar.load(out, info)
    fresh = GrammarCompiler(info).compile_builtin("json")
    a, b = GrammarMatcher(loaded), GrammarMatcher(fresh)
    for ch in b'{"k": [1, 2.5, "x"]}':
        assert np.array_equal(a.allowed_token_ids(), b.allowed_token_ids())
        assert a.accept_string(bytes([ch])) and b.accept_string(bytes([ch]))


def test_compile_a_schema_file_and_a_regex(tmp_path):
    schema = tmp_path / "s.json"
    schema.write_text(json.dumps({"type": "object", "properties": {"n": {"type": "integer"}},
                                  "required": ["n"]}))
    assert run("compile", str(schema), "--tokenizer", "gpt2").returncode == 0
    assert run("compile", "--regex", "[0-9]{3}-[a-z]+", "--tokenizer", "gpt2").returncode == 0


def test_check_reports_line_and_column(tmp_path):
    grammar = tmp_path / "g.lark"
    grammar.write_text('start: item+\nitem: "a" | "b" ";"\n%ignore /\\s+/\n')
    good = tmp_path / "good.txt"
    good.write_text("a b; a\n")
    bad = tmp_path / "bad.txt"
    bad.write_text("a a\nb; c\n")
    result = run("check", str(grammar), str(good), str(bad))
    assert result.returncode == 1
    assert f"{good}: ok" in result.stdout
    assert f"{bad}:2:4:" in result.stdout  # the "c"


def test_check_reports_a_grammar_error_with_its_place(tmp_path):
    grammar = tmp_path / "g.lark"
    grammar.write_text('start: item\nitem: "a" (\n')
    result = run("check", str(grammar))
    assert result.returncode == 1
    assert "line" in result.stderr and "^" in result.stderr


def test_bad_arguments_are_usage_errors():
    assert run("compile").returncode == 2
    assert run("no-such-command").returncode == 2
    assert run("generate").returncode == 2  # --prompt is required


@pytest.mark.parametrize("args", [["demo", "--samples", "2", "--no-model"]])
def test_demo_runs(args):
    result = run(*args)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2/2 documents are valid JSON" in result.stdout
