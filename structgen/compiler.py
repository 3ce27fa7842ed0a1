"""Compiling grammars for one tokenizer: ``GrammarCompiler`` makes ``CompiledGrammar`` objects.

Three lifetimes are kept apart, as in xgrammar: a :class:`GrammarCompiler` per tokenizer (it
owns the vocabulary trie), a :class:`CompiledGrammar` per grammar (immutable, shareable across
threads and matchers), and a ``GrammarMatcher`` per request (cheap).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING

from . import disk_cache
from .errors import ConfigurationError, GrammarError
from .grammar import Grammar, builtin_grammar_text, builtin_postlex, builtin_start
from .lexer import LexerContexts
from .postlex import Postlex, check_postlex
from .reference import ReferenceEngine
from .trie import TokenTrie, trie_for

if TYPE_CHECKING:
    from .tokenizer_info import TokenizerInfo

logger = logging.getLogger("structgen")


class CompiledGrammar:
    """A grammar bound to a tokenizer: lexer DFAs, LALR tables and the vocabulary trie.

    Immutable once built; any number of matchers (on any threads) can share it.
    """

    def __init__(self, grammar: Grammar, tokenizer_info: TokenizerInfo, trie: TokenTrie, *,
                 lexers: LexerContexts | None = None) -> None:
        self.grammar = grammar
        self.tokenizer_info = tokenizer_info
        self.trie = trie
        self.lexers = lexers if lexers is not None else LexerContexts(grammar)
        self.reference = ReferenceEngine(grammar, self.lexers)
        self.compile_seconds = 0.0
        self.cached_at = None  # the disk-cache file it was loaded from (structgen.disk_cache)
        self._native = None
        self._native_lock = threading.Lock()

    @property
    def native_masker(self):
        """The native mask engine and its cache, built on first use (None without the
        compiled extension)."""
        if self._native is None:
            with self._native_lock:
                if self._native is None:
                    from .native_engine import NativeMasker

                    self._native = NativeMasker(self)
        return self._native

    def save(self, path) -> None:
        """Write this grammar, its lexer and parser tables and its mask cache to one file.

        Call :meth:`precompute` first to ship a full cache; otherwise the entries built so far
        are saved and the rest fill lazily after loading.
        """
        from .serialize import save_compiled

        save_compiled(self, path)

    @classmethod
    def load(cls, path, tokenizer_info: TokenizerInfo) -> CompiledGrammar:
        """Read a file written by :meth:`save`; it must be for this tokenizer (checked by
        fingerprint: a mismatch raises :class:`SerializationError`)."""
        from .serialize import load_compiled

        return load_compiled(path, tokenizer_info)

    def precompute(self, progress=None, num_threads: int | None = None) -> int:
        """Fill the whole mask cache now (what ``structgen compile`` does) instead of lazily,
        on ``num_threads`` threads (default: every core)."""
        return self.native_masker.precompute(progress, num_threads)

    @property
    def vocab_size(self) -> int:
        return self.tokenizer_info.vocab_size

    def __repr__(self) -> str:
        g = self.grammar
        return (f"CompiledGrammar({g.n_states} parser states, {g.n_terminals} terminals, "
                f"{self.lexers.n_contexts} lexer contexts, vocab {self.vocab_size})")


class GrammarCompiler:
    """Compiles grammars for one tokenizer; caches results by grammar text."""

    def __init__(self, tokenizer_info: TokenizerInfo, *, cache_enabled: bool = True,
                 disk_cache: bool = True) -> None:
        """``cache_enabled`` keeps compiled grammars in memory by grammar text;
        ``disk_cache`` also keeps slow compiles on disk between processes
        (:mod:`structgen.disk_cache`; ``STRUCTGEN_CACHE_DIR`` chooses the folder or, set to
        ``off``, turns it off everywhere)."""
        if not hasattr(tokenizer_info, "token_bytes"):
            raise ConfigurationError(
                "GrammarCompiler needs a structgen.TokenizerInfo; build one with "
                "TokenizerInfo.from_huggingface(tokenizer) or a from_* factory")
        self.tokenizer_info = tokenizer_info
        self.trie = trie_for(tokenizer_info)
        self._cache: dict[tuple[str, str], CompiledGrammar] = {}
        self._cache_enabled = cache_enabled
        self._disk_cache = disk_cache
        self._lock = threading.Lock()

    def compile_grammar(self, grammar: str | Grammar, *, start: str = "start",
                        precompute: bool = False,
                        postlex: Postlex | None = None) -> CompiledGrammar:
        """Compile Lark grammar text (or a :class:`Grammar`). Errors name line and column.

        Masks are cached lazily as decoding meets new states; ``precompute=True`` fills the
        whole cache now (slower compile, flat per-token cost from the first token).
        ``postlex`` runs Python-style indentation or Go-style semicolon insertion inside the
        matcher (:mod:`structgen.postlex`), for grammars written for Lark's ``postlex=``.
        """
        if not isinstance(grammar, (str, Grammar)):
            raise GrammarError(f"grammar must be Lark text (str), got {type(grammar).__name__}")
        if isinstance(grammar, Grammar):
            postlex = grammar.postlex
        check_postlex(postlex, None, None)
        key = (grammar if isinstance(grammar, str) else grammar.source, start,
               repr(postlex.key()) if postlex is not None else None)
        if self._cache_enabled:
            with self._lock:
                found = self._cache.get(key)
            if found is not None:
                if precompute:
                    found.precompute()
                return found
        t0 = time.perf_counter()
        folder = disk_cache.cache_folder() if self._disk_cache else None
        path = (disk_cache.entry_path(folder, key, self.tokenizer_info.fingerprint)
                if folder is not None else None)
        compiled = disk_cache.load(path, self.tokenizer_info) if path is not None else None
        if compiled is not None:
            compiled.cached_at = path
        else:
            g = grammar if isinstance(grammar, Grammar) else Grammar.from_lark(
                grammar, start=start, postlex=postlex)
            compiled = CompiledGrammar(g, self.tokenizer_info, self.trie)
            compiled.native_masker  # noqa: B018 - build the native tables now, not on first mask
            if path is not None and time.perf_counter() - t0 >= disk_cache.MIN_SECONDS:
                disk_cache.store(path, compiled)
        if precompute:
            compiled.precompute()
        compiled.compile_seconds = time.perf_counter() - t0
        logger.debug("compiled grammar in %.1f ms: %r", compiled.compile_seconds * 1e3, compiled)
        if self._cache_enabled:
            with self._lock:
                self._cache[key] = compiled
        return compiled

    def compile_builtin(self, name: str, *, precompute: bool = False) -> CompiledGrammar:
        """Compile a grammar shipped with structgen: ``"json"``, ``"sql"``, ``"python"`` or
        ``"go"`` (the last two with their post-lexers)."""
        return self.compile_grammar(builtin_grammar_text(name), precompute=precompute,
                                    start=builtin_start(name), postlex=builtin_postlex(name))

    def compile_json_schema(self, schema, *, strict: bool = False,
                            whitespace: str = "flexible", indent: int | None = None,
                            separators: tuple[str, str] | None = None, max_whitespace: int = 64,
                            lenient: bool = False, precompute: bool = False) -> CompiledGrammar:
        """Compile a JSON Schema (a dict, a bool or JSON text), draft 2020-12 or draft 7.

        ``strict=True`` forbids properties the schema does not declare (the spec default allows
        them). ``whitespace="flexible"`` allows up to ``max_whitespace`` whitespace characters
        around each ``{ } [ ] , :`` (never endless whitespace); ``"compact"`` allows none, or
        exactly ``separators`` (item, key) such as ``(", ", ": ")``. ``indent`` asks for room for
        ``json.dumps(..., indent=indent)`` layouts. A keyword it cannot enforce raises
        ``UnsupportedFeatureError`` naming the keyword and its JSON pointer; ``lenient=True``
        warns and ignores it instead (see ``CompiledGrammar.ignored_keywords``). Details in
        :mod:`structgen.json_schema`.
        """
        from .json_schema import compile_json_schema

        return compile_json_schema(self, schema, strict=strict, whitespace=whitespace,
                                   indent=indent, separators=separators,
                                   max_whitespace=max_whitespace, lenient=lenient,
                                   precompute=precompute)

    def compile_regex(self, pattern: str, *, precompute: bool = False) -> CompiledGrammar:
        """Compile a Python-syntax regular expression (the whole output must match it)."""
        from .regex_grammar import compile_regex

        return compile_regex(self, pattern, precompute=precompute)

    def clear_cache(self) -> None:
        with self._lock:
            self._cache.clear()
