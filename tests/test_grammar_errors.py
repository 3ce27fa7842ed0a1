"""Bad input gets a structgen error that names the problem and its place, never anything else.

DESIGN.md: any input a user can give (grammar text, regex, token ids, bitmasks) either works or
raises a ``StructgenError``; grammar errors are also ``ValueError`` and carry line and column;
misuse of the API is a ``ConfigurationError`` saying how to fix it.
"""

from __future__ import annotations

import lark
import numpy as np
import pytest

from structgen import (
    ConfigurationError,
    GrammarCompiler,
    GrammarError,
    GrammarMatcher,
    RegexError,
    StructgenError,
    TokenizerError,
    TokenizerInfo,
    allocate_token_bitmask,
    bitmask_to_ids,
)

EOS = 256
VOCAB = 300  # logits wider than the tokenizer: ids 257..299 are padding


@pytest.fixture(scope="module")
def compiler() -> GrammarCompiler:
    """A byte-level tokenizer (one token per byte, EOS at 256, padding up to 300)."""
    tokens = [bytes([b]) for b in range(256)] + [b"</s>"]
    info = TokenizerInfo.from_byte_strings(tokens, eos_token_ids=[EOS], vocab_size=VOCAB)
    return GrammarCompiler(info, cache_enabled=False)


@pytest.fixture()
def matcher(compiler) -> GrammarMatcher:
    return GrammarMatcher(compiler.compile_builtin("json"))


def _grammar_error(compiler, text: str, kind: type[GrammarError] = GrammarError) -> GrammarError:
    with pytest.raises(kind) as info:
        compiler.compile_grammar(text)
    err = info.value
    assert isinstance(err, StructgenError) and isinstance(err, ValueError)
    return err


# --- error classes -------------------------------------------------------------------------------
def test_error_hierarchy():
    for cls in (GrammarError, RegexError, TokenizerError, ConfigurationError):
        assert issubclass(cls, StructgenError)
    assert issubclass(GrammarError, ValueError)
    assert issubclass(RegexError, GrammarError)


# --- grammar text ------------------------------------------------------------------------------
@pytest.mark.parametrize(("text", "line", "shown"), [
    ('start: "a" b\nb: "b" )\n', 2, 'b: "b" )'),
    ('start: "a"\n\nb:: "x"\n', 3, 'b:: "x"'),
    ('// header\nstart: "a" | \n  | | "b" "\n', 3, '| | "b" "'),
])
def test_syntax_error_names_line_and_column(compiler, text, line, shown):
    err = _grammar_error(compiler, text)
    assert err.line == line
    assert err.column is not None and err.column >= 1
    message = str(err)
    assert shown in message, "the message shows the offending line"
    assert f"line {line}" in message
    caret_line = message.splitlines()[-1]
    assert caret_line.strip() == "^", "a caret points at the column"


def test_undefined_rule(compiler):
    err = _grammar_error(compiler, 'start: "a" item\n')
    assert "item" in str(err)
    assert err.line == 1


def test_undefined_terminal(compiler):
    err = _grammar_error(compiler, 'start: "a" NUMBER_X\n')
    assert "NUMBER_X" in str(err)
    assert err.line == 1


def test_undefined_ignored_terminal(compiler):
    err = _grammar_error(compiler, 'start: "a"\n%ignore WS\n')
    assert "WS" in str(err)
    assert err.line == 2


def test_missing_start_rule(compiler):
    err = _grammar_error(compiler, 'value: "a"\n')
    assert "start" in str(err)


def test_reduce_reduce_conflict_is_not_lalr(compiler):
    err = _grammar_error(compiler, 'start: a | b\na: "x"\nb: "x"\n')
    message = str(err)
    assert "not LALR(1)" in message
    assert "Reduce/Reduce" in message
    assert "<a : X>" in message and "<b : X>" in message, "the conflicting rules are named"


def test_grammar_text_must_be_text(compiler):
    """Bytes instead of text: a GrammarError that says so (not an AttributeError)."""
    with pytest.raises(GrammarError, match="str"):
        compiler.compile_grammar(b'start: "a"\n')


def test_unknown_builtin(compiler):
    with pytest.raises(GrammarError, match="json"):
        compiler.compile_builtin("yaml")


# --- terminals ---------------------------------------------------------------------------------
def test_invalid_regex_terminal(compiler):
    """An unterminated character class: Lark's ``re`` raises ``re.error``; structgen must turn
    it into a GrammarError that names the terminal (a bare ``re.error`` is not a StructgenError).
    """
    err = _grammar_error(compiler, 'start: WORD\nWORD: /[a-/\n')
    assert "WORD" in str(err)


@pytest.mark.parametrize(("regex", "what"), [
    ("a(?=b)", "lookaround"),
    ("a(?!b)", "lookaround"),
    ("(?<=a)b", "lookaround"),
    ("(a)\\1", "back-reference"),
    ("(?P<x>a)(?P=x)", "back-reference"),
])
def test_regex_a_dfa_cannot_express(compiler, regex, what):
    err = _grammar_error(compiler, f"start: TOKEN\nTOKEN: /{regex}/\n", RegexError)
    assert what in str(err)
    assert "TOKEN" in str(err), "the terminal is named"


@pytest.mark.parametrize("definition", ["/a*/", "/b?/", "/(ab)*/", '"a"?'])
def test_terminal_matching_the_empty_string(compiler, definition):
    err = _grammar_error(compiler, f'start: "x" EMPTYISH\nEMPTYISH: {definition}\n')
    message = str(err)
    assert "EMPTYISH" in message or "zero-width" in message or "empty" in message


def test_case_insensitive_literal_with_multichar_folding(compiler):
    """``"straße"i``: Lark compiles it (``re`` folds ß); structgen must compile it or raise a
    StructgenError, never let a ``TypeError`` from the regex layer escape."""
    try:
        compiled = compiler.compile_grammar('start: "straße"i\n')
    except StructgenError:
        return
    for text in ("straße", "STRAẞE", "Straße"):
        assert lark.Lark('start: "straße"i\n', parser="lalr").parse(text)  # the oracle
        m = GrammarMatcher(compiled)
        assert m.accept_string(text) and m.is_completed(), text


def test_huge_repeat_is_refused(compiler):
    _grammar_error(compiler, "start: MANY\nMANY: /a{100000}/\n", RegexError)


# --- token ids ---------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", [-1, VOCAB, VOCAB + 1, 10**12, -(2**63)])
def test_token_id_out_of_range(matcher, bad):
    with pytest.raises(TokenizerError):
        matcher.accept_token(bad)
    assert matcher.num_accepted_tokens == 0, "a bad id leaves the matcher unchanged"


@pytest.mark.parametrize("bad", [1.0, "1", None])
def test_token_id_not_an_integer(matcher, bad):
    with pytest.raises(TokenizerError):
        matcher.accept_token(bad)


def test_token_id_out_of_range_in_validate_tokens(matcher):
    with pytest.raises(TokenizerError):
        matcher.validate_tokens([ord("["), VOCAB])


def test_padding_ids_are_in_range_but_never_allowed(matcher):
    """Ids between the tokenizer's size and the logits width are valid input, never allowed."""
    for t in (EOS + 1, VOCAB - 1):
        assert matcher.accept_token(t) is False
    allowed = matcher.allowed_token_ids()
    assert allowed.max() < EOS
    assert matcher.accept_token(np.int64(ord("[")))  # numpy integers are ids too


def test_rejected_token_does_not_raise(matcher):
    assert matcher.accept_token(ord("]")) is False
    assert matcher.accept_token(EOS) is False  # EOS before a complete document
    assert matcher.num_accepted_tokens == 0


def test_from_byte_strings_rejects_bad_ids():
    with pytest.raises(TokenizerError):
        TokenizerInfo.from_byte_strings([b"a", b"b"], eos_token_ids=[2])
    with pytest.raises(TokenizerError):
        TokenizerInfo.from_byte_strings([b"a", b"b"], eos_token_ids=[1], vocab_size=1)


# --- bitmasks ----------------------------------------------------------------------------------
@pytest.mark.parametrize("bitmask", [
    np.zeros((1, 9), dtype=np.int32),  # 288 bits < 300 ids
    np.zeros(10, dtype=np.int32),  # 1-D
    np.zeros((1, 1, 10), dtype=np.int32),  # 3-D
    np.zeros((1, 10), dtype=np.int64),
    np.zeros((1, 10), dtype=np.float32),
    np.zeros((1, 10), dtype=np.uint8),
    np.zeros((1, 20), dtype=np.int32)[:, ::2],  # not contiguous
    [[0] * 10],  # not an array
], ids=["too-narrow", "1d", "3d", "int64", "float32", "uint8", "strided", "list"])
def test_bitmask_of_wrong_shape_or_dtype(matcher, bitmask):
    with pytest.raises(ConfigurationError):
        matcher.fill_next_token_bitmask(bitmask)


@pytest.mark.parametrize("index", [1, -1, 5])
def test_bitmask_row_index_out_of_range(matcher, index):
    with pytest.raises(ConfigurationError):
        matcher.fill_next_token_bitmask(allocate_token_bitmask(1, VOCAB), index)


def test_read_only_bitmask(matcher):
    bitmask = allocate_token_bitmask(1, VOCAB)
    bitmask.setflags(write=False)
    with pytest.raises(ConfigurationError):
        matcher.fill_next_token_bitmask(bitmask)


def test_wider_bitmask_works_or_is_a_configuration_error(matcher):
    """A row wider than ``ceil(vocab/32)`` words: either filled exactly like the right width
    (bits past the vocabulary clear), or refused with a ConfigurationError."""
    expected = allocate_token_bitmask(1, VOCAB)
    matcher.fill_next_token_bitmask(expected)
    wide = np.full((2, expected.shape[1] + 2), -1, dtype=np.int32)
    try:
        matcher.fill_next_token_bitmask(wide, 1)
    except ConfigurationError:
        return
    got = bitmask_to_ids(wide[1], wide.shape[1] * 32)
    assert got.tolist() == bitmask_to_ids(expected[0], VOCAB).tolist()


def test_allocate_token_bitmask_rejects_nonsense():
    for batch, vocab in [(0, 300), (1, 0), (-1, 300)]:
        with pytest.raises(ConfigurationError):
            allocate_token_bitmask(batch, vocab)


# --- matcher misuse ----------------------------------------------------------------------------
def test_rollback_more_than_accepted(matcher):
    assert matcher.accept_string("[1")
    with pytest.raises(ConfigurationError):
        matcher.rollback(2)
    with pytest.raises(ConfigurationError):
        matcher.rollback(-1)
    matcher.rollback(1)
    assert matcher.num_accepted_tokens == 0
    with pytest.raises(ConfigurationError):
        matcher.rollback(1)


def test_matcher_needs_a_compiled_grammar():
    with pytest.raises(ConfigurationError):
        GrammarMatcher('start: "a"')


def test_compiler_needs_a_tokenizer_info():
    with pytest.raises(ConfigurationError):
        GrammarCompiler(["a", "b"])
