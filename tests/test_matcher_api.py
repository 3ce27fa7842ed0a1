"""GrammarMatcher behaviour beyond masks: forced text, termination, validation, fallbacks."""

from __future__ import annotations

import numpy as np
import pytest

from structgen import (
    ConfigurationError,
    GrammarCompiler,
    GrammarMatcher,
    TokenizerError,
    TokenizerInfo,
    allocate_token_bitmask,
    bitmask_to_ids,
)

BYTES = [bytes([i]) for i in range(256)]
EOS = 256


@pytest.fixture(scope="module")
def info() -> TokenizerInfo:
    return TokenizerInfo.from_byte_strings(BYTES + [b""], eos_token_ids=[EOS])


def compile_text(info, text: str):
    return GrammarCompiler(info).compile_grammar(text)


KEYED = 'start: "{" "\\"name\\"" ":" NAME "}"\nNAME: /[a-z\u00e9]+/\n'


@pytest.mark.parametrize("engine", ["native", "reference"])
def test_jump_forward_string(info, engine):
    m = GrammarMatcher(compile_text(info, KEYED), engine=engine)
    assert m.find_jump_forward_string() == '{"name":'
    assert m.num_accepted_tokens == 0  # nothing was accepted
    assert m.accept_string('{"na')
    assert m.find_jump_forward_string() == 'me":'
    assert m.accept_string('me":ab')
    assert m.find_jump_forward_string() == ""  # a letter or "}" may follow


def test_jump_forward_stops_where_ending_is_allowed(info):
    m = GrammarMatcher(compile_text(info, 'start: "ab" ["cd"]'))
    assert m.find_jump_forward_string() == "ab"
    assert m.accept_string("ab")
    assert m.find_jump_forward_string() == ""


def test_terminate_without_stop_token(info):
    compiled = compile_text(info, 'start: "ab" ["cd"]')
    m = GrammarMatcher(compiled, terminate_without_stop_token=True)
    assert m.accept_string("ab") and not m.is_terminated()  # "cd" may still follow
    assert m.accept_string("cd") and m.is_terminated()
    plain = GrammarMatcher(compiled)
    assert plain.accept_string("abcd") and not plain.is_terminated()
    assert plain.accept_token(EOS) and plain.is_terminated()
    assert not plain.accept_token(ord("a"))  # nothing after the stop token


def test_validate_tokens_does_not_advance(info):
    m = GrammarMatcher(compile_text(info, KEYED))
    ids = list(b'{"name":x}')
    assert m.validate_tokens(ids + [ord("!")]) == len(ids)
    assert m.num_accepted_tokens == 0
    assert m.validate_tokens(ids + [EOS]) == len(ids) + 1


def test_fork_is_independent(info):
    m = GrammarMatcher(compile_text(info, KEYED))
    assert m.accept_string('{"name":')
    f = m.fork()
    assert f.accept_string("abc}") and f.is_completed()
    assert not m.is_completed() and m.accept_string("z")
    assert not m.is_completed()
    f.rollback(1)
    assert not f.is_completed()


def test_eos_bits_and_padding(info):
    padded = TokenizerInfo.from_byte_strings(BYTES + [b""], eos_token_ids=[EOS], vocab_size=300)
    m = GrammarMatcher(compile_text(padded, 'start: "a"'))
    bm = allocate_token_bitmask(1, 300)
    m.fill_next_token_bitmask(bm)
    assert list(bitmask_to_ids(bm[0], 300)) == [ord("a")]
    assert m.accept_token(ord("a"))
    m.fill_next_token_bitmask(bm)
    assert list(bitmask_to_ids(bm[0], 300)) == [EOS]
    assert not m.accept_token(299)  # padding id: in range, never allowed
    with pytest.raises(TokenizerError):
        m.accept_token(300)


def test_misuse_is_a_configuration_error(info):
    m = GrammarMatcher(compile_text(info, 'start: "a"'))
    with pytest.raises(ConfigurationError):
        m.rollback(1)
    with pytest.raises(ConfigurationError):
        m.fill_next_token_bitmask(np.zeros((1, 3), dtype=np.int32))  # too narrow
    with pytest.raises(ConfigurationError):
        m.fill_next_token_bitmask(allocate_token_bitmask(1, 257), 5)  # no such row
    with pytest.raises(ConfigurationError):
        GrammarMatcher("not compiled")


def test_many_lexing_ambiguities_fall_back_to_reference(info):
    """Each "a" may end an A or continue a B: the longest-match obligations pile up past the
    native engine's fixed limits; the matcher switches to the reference engine, same masks."""
    compiled = compile_text(info, 'start: (A | B)+\nA: "a"\nB: /a+b/\n')
    m = GrammarMatcher(compiled)
    for k in range(12):
        assert np.array_equal(m.allowed_token_ids(), m.allowed_token_ids(engine="reference"))
        assert m.accept_token(ord("a")), k
    assert m.engine == "reference"
    assert m.accept_token(ord("b")) and m.is_completed()
    assert set(m.allowed_token_ids().tolist()) == {ord("a"), EOS}
