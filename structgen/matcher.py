"""``GrammarMatcher``: the per-request state of constrained decoding.

The matcher keeps one entry per accepted token (the thread set after it), so ``rollback(n)`` just
drops entries and ``fork()`` shares them: thread sets are immutable and their parser stacks are
persistent, so versions share everything and nothing is copied. ``accept_token`` returns a
status and never raises for a token the grammar rejects (the matcher is then unchanged).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .backends import OVERFLOW, NativeBackend, ReferenceBackend
from .bitmask import as_numpy_bitmask, bitmask_to_ids, bitmask_width, fill_row_from_ids
from .compiler import CompiledGrammar
from .errors import ConfigurationError, TokenizerError
from .events import EventRecorder, GrammarEvent


class GrammarMatcher:
    """Tracks a prefix against a compiled grammar and gives exact next-token masks.

    Exact: token ``t`` is allowed iff the bytes so far followed by ``t``'s bytes are a viable
    prefix of the grammar (some continuation is a sentence Lark accepts); EOS is allowed iff the
    bytes so far are a sentence. ``engine="reference"`` runs the pure-Python twin of the native
    engine (for tests and debugging; much slower).
    """

    def __init__(self, compiled_grammar: CompiledGrammar, *,
                 terminate_without_stop_token: bool = False, engine: str = "native") -> None:
        if not isinstance(compiled_grammar, CompiledGrammar):
            raise ConfigurationError("GrammarMatcher needs a CompiledGrammar from GrammarCompiler")
        if engine not in ("native", "reference"):
            raise ConfigurationError("engine must be 'native' or 'reference'")
        self.compiled_grammar = compiled_grammar
        self._engine = compiled_grammar.reference
        info = compiled_grammar.tokenizer_info
        self._token_bytes = info.token_bytes
        self._n_tokens = len(info.token_bytes)
        self._vocab_size = info.vocab_size
        self._eos = frozenset(info.eos_token_ids)
        self._eos_ids = np.array(sorted(self._eos), dtype=np.int64)
        self._special = frozenset(info.special_token_ids) | self._eos
        self._terminate_without_stop = terminate_without_stop_token
        self._masker = compiled_grammar.native_masker
        # an indenter whose state is not on the parser stack runs in the reference twin only
        self._reference_only = (compiled_grammar.reference.indenter is not None
                                and not compiled_grammar.grammar.postlex_on_stack)
        self._backend = (NativeBackend(compiled_grammar)
                         if engine == "native" and not self._reference_only
                         else ReferenceBackend(compiled_grammar))
        self._spec_cache: tuple | None = None  # (state, native spec)
        # history[i] = (state, terminated) after i accepted tokens; chunks[i] = token i's bytes
        self._history: list[tuple[object, bool]] = [(self._backend.initial(), False)]
        self._chunks: list[bytes] = []
        self._recorder = None  # grammar events, made on the first grammar_events() call

    # --- state ----------------------------------------------------------------------------
    @property
    def engine(self) -> str:
        """Which implementation holds the state: ``native`` or ``reference``."""
        return self._backend.name

    @property
    def num_accepted_tokens(self) -> int:
        return len(self._history) - 1

    def is_terminated(self) -> bool:
        """True after a stop token was accepted (or, with ``terminate_without_stop_token``,
        as soon as the text is complete and nothing else can follow)."""
        state, terminated = self._history[-1]
        if terminated:
            return True
        if self._terminate_without_stop:
            return self._backend.can_end(state) and not self._any_byte_viable(state)
        return False

    def is_completed(self) -> bool:
        """Is the text so far a complete sentence (EOS would be allowed)?"""
        state, terminated = self._history[-1]
        return terminated or self._backend.can_end(state)

    def reset(self) -> None:
        self._backend.truncate(self._history[0][0])
        del self._history[1:]
        del self._chunks[:]

    def fork(self) -> GrammarMatcher:
        """An independent matcher in the same state. Cheap: states and stacks are shared,
        only the list of per-token states is copied."""
        other = object.__new__(GrammarMatcher)
        other.__dict__.update(self.__dict__)
        self._backend = self._backend.fork()
        other._backend = self._backend.fork()
        other._history = list(self._history)
        other._chunks = list(self._chunks)
        other._recorder = self._recorder.fork() if self._recorder is not None else None
        other._spec_cache = None
        return other

    def rollback(self, num_tokens: int = 1) -> None:
        """Undo the last ``num_tokens`` accepted tokens."""
        if num_tokens < 0 or num_tokens > self.num_accepted_tokens:
            raise ConfigurationError(
                f"cannot roll back {num_tokens} tokens; {self.num_accepted_tokens} were accepted")
        if num_tokens:
            del self._history[-num_tokens:]
            del self._chunks[-num_tokens:]
            self._backend.truncate(self._history[-1][0])

    # --- advancing --------------------------------------------------------------------------
    def _check_id(self, token_id: int) -> None:
        if not isinstance(token_id, (int, np.integer)) or not 0 <= token_id < self._vocab_size:
            raise TokenizerError(f"token id {token_id!r} is outside the vocabulary [0, {self._vocab_size})")

    def _advance(self, state, data: bytes):
        nxt = self._backend.advance(state, data)
        if nxt is OVERFLOW:
            self._switch_to_reference()
            nxt = self._backend.advance(self._history[-1][0], data)
        return nxt

    def _switch_to_reference(self) -> None:
        """The native thread set outgrew its fixed limits (a rare lexing ambiguity): carry on
        with the reference engine, which has none."""
        native = self._backend
        self._history = [(native.threads(s), t) for s, t in self._history]
        self._backend = ReferenceBackend(self.compiled_grammar)
        self._spec_cache = None

    def accept_token(self, token_id: int) -> bool:
        """Advance by one token; returns False (state unchanged) if the grammar rejects it.

        Never raises for a rejected token; an id outside ``[0, vocab_size)`` is a
        :class:`TokenizerError`. The native work releases the GIL.
        """
        self._check_id(token_id)
        state, terminated = self._history[-1]
        if terminated:
            return False
        if token_id in self._eos:
            if self._backend.can_end(state):
                self._history.append((state, True))
                self._chunks.append(b"")
                return True
            return False
        if token_id >= self._n_tokens or token_id in self._special:
            return False
        data = self._token_bytes[token_id]
        if not data:
            return False
        nxt = self._advance(state, data)
        if nxt is None:
            return False
        self._history.append((nxt, False))
        self._chunks.append(data)
        return True

    def accept_string(self, text: str | bytes) -> bool:
        """Advance by raw text (not tokens); one history entry. False (unchanged) if rejected."""
        data = text.encode("utf-8") if isinstance(text, str) else bytes(text)
        state, terminated = self._history[-1]
        if terminated:
            return False
        if not data:
            return True
        nxt = self._advance(state, data)
        if nxt is None:
            return False
        self._history.append((nxt, False))
        self._chunks.append(data)
        return True

    def validate_tokens(self, token_ids: list[int]) -> int:
        """How many leading tokens of ``token_ids`` would be accepted (nothing is advanced)."""
        count = 0
        for t in token_ids:
            if not self.accept_token(t):
                break
            count += 1
        if count:
            self.rollback(count)
        return count

    # --- grammar events -------------------------------------------------------------------------
    @property
    def accepted_bytes(self) -> bytes:
        """The text accepted so far, as bytes."""
        return b"".join(self._chunks)

    def grammar_events(self) -> list[GrammarEvent]:
        """The rules the parser reduced and the terminals it shifted for the text so far, in
        parse order (children before parents), each with its byte span and the accepted tokens
        that hold it. Only events that every reading of the text agrees on are reported.

        The first call replays the accepted text; later calls read only what changed (rollback
        and fork are followed). The mask path never pays for this.
        """
        rec = self._recorder
        if rec is None:
            rec = self._recorder = EventRecorder(self.compiled_grammar)
        fed, chunks = rec.fed, self._chunks
        same = 0
        limit = min(len(fed), len(chunks))
        while same < limit and fed[same] is chunks[same]:
            same += 1
        if same < len(fed):
            rec.rollback(len(fed) - same)
        for data in chunks[same:]:
            rec.feed(data)
        ends = []
        total = 0
        for data in chunks:
            total += len(data)
            ends.append(total)
        return rec.events(ends)

    # --- masks --------------------------------------------------------------------------------
    def allowed_token_ids(self, *, engine: str = "native") -> np.ndarray:
        """Sorted ids of the tokens allowed next (EOS included when the text is complete).

        ``engine="reference"`` uses the pure-Python twin (slow; for tests and debugging).
        """
        state, terminated = self._history[-1]
        if terminated:
            return self._eos_ids.copy()
        if engine == "reference":
            threads = self._backend.threads(state)
            ids = self._walk_trie(threads)
            if self._engine.can_end(threads):
                ids = np.union1d(ids, self._eos_ids)
            return ids
        if engine != "native":
            raise ConfigurationError("engine must be 'native' or 'reference'")
        row = np.zeros(bitmask_width(self._vocab_size), dtype=np.int32)
        self._fill_row(row)
        return bitmask_to_ids(row, self._vocab_size)

    def fill_next_token_bitmask(self, bitmask: Any, index: int = 0) -> bool:
        """Write the allowed-token bitmask into row ``index`` of ``bitmask``.

        Returns True when some token is masked out (the mask needs applying). The native work
        runs with the GIL released.
        """
        arr = as_numpy_bitmask(bitmask)
        if arr.shape[1] * 32 < self._vocab_size:
            raise ConfigurationError(
                f"bitmask row holds {arr.shape[1] * 32} bits, vocabulary has {self._vocab_size}")
        if not 0 <= index < arr.shape[0]:
            raise ConfigurationError(f"row index {index} outside a bitmask of {arr.shape[0]} rows")
        job = self._native_job(index)
        if job is None or self._masker.fill(arr, [job]):
            self._fill_fallback(arr, index)
        return True

    def _native_job(self, row: int) -> tuple | None:
        """The native fill job for the current state, or None when only EOS is left."""
        state, terminated = self._history[-1]
        if terminated or self._reference_only:
            return None
        cached = self._spec_cache
        if cached is None or cached[0] is not state:
            cached = self._spec_cache = (state, self._backend.spec(state)[0])
        return self._masker.job(row, cached[1])

    def _fill_fallback(self, arr: np.ndarray, index: int) -> None:
        """Reference fill: after the native engine declined (or for a terminated matcher)."""
        state, terminated = self._history[-1]
        if terminated:
            fill_row_from_ids(arr[index], self._eos_ids)
            return
        threads = self._backend.threads(state)
        fill_row_from_ids(arr[index], self._walk_trie(threads))
        if self._engine.can_end(threads):
            fill_row_from_ids(arr[index], self._eos_ids, clear=False)

    def _fill_row(self, row: np.ndarray) -> None:
        arr = row.reshape(1, -1)
        job = self._native_job(0)
        if job is None or self._masker.fill(arr, [job]):
            self._fill_fallback(arr, 0)

    def _walk_trie(self, threads: tuple) -> np.ndarray:
        engine = self._engine
        trie = self.compiled_grammar.trie
        tokens, lcp, ids = trie.tokens, trie.lcp, trie.ids
        states = [threads]
        valid = 0
        allowed: list[int] = []
        for i, tok in enumerate(tokens):
            common = int(lcp[i])
            if common > valid:
                continue  # shares the byte that killed the previous token
            del states[common + 1:]
            cur = states[common]
            depth = common
            n = len(tok)
            while depth < n:
                cur = engine.step(cur, tok[depth])
                depth += 1
                if not cur:
                    break
                states.append(cur)
            if cur and depth == n:
                valid = n
                if engine.any_viable(cur):
                    allowed.append(int(ids[i]))
            else:
                valid = depth - 1
        return np.array(sorted(allowed), dtype=np.int64)

    # --- forced text --------------------------------------------------------------------------
    def find_jump_forward_string(self, *, max_bytes: int = 1024) -> str:
        """The text the grammar forces next (empty if more than one byte could follow).

        Stops at the first byte with a choice, or where ending the text is allowed. Returned as
        a string up to the last complete UTF-8 character. Nothing is accepted.
        """
        state, terminated = self._history[-1]
        out = bytearray()
        backend = self._backend
        while not terminated and len(out) < max_bytes and not backend.can_end(state):
            only = None
            for b in range(256):
                nxt = backend.advance(state, bytes([b]))
                if nxt is OVERFLOW:
                    return self._jump_forward_reference(max_bytes)
                if nxt is not None:
                    if only is not None:
                        only = None
                        break
                    only = (b, nxt)
            if only is None:
                break
            out.append(only[0])
            state = only[1]
        backend.truncate(self._history[-1][0])
        return _complete_utf8(bytes(out))

    def _jump_forward_reference(self, max_bytes: int) -> str:
        state, _ = self._history[-1]
        threads = self._backend.threads(state)
        engine = self._engine
        out = bytearray()
        while len(out) < max_bytes and not engine.can_end(threads):
            viable = [(b, nxt) for b in range(256)
                      if (nxt := engine.advance(threads, bytes([b]))) and engine.any_viable(nxt)]
            if len(viable) != 1:
                break
            out.append(viable[0][0])
            threads = viable[0][1]
        return _complete_utf8(bytes(out))

    def _any_byte_viable(self, state) -> bool:
        """Can any byte at all follow? (Used by ``terminate_without_stop_token``.)"""
        threads = self._backend.threads(state)
        engine = self._engine
        return any(engine.any_viable(nxt) for b in range(256)
                   if (nxt := engine.step(threads, b)))


def _complete_utf8(data: bytes) -> str:
    """``data`` decoded up to its last complete UTF-8 character."""
    while data:
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            data = data[:-1]
    return ""
