"""bench/grammars.py's SynCode peer: the parent side without SynCode, and the child on a tiny
tokenizer when ``SYNCODE_PYTHON`` names a Python with syncode installed (it pins transformers
4.53.2, so it lives in a venv of its own; see bench/README.md)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import DATA, ROOT, load_bench, require_data, require_tokenizer


def test_syncode_options_and_missing_interpreter(tmp_path, monkeypatch):
    bench = load_bench("grammars")
    monkeypatch.delenv("SYNCODE_PYTHON", raising=False)
    opts = bench.parse_args([])
    assert "syncode" in opts.engines.split(",")
    assert opts.syncode_python is None and opts.syncode_build_budget == 900.0
    assert bench._syncode_missing(None).startswith("not installed")
    assert bench._syncode_missing(str(tmp_path / "nope")).startswith("not installed")
    # an interpreter without syncode (this one, unless syncode happens to be installed here)
    if importlib.util.find_spec("syncode") is None:
        assert "no syncode" in bench._syncode_missing(sys.executable)
    assert {g.syncode_grammar for g in bench.GRAMMARS.values()} == {"sql", "python", "go"}


def test_syncode_not_installed_row(tmp_path, monkeypatch):
    """Without --syncode-python the run reports 'not installed' and starts no child."""
    bench = load_bench("grammars")
    require_data(DATA / "sql")
    require_tokenizer("llama3")
    monkeypatch.delenv("SYNCODE_PYTHON", raising=False)
    out = tmp_path / "r.json"
    assert bench.main(["--grammars", "sql", "--engines", "syncode", "--queries", "2",
                       "--json", str(out)]) == 0
    (row,) = json.loads(out.read_text())["rows"]
    assert row["engine"] == "syncode" and row["status"].startswith("not installed"), row


def test_syncode_engine_mask_and_summary():
    """The adapter's bit packing and accept rule, on a fake constrainer (needs torch only)."""
    torch = pytest.importorskip("torch")
    bench = load_bench("grammars")
    mask = torch.zeros(70, dtype=torch.bool)
    mask[[0, 5, 33, 69]] = True
    engine = bench.SyncodeEngine(SimpleNamespace(grammar_engine=None), max_tokens=8)
    engine.mask = mask
    words = engine.bitmask
    assert words.dtype == np.uint32 and len(words) == 3
    assert [t for t in range(70) if bench._bit(words, t)] == [0, 5, 33, 69]
    assert engine.accept(33) and engine.count == 1 and int(engine.ids[0, 0]) == 33
    assert not engine.accept(6) and not engine.accept(1000) and engine.count == 1
    result = {"engine": "syncode", "version": "0.4.16", "compile_s": 500.0, "compile2_s": 9.0,
              "store_build_s": 500.0, "store_load_s": 9.0, "store_mb": 1500.0,
              "first": [{"name": "a", "accepted": True, "rejected_at": None, "error": None,
                         "fill_ns": [7_000_000, 8_000_000], "accept_ns": [100]},
                        {"name": "b", "accepted": False, "rejected_at": None,
                         "error": "SyncodeRejected: parser failed", "fill_ns": [1],
                         "accept_ns": []}],
              "warm": [{"name": "a", "accepted": True, "fill_ns": [7_000_000, 7_000_000]}]}
    (row,) = bench.summarize("sql", {"syncode": result})["rows"]
    assert row["docs"] == "1/2" and row["store_load_s"] == 9.0 and row["p50"] == 7500.0
    assert row["rejected"][0]["error"].startswith("SyncodeRejected")
    assert "syncode" in bench.format_table([row])


TINY_TOKENIZER = r'''
# A byte-level BPE with no merges: ids 0-255 are the bytes, 256 is <eos>.
import sys
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast
bs = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
cs, n = bs[:], 0
for b in range(256):
    if b not in bs:
        bs.append(b); cs.append(256 + n); n += 1
tok = Tokenizer(models.BPE(vocab={chr(c): b for b, c in zip(bs, cs)}, merges=[]))
tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
tok.decoder = decoders.ByteLevel()
tok.add_special_tokens([AddedToken("<eos>", special=True)])
PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>").save_pretrained(sys.argv[1])
'''


@pytest.mark.skipif(not os.environ.get("SYNCODE_PYTHON"),
                    reason="SYNCODE_PYTHON (a Python with syncode) is not set")
def test_syncode_child_on_tiny_tokenizer(tmp_path):
    """The real child in SynCode's interpreter: SynCode's SQL grammar, a 257-token byte
    vocabulary (its mask store builds in seconds), a valid query, a misplaced ')' and a word
    where a comma belongs; the store is built, timed, then loaded again."""
    python = os.environ["SYNCODE_PYTHON"]
    subprocess.run([python, "-c", TINY_TOKENIZER, str(tmp_path / "tok")], check=True,
                   capture_output=True)
    texts = ["SELECT count(*) FROM singer WHERE age > 20", "SELECT a FROM b )",
             "SELECT a b c FROM d"]
    spec = {"grammar": "sql", "tokenizer": "tiny", "eos_id": 256, "syncode_grammar": "sql",
            "tokenizer_dir": str(tmp_path / "tok"),
            "docs": [{"name": t, "ids": list(t.encode()), "complete": True} for t in texts]}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    proc = subprocess.run([python, str(ROOT / "bench" / "grammars.py"), "--child", "syncode",
                           "--spec", str(tmp_path / "spec.json"), "--budget", "120",
                           "--syncode-cache", str(tmp_path / "cache"),
                           "--syncode-build-budget", "300"],
                          capture_output=True, text=True, timeout=900, cwd=ROOT)
    bench = load_bench("grammars")
    line = next(x for x in proc.stdout.splitlines() if x.startswith(bench.RESULT_PREFIX))
    res = json.loads(line[len(bench.RESULT_PREFIX):])
    assert "error" not in res, (res, proc.stderr[-2000:])
    assert res["store_built_now"] and res["store_build_s"] > 0 and res["store_load_s"] > 0
    got = {r["name"]: (r["accepted"], r["rejected_at"]) for r in res["first"]}
    assert got == {texts[0]: (True, None), texts[1]: (False, 16), texts[2]: (False, 11)}, got
