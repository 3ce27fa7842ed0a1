"""Saving and loading compiled grammars: one versioned file bound to the tokenizer.

The file is an uncompressed ``.npz`` archive: a JSON header (format name and version, the
tokenizer fingerprint, the grammar's terminals and names) and dense arrays (LALR tables, every
lexer context DFA, and the mask-cache entries concatenated). Loading runs neither Lark nor the
regex compiler nor any vocabulary walk, so it is much faster than compiling. A file made for
another tokenizer, by another format version, or damaged raises :class:`SerializationError`;
it never yields a wrong mask.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np

from . import _native
from .errors import SerializationError

FORMAT = "structgen-compiled-grammar"
VERSION = 3  # 2: declared terminals and the post-lexer; 3: "deeper" cache markers


def save_compiled(compiled, path: str | Path) -> None:
    from .lexer import LexerContexts  # noqa: F401 - documents the dependency

    g = compiled.grammar
    lexers = compiled.lexers
    masker = compiled.native_masker
    contexts = [lexers.dfa(c) for c in range(lexers.n_contexts)]
    header = {
        "format": FORMAT, "version": VERSION,
        "tokenizer_fingerprint": compiled.tokenizer_info.fingerprint,
        "vocab_size": compiled.tokenizer_info.vocab_size,
        "start": g.start, "source": g.source,
        "terminals": [[t.name, t.regex, t.priority, t.is_literal, t.is_ignored, t.rank,
                       t.literal, t.is_declared] for t in g.terminals],
        "postlex": g.postlex.key() if g.postlex is not None else None,
        "postlex_on_stack": g.postlex_on_stack,
        "rule_names": list(g.rule_names), "nonterminal_names": list(g.nonterminal_names),
        "start_state": g.start_state, "end_state": g.end_state,
        "context_terminals": [list(c.terminals) for c in contexts],
    }
    arrays: dict[str, np.ndarray] = {
        "action": g.action, "goto": g.goto, "rule_lhs": g.rule_lhs, "rule_len": g.rule_len,
    }
    for i, c in enumerate(contexts):
        arrays[f"ctx{i}_trans"] = c.transitions
        arrays[f"ctx{i}_winner"] = c.winner
        arrays[f"ctx{i}_alive"] = c.alive
    keys, kinds, acc_parts, unc_pos, unc_lcp = [], [], [], [], []
    for key, entry in masker.cache_items():
        keys.append(key)
        if entry.deeper:
            kinds.append(2)
            acc_parts.append(np.zeros(0, np.int64))
        elif entry.accepted_bits is not None:
            kinds.append(0)
            bits = entry.accepted_bits.copy()
            if entry.accepted_ids is not None and len(entry.accepted_ids):
                _native.fill_bitmask_from_ids(bits, entry.accepted_ids, clear=False)
            acc_parts.append(bits.view(np.int32).astype(np.int64))
        else:
            kinds.append(1)
            acc_parts.append(entry.accepted_ids)
        unc_pos.append(entry.uncertain_pos)
        unc_lcp.append(entry.uncertain_lcp)
    arrays["cache_keys"] = np.array(keys, dtype=np.int64).reshape(-1, 2)
    arrays["cache_kinds"] = np.array(kinds, dtype=np.int8)
    arrays["cache_acc"] = np.concatenate(acc_parts) if acc_parts else np.zeros(0, np.int64)
    arrays["cache_acc_off"] = np.cumsum([0] + [len(a) for a in acc_parts]).astype(np.int64)
    arrays["cache_unc_pos"] = np.concatenate(unc_pos) if unc_pos else np.zeros(0, np.int32)
    arrays["cache_unc_lcp"] = np.concatenate(unc_lcp) if unc_lcp else np.zeros(0, np.int32)
    arrays["cache_unc_off"] = np.cumsum([0] + [len(a) for a in unc_pos]).astype(np.int64)
    arrays["header"] = np.frombuffer(json.dumps(header).encode("utf-8"), dtype=np.uint8)
    path = Path(path)
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)


def load_compiled(path: str | Path, tokenizer_info):
    from .compiler import CompiledGrammar
    from .grammar import Grammar, Terminal
    from .lexer import ContextDFA, LexerContexts
    from .native_engine import MaskEntry
    from .postlex import postlex_from_key
    from .trie import trie_for

    try:
        data = np.load(Path(path), allow_pickle=False)
        header = json.loads(bytes(data["header"]).decode("utf-8"))
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, UnicodeDecodeError) as exc:
        raise SerializationError(f"{path} is not a structgen compiled grammar: {exc}") from exc
    if header.get("format") != FORMAT:
        raise SerializationError(f"{path} is not a structgen compiled grammar")
    if header.get("version") != VERSION:
        raise SerializationError(
            f"{path} has format version {header.get('version')}, this structgen reads "
            f"version {VERSION}; compile the grammar again")
    if header["tokenizer_fingerprint"] != tokenizer_info.fingerprint:
        raise SerializationError(
            f"{path} was compiled for another tokenizer (fingerprint "
            f"{header['tokenizer_fingerprint'][:12]}..., this one is "
            f"{tokenizer_info.fingerprint[:12]}...); compile it for this tokenizer")
    try:
        terminals = tuple(Terminal(name=n, regex=r, priority=p, is_literal=lit, is_ignored=ign,
                                   rank=rank, literal=text, is_declared=dec)
                          for n, r, p, lit, ign, rank, text, dec in header["terminals"])
        grammar = Grammar(
            source=header["source"], start=header["start"], terminals=terminals,
            action=data["action"], goto=data["goto"], rule_lhs=data["rule_lhs"],
            rule_len=data["rule_len"], rule_names=tuple(header["rule_names"]),
            nonterminal_names=tuple(header["nonterminal_names"]),
            start_state=int(header["start_state"]), end_state=int(header["end_state"]),
            postlex=postlex_from_key(header["postlex"]),
            postlex_on_stack=bool(header["postlex_on_stack"]))
        contexts = []
        for i, terms in enumerate(header["context_terminals"]):
            trans = data[f"ctx{i}_trans"]
            winner = data[f"ctx{i}_winner"]
            final_only = (winner >= 0) & (trans < 0).all(axis=1)
            contexts.append(ContextDFA(terminals=tuple(terms), transitions=trans, winner=winner,
                                       alive=data[f"ctx{i}_alive"], final_only=final_only))
        lexers = LexerContexts(grammar, prebuilt=contexts)
        if [list(t) for t in lexers.context_terminals] != header["context_terminals"]:
            raise SerializationError(f"{path}: lexer contexts do not match the parse table")
        compiled = CompiledGrammar(grammar, tokenizer_info, trie_for(tokenizer_info),
                                   lexers=lexers)
        masker = compiled.native_masker
        keys = data["cache_keys"]
        kinds = data["cache_kinds"]
        acc, acc_off = data["cache_acc"], data["cache_acc_off"]
        upos, ulcp, uoff = data["cache_unc_pos"], data["cache_unc_lcp"], data["cache_unc_off"]
        for k in range(len(keys)):
            part = acc[acc_off[k]:acc_off[k + 1]]
            if kinds[k] == 2:
                entry = MaskEntry(None, part, upos[uoff[k]:uoff[k + 1]], ulcp[uoff[k]:uoff[k + 1]],
                                  deeper=True)
            elif kinds[k] == 0:
                entry = MaskEntry(part.astype(np.int32), None, upos[uoff[k]:uoff[k + 1]],
                                  ulcp[uoff[k]:uoff[k + 1]])
            else:
                entry = MaskEntry(None, part, upos[uoff[k]:uoff[k + 1]], ulcp[uoff[k]:uoff[k + 1]])
            masker.put(int(keys[k, 0]), int(keys[k, 1]), entry)
    except SerializationError:
        raise
    except (KeyError, ValueError, IndexError, TypeError) as exc:
        raise SerializationError(f"{path} is damaged: {exc}") from exc
    return compiled
