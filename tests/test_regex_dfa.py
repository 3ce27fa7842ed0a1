"""Regexes to byte-level DFAs agree with Python's ``re`` (what Lark's lexer runs).

For each regex: ``dfa.matches(s.encode())`` equals ``re.fullmatch`` on random strings; the DFA
is alive exactly on the viable prefixes (every prefix of a match, byte by byte, is alive; a
string that no extension can make a match is dead); it never matches invalid UTF-8; and
regexes it cannot handle raise ``RegexError`` quickly instead of hanging.
"""

from __future__ import annotations

import functools
import re
import subprocess
import sys
import time
from collections import deque

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from structgen import RegexError, StructgenError
from structgen.regex_dfa import regex_to_dfa

JSON_STRING = r'"(?:[^"\\\x00-\x1f]|\\["\\\/bfnrt]|\\u[0-9a-fA-F]{4})*"'
JSON_NUMBER = r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?"

REGEXES = {
    "json-string": JSON_STRING,
    "json-number": JSON_NUMBER,
    "keywords-ignorecase": r"(?i:select|from|where)",
    "latin1-range": r"[à-ÿ]+",
    "negated-class": r'[^a-z"\n]+',
    "dot": r"a.b",
    "dot-all": r"(?s:a.b)",
    "dot-all-plus": r"(?s:.)+",
    "bounded-repeat": r"(?:ab){2,5}",
    "bounded-class": r"[0-9a-f]{2,4}x{3}",
    "alternation": r"cat|category|dog|do",
    "greek": r"[α-ω]+(?:-[Α-Ω]+)?",
    "cjk": "[\u4e00-\u9fff]{1,3}",  # literal characters, not \u escapes
    "astral": "[😀-🙏]+x?",
    "star-optional": r"(?:a|bc)*d?",
    "whitespace": r"[ \t\n\r]+",
    "escaped-meta": r"\(\.\*\+\?\[\]\{\}\|\\\)",
}

# Characters that exercise the regexes above: their own alphabets, near misses, case-folding
# specials (ſ folds to s, K (Kelvin) to k, ẞ to ß), every UTF-8 length, controls, newlines.
INTERESTING = (
    'abcdefghiklmnoprstuwxyzABCDEFSELCTROMWH0123456789"\\/ \t\n\r\x00\x1f\x7f.-+eE{}[]()*?|,:'
    "àáÿßẞ×÷ſKαβωΑΩς中文字丁鿿😀🙏🤖\u2028\ufeff\uffff\U0010ffff"
)
CHARS = st.one_of(st.sampled_from(INTERESTING),
                  st.characters(exclude_categories=("Cs",)))  # no surrogates: not UTF-8


def _no_surrogates(s: str) -> bool:
    return not any(0xD800 <= ord(c) <= 0xDFFF for c in s)


@functools.cache
def _matches_of(regex: str):
    """Strings ``re.fullmatch`` accepts, drawn from the regex itself (built once per regex:
    building ``from_regex`` for a class of 20,000 characters is slow)."""
    return st.from_regex(re.compile(regex), fullmatch=True).filter(_no_surrogates)


@functools.cache
def _candidates(regex: str):
    """Matches, near misses (a match with one edit) and unrelated text."""
    matches = _matches_of(regex)

    @st.composite
    def edited(draw):
        s = draw(matches)
        i = draw(st.integers(0, len(s)))
        op = draw(st.sampled_from(("insert", "delete", "replace", "append")))
        c = draw(CHARS)
        if op == "insert":
            return s[:i] + c + s[i:]
        if op == "delete":
            return s[:i] + s[i + 1:]
        if op == "replace":
            return s[:i] + c + s[i + 1:]
        return s + c

    return st.one_of(matches, edited(), st.text(CHARS, max_size=12))


FAST = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


@pytest.fixture(scope="module", params=sorted(REGEXES), ids=sorted(REGEXES))
def case(request):
    regex = REGEXES[request.param]
    return regex, regex_to_dfa(regex)


# --- agreement with re -------------------------------------------------------------------------
@FAST
@given(data=st.data())
def test_matches_like_re_fullmatch(case, data):
    regex, dfa = case
    s = data.draw(_candidates(regex), label="text")
    assert dfa.matches(s.encode("utf-8")) == bool(re.fullmatch(regex, s)), (regex, s)


@FAST
@given(data=st.data())
def test_every_byte_prefix_of_a_match_is_alive(case, data):
    regex, dfa = case
    s = data.draw(_matches_of(regex), label="match")
    encoded = s.encode("utf-8")
    for k in range(len(encoded) + 1):
        assert dfa.run(encoded[:k]) >= 0, (regex, s, encoded[:k])
    assert dfa.matches(encoded)


@FAST
@given(data=st.data())
def test_alive_exactly_when_some_extension_matches(case, data):
    """Dead iff no extension matches: ``regex``'s partial matching is the oracle (it answers
    "is this a prefix of a full match?" with ``re``'s syntax and semantics)."""
    regex_module = pytest.importorskip("regex")
    regex, dfa = case
    s = data.draw(_candidates(regex), label="text")
    alive = dfa.run(s.encode("utf-8")) >= 0
    extendable = regex_module.fullmatch(regex, s, partial=True) is not None
    assert alive == extendable, (regex, s)


def _shortest_completion(dfa, state: int) -> bytes | None:
    """Shortest byte string leading from ``state`` to an accepting state (BFS)."""
    seen = {state: b""}
    queue = deque([state])
    while queue:
        s = queue.popleft()
        if dfa.accepting[s]:
            return seen[s]
        for b in range(256):
            t = int(dfa.transitions[s, b])
            if t >= 0 and t not in seen:
                seen[t] = seen[s] + bytes([b])
                queue.append(t)
    return None


@FAST
@given(data=st.data())
def test_alive_states_have_a_completion_re_accepts(case, data):
    """Without any other oracle: from an alive state, the DFA's own shortest completion gives
    UTF-8 text that ``re.fullmatch`` accepts."""
    regex, dfa = case
    s = data.draw(_candidates(regex), label="text")
    encoded = s.encode("utf-8")
    state = dfa.run(encoded)
    if state < 0:
        return
    tail = _shortest_completion(dfa, state)
    assert tail is not None, f"alive state {state} after {s!r} cannot reach acceptance"
    full = (encoded + tail).decode("utf-8")
    assert re.fullmatch(regex, full), (regex, s, tail)


@pytest.mark.parametrize(("regex", "dead"), [
    (JSON_NUMBER, "01"), (JSON_NUMBER, "-a"), (JSON_NUMBER, "1.e"), (JSON_NUMBER, "1e+-"),
    (JSON_STRING, "a"), (JSON_STRING, '"\\x'), (JSON_STRING, '"ab"c'), (JSON_STRING, '"\\u12g'),
    (JSON_STRING, '"a\nb'), (r"cat|category|dog|do", "cab"), (r"(?:ab){2,5}", "ababababab" + "a"),
])
def test_strings_no_extension_can_match_are_dead(regex, dead):
    assert regex_to_dfa(regex).run(dead.encode("utf-8")) == -1


# --- specific semantics ------------------------------------------------------------------------
def test_dot_excludes_only_newline():
    dot, dot_all = regex_to_dfa(r"a.b"), regex_to_dfa(r"(?s:a.b)")
    for middle in "x\r\t\x00é中😀\u2028":
        assert dot.matches(f"a{middle}b".encode()), middle
        assert dot_all.matches(f"a{middle}b".encode()), middle
    assert not dot.matches(b"a\nb")
    assert dot_all.matches(b"a\nb")
    assert not dot.matches(b"ab") and not dot.matches("aéé".encode())


def test_bounded_repeats_count_exactly():
    dfa = regex_to_dfa(r"(?:ab){2,5}")
    for n in range(8):
        assert dfa.matches(b"ab" * n) == (2 <= n <= 5), n


def test_multibyte_ranges_cover_exactly_their_code_points():
    for regex, lo, hi in [("[à-ÿ]", 0xE0, 0xFF), ("[α-ω]", 0x3B1, 0x3C9),
                          ("[\u4e00-\u9fff]", 0x4E00, 0x9FFF), ("[😀-🙏]", 0x1F600, 0x1F64F)]:
        dfa = regex_to_dfa(regex)
        for cp in list(range(lo - 3, lo + 3)) + list(range(hi - 3, hi + 3)):
            assert dfa.matches(chr(cp).encode()) == (lo <= cp <= hi), (regex, hex(cp))


@pytest.mark.parametrize("regex", [r"\d", r"\w", r"\s", r"\D", r"\W", r"\S", r"[^\W\d_]"])
def test_unicode_classes_mean_what_re_means(regex):
    """``\\d \\w \\s`` have their Unicode meaning in ``re`` (and so in Lark): ``٣`` is a digit,
    ``é`` a word character, U+2028 a space. regex_dfa's docstring promises the same."""
    dfa = regex_to_dfa(regex)
    pattern = re.compile(regex)
    code_points = list(range(0x0, 0x3000)) + list(range(0xFF00, 0x10000, 3)) + list(
        range(0x10000, 0x110000, 997))
    wrong = [hex(cp) for cp in code_points if not 0xD800 <= cp <= 0xDFFF
             and dfa.matches(chr(cp).encode()) != bool(pattern.fullmatch(chr(cp)))]
    assert not wrong, f"{regex} disagrees with re on {wrong[:10]} ({len(wrong)} code points)"


@pytest.mark.parametrize(("regex", "text"), [
    (r"(?i:select)", "ſelect"),  # U+017F LATIN SMALL LETTER LONG S folds to s
    (r"(?i:k)", "\u212a"),  # KELVIN SIGN folds to k
    (r"(?i:straße)", "STRAẞE"),  # ẞ folds to ß
    (r"(?i:[a-z]+)", "ſK"),
])
def test_ignorecase_folds_like_re(regex, text):
    assert re.fullmatch(regex, text)
    assert regex_to_dfa(regex).matches(text.encode())


def test_unicode_escapes_in_the_pattern():
    """``\\uXXXX``, ``\\x..`` and ``\\N{...}`` escapes are Python regex syntax (a Lark terminal
    written ``/[\\u4e00-\\u9fff]/`` passes them through)."""
    for regex, yes, no in [(r"[\u4e00-\u9fff]+", "中文", "a"), (r"\x41\u00e9", "Aé", "Ae"),
                           (r"\N{DEGREE SIGN}C", "°C", "C")]:
        dfa = regex_to_dfa(regex)
        assert dfa.matches(yes.encode()) and re.fullmatch(regex, yes)
        assert not dfa.matches(no.encode())


# --- invalid UTF-8 -----------------------------------------------------------------------------
INVALID_UTF8 = [
    b"\xed\xa0\x80",  # surrogate U+D800
    b"\xed\xbf\xbf",  # surrogate U+DFFF
    b"\xc0\x80",  # overlong NUL
    b"\xc1\xbf",  # overlong
    b"\xe0\x80\x80",  # overlong 3-byte
    b"\xf0\x80\x80\x80",  # overlong 4-byte
    b"\xf4\x90\x80\x80",  # above U+10FFFF
    b"\xff", b"\xfe", b"\x80", b"\xbf",  # never valid / lone continuation
    b"\xe2\x82", b"\xf0\x9f\x98",  # truncated
    b"a\xe2\x82\xacb\xe2",
]


@pytest.mark.parametrize("data", INVALID_UTF8, ids=[d.hex() for d in INVALID_UTF8])
def test_invalid_utf8_never_matches(data):
    assert not regex_to_dfa(r"(?s:.)+").matches(data)
    assert not regex_to_dfa(JSON_STRING).matches(b'"' + data + b'"')
    assert not regex_to_dfa(r'[^"]+').matches(data)


@settings(max_examples=400, deadline=None)
@given(data=st.one_of(st.binary(max_size=12),
                      st.text(CHARS, max_size=6).map(lambda s: s.encode("utf-8")),
                      st.tuples(st.text(CHARS, max_size=4), st.binary(max_size=3)).map(
                          lambda p: p[0].encode("utf-8") + p[1])))
def test_dot_all_matches_exactly_nonempty_utf8(data):
    try:
        data.decode("utf-8")
        valid = True
    except UnicodeDecodeError:
        valid = False
    assert regex_to_dfa(r"(?s:.)+").matches(data) == (valid and len(data) > 0), data


# --- what a DFA cannot express, and blow-ups -----------------------------------------------------
@pytest.mark.parametrize("regex", [
    "a(?=b)", "a(?!b)", "(?<=a)b", "(?<!a)b", r"(a)\1", "(?P<x>a)(?P=x)", r"\bword", "^a$",
])
def test_unsupported_constructs_raise_regex_error(regex):
    with pytest.raises(RegexError):
        regex_to_dfa(regex)


@pytest.mark.parametrize("regex", ["[", "(?P<n>a", "[z-a]", "a{5,2}", "a**", "a{2}{3}", "(", ")"])
def test_regexes_re_rejects_raise_regex_error(regex):
    """Whatever Python's ``re`` refuses (Lark would refuse the terminal) is a RegexError, not a
    DFA for some other language (``a**`` must not silently match the empty string)."""
    with pytest.raises(re.error):
        re.compile(regex)
    with pytest.raises(RegexError):
        regex_to_dfa(regex)


def test_regex_errors_are_structgen_value_errors():
    with pytest.raises(RegexError) as info:
        regex_to_dfa("a(?=b)")
    assert isinstance(info.value, StructgenError) and isinstance(info.value, ValueError)


def test_huge_repeat_raises_quickly():
    t0 = time.perf_counter()
    with pytest.raises(RegexError):
        regex_to_dfa("a{100000}")
    assert time.perf_counter() - t0 < 2.0


def _compile_in_subprocess(regex: str, timeout: float) -> str:
    """Compile in a child process so a hang cannot hang the test run; returns "ok", "error"
    (RegexError) or "timeout"."""
    code = ("import sys\nfrom structgen import RegexError\n"
            "from structgen.regex_dfa import regex_to_dfa\n"
            "try:\n    regex_to_dfa(sys.argv[1])\nexcept RegexError:\n    print('error')\n"
            "else:\n    print('ok')\n")
    try:
        out = subprocess.run([sys.executable, "-c", code, regex], capture_output=True,
                             text=True, timeout=timeout, check=True)
    except subprocess.TimeoutExpired:
        return "timeout"
    return out.stdout.strip()


@pytest.mark.parametrize("regex", [
    "(?:a{1000}){1000}",  # each count within the bound, 10**6 states together
    "a{1000}",  # at the documented bound: 1,001 states, must not take half a minute
    '[^"]{0,1000}',  # a JSON-schema string with maxLength 1000
])
def test_big_automata_compile_or_refuse_within_seconds(regex):
    """DESIGN.md: a clear error, not a hang, for a regex whose DFA would blow up."""
    assert _compile_in_subprocess(regex, timeout=10.0) in ("ok", "error"), regex
