"""Post-lexers inside the matcher (structgen.postlex): Python-style indentation and Go-style
semicolon insertion, checked against Lark running the equivalent post-lexer.

The oracle is Lark itself: ``lark.indenter.PythonIndenter`` for indentation, and a six-line Lark
``PostLex`` (below) for semicolons; a text is a sentence iff Lark parses it followed by one
line break. On generated programs: every token of a valid program is in the mask when it is
taken; EOS is allowed exactly where Lark accepts; random walks under the masks never get stuck;
rollback and fork keep the indentation stack; and the native engine (which runs the semicolon
post-lexer through its lexer contexts) gives the same masks as the reference twin.
"""

from __future__ import annotations

import random
from functools import cache
from pathlib import Path

import lark
import pytest
from lark.indenter import PythonIndenter as LarkPythonIndenter
from lark.lark import PostLex

from structgen import GrammarCompiler, GrammarMatcher, TokenizerInfo
from structgen.errors import GrammarError
from structgen.postlex import NewlineSemicolons, PythonIndenter

HERE = Path(__file__).parent / "grammars"
INDENT_TEXT = (HERE / "indent.lark").read_text()
SEMI_TEXT = (HERE / "semicolons.lark").read_text()
SEMI_AFTER = ("NAME", "INC", "RETURN", "RBRACE", "RPAR")
INDENTER = PythonIndenter(open_brackets=("LPAR", "LSQB", "LBRACE"),
                          close_brackets=("RPAR", "RSQB", "RBRACE"))

# byte tokens plus multi-byte ones that span lexeme and line boundaries
EXTRA = [b"\n  ", b"\n    ", b"\n\t", b"  ", b"):\n", b"ab", b"# c\n", b"\n\n", b";\n", b")\n",
         b"++\n", b"return\n", b"// c\n", b"}\n", b"(a", b"=[", b"\n}", b"a:\n  "]
VOCAB = [bytes([b]) for b in range(256)] + EXTRA
EOS = len(VOCAB)


class _Semicolons(PostLex):
    """Go's rule, as a Lark post-lexer: a line break after one of SEMI_AFTER reaches the
    parser, any other line break is dropped."""

    always_accept = ("_NL",)

    def process(self, stream):
        last = None
        for tok in stream:
            if tok.type == "_NL":
                if last in SEMI_AFTER:
                    yield tok
                    last = "_NL"
                continue
            yield tok
            last = tok.type


@cache
def _lark(kind: str) -> lark.Lark:
    if kind == "indent":
        return lark.Lark(INDENT_TEXT, parser="lalr", postlex=LarkPythonIndenter())
    return lark.Lark(SEMI_TEXT, parser="lalr", postlex=_Semicolons())


def lark_accepts(kind: str, text: str) -> bool:
    try:
        _lark(kind).parse(text + "\n")
    except lark.exceptions.LarkError:
        return False
    except AssertionError:  # lark's Indenter asserts on a stray closing bracket
        return False
    return True


@cache
def compiled(kind: str):
    info = TokenizerInfo.from_byte_strings(VOCAB + [b"</s>"], eos_token_ids=[EOS])
    compiler = GrammarCompiler(info)
    if kind == "indent":
        return compiler.compile_grammar(INDENT_TEXT, postlex=INDENTER)
    return compiler.compile_grammar(SEMI_TEXT, postlex=NewlineSemicolons(after=SEMI_AFTER))


# --- program generators ------------------------------------------------------------------
def _expr(rng: random.Random, depth: int = 0) -> str:
    r = rng.random()
    if depth < 2 and r < 0.25:
        sep = rng.choice([", ", ",\n   ", ",\n", ", # note\n "])
        return "[" + sep.join(_expr(rng, depth + 1) for _ in range(rng.randint(0, 3))) + "]"
    if depth < 2 and r < 0.4:
        return "f(" + ",\n  ".join(_expr(rng, depth + 1) for _ in range(rng.randint(0, 2))) + ")"
    return rng.choice(["a", "bb", "x", "ab"])


def indent_program(rng: random.Random, indent: str = "", depth: int = 0) -> list[str]:
    lines = []
    for _ in range(rng.randint(1, 3)):
        if rng.random() < 0.15:
            lines.append(rng.choice(["", "   ", "# comment", indent + "# c"]))
        r = rng.random()
        if depth < 3 and r < 0.35:
            lines.append(f"{indent}{rng.choice(['if', 'loop', 'ab'])}:")
            lines.extend(indent_program(rng, indent + rng.choice(["  ", "    ", "\t"]), depth + 1))
        elif r < 0.65:
            lines.append(f"{indent}call({_expr(rng)})")
        else:
            lines.append(f"{indent}x = {_expr(rng)}")
    return lines


def semi_program(rng: random.Random, depth: int = 0) -> str:
    out = []
    for _ in range(rng.randint(1, 3)):
        r = rng.random()
        if depth < 2 and r < 0.25:
            stmt = "{" + rng.choice(["\n", " "]) + semi_program(rng, depth + 1) + "}"
        elif r < 0.45:
            stmt = rng.choice(["x++", "return", "return a +\n b", "ab++ // more"])
        else:
            stmt = "a = " + rng.choice(["b", "f(a,\n b)", "a + (b +\n b)", "a + (b)", "g()"])
        out.append(stmt)
        out.append(rng.choice(["\n", ";", "; ", "\n\n", ";\n"]))
    return "".join(out)


def program(kind: str, seed: int) -> str:
    rng = random.Random(seed)
    if kind == "indent":
        return "\n".join(indent_program(rng)) + rng.choice(["", "\n", "\n\n"])
    return rng.choice(["", "\n"]) + semi_program(rng)


def tokenize(text: bytes, rng: random.Random) -> list[int]:
    """A random segmentation of ``text`` into vocabulary tokens (multi-byte ones preferred)."""
    ids = []
    i = 0
    while i < len(text):
        fits = [k for k, tok in enumerate(EXTRA) if text.startswith(tok, i)]
        if fits and rng.random() < 0.7:
            k = rng.choice(fits)
            ids.append(256 + k)
            i += len(EXTRA[k])
        else:
            ids.append(text[i])
            i += 1
    return ids


# --- tests ----------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["indent", "semicolons"])
def test_generated_programs_are_valid_for_lark(kind):
    """The generators make real programs (guards the tests below against vacuous inputs)."""
    texts = [program(kind, s) for s in range(60)]
    assert all(lark_accepts(kind, t) for t in texts)
    assert any("\n" in t for t in texts)


@pytest.mark.parametrize("kind", ["indent", "semicolons"])
@pytest.mark.parametrize("seed", range(40))
def test_replay_never_meets_a_masked_token(kind, seed):
    text = program(kind, seed)
    rng = random.Random(seed)
    m = GrammarMatcher(compiled(kind))
    ids = tokenize(text.encode(), rng)
    for i, t in enumerate(ids):
        allowed = set(m.allowed_token_ids().tolist())
        assert t in allowed, (text, i)
        assert m.accept_token(t)
        if rng.random() < 0.3:  # EOS exactly where Lark accepts the text so far
            prefix = b"".join(VOCAB[k] for k in ids[: i + 1]).decode()
            assert m.is_completed() == lark_accepts(kind, prefix), repr(prefix)
    assert m.is_completed()
    assert EOS in m.allowed_token_ids().tolist()


@pytest.mark.parametrize("kind", ["indent", "semicolons"])
@pytest.mark.parametrize("seed", range(25))
def test_mutated_programs_agree_with_lark(kind, seed):
    """Deleting or duplicating a piece of a valid program: accepted iff Lark accepts."""
    text = program(kind, seed)
    rng = random.Random(1000 + seed)
    for _ in range(8):
        i = rng.randrange(len(text) + 1)
        j = min(len(text), i + rng.randint(1, 3))
        mutated = text[:i] + text[j:] if rng.random() < 0.5 else text[:j] + text[i:j] + text[j:]
        m = GrammarMatcher(compiled(kind))
        ours = m.accept_string(mutated) and m.is_completed()
        assert ours == lark_accepts(kind, mutated), repr(mutated)


@pytest.mark.parametrize("kind", ["indent", "semicolons"])
@pytest.mark.parametrize("seed", range(25))
def test_random_walks_under_masks_end_in_sentences(kind, seed):
    rng = random.Random(seed)
    m = GrammarMatcher(compiled(kind))
    text = b""
    for _ in range(40):
        allowed = m.allowed_token_ids().tolist()
        assert allowed, repr(text)  # never stuck: some token or EOS is always allowed
        try:
            sentence = lark_accepts(kind, text.decode())
        except UnicodeDecodeError:  # inside a comment, mid-character: cannot end here
            sentence = False
        assert (EOS in allowed) == sentence, repr(text)
        if EOS in allowed and rng.random() < 0.25:
            break
        choices = [t for t in allowed if t != EOS] or allowed
        t = rng.choice(choices)
        if t == EOS:
            break
        assert m.accept_token(t)
        text += VOCAB[t]


def test_dedent_to_an_unopened_column_is_masked():
    m = GrammarMatcher(compiled("indent"))
    assert m.accept_string("a:\n    b()\n  ")
    allowed = set(m.allowed_token_ids().tolist())
    assert ord("c") not in allowed  # column 2 was never opened
    assert ord(" ") in allowed and ord("\n") in allowed
    m2 = GrammarMatcher(compiled("indent"))
    assert m2.accept_string("a:\n    b()\n")
    assert ord("c") in m2.allowed_token_ids().tolist()


def test_brackets_make_line_breaks_whitespace():
    m = GrammarMatcher(compiled("indent"))
    assert m.accept_string("x = [a,\n")
    assert m.accept_string("b]\n")
    assert m.is_completed()
    m = GrammarMatcher(compiled("indent"))
    assert m.accept_string("x = a")
    assert not m.accept_string("\n   ]")


def test_rollback_and_fork_keep_the_indentation_stack():
    m = GrammarMatcher(compiled("indent"))
    for t in tokenize(b"a:\n  b:\n    c()\n", random.Random(0)):
        assert m.accept_token(t)
    f = m.fork()
    assert f.accept_string("d()\n")  # dedent to column 0 closes both blocks
    assert f.is_completed()
    assert not m.accept_string(" x()\n")  # column 1 was never opened
    assert m.accept_string("  x()\n")
    n = m.num_accepted_tokens
    m.rollback(1)
    assert m.num_accepted_tokens == n - 1
    assert m.accept_string("    y()")
    assert m.is_completed()


@pytest.mark.parametrize("kind", ["indent", "semicolons"])
@pytest.mark.parametrize("seed", range(20))
def test_native_masks_match_the_reference(kind, seed):
    """The native engine runs both post-lexers (the indenter off the parser stack) and must
    give the reference twin's masks, cached or walked."""
    text = program(kind, seed)
    native = GrammarMatcher(compiled(kind))
    ref = GrammarMatcher(compiled(kind), engine="reference")
    assert native.engine == "native"
    for t in tokenize(text.encode(), random.Random(seed)):
        assert native.allowed_token_ids().tolist() == ref.allowed_token_ids().tolist()
        assert native.allowed_token_ids(engine="reference").tolist() == \
            ref.allowed_token_ids().tolist()
        assert native.accept_token(t) and ref.accept_token(t)
    assert native.is_completed() and ref.is_completed()


def test_save_and_load_keep_the_post_lexer(tmp_path):
    for kind in ("indent", "semicolons"):
        cg = compiled(kind)
        cg.save(tmp_path / f"{kind}.npz")
        loaded = type(cg).load(tmp_path / f"{kind}.npz", cg.tokenizer_info)
        assert loaded.grammar.postlex == cg.grammar.postlex
        text = program(kind, 3)
        m = GrammarMatcher(loaded)
        assert m.accept_string(text) and m.is_completed()
        bad = GrammarMatcher(loaded)
        assert not (bad.accept_string(text + ("  )" if kind == "indent" else "}")) and
                    bad.is_completed())


def test_post_lexer_errors_name_what_is_wrong():
    info = TokenizerInfo.from_byte_strings(VOCAB)
    with pytest.raises(GrammarError, match="LBRACE, RBRACE"):
        GrammarCompiler(info).compile_grammar(
            INDENT_TEXT.replace('"{" [expr ("," expr)*] "}" |', ""), postlex=INDENTER)
    with pytest.raises(GrammarError, match="%declare"):
        GrammarCompiler(info).compile_grammar(
            INDENT_TEXT.replace("%declare _INDENT _DEDENT", '_INDENT: "<"\n%declare _DEDENT'),
            postlex=INDENTER)
    with pytest.raises(GrammarError, match="NOPE"):
        GrammarCompiler(info).compile_grammar(
            SEMI_TEXT, postlex=NewlineSemicolons(after=("NAME", "NOPE")))
    with pytest.raises(GrammarError, match="postlex must be"):
        GrammarCompiler(info).compile_grammar(SEMI_TEXT, postlex="go")
