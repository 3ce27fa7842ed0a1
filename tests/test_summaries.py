"""Subtree summaries (native/summary.pxi) change no answer.

A whole-vocabulary walk settles the tokens that stay inside one lexeme below a large trie node
from a summary of that node, built once per (node, threads' lexer states); soft exits let a
summary keep tokens whose lexeme might have ended before a multi-byte character. Each walk is
compared here with the same walk done byte by byte (summaries off): on long test vocabularies
against the reference twin, and on the Llama-3.2 vocabulary with the SQL and Python grammars
on real documents, where non-ASCII names and comments (soft exits, thread sets) occur.
"""

from __future__ import annotations

import sysconfig
from pathlib import Path

import numpy as np
import pytest
from conftest import DATA, require_data, require_encoder, require_tokenizer
from test_native_parity import GRAMMAR_SAMPLES, assert_same_masks, replay_samples_comparing_masks
from test_native_walk import long_vocab, top_state_keys

from structgen import GrammarCompiler, GrammarMatcher, TokenizerInfo, _native, native_engine
from structgen.bitmask import allocate_token_bitmask


@pytest.mark.parametrize("name", sorted(GRAMMAR_SAMPLES))
def test_summarized_walks_match_the_reference(monkeypatch, name):
    monkeypatch.setattr(native_engine, "SUMMARY_MIN_TOKENS", 8)
    compiled = replay_samples_comparing_masks(name, long_vocab)
    assert compiled.native_masker.engine.summary_stats["nodes"] > 0


def compile_builtin(info, name: str, min_tokens: int, monkeypatch):
    monkeypatch.setattr(native_engine, "SUMMARY_MIN_TOKENS", min_tokens)
    return GrammarCompiler(info, cache_enabled=False, disk_cache=False).compile_builtin(name)


def replayed_specs(compiled, docs: list[list[int]], width_tokens: int) -> list:
    """Replay ``docs`` through the masks (every token must be allowed) and collect the
    thread specs whose entries were built: top-state, deeper and whole-stack keys."""
    masker = compiled.native_masker
    specs = []
    build = masker._build_entry

    def keep(thread, **kwargs):
        specs.append((thread.copy(), kwargs["partial"]))
        return build(thread, **kwargs)

    masker._build_entry = keep
    bitmask = allocate_token_bitmask(1, width_tokens)
    try:
        for ids in docs:
            matcher = GrammarMatcher(compiled)
            for tid in ids:
                matcher.fill_next_token_bitmask(bitmask, 0)
                assert (int(bitmask[0, tid >> 5]) >> (tid & 31)) & 1, "a valid token was masked"
                assert matcher.accept_token(tid)
    finally:
        masker._build_entry = build
    return specs


SQL_EXTRA = ["SELECT name AS nom, count(*) FROM singer WHERE pays = 'Côte d''Ivoire'",
             "SELECT Имя FROM Певцы WHERE Страна = 'Россия' ORDER BY Возраст"]
PYTHON_EXTRA = ["def f(x):\n    # café, naïve, Привет мир\n    return x  # 測試 ok\n",
                "données = {'clé': 1}  # 値\nprint(données)\n"]


@pytest.mark.parametrize("name", ["sql", "python"])
def test_summaries_on_a_real_vocabulary(monkeypatch, name):
    info = require_tokenizer("llama3")
    encode = require_encoder("llama3")
    if name == "sql":
        path = require_data(DATA / "sql" / "spider" / "dev_gold.sql")
        lines = path.read_text("utf-8").splitlines()
        texts = [line.rsplit("\t", 1)[0] for line in lines[:12]] + SQL_EXTRA
    else:
        listed = require_data(DATA / "python" / "stdlib-files.txt").read_text("utf-8").split()
        root = Path(sysconfig.get_paths()["stdlib"])
        heads = [(root / rel).read_text("utf-8")[:1500] for rel in listed[:2]]
        texts = [t[:t.rfind("\n") + 1] for t in heads] + PYTHON_EXTRA
    docs = [encode(t) for t in texts]
    plain = compile_builtin(info, name, 0, monkeypatch)
    summarized = compile_builtin(info, name, 16, monkeypatch)
    specs = replayed_specs(summarized, docs, info.vocab_size)
    stats = summarized.native_masker.engine.summary_stats
    assert stats["summaries"] > 0 and stats["soft_exits"]
    assert stats["soft"] > 0  # the non-ASCII names and comments above
    if name == "python":
        assert stats["threads"] > 0  # comments after a line break: two threads
    assert plain.native_masker.engine.summary_stats["summaries"] == 0
    engine, reference = summarized.native_masker.engine, plain.native_masker.engine
    width = summarized.native_masker.width
    compared = 0
    for spec, partial in specs:
        want = reference.classify_spec(spec, partial)
        got = engine.classify_spec(spec, partial)
        if want is None:
            assert got is None
            continue
        assert np.array_equal(want[0], got[0]) and np.array_equal(want[1], got[1]), spec
        pieces = engine.split(spec, partial, None, width=width, num_threads=2)
        whole = reference.split(spec, partial, None, width=width, num_threads=1)
        assert np.array_equal(pieces.uncertain_pos, whole.uncertain_pos)
        assert np.array_equal(pieces.accepted_token_ids(), whole.accepted_token_ids())
        compared += 1
    assert compared > 50


def test_final_inside_a_character_turns_soft_exits_off():
    """A lexer whose state after a lone lead byte is final could end a lexeme inside a
    character: soft exits would then be wrong, and the check must see it."""
    trans = -np.ones((3, 256), dtype=np.int32)
    trans[0, 0xC3] = 1
    trans[1, 0xA9] = 2
    trans[2, 0xC3] = 1
    assert not _native.lexer_final_inside_character(trans, np.array([-1, -1, 0]), [0])
    assert _native.lexer_final_inside_character(trans, np.array([-1, 0, 0]), [0])
    # a final state inside a character that no start reaches does not count
    trans[2, 0xC3] = -1
    trans[0, 0xC3] = -1
    assert not _native.lexer_final_inside_character(trans, np.array([-1, 0, 0]), [0])


# Names that go on through "é" (soft exits). In "merged", "s" is reduced on NAME or LONG
# alike (one LALR state for both contexts), so after "a s n" the lexeme "né..." is in the
# lexer's context as LONG, although the parser then refuses LONG: what decides is the other
# branch (the name ends, then E), which longest match drops only when LONG is final after
# the whole "é" (not so in "merged": LONG needs an "x"). In "deeper" LONG is final after "é",
# and with the two states under the lexeme known, LONG is refused while ending the name
# needs the stack below them (t is reduced on NAME): the token is then uncertain.
UNICODE_GRAMMARS = {
    "names": """
start: stmt+
stmt: NAME "=" expr ";"
expr: NAME | expr "+" NAME
NAME: /[a-zé]+/
%ignore " "
""",
    "merged": """
start: "a" p | "b" q
p: s NAME E ";"
q: s LONG ";"
s: "s"
NAME: /[a-z]+/
E: /é+/
LONG: /[a-z]+é+x/
%ignore " "
""",
}
UNICODE_GRAMMARS["deeper"] = """
start: t NAME E ";" | "b" q
t: "a" s
q: s LONG ";"
s: "s"
NAME: /[a-z]+/
E: /é+/
LONG: /[a-z]+é+/
%ignore " "
"""
# A comment "%..." that may turn into X once an "é" comes: until X's "!" the lexeme "%abé..."
# runs beside a second thread that ended the comment and lexes an E, which is ignored and
# may end softly before an "é" (and is not final after "éé" until an "x" follows).
UNICODE_GRAMMARS["threads"] = """
start: item+
item: WORD ";"
WORD: /[a-z]+/
X: /%[a-z]*é[a-zé]*!/
COMMENT: /%[a-z ]*/
E: /é([a-z]|éx)*/
%ignore COMMENT
%ignore E
%ignore X
%ignore " "
"""
LETTERS = {"threads": b"ax%!"}
UNICODE_SAMPLES = {
    "threads": ["a;", "%aéa! a;", "a; %aaéééxa! a;", "%a éx a;", "a; %aéa!"],
    "deeper": ["a s n é;", "a s ab éé;", "b s né;", "b s abéé;"],
    "names": ["a = b;", "é = a + bé;", "ab = éé + a + b ;"],
    "merged": ["a s né;", "a s abéé;", "b s néx;", "b s abééx;"],
}


def every_short_token(ascii_letters: bytes = b"abnsx") -> list[bytes]:
    """Every string of up to 5 bytes over a few letters and the two bytes of "é" (tokens that
    stay inside a name, with whole, split and broken characters), and of up to 2 bytes with
    punctuation too (tokens that end a lexeme)."""
    letters = [bytes([b]) for b in ascii_letters] + [b"\xc3", b"\xa9"]
    everything = letters + [bytes([b]) for b in b" =;+"]
    tokens = set(everything) | {t + u for t in everything for u in everything}
    layer = list(letters)
    for _ in range(4):
        layer = [t + a for t in layer for a in letters]
        tokens.update(layer)
    return sorted(tokens)


@pytest.mark.parametrize("name", sorted(UNICODE_GRAMMARS))
def test_soft_exits_on_every_short_token(monkeypatch, name):
    """Every top-state key's split, and the masks along every byte prefix of a few sentences
    (against the reference twin), with summaries of every node of 4 tokens or more."""
    tokens = every_short_token(LETTERS.get(name, b"abnsx"))
    info = TokenizerInfo.from_byte_strings(tokens + [b""], eos_token_ids=[len(tokens)])
    monkeypatch.setattr(native_engine, "SUMMARY_MIN_TOKENS", 0)
    plain = GrammarCompiler(info, cache_enabled=False).compile_grammar(UNICODE_GRAMMARS[name])
    monkeypatch.setattr(native_engine, "SUMMARY_MIN_TOKENS", 4)
    summarized = GrammarCompiler(info, cache_enabled=False).compile_grammar(
        UNICODE_GRAMMARS[name])
    masker = summarized.native_masker
    for state, q in top_state_keys(masker):
        want = plain.native_masker.engine.classify(state, q)
        got = masker.engine.classify(state, q)
        assert (want is None) == (got is None)
        if want is not None:
            assert np.array_equal(want[0], got[0]) and np.array_equal(want[1], got[1]), (state, q)
    index = {tok: i for i, tok in enumerate(tokens)}
    for sentence in UNICODE_SAMPLES[name]:
        matcher = GrammarMatcher(summarized)
        for b in [*sentence.encode("utf-8"), None]:
            assert_same_masks(matcher)
            # the splits of the whole stack and of its tops (what deeper keys walk)
            spec = matcher._backend.spec(matcher._history[-1][0])[0]
            for known in range(1, int(spec[1]) + 1):
                top = np.concatenate([spec[:1], [known], spec[2 + 2 * (spec[1] - known):]])
                partial = known < spec[1]
                want = plain.native_masker.engine.classify_spec(top, partial)
                got = masker.engine.classify_spec(top, partial)
                assert np.array_equal(want[0], got[0]) and np.array_equal(want[1], got[1])
            if b is not None:
                assert matcher.accept_token(index[bytes([b])])
    stats = masker.engine.summary_stats
    assert stats["soft_exits"] and stats["soft"] > 0
    assert stats["threads"] > 0 or name != "threads"
