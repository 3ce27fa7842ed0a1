"""JSON Schema front end: handwritten schemas, errors, options, and the regex helpers.

Every compiled schema is checked in both directions with the real Llama-3.2 tokenizer: the
documents it must accept replay token by token (each token allowed by the filled mask, EOS
allowed at the end), and the documents it must reject are rejected. The corpus-wide checks live
in ``test_json_schema_corpus.py``.
"""

from __future__ import annotations

import json
import random
import re
import sys
import warnings
from decimal import Decimal

import pytest
from conftest import require_encoder, require_tokenizer

from structgen.errors import UnsupportedFeatureError
from structgen.json_schema import SchemaError, compile_json_schema, json_schema_to_lark
from structgen.json_schema_regex import (
    FORMATS,
    decimal_range,
    int_range,
    pattern_body,
    pattern_with_length,
    string_excluding,
)


@pytest.fixture(scope="module")
def compiler():
    from structgen import GrammarCompiler

    return GrammarCompiler(require_tokenizer("llama3"))


@pytest.fixture(scope="module")
def encode():
    return require_encoder("llama3")


def replay(compiled, ids, eos) -> bool:
    import numpy as np

    from structgen import GrammarMatcher, allocate_token_bitmask

    m = GrammarMatcher(compiled)
    bm = allocate_token_bitmask(1, compiled.vocab_size)
    for t in ids:
        m.fill_next_token_bitmask(bm, 0)
        if not (int(np.asarray(bm)[0, t >> 5]) >> (t & 31)) & 1:
            return False
        if not m.accept_token(t):
            return False
    m.fill_next_token_bitmask(bm, 0)
    return bool((int(np.asarray(bm)[0, eos >> 5]) >> (eos & 31)) & 1) and m.is_completed()


def accepts(compiled, text: str) -> bool:
    from structgen import GrammarMatcher

    m = GrammarMatcher(compiled)
    return m.accept_string(text) and m.is_completed()


def check(compiler, encode, schema, good, bad=(), *, pretty=True, **opts):
    compiled = compile_json_schema(compiler, schema, **opts)
    eos = compiler.tokenizer_info.eos_token_ids[0]
    for doc in good:
        texts = [json.dumps(doc, ensure_ascii=False, separators=(",", ":"))]
        if pretty:
            texts.append(json.dumps(doc, ensure_ascii=False, indent=2))
        for text in texts:
            assert replay(compiled, encode(text), eos), f"valid document rejected: {text}"
    for doc in bad:
        text = doc if isinstance(doc, str) else json.dumps(doc, ensure_ascii=False)
        assert not accepts(compiled, text), f"invalid document accepted: {text}"
    return compiled


# ----------------------------------------------------------------------------------------------
# Keywords, each with documents to accept and to reject
# ----------------------------------------------------------------------------------------------

CASES = [
    ("properties/required/additional",
     {"type": "object", "properties": {"a": {"type": "string"},
                                       "b": {"type": "integer", "minimum": 3}},
      "required": ["b"]},
     [{"b": 3}, {"a": "x", "b": 4}, {"a": "x", "b": 4, "c": [1, {"d": None}]}],
     [{"a": "x"}, {"b": 2}, {"b": 3, "a": "x"}, {"a": 1, "b": 3}]),
    ("additionalProperties false",
     {"type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": False},
     [{}, {"a": ""}], [{"b": 1}, {"a": "", "b": 1}]),
    ("additional schema excludes declared names",
     {"type": "object", "properties": {"ab": {"type": "integer"}},
      "additionalProperties": {"type": "string"}},
     [{"ab": 1, "a": "x", "abc": "y"}], [{"ab": 1, "ab": "x"}, {"x": 1}]),  # noqa: F601
    ("items/minItems/maxItems/number range",
     {"type": "array", "items": {"type": "number", "minimum": -1.5, "exclusiveMaximum": 2.25},
      "minItems": 1, "maxItems": 3},
     [[0], [-1.5, 2.2, 1]], [[], [2.25], [1, 1, 1, 1], [-1.6]]),
    ("prefixItems",
     {"type": "array", "prefixItems": [{"type": "string"}, {"type": "boolean"}],
      "items": False},
     [[], ["a"], ["a", True]], [[1], ["a", True, 1]]),
    ("draft 7 tuple items",
     {"$schema": "http://json-schema.org/draft-07/schema#", "type": "array",
      "items": [{"type": "integer"}], "additionalItems": {"type": "string"}},
     [[1], [1, "a", "b"]], [["a"], [1, 2]]),
    ("anyOf over types",
     {"anyOf": [{"type": "string", "pattern": "^[a-z]+$"}, {"type": "null"},
                {"type": "integer"}]},
     ["abc", None, 5], ["ABC", 1.5, "a1"]),
    ("oneOf with a discriminator",
     {"oneOf": [{"type": "object", "properties": {"kind": {"const": "a"},
                                                   "x": {"type": "integer"}},
                 "required": ["kind"]},
                {"type": "object", "properties": {"kind": {"const": "b"},
                                                   "y": {"type": "string"}},
                 "required": ["kind"]}]},
     [{"kind": "a", "x": 1}, {"kind": "b", "y": "s"}, {"kind": "b"}],
     [{"kind": "c"}, {"kind": "a", "x": "s"}, {"x": 1}]),
    ("recursive $ref",
     {"$defs": {"node": {"type": "object", "properties": {
         "v": {"type": "integer"}, "next": {"$ref": "#/$defs/node"}},
         "required": ["v"], "additionalProperties": False}}, "$ref": "#/$defs/node"},
     [{"v": 1}, {"v": 1, "next": {"v": 2, "next": {"v": 3}}}], [{"v": 1, "next": {}}]),
    ("allOf merged",
     {"allOf": [{"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]},
                {"properties": {"a": {"maximum": 5}, "b": {"type": "string"}}}]},
     [{"a": 5}, {"a": 1, "b": "x"}], [{"a": 6}, {"b": "x"}]),
    ("date-time", {"type": "string", "format": "date-time"},
     ["2024-02-29T12:00:00Z", "2023-01-31T23:59:59.123+05:30"],
     ['"2023-02-29T12:00:00Z"', '"2023-01-01 12:00:00Z"']),
    ("formats", {"type": "array", "prefixItems": [
        {"format": "uuid"}, {"format": "ipv4"}, {"format": "email"}, {"format": "date"}]},
     [["123e4567-e89b-12d3-a456-426614174000", "192.168.0.1", "a.b@example.com",
       "2020-12-31"]],
     [["x"], ["123e4567-e89b-12d3-a456-426614174000", "256.1.1.1"]]),
    ("minLength/maxLength count characters",
     {"type": "string", "minLength": 2, "maxLength": 4},
     ["ab", "a\"bc", "😀😀", "\n\t"], ["a", "abcde", '"\\u0041"']),
    ("pattern with maxLength", {"type": "string", "pattern": "^[a-z0-9-]+$", "maxLength": 5},
     ["a-1", "abcde"], ["abcdef", "", "A"]),
    ("enum of mixed values", {"enum": ["a", 1, None, {"x": [1, 2]}, 2.5]},
     ["a", 1, None, {"x": [1, 2]}, 2.5], ["b", 2, {"x": [1]}, 2.6]),
    ("min/maxProperties",
     {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"],
      "minProperties": 2, "maxProperties": 3},
     [{"a": 1, "b": 2}, {"a": 1, "c": 2, "d": 3}],
     [{"a": 1}, {"b": 1, "c": 2}, {"a": 1, "b": 1, "c": 1, "d": 1}]),
    ("minProperties met by declared names",
     {"type": "object", "properties": {"a": {}, "b": {}, "c": {}}, "minProperties": 2,
      "additionalProperties": False},
     [{"a": 1, "b": 2}, {"b": 1, "c": 2}], [{"a": 1}, {}]),
    ("integer multipleOf with range", {"type": "integer", "multipleOf": 5, "minimum": 0,
                                       "maximum": 100},
     [0, 5, 100], [3, 105, -5]),
    ("integer multipleOf unbounded", {"type": "integer", "multipleOf": 4}, [0, 8, -12, 100],
     [2, 10, -2]),
    ("integer with a zero fraction (draft 6 on)", {"type": "integer", "maximum": 10},
     [3, 10, 3.0], ["3.5", "11.0"]),
    ("dependentRequired",
     {"type": "object", "properties": {"a": {}, "b": {}}, "dependentRequired": {"a": ["b"]}},
     [{}, {"b": 1}, {"a": 1, "b": 2}], [{"a": 1}]),
    ("dependencies (draft 7: names and schemas)",
     {"$schema": "http://json-schema.org/draft-07/schema#", "type": "object",
      "properties": {"a": {"type": "integer"}, "b": {"type": "string"}, "c": {"type": "boolean"}},
      "dependencies": {"a": ["b"], "c": {"required": ["a"]}}},
     [{}, {"b": "x"}, {"a": 1, "b": "x"}, {"a": 1, "b": "x", "c": True}],
     [{"a": 1}, {"c": True}, {"b": "x", "c": False}]),
    ("dependentSchemas",
     {"type": "object", "properties": {"a": {}, "b": {}},
      "dependentSchemas": {"a": {"properties": {"b": {"const": "x"}}}}},
     [{"a": 1, "b": "x"}, {"b": "y"}, {"a": 2}], [{"a": 1, "b": "y"}]),
    ("not required",
     {"type": "object", "properties": {"a": {}, "b": {}}, "not": {"required": ["a", "b"]}},
     [{}, {"a": 1}, {"b": 1}], [{"a": 1, "b": 2}]),
    ("not required, any value",
     {"not": {"required": ["a"]}}, [{}, {"b": 1}], [{"a": 1}, 3, "x", None, [1]]),
    ("not anyOf required",
     {"type": "object", "properties": {"a": {}, "b": {}, "c": {}},
      "not": {"anyOf": [{"required": ["a"]}, {"required": ["b"]}]}},
     [{}, {"c": 1}], [{"a": 1}, {"b": 1, "c": 2}]),
    ("oneOf with a negated branch",
     {"type": "object", "properties": {"a": {"type": "integer"}, "b": {}},
      "oneOf": [{"required": ["a"]}, {"not": {"required": ["a"]}, "required": ["b"]}]},
     [{"a": 1}, {"b": 2}, {"a": 1, "b": 2}], [{}]),
    ("allOf of two unions",
     {"type": "object", "properties": {"a": {}, "b": {}, "c": {}},
      "allOf": [{"anyOf": [{"required": ["a"]}, {"required": ["b"]}]},
                {"oneOf": [{"required": ["c"]}, {"not": {"required": ["c"]}, "required": ["a"]}]}]},
     [{"a": 1}, {"b": 1, "c": 1}, {"a": 1, "c": 1}], [{"b": 1}, {}, {"c": 1}]),
    ("long string lexed in pieces",
     {"type": "string", "minLength": 700, "maxLength": 900},
     ["a" * 700, "é" * 900, "ab\n" * 260 + "中"], ["a" * 699, "a" * 901, "é" * 901]),
    ("long string piece boundaries",
     {"type": "object", "properties": {"d": {"type": "string", "maxLength": 1000}}},
     [{"d": "a" * n} for n in (0, 127, 128, 129, 256, 1000)] + [{"d": '"\\' * 300}],
     [{"d": "a" * 1001}]),
    ("long string without upper bound",
     {"type": "string", "minLength": 600}, ["x" * 600, "x" * 650, "x" * 1500],
     ["x" * 599, "é" * 10]),
    ("pattern with a length of another shape",
     {"type": "string", "pattern": "^(ab|cd)+$", "maxLength": 5}, ["ab", "abcd"],
     ["ababab", "abc"]),
    ("pattern beside a format",
     {"type": "string", "format": "date", "pattern": "^2024"}, ["2024-01-05"],
     ["2023-01-05", "2024-13-01"]),
    ("not enum: other values", {"not": {"enum": ["a", "b", None, True]}},
     ["c", "", 1, False, {"k": 1}, [1]], ["a", "b", None, True]),
    ("not const beside a length", {"type": "string", "maxLength": 3, "not": {"const": "abc"}},
     ["ab", "abd", ""], ["abc", "abcd"]),
    ("not pattern: strings that do not match", {"not": {"pattern": "^a"}},
     ["b", "", "ba"], ["a", "abc", 1, None]),
    ("oneOf of required lists: exactly one",
     {"type": "object", "properties": {"a": {}, "b": {}, "c": {}},
      "oneOf": [{"required": ["a"]}, {"required": ["b", "c"]}]},
     [{"a": 1}, {"b": 1, "c": 2}, {"a": 1, "b": 2}, {"a": 1, "c": 2}],
     [{}, {"a": 1, "b": 2, "c": 3}, {"b": 1}]),
    ("oneOf of discriminators",
     {"type": "object", "properties": {"kind": {"type": "string"}, "n": {"type": "integer"}},
      "oneOf": [{"properties": {"kind": {"const": "x"}}},
                {"properties": {"kind": {"const": "y"}}, "required": ["kind", "n"]}]},
     [{"kind": "x"}, {"kind": "x", "n": 1}, {"kind": "y", "n": 2}, {}, {"n": 1}],
     [{"kind": "y"}, {"kind": "z"}, {"kind": "x", "n": "1"}]),
    ("if/then/else on a discriminator",
     {"type": "object", "properties": {"kind": {"type": "string"}, "a": {"type": "integer"},
                                       "b": {"type": "string"}},
      "if": {"properties": {"kind": {"const": "x"}}}, "then": {"required": ["a"]},
      "else": {"required": ["b"]}},
     [{"kind": "x", "a": 1}, {"kind": "y", "b": "q"}, {"a": 1}, {"kind": "x", "a": 1, "b": "z"}],
     [{}, {"kind": "x"}, {"kind": "y"}, {"b": "z"}]),
    ("if on a type", {"if": {"type": "string"}, "then": {"minLength": 2}, "else": {"type": "integer"}},
     ["ab", 3], ["a", 1.5, None]),
    ("draft 4 integer has no fraction",
     {"$schema": "http://json-schema.org/draft-04/schema#", "type": "object",
      "properties": {"id": {"type": "integer"}, "n": {"type": "integer", "minimum": 1}}},
     [{"id": 12345, "n": 2}], ['{"id": 12345.0}', '{"n": 2.0}', '{"id": 1.5}']),
    ("draft 4 whole multipleOf of a number allows a zero fraction",
     {"$schema": "http://json-schema.org/draft-04/schema#", "type": "number", "multipleOf": 1,
      "maximum": 100}, [3, 3.0, 100.0], [3.5, 101.0]),
    ("patternProperties", {"type": "object", "patternProperties": {
        "^x-": {"type": "integer"}, "^y-": {"type": "string"}}, "additionalProperties": False},
     [{"x-a": 1, "y-b": "s"}], [{"x-a": "s"}, {"z": 1}]),
    ("overlapping patternProperties",
     {"type": "object", "properties": {"foo": {"type": "array", "maxItems": 3}},
      "patternProperties": {"f.o": {"minItems": 2}, "^a": {"type": "integer"},
                            "b$": {"maximum": 5}},
      "additionalProperties": {"type": "string"}},
     [{"foo": [1, 2], "fxo": [1, 1], "ab": 5, "xb": 4, "z": "s"}, {"a": 2}],
     [{"foo": [1]}, {"fxo": [1]}, {"ab": 6}, {"a": 1.5}, {"xb": 6}, {"z": 1}]),
    ("patternProperties beside additional",
     {"type": "object", "properties": {"a": {"type": "integer"}},
      "patternProperties": {"^x-": {"type": "integer"}}},
     [{"a": 1, "x-b": 2, "y": "s"}], [{"a": 1, "x-b": "s"}]),
    ("not of a type", {"not": {"type": ["string", "object"]}}, [1, None, [1]], ["s", {}]),
    ("enum filtered by not", {"enum": [1, 2, 3, 4], "not": {"multipleOf": 2}}, [1, 3], [2, 4]),
    ("propertyNames", {"type": "object", "propertyNames": {"pattern": "^[a-z]+$"}},
     [{"ab": 1}], [{"Ab": 1}]),
    ("uniqueItems with maxItems 1", {"type": "array", "uniqueItems": True, "maxItems": 1},
     [[], [1]], [[1, 2]]),
    ("true", True, [1, "a", {"a": [1, None]}, [], {}], ["", "{"]),
]


@pytest.mark.parametrize("name,schema,good,bad", CASES, ids=[c[0] for c in CASES])
def test_keyword(compiler, encode, name, schema, good, bad):
    check(compiler, encode, schema, good, bad)


def test_whole_string_lookaheads_are_products():
    """``(?=A\\Z)(?!B\\Z)C`` (how pattern regions are written) means what ``re.fullmatch``
    means; other lookarounds stay errors."""
    import itertools

    from structgen.errors import RegexError
    from structgen.regex_dfa import regex_to_dfa

    for rx in [r"(?=a*\Z)aa", r"(?!b.*\Z)[ab]{0,3}", r"(?=.*x\Z)(?!xx\Z)[xy]*"]:
        dfa = regex_to_dfa(rx)
        for n in range(6):
            for chars in itertools.product("abxy", repeat=n):
                s = "".join(chars)
                assert dfa.matches(s.encode()) == bool(re.fullmatch(rx, s)), (rx, s)
    for rx in ["a(?=b)", "(?=a)b", "(?<=a)b", "x(?=a\\Z)a"]:
        with pytest.raises(RegexError):
            regex_to_dfa(rx)


@pytest.mark.parametrize("with_jsonschema", [True, False])
def test_property_names_filter_declared_names(compiler, monkeypatch, with_jsonschema):
    # without the jsonschema package the builder's own string language decides
    if not with_jsonschema:
        monkeypatch.setitem(sys.modules, "jsonschema", None)
    schema = {"type": "object", "properties": {"ab": {"type": "integer"}, "a": {"type": "integer"}},
              "propertyNames": {"maxLength": 1}, "additionalProperties": False}
    c = compile_json_schema(compiler, schema)
    assert accepts(c, '{"a":1}') and accepts(c, '{}')
    assert not accepts(c, '{"ab":1}') and not accepts(c, '{"b":1}')


def test_order_is_the_schemas(compiler, encode):
    schema = {"type": "object", "properties": {"a": {"type": "integer"},
                                               "b": {"type": "integer"}}}
    c = check(compiler, encode, schema, [{"a": 1, "b": 2}])
    assert not accepts(c, '{"b":2,"a":1}')


# ----------------------------------------------------------------------------------------------
# Errors name the keyword and the JSON pointer; lenient mode warns
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("schema,keyword,pointer", [
    ({"type": "array", "contains": {"type": "integer"}}, "contains", ""),
    ({"properties": {"a": {"type": "array", "uniqueItems": True}}}, "uniqueItems",
     "/properties/a"),
    ({"properties": {"a": {"not": {"minLength": 2}}}}, "not", "/properties/a/not"),
    ({"anyOf": [{"pattern": "a"}, {"pattern": "b"}], "allOf": [{"pattern": "c"}]}, "pattern",
     "/anyOf/0"),
    ({"type": "string", "maxLength": 10**6}, "maxLength", ""),
    # the product of a Unicode \w pattern and a length count is too large an automaton
    ({"properties": {"t": {"type": "string", "pattern": "^(\\w|/)+$", "maxLength": 255}}},
     "maxLength", "/properties/t"),
    ({"$defs": {"s": {"type": "string", "pattern": "(?=a)b"}}, "$ref": "#/$defs/s"},
     "pattern", "/$defs/s"),
    ({"oneOf": [{"type": "integer"}, {"type": "number"}]}, "oneOf", ""),
    ({"$ref": "http://example.com/other.json"}, "$ref", ""),
    ({"type": "number", "multipleOf": 0.01}, "multipleOf", ""),
    ({"type": "string", "format": "idn-email"}, "format", ""),
    ({"if": {"minLength": 2}, "then": {"pattern": "a"}}, "if", ""),
    # two undeclared keys could be the same key: {"x":1,"x":2} is one property, not two
    ({"properties": {"o": {"type": "object", "properties": {"a": {}}, "minProperties": 2}}},
     "minProperties", "/properties/o"),
    ({"type": "object", "patternProperties": {"^[a-f]$": {}}, "additionalProperties": False,
      "minProperties": 3, "required": ["a"]}, "minProperties", ""),
])
def test_unsupported_names_keyword_and_pointer(schema, keyword, pointer):
    with pytest.raises(UnsupportedFeatureError) as info:
        json_schema_to_lark(schema)
    err = info.value
    assert isinstance(err, SchemaError) and isinstance(err, ValueError)
    assert err.keyword == keyword and err.pointer == pointer
    assert f"'{keyword}'" in str(err) and (pointer or "/") in str(err)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        json_schema_to_lark(schema, lenient=True)
    assert any(keyword in str(w.message) for w in caught)


def test_unknown_nonstandard_format_is_an_annotation():
    assert json_schema_to_lark({"type": "string", "format": "int32"}) == \
        json_schema_to_lark({"type": "string"})


def test_unsatisfiable_schema_is_an_error():
    with pytest.raises(SchemaError):
        json_schema_to_lark({"type": "object", "required": ["a"], "additionalProperties": False})
    with pytest.raises(SchemaError):
        json_schema_to_lark({"type": "integer", "minimum": 5, "maximum": 4})


def test_bad_options():
    from structgen.errors import ConfigurationError

    with pytest.raises(ConfigurationError):
        json_schema_to_lark({}, whitespace="loose")
    with pytest.raises(ConfigurationError):
        json_schema_to_lark({}, max_whitespace=-1)
    with pytest.raises(ConfigurationError):
        json_schema_to_lark([1, 2])


# ----------------------------------------------------------------------------------------------
# Whitespace options
# ----------------------------------------------------------------------------------------------

def test_whitespace_is_bounded(compiler):
    c = compile_json_schema(compiler, {"type": "array"}, max_whitespace=4)
    assert accepts(c, "[    1 ,    2    ]")
    assert not accepts(c, "[     1]")
    assert not accepts(c, " [1]")


def test_compact_and_separators(compiler, encode):
    schema = {"type": "object", "properties": {"a": {"type": "array"}}}
    c = check(compiler, encode, schema, [{"a": [1, 2]}], pretty=False, whitespace="compact")
    assert not accepts(c, '{"a": [1, 2]}')
    c = compile_json_schema(compiler, schema, whitespace="compact", separators=(", ", ": "))
    assert accepts(c, '{"a": [1, 2]}') and not accepts(c, '{"a":[1,2]}')


def test_strict_forbids_undeclared(compiler):
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    assert accepts(compile_json_schema(compiler, schema), '{"a":1,"b":2}')
    assert not accepts(compile_json_schema(compiler, schema, strict=True), '{"a":1,"b":2}')


def test_indent_accepts_pretty_printing(compiler, encode):
    schema = {"type": "object", "properties": {"a": {"type": "object", "properties": {
        "b": {"type": "array"}}}}}
    doc = {"a": {"b": [[[[1]]]]}}
    check(compiler, encode, schema, [doc], indent=4)


# ----------------------------------------------------------------------------------------------
# The API: keyword-only options on the compiler, Grammar.from_json_schema
# ----------------------------------------------------------------------------------------------

def test_compiler_method_takes_keyword_options(compiler):
    import inspect

    from structgen import GrammarCompiler
    from structgen.json_schema import DEFAULT_MAX_WHITESPACE

    params = inspect.signature(GrammarCompiler.compile_json_schema).parameters
    for name in ("strict", "whitespace", "indent", "separators", "max_whitespace", "lenient"):
        assert params[name].kind is inspect.Parameter.KEYWORD_ONLY, name
    assert params["max_whitespace"].default == DEFAULT_MAX_WHITESPACE
    assert not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    c = compiler.compile_json_schema(schema, strict=True, whitespace="compact")
    assert accepts(c, '{"a":1}') and not accepts(c, '{"a": 1}') and not accepts(c, '{"b":1}')
    with pytest.raises(TypeError):
        compiler.compile_json_schema(schema, True)
    c = compiler.compile_json_schema({"type": "array", "contains": {"type": "integer"}},
                                     lenient=True)
    assert [k for k, _, _ in c.ignored_keywords] == ["contains"]


def test_grammar_from_json_schema(compiler):
    from structgen import Grammar

    schema = json.dumps({"type": "array", "items": {"enum": ["x", "y"]}, "maxItems": 2})
    g = Grammar.from_json_schema(schema, whitespace="compact")
    assert isinstance(g, Grammar)
    c = compiler.compile_grammar(g)
    assert accepts(c, '["x","y"]') and not accepts(c, '["x","y","x"]')
    with pytest.raises(UnsupportedFeatureError):
        Grammar.from_json_schema({"type": "array", "uniqueItems": True})


# ----------------------------------------------------------------------------------------------
# Regex helpers against brute force
# ----------------------------------------------------------------------------------------------

def test_int_range_brute_force():
    for lo, hi in [(0, None), (5, 17), (-13, 250), (None, -7), (None, None), (-1000, -3),
                   (99, 1001), (0, 0), (-5, 5)]:
        rx = re.compile(int_range(lo, hi))
        for x in range(-1300, 1300):
            want = (lo is None or x >= lo) and (hi is None or x <= hi)
            assert bool(rx.fullmatch(str(x))) == want, (lo, hi, x)
        assert not rx.fullmatch("-0") and not rx.fullmatch("01")


def test_decimal_range_brute_force():
    cands = set()
    for i in range(0, 30):
        for f in ["", "0", "5", "25", "05", "999", "001", "50", "1", "09", "2", "3"]:
            cands.add(f"{i}" + ("." + f if f else ""))
    cands |= {"-" + c for c in cands}
    for lo, ls, hi, hs in [(0, False, None, False), (0, True, None, False),
                           (1.5, False, None, False), (1.5, True, 2.25, True),
                           (-2.5, False, 3.05, True), (None, False, 0, True),
                           (None, False, -0.5, False), (0.25, False, 0.3, False),
                           (2, True, 2.5, False), (0.05, False, 0.5, True)]:
        rx = re.compile(decimal_range(lo, ls, hi, hs))
        for c in cands:
            v = Decimal(c)
            if c.startswith("-") and v == 0:
                continue
            want = (lo is None or (v > Decimal(str(lo)) if ls else v >= Decimal(str(lo)))) and \
                (hi is None or (v < Decimal(str(hi)) if hs else v <= Decimal(str(hi))))
            assert bool(rx.fullmatch(c)) == want, (lo, ls, hi, hs, c)


def _ecma(p: str) -> str:
    return re.sub(r"\$(?=\)?$)", r"\\Z", p).replace("$|", r"\Z|")


def test_pattern_translation_brute_force():
    rng = random.Random(1)
    alphabet = list("aZ09_-./\\\" \n\t\x01éxyz:@") + ["\u2000", "😀"]
    pats = [r"^[a-z]+$", r"abc", r"^\d{3}-\d{2}$", r"^[^\s]+$", r"\S", r"(?i)^[a-z]+$", r".",
            r"^[\w.-]+@[\w.-]+$", r"^$", r"^a|b$", r"[^a]", r"^[\x00-\x7f]*$", r"^\D+$",
            r"^[\s\S]{2}$", "^[\"\\\\/]+$", r"^a/b", r"(https?://)?x"]
    for p in pats:
        rx = re.compile('"' + pattern_body(p) + '"')
        for _ in range(1500):
            s = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 5)))
            want = re.search(_ecma(p), s) is not None
            assert bool(rx.fullmatch(json.dumps(s, ensure_ascii=False))) == want, (p, s)


def test_pattern_with_length():
    rng = random.Random(2)
    for p, lo, hi in [(r"^[a-z]+$", 2, 4), (r"^[0-9]{2}-.*$", 3, 6), (r"^ab", 3, 5),
                      (r"[a-z]{3}", 3, 3), (r"b", 0, 1), (r"^a.", 1, 2)]:
        body = pattern_with_length(p, lo, hi)
        assert body is not None, p
        rx = re.compile('"' + body + '"')
        for _ in range(1500):
            s = "".join(rng.choice("ab09z-\n") for _ in range(rng.randint(0, 8)))
            want = re.search(_ecma(p), s) is not None and lo <= len(s) <= hi
            assert bool(rx.fullmatch(json.dumps(s, ensure_ascii=False))) == want, (p, s)


def test_string_excluding_brute_force():
    rng = random.Random(3)
    for names in [["a", "ab", "x/y", ""], ["name", "nam", "type", "t"], ["a"], [""]]:
        rx = re.compile(string_excluding(names))
        pool = {"".join(rng.choice('abnmetyp/x"') for _ in range(rng.randint(0, 5)))
                for _ in range(2000)} | set(names)
        for s in pool:
            assert bool(rx.fullmatch(json.dumps(s, ensure_ascii=False))) == (s not in names)


def _same_language(a, b) -> bool:
    """Whether two byte DFAs accept the same strings (a walk over their product)."""
    seen = {(0, 0)}
    stack = [(0, 0)]
    while stack:
        x, y = stack.pop()
        if (x >= 0 and bool(a.accepting[x])) != (y >= 0 and bool(b.accepting[y])):
            return False
        for byte in range(256):
            nx = int(a.transitions[x, byte]) if x >= 0 else -1
            ny = int(b.transitions[y, byte]) if y >= 0 else -1
            if (nx >= 0 or ny >= 0) and (nx, ny) not in seen:
                seen.add((nx, ny))
                stack.append((nx, ny))
    return True


def _has_dead_states(dfa) -> bool:
    """Whether some state reachable from the start reaches no accepting state (the mask
    engine takes every transition as a way on, so a direct builder must leave none)."""
    import numpy as np

    t = dfa.transitions
    reach, stack = {0}, [0]
    while stack:
        for nxt in set(t[stack.pop()].tolist()) - {-1} - reach:
            reach.add(nxt)
            stack.append(nxt)
    live = {int(s) for s in np.flatnonzero(dfa.accepting)}
    grew = True
    while grew:
        grew = False
        for s in reach - live:
            if live.intersection(t[s].tolist()):
                live.add(s)
                grew = True
    return bool(reach - live)


@pytest.mark.parametrize("names", [
    ["a"], [""], ["name", "nam", "type", "t", ""], ["a/b", "x//", "/"],
    ["q\"x", "back\\slash", "tab\tnew\nline", "\x01\x1f"], ["é", "éa", "中文", "😀x", "\u2028"],
    [f"k{i}" for i in range(40)],
])
def test_direct_exclusion_dfa_is_the_regex(names):
    from structgen.json_schema_dfa import excluding_dfa
    from structgen.json_schema_regex import CANONICAL_UNIT, canonical_spellings
    from structgen.regex_dfa import _compile

    direct = excluding_dfa(CANONICAL_UNIT, tuple(sorted(set(names))), canonical_spellings)
    assert direct is not None
    assert _same_language(direct, _compile(string_excluding(names)))
    assert not _has_dead_states(direct)


@pytest.mark.parametrize("lo,hi", [(0, 0), (0, 3), (2, 2), (1, None), (3, None), (0, None)])
@pytest.mark.parametrize("opens,closes", [(True, True), (False, True), (True, False),
                                          (False, False)])
def test_direct_length_dfa_is_the_regex(lo, hi, opens, closes):
    from structgen.json_schema_dfa import length_dfa
    from structgen.json_schema_regex import ANY_UNIT
    from structgen.regex_dfa import _compile

    if not closes and lo == 0 and not opens:
        return  # the empty string: not a terminal
    rx = (('"' if opens else "") + f'{ANY_UNIT}{{{lo},{"" if hi is None else hi}}}'
          + ('"' if closes else ""))
    direct = length_dfa(ANY_UNIT, lo, hi, opens, closes)
    assert direct is not None
    assert _same_language(direct, _compile(rx))
    assert not _has_dead_states(direct)


@pytest.mark.parametrize("last", ["a", "é", "औ", "😀"])
def test_no_character_starts_past_max_length(compiler, last):
    # a string at its maxLength may only close: neither a backslash nor a UTF-8 lead byte
    # (a dead end that random walks hit) is allowed
    from structgen import GrammarMatcher

    c = compile_json_schema(compiler, {"type": "string", "maxLength": 2})
    m = GrammarMatcher(c)
    assert m.accept_string('"x' + last)
    token_bytes = compiler.tokenizer_info.token_bytes
    allowed = {bytes(token_bytes[t])[:1] for t in m.allowed_token_ids() if t < len(token_bytes)}
    assert allowed == {b'"'}


def test_lexer_uses_the_direct_builders(compiler):
    from structgen.regex_dfa import _DIRECT

    schema = {"type": "object", "properties": {"a/b": {"type": "string", "maxLength": 5}}}
    c = compile_json_schema(compiler, schema)
    direct = [t.name for t in c.grammar.terminals if t.regex in _DIRECT]
    assert len(direct) == 2, direct  # the other keys, and the string of at most 5 characters
    assert accepts(c, '{"a/b":"12345","c":2}')
    assert not accepts(c, '{"a/b":"123456"}') and not accepts(c, '{"a/b":"1","a\\/b":2}')


def test_format_regexes_agree_with_python():
    import datetime
    import ipaddress
    import uuid

    rx = {k: re.compile(v) for k, v in FORMATS.items()}
    for a in ["::", "::1", "1::", "1:2:3:4:5:6:7:8", "fe80::1:2", "1:2:3:4:5:6:7::"]:
        assert rx["ipv6"].fullmatch(a)
        ipaddress.IPv6Address(a)
    assert not rx["ipv6"].fullmatch("1::2::3")
    for a in ["0.0.0.0", "255.255.255.255", "10.0.0.1"]:
        assert rx["ipv4"].fullmatch(a)
        ipaddress.IPv4Address(a)
    assert not rx["ipv4"].fullmatch("01.0.0.0")
    day = datetime.date(2000, 1, 1)
    for _ in range(800):
        assert rx["date"].fullmatch(day.isoformat())
        day += datetime.timedelta(days=37)
    assert not rx["date"].fullmatch("2100-02-29") and rx["date"].fullmatch("2000-02-29")
    assert rx["uuid"].fullmatch(str(uuid.UUID(int=12345)))


def test_lark_unescape_is_larks():
    """The schema front end's copy of Lark's regex unescaping (it skips evaluating a Python
    literal per terminal) against Lark's own, on random escape-heavy texts."""
    from lark.load_grammar import eval_escaping

    from structgen.errors import GrammarError
    from structgen.json_schema import lark_unescape

    rng = random.Random(7)
    alphabet = ['\\', '"', "'", "n", "x", "u", "U", "a", "0", "f", "F", "/", "t", "r", "N", "é",
                "\n", "{", "2", "b"]
    for _ in range(20_000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 14)))
        try:
            expected = eval_escaping(text)
        except Exception:  # noqa: BLE001 - Lark raises several kinds for a bad escape
            with pytest.raises(GrammarError):
                lark_unescape(text)
            continue
        assert lark_unescape(text) == expected, text


def test_prune_keeps_what_derives_a_string():
    """The worklist pruning against the definition (a rule is productive when one of its
    alternatives uses only terminals and productive rules; iterate to a fixpoint)."""
    from structgen.json_schema import _prune

    def by_definition(rules):
        split = {n: [a.split() for a in dict.fromkeys(alts)] for n, alts in rules.items()}
        productive: set[str] = set()
        changed = True
        while changed:
            changed = False
            for n, alts in split.items():
                if n not in productive and any(
                        all(s not in split or s in productive for s in a) for a in alts):
                    productive.add(n)
                    changed = True
        return {n: [" ".join(a) for a in alts
                    if all(s not in split or s in productive for s in a)]
                for n, alts in split.items() if n in productive}

    rng = random.Random(3)
    for _ in range(2_000):
        names = [f"r{i}" for i in range(rng.randint(1, 8))]
        rules = {n: [" ".join(rng.choice(names + ["T", "U"]) for _ in range(rng.randint(0, 3)))
                     for _ in range(rng.randint(1, 3))] for n in names}
        assert _prune(rules) == by_definition(rules), rules
