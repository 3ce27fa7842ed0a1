"""The regex front end: the whole output must match the pattern (``re.fullmatch``).

Checked against Python's own ``re`` on random strings, through the real matcher (GPT-2
tokenizer: the grammar is byte-level, so any tokenizer will do), and for the clear errors on
what a finite automaton cannot express.
"""

from __future__ import annotations

import random
import re

import pytest
from conftest import require_tokenizer

from structgen.errors import RegexError
from structgen.regex_grammar import compile_regex, regex_to_lark

PATTERNS = [r"^[a-z]+$", r"a*", r"(ab|c)*d?", r"\d{2,4}-\w+", r"(?i)abc", r"x(?i:y)z",
            r"(a|)b*", r"colou?r", r"[^/\n]+/\"q\"", r"\s*", r"é+|ö?", r"^$",
            r"a{0,3}(b{0,2}|c)", r"\A(?:x|y)+\Z", r"a+?b"]
ALPHABET = "abcdxyzABC019-_/\"q \né ö"


@pytest.fixture(scope="module")
def compiler():
    from structgen import GrammarCompiler

    return GrammarCompiler(require_tokenizer("gpt2"))


def _reference(p: str) -> str:
    ref = p.replace(r"\A", "").replace(r"\Z", "")
    return ref[:-1] + r"\Z" if ref.endswith("$") else ref


@pytest.mark.parametrize("pattern", PATTERNS)
def test_matches_like_python_re(compiler, pattern):
    from structgen import GrammarMatcher

    compiled = compile_regex(compiler, pattern)
    ref = re.compile(_reference(pattern))
    rng = random.Random(pattern)
    for _ in range(600):
        s = "".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, 6)))
        m = GrammarMatcher(compiled)
        assert (m.accept_string(s) and m.is_completed()) == (ref.fullmatch(s) is not None), s


@pytest.mark.parametrize("pattern,what", [
    (r"(?=a)b", "lookaround"), (r"a(?!b)", "lookaround"), (r"(a)\1", "back-references"),
    (r"a^b", "anchor"), (r"\bfoo", "anchor"), ("a[", "invalid regex"),
    (r"(?(1)a|b)", "invalid regex"),
])
def test_clear_errors(pattern, what):
    with pytest.raises(RegexError, match=what):
        regex_to_lark(pattern)


def test_bounded_repeat_limit(compiler):
    with pytest.raises(RegexError, match="repeats"):
        compile_regex(compiler, r"a{2000}")


def test_empty_only_pattern_accepts_empty(compiler):
    from structgen import GrammarMatcher

    compiled = compile_regex(compiler, r"^$")
    assert GrammarMatcher(compiled).is_completed()
    assert not GrammarMatcher(compiled).accept_string("a")
