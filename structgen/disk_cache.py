"""Compiled grammars kept on disk between processes, so a slow compile is paid once per machine.

The code grammars take seconds to compile (Lark's LALR analysis and one product lexer per
parser-state context), while loading the saved result takes a fraction of a second. A compile
that took longer than ``MIN_SECONDS`` is saved under the cache folder; a later compile of the
same grammar for the same tokenizer, by the same structgen code, loads it instead.

The file name is a hash of everything the result depends on: the grammar text, start rule and
post-lexer, the tokenizer's fingerprint, and a fingerprint of structgen's own code (the size and
modification time of every file of the package), so an edited or upgraded
structgen never reads an old file. A file that fails to load is compiled again and replaced.

Folder: ``$STRUCTGEN_CACHE_DIR``, else ``$XDG_CACHE_HOME/structgen``, else
``~/.cache/structgen``. ``STRUCTGEN_CACHE_DIR=off`` (or ``GrammarCompiler(disk_cache=False)``)
turns it off; benchmarks that time compiles do.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import tempfile
from pathlib import Path

logger = logging.getLogger("structgen")

MIN_SECONDS = 1.0  # faster compiles are not worth a file
_OFF = {"", "0", "off", "false", "no"}


def cache_folder() -> Path | None:
    """The cache folder from the environment, or None when the cache is off."""
    value = os.environ.get("STRUCTGEN_CACHE_DIR")
    if value is not None:
        return None if value.strip().lower() in _OFF else Path(value).expanduser()
    base = os.environ.get("XDG_CACHE_HOME")
    if not base:
        try:
            base = Path.home() / ".cache"
        except RuntimeError:  # no home folder to be found: no disk cache
            return None
    return Path(base) / "structgen"


@functools.cache
def code_fingerprint() -> str:
    """Changes whenever any file of the installed structgen package (its code and compiled
    extension) does. (A grammar's own text is part of each key.)"""
    root = Path(__file__).resolve().parent
    h = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            st = path.stat()
            h.update(f"{path.relative_to(root)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def entry_path(folder: Path, key: tuple, tokenizer_fingerprint: str) -> Path:
    h = hashlib.sha256()
    for part in (*key, tokenizer_fingerprint, code_fingerprint()):
        h.update(repr(part).encode("utf-8"))
        h.update(b"\0")
    return folder / f"{h.hexdigest()[:32]}.sgc"


def load(path: Path, tokenizer_info):
    """The compiled grammar saved at ``path``, or None (missing or unreadable)."""
    if not path.is_file():
        return None
    from .compiler import CompiledGrammar
    from .errors import StructgenError

    try:
        return CompiledGrammar.load(path, tokenizer_info)
    except (StructgenError, OSError) as exc:
        logger.warning("ignoring the cached compiled grammar %s: %s", path, exc)
        return None


def store(path: Path, compiled) -> None:
    """Save atomically (a temporary file renamed into place); failures only log."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        os.close(fd)
        try:
            compiled.save(tmp)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    except OSError as exc:
        logger.warning("could not save the compiled grammar to %s: %s", path, exc)
