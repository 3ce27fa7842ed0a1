"""The code base stays ruff-clean (STYLE.md: lint runs in CI)."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_clean():
    ruff = shutil.which("ruff")
    if ruff is None:
        if __import__("os").environ.get("CI") == "true":
            pytest.fail("ruff is not installed (it is in the test extra)")
        pytest.skip("ruff is not installed")
    result = subprocess.run([ruff, "check", "--no-cache", str(ROOT)], capture_output=True,
                            text=True, cwd=ROOT)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


def test_no_build_products_tracked():
    """Generated C, shared objects and build folders are never committed."""
    listed = subprocess.run(["git", "ls-files"], capture_output=True, text=True, cwd=ROOT)
    if listed.returncode != 0:
        pytest.skip("not a git checkout")
    bad = [f for f in listed.stdout.splitlines()
           if f.endswith((".so", ".pyd")) or f.startswith("build/")
           or (f.startswith("native/") and f.endswith(".c"))]
    assert not bad, bad
    assert sys.version_info >= (3, 10)
