"""`pip install .` (not only editable) gives a working package with its grammars inside."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_installs_and_works(tmp_path):
    wheels = tmp_path / "wheels"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "-q", "-w", str(wheels)],
        capture_output=True, text=True, timeout=900)
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    (wheel,) = wheels.glob("structgen-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "structgen/grammars/json.lark" in names
    assert any(n.startswith("structgen/_native") and n.endswith(".so") for n in names)
    assert "structgen/integrations/hf.py" in names and "structgen/sampling/awrs.py" in names
    assert not any(n.endswith((".pyx", ".pxi", ".c")) for n in names)
    target = tmp_path / "site"
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target),
         str(wheel)], capture_output=True, text=True, timeout=300)
    assert install.returncode == 0, install.stderr[-3000:]
    probe = (
        "import structgen, sys\n"
        "assert structgen.__file__.startswith(sys.argv[1]), structgen.__file__\n"
        "info = structgen.TokenizerInfo.from_byte_strings([b'{', b'}', b'\"a\":1', b''],"
        " eos_token_ids=[3])\n"
        "m = structgen.GrammarMatcher(structgen.GrammarCompiler(info).compile_builtin('json'))\n"
        "assert m.accept_token(0) and m.accept_token(1) and m.is_completed()\n"
        "print('ok')\n")
    run = subprocess.run([sys.executable, "-c", probe, str(target)], capture_output=True,
                         text=True, timeout=300, cwd=tmp_path,
                         env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"})
    assert run.returncode == 0 and "ok" in run.stdout, run.stdout + run.stderr
