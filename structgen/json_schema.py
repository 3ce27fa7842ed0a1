"""JSON Schema to a Lark grammar whose language is exactly the schema's (or an error).

``json_schema_to_lark(schema)`` writes an LALR(1) Lark grammar; ``compile_json_schema(compiler,
schema)`` compiles it for a tokenizer. Every assertion keyword is either enforced by the grammar
or reported with :class:`UnsupportedFeatureError` naming the keyword and its JSON pointer
(``lenient=True`` warns and ignores it instead). The support matrix is in
``SUPPORTED_KEYWORDS`` below, summed up in the README's JSON Schema section.

Output shape (what "exact" is relative to):

* Properties appear in schema order (``properties`` order, then ``required`` names that are not
  in ``properties``); optional ones may be left out; other keys (``additionalProperties``,
  ``patternProperties``) come after the declared ones. JSON Schema itself allows any order;
  generating in a fixed order is what the peers do and keeps the grammar small.
* Whitespace: ``whitespace="flexible"`` (default) allows up to ``max_whitespace`` characters of
  ``[ \\t\\n\\r]`` before and after each ``{ } [ ] , :`` (so pretty-printed and compact JSON both
  parse, and a model can never emit endless whitespace); ``"compact"`` allows none, or exactly
  the ``separators`` given (``(", ", ": ")`` like ``json.dumps``). No whitespace around the
  whole document.
* Spellings: see ``json_schema_regex``: strings whose value is constrained (``pattern``,
  ``format``, ``enum``/``const``, property names) use the canonical spelling of
  ``json.dumps(..., ensure_ascii=False)``; integers have no exponent (a zero fraction, ``1.0``,
  is allowed: JSON Schema counts it an integer from draft 6 on; drafts 3 and 4 do not); bounded
  numbers are written without exponent.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field

from .bnf_grammar import BnfTerminal, NotLalrError, grammar_from_bnf
from .errors import ConfigurationError, GrammarError
from .json_schema_dfa import dfa_of, register_for_lark, remember
from .json_schema_refs import (
    ASSERTIONS,
    TYPES,
    RefResolver,
    Reporter,
    SchemaError,
    UnsatisfiableSchemaError,
    canonical_key,
    escape_pointer,
    merge_schemas,
)
from .json_schema_regex import (
    ANY_STRING,
    ANY_UNIT,
    FORMATS,
    INTEGER,
    NUMBER,
    STANDARD_FORMATS,
    PatternError,
    canonical_string,
    decimal_range,
    int_range,
    json_literal,
    keys_in_region,
    pattern_body,
    pattern_length_bounds,
    pattern_with_length,
    re_literal,
    string_excluding,
)
from .regex_dfa import dfas_disjoint, regex_to_dfa

logger = logging.getLogger("structgen")

__all__ = ["SUPPORTED_KEYWORDS", "SchemaError", "compile_json_schema", "json_schema_grammar",
           "json_schema_to_lark"]

DEFAULT_MAX_WHITESPACE = 64  # json.dumps(indent=2) to depth 31 fits
MAX_RULES = 20_000
MAX_UNION_STATES = 2_000
MAX_ENUMERATED_INTEGERS = 2_000
MAX_OVERLAPPING_PATTERNS = 4  # patternProperties regions: 2**n of them
# A string of at most n characters needs about 21 n lexer states (escapes, UTF-8 bytes).
MAX_STRING_LENGTH = 512
# longer strings are lexed in pieces of this many characters (json_schema_dfa.length_dfa),
# up to this many pieces
LONG_STRING_PIECE = 128
MAX_LONG_STRING = 2048 * LONG_STRING_PIECE
_DEPENDENCY_KEYWORDS = ("dependencies", "dependentRequired", "dependentSchemas")
MAX_ONEOF_NEGATED = 8  # oneOf branches rewritten as "this one and none of the others"

SUPPORTED_KEYWORDS = {
    "type": "all types, also lists",
    "enum / const": "any JSON values (strings in canonical spelling)",
    "properties / required": "schema order; optional properties may be skipped",
    "additionalProperties": "true (spec default) / false / schema; strict=True forbids extras",
    "patternProperties": "exact, overlapping patterns included (up to 4 with different "
                         "schemas)",
    "propertyNames": "string schemas (pattern, length, enum, format)",
    "minProperties / maxProperties": "exact (counted in the grammar)",
    "items / prefixItems / additionalItems": "draft 7 tuple form and 2020-12 form",
    "minItems / maxItems": "exact",
    "minLength / maxLength": "exact up to 262,144 characters on a plain string (over 512 it "
                              "is lexed in pieces of 128); beside pattern or format as the "
                              "product of the two automata (reported when too large for the "
                              "lexer)",
    "pattern": "Python re syntax and ECMA \\p{...} general categories; lookaround and "
               "back-references reported",
    "format": "date-time, date, time, duration, email, hostname, ipv4, ipv6, uuid, uri, "
              "uri-reference, json-pointer, relative-json-pointer (also beside a pattern); "
              "non-standard formats are annotations",
    "minimum / maximum / exclusive*": "exact for integers and decimals",
    "multipleOf": "integers (exact); numbers with an integer multipleOf",
    "anyOf": "exact: type-wise union, objects and arrays merged state by state",
    "oneOf": "exact when the branches are provably disjoint, or when each can be negated "
             "(required lists, one-property discriminators, values, patterns, types): then "
             "'this branch and none of the others'; otherwise reported",
    "allOf": "merged; unions in it become one union over pairs of branches (up to 64)",
    "$ref / $defs / definitions": "in-document, recursion included",
    "not": "of a type set; of required lists, unions of them, or a double negation (all "
           "rewritten as schemas without 'not'); of a schema that accepts everything / nothing",
    "dependentRequired / dependentSchemas / dependencies": "as a union: the property absent, "
                                                         "or present with what it requires "
                                                         "(draft 7's dependencies under every "
                                                         "draft)",
    "uniqueItems": "when at most one item is allowed; otherwise reported",
    "if / then / else": "as (if and then) or (not if and else) when 'if' can be negated "
                        "(as for oneOf); otherwise reported",
    "contains / unevaluated*": "reported",
}


# ----------------------------------------------------------------------------------------------
# Public API
# ----------------------------------------------------------------------------------------------

def json_schema_to_lark(schema, *, strict: bool = False, whitespace: str = "flexible",
                        indent: int | None = None, separators: tuple[str, str] | None = None,
                        max_whitespace: int = DEFAULT_MAX_WHITESPACE,
                        lenient: bool = False) -> str:
    """Lark grammar text (LALR(1)) for the JSON documents ``schema`` accepts.

    ``schema`` is a dict, a bool, or JSON text. ``strict=True`` forbids properties that the
    schema does not declare (as xgrammar's strict mode). Raises
    :class:`~structgen.errors.UnsupportedFeatureError` (a :class:`SchemaError` with ``keyword``
    and ``pointer``) for anything it cannot enforce unless ``lenient=True``.
    """
    return _build(schema, strict=strict, whitespace=whitespace, indent=indent,
                  separators=separators, max_whitespace=max_whitespace, lenient=lenient).text


def json_schema_grammar(schema, *, strict: bool = False, whitespace: str = "flexible",
                        indent: int | None = None, separators: tuple[str, str] | None = None,
                        max_whitespace: int = DEFAULT_MAX_WHITESPACE, lenient: bool = False):
    """The :class:`~structgen.Grammar` (LALR tables built and checked) for ``schema``; what
    ``Grammar.from_json_schema`` returns. Same options and errors as
    :func:`json_schema_to_lark`; a grammar with LALR conflicts is reported as well."""
    built = _build(schema, strict=strict, whitespace=whitespace, indent=indent,
                   separators=separators, max_whitespace=max_whitespace, lenient=lenient)
    return _lalr_grammar(built, lenient)


def compile_json_schema(compiler, schema, *, strict: bool = False, whitespace: str = "flexible",
                        indent: int | None = None, separators: tuple[str, str] | None = None,
                        max_whitespace: int = DEFAULT_MAX_WHITESPACE, lenient: bool = False,
                        precompute: bool = False):
    """Compile ``schema`` with ``compiler`` (a :class:`~structgen.GrammarCompiler`)."""
    built = _build(schema, strict=strict, whitespace=whitespace, indent=indent,
                   separators=separators, max_whitespace=max_whitespace, lenient=lenient)
    grammar = _lalr_grammar(built, lenient)
    compiled = compiler.compile_grammar(grammar, precompute=precompute)
    compiled.ignored_keywords = tuple(built.ignored)
    return compiled


@dataclass
class BuiltGrammar:
    """The schema's grammar as Lark text and as the same rules and terminals, unparsed."""

    text: str
    ignored: list = field(default_factory=list)
    rule_pointers: dict = field(default_factory=dict)
    rules: dict = field(default_factory=dict)  # name -> alternatives (lists of names)
    terminals: list = field(default_factory=list)  # BnfTerminal, in definition order


def _build(schema, **opts) -> BuiltGrammar:
    if isinstance(schema, (str, bytes)):
        try:
            schema = json.loads(schema)
        except ValueError as exc:
            raise GrammarError(f"schema is not valid JSON: {exc}") from exc
    if not isinstance(schema, (dict, bool)):
        raise ConfigurationError(f"a JSON schema is a dict or a bool, got {type(schema).__name__}")
    if opts["whitespace"] not in ("flexible", "compact"):
        raise ConfigurationError("whitespace must be 'flexible' or 'compact'")
    mw = opts["max_whitespace"]
    if not isinstance(mw, int) or mw < 0 or mw > 1000:
        raise ConfigurationError("max_whitespace must be an int in 0..1000")
    if opts["indent"] is not None:
        if not isinstance(opts["indent"], int) or opts["indent"] < 0:
            raise ConfigurationError("indent must be a non-negative int or None")
    b = _Builder(schema, **opts)
    return b.build()


def _lalr_grammar(built: BuiltGrammar, lenient: bool):
    """Build the LALR tables (:mod:`structgen.bnf_grammar`, without Lark); a conflict means
    the grammar is not exactly the schema's language, so it is reported (with the schema
    pointer of the rule involved)."""
    try:
        grammar, conflicts = grammar_from_bnf(built.rules, built.terminals, source=built.text)
    except NotLalrError as exc:
        ptr = _pointer_in(str(exc), built.rule_pointers)
        raise SchemaError("the schema's alternatives overlap in a way an LALR(1) grammar "
                          f"cannot express ({str(exc).splitlines()[0][:200]})",
                          keyword="anyOf", pointer=ptr) from exc
    if conflicts:
        rep = Reporter(lenient)
        rep.unsupported("anyOf", _pointer_in(" ".join(conflicts), built.rule_pointers),
                        "the schema's alternatives overlap in a way an LALR(1) grammar cannot "
                        "express exactly (" + " ".join(conflicts)[:200] + ")")
        built.ignored.extend(rep.ignored)
    return grammar


def _pointer_in(message: str, rule_pointers: dict) -> str:
    for name in re.findall(r"\b([a-z][a-z0-9_]*)\b", message):
        if name in rule_pointers:
            return rule_pointers[name]
    return ""


# ----------------------------------------------------------------------------------------------
# Specs of object and array shapes (one per schema branch)
# ----------------------------------------------------------------------------------------------

@dataclass
class _Prop:
    name: str
    schema: object
    ptr: str
    required: bool


@dataclass
class _ObjSpec:
    ptr: str
    props: list[_Prop]
    extras: list[tuple]  # (key regex, value schema, pointer, lexer priority)
    extra_fallback: tuple[object, str] | None  # schema for any undeclared key (union use)
    min: int
    max: int | None
    names: dict = field(default_factory=dict)
    # every name the schema declares, in the order the extras' key regex excludes them; the
    # ones not in ``props`` are forbidden (a property whose schema is false)
    declared: list = field(default_factory=list)

    def __post_init__(self) -> None:
        self.names = {p.name: i for i, p in enumerate(self.props)}
        self.req_after = [0] * (len(self.props) + 1)
        for i in range(len(self.props) - 1, -1, -1):
            self.req_after[i] = self.req_after[i + 1] + (1 if self.props[i].required else 0)


@dataclass
class _ArrSpec:
    ptr: str
    prefix: list[tuple[object, str]]
    rest: tuple[object, str] | None
    min: int
    max: int | None


@dataclass
class _Parts:
    """What one schema allows, split by JSON type."""

    null: bool = False
    booleans: set = field(default_factory=set)
    strings: list = field(default_factory=list)  # ("lit", spelling) | ("re", regex)
    numbers: list = field(default_factory=list)  # regex texts
    objects: list = field(default_factory=list)  # _ObjSpec
    arrays: list = field(default_factory=list)  # _ArrSpec

    def union(self, other: _Parts) -> None:
        self.null |= other.null
        self.booleans |= other.booleans
        self.strings += [s for s in other.strings if s not in self.strings]
        self.numbers += [n for n in other.numbers if n not in self.numbers]
        self.objects += other.objects
        self.arrays += other.arrays

    def types(self) -> set[str]:
        out = set()
        if self.null:
            out.add("null")
        if self.booleans:
            out.add("boolean")
        if self.strings:
            out.add("string")
        if self.numbers:
            out.add("number")
        if self.objects:
            out.add("object")
        if self.arrays:
            out.add("array")
        return out

    def is_empty(self) -> bool:
        return not self.types()


@dataclass
class _Exclusion:
    """Values a ``not`` takes away (``_Builder.values_not``)."""

    null: bool = False
    booleans: set = field(default_factory=set)
    strings: list = field(default_factory=list)
    pattern: str | None = None  # strings matching it are excluded
    only_strings: bool = False  # every non-string value is excluded too
    pointer: str = ""


# ----------------------------------------------------------------------------------------------
# The builder
# ----------------------------------------------------------------------------------------------

class _Builder:
    def __init__(self, schema, *, strict, whitespace, indent, separators, max_whitespace,
                 lenient) -> None:
        self.root = schema
        self.strict = strict
        self.report = Reporter(lenient)
        draft = schema.get("$schema", "") if isinstance(schema, dict) else ""
        self.old_draft = isinstance(draft, str) and any(
            f"draft-0{n}" in draft for n in (3, 4, 5, 6, 7))
        # drafts 3 and 4 define an integer as a number without a fraction; from draft 6 on,
        # any number with a zero fraction (1.0) is one
        self.zero_fraction_integers = not (isinstance(draft, str) and any(
            f"draft-0{n}" in draft for n in (3, 4)))
        self.refs = RefResolver(schema, ref_overrides_siblings=self.old_draft)
        self.rules: dict[str, list[str]] = {}
        self.rule_pointers: dict[str, str] = {}
        self.terminals: dict[str, str] = {}  # definition text -> name
        self.term_defs: list[str] = []
        self.bnf_terminals: dict[str, BnfTerminal] = {}  # name -> what the Lark text says
        self.value_memo: dict[str, str] = {}
        self.union_memo: dict = {}
        self.parts_memo: dict[str, _Parts] = {}
        self.disjoint_memo: dict[tuple[str, str], bool] = {}
        self.in_progress: set[str] = set()
        self.norm_depth = 0
        self.ckeys: dict[int, tuple] = {}
        self.n = 0
        self._setup_tokens(whitespace, indent, separators, max_whitespace)

    # -- tokens ---------------------------------------------------------------------------
    def _setup_tokens(self, whitespace, indent, separators, max_ws) -> None:
        if indent is not None:
            # indent means json.dumps-style pretty printing; the grammar keeps the flexible
            # whitespace bound large enough for it instead of fixing one layout
            whitespace = "flexible"
            max_ws = max(max_ws, 1 + indent * 32)
        if whitespace == "compact" or max_ws == 0:
            item, key = separators or (",", ":")
            self.LB, self.RB = self.lit("{"), self.lit("}")
            self.LS, self.RS = self.lit("["), self.lit("]")
            self.COMMA, self.COLON = self.lit(item), self.lit(key)
            return
        if separators is not None:
            raise ConfigurationError("separators are for whitespace='compact'")
        w = f"[ \\t\\n\\r]{{0,{max_ws}}}"
        self.LB = self.regex(f"\\{{{w}", "LBRACE")
        self.RB = self.regex(f"{w}\\}}", "RBRACE")
        self.LS = self.regex(f"\\[{w}", "LSQB")
        self.RS = self.regex(f"{w}\\]", "RSQB")
        self.COMMA = self.regex(f"{w},{w}", "COMMA")
        self.COLON = self.regex(f"{w}:{w}", "COLON")

    def lit(self, text: str, hint: str = "L") -> str:
        if text and all(c.isprintable() and c != "\\" for c in text):
            return self._term('"' + text.replace('"', '\\"') + '"', hint,
                              value=text, is_literal=True)
        return self.regex(re_literal(text), hint)

    def regex(self, rx: str, hint: str = "R", priority: int = 0) -> str:
        if rx in ("", "(?!)"):
            raise GrammarError("internal: empty terminal")
        text = _lark_regex(rx)
        # the lexer builds some of the regexes written here directly (json_schema_dfa); it
        # sees them as Lark hands them on, escapes evaluated
        value = lark_unescape(text)
        register_for_lark(rx, value)
        return self._term("/" + text + "/", hint, priority, value=value, is_literal=False)

    def _term(self, definition: str, hint: str, priority: int = 0, *, value: str,
              is_literal: bool) -> str:
        """The terminal for ``definition`` (Lark text), named on first use; ``value`` is the
        text Lark makes of it (the literal, or the regex with escapes evaluated)."""
        key = (definition, priority)
        name = self.terminals.get(key)
        if name is None:
            name = f"{hint}{len(self.terminals)}"
            self.terminals[key] = name
            prio = f".{priority}" if priority else ""
            self.term_defs.append(f"{name}{prio}: {definition}")
            self.bnf_terminals[name] = BnfTerminal(name, value, is_literal, priority)
        return name

    def new_rule(self, hint: str, ptr: str) -> str:
        self.n += 1
        if self.n > MAX_RULES:
            raise SchemaError(f"the schema needs over {MAX_RULES} grammar rules",
                              keyword=None, pointer=ptr)
        name = f"{hint}{self.n}"
        self.rule_pointers[name] = ptr
        return name

    # -- driver ---------------------------------------------------------------------------
    def build(self) -> BuiltGrammar:
        top = self.value(self.root, "")
        rules = _prune(self.rules)
        if top not in rules:
            raise UnsatisfiableSchemaError("no value satisfies this schema", pointer="")
        lines = [f"start: {top}"]
        used = set()
        for name, alts in rules.items():
            lines.append(f"{name}: " + "\n    | ".join(alts))
            for a in alts:
                used.update(a.split())
        lines.extend(d for d in self.term_defs if d.split(":", 1)[0].split(".")[0] in used)
        bnf_rules = {"start": [[top]]}
        bnf_rules.update((name, [a.split() for a in alts]) for name, alts in rules.items())
        return BuiltGrammar("\n".join(lines) + "\n", list(self.report.ignored),
                            self.rule_pointers, bnf_rules,
                            [t for name, t in self.bnf_terminals.items() if name in used])

    # -- schema normalization ---------------------------------------------------------------
    def normalize(self, schema, ptr: str):
        """Resolve ``$ref`` and merge ``allOf`` at the top of ``schema``: (schema, ptr)."""
        self.norm_depth += 1
        try:
            if self.norm_depth > 48:
                raise SchemaError("allOf/$ref nesting too deep (a reference cycle through "
                                  "allOf?)", keyword="allOf", pointer=ptr)
            return self._normalize(schema, ptr)
        finally:
            self.norm_depth -= 1

    def _normalize(self, schema, ptr: str):
        seen = set()
        depth = 0
        while isinstance(schema, dict):
            depth += 1
            if depth > 64:
                raise SchemaError("reference/allOf chain too deep", keyword="$ref", pointer=ptr)
            if "$ref" in schema:
                ref = schema["$ref"]
                if (ref, ptr) in seen:
                    raise UnsatisfiableSchemaError("reference cycle without any structure",
                                                   keyword="$ref", pointer=ptr)
                seen.add((ref, ptr))
                siblings = {k: v for k, v in schema.items() if k != "$ref"}
                try:
                    target, tptr = self.refs.resolve(ref, ptr, schema)
                except SchemaError as exc:
                    self.report.unsupported("$ref", ptr, str(exc).split(": ", 1)[-1])
                    target, tptr = True, ptr
                if self.old_draft or not any(k in ASSERTIONS for k in siblings):
                    schema, ptr = target, tptr
                    continue
                if target is False:
                    return False, tptr
                if target is True:
                    schema = siblings
                    continue
                # the target's own references resolve where the target is
                target, tptr = self.normalize(target, tptr)
                if target is False:
                    return False, tptr
                if target is True:
                    schema = siblings
                    continue
                schema = merge_schemas(siblings, target, ptr, self.report)
                continue
            if "allOf" in schema:
                subs = schema["allOf"]
                rest = {k: v for k, v in schema.items() if k != "allOf"}
                if not isinstance(subs, list):
                    raise SchemaError("must be a list", keyword="allOf", pointer=ptr)
                # the members first, then the siblings: their properties come first in the
                # merged order (what documents written against such schemas do)
                merged: dict = {}
                for i, sub in enumerate(subs):
                    sub, _ = self.normalize(sub, f"{ptr}/allOf/{i}")
                    if sub is False:
                        return False, ptr
                    if sub is True:
                        continue
                    merged = merge_schemas(merged, sub, ptr, self.report)
                schema = merge_schemas(merged, rest, ptr, self.report)
                continue
            break
        return schema, ptr

    # -- values -----------------------------------------------------------------------------
    def value(self, schema, ptr: str) -> str:
        """Rule name for a value of ``schema``."""
        key = self.ckey(schema)
        found = self.value_memo.get(key)
        if found is not None:
            return found
        name = self.new_rule("v", ptr)
        self.value_memo[key] = name
        parts = self.parts(schema, ptr)
        if parts.is_empty():
            raise UnsatisfiableSchemaError("no value satisfies this schema", pointer=ptr)
        self.rules[name] = self.emit_parts(parts, ptr)
        return name

    def parts(self, schema, ptr: str) -> _Parts:
        key = self.ckey(schema)
        found = self.parts_memo.get(key)
        if found is not None:
            return found
        if key in self.in_progress:
            # recursion: only emptiness and overlap checks get here; "anything" is the safe
            # answer for both (non-empty; overlaps everything)
            return self.any_parts(ptr)
        self.in_progress.add(key)
        try:
            out = self._parts(schema, ptr)
        finally:
            self.in_progress.discard(key)
        self.parts_memo[key] = out
        return out

    def ckey(self, schema) -> str:
        if not isinstance(schema, (dict, list)):
            return canonical_key(schema)
        found = self.ckeys.get(id(schema))
        if found is None or found[0] is not schema:
            found = (schema, canonical_key(schema))
            self.ckeys[id(schema)] = found
        return found[1]

    def _parts(self, schema, ptr: str) -> _Parts:  # noqa: C901
        schema, ptr = self.normalize(schema, ptr)
        if schema is True or schema == {}:
            return self.any_parts(ptr)
        if schema is False:
            return _Parts()
        if not isinstance(schema, dict):
            raise SchemaError("a schema must be an object or a boolean", pointer=ptr)
        if "enum" in schema or "const" in schema:
            # finitely many values: every other keyword is checked value by value
            return self.enum_parts(schema, ptr)
        if "if" in schema:
            rewritten = self.conditional_union(schema, ptr)
            if rewritten is not None:
                return rewritten
        conditions = self.dependency_unions(schema, ptr)
        if conditions:
            rest = {k: v for k, v in schema.items() if k not in _DEPENDENCY_KEYWORDS}
            return self.parts({"allOf": [rest, *conditions]}, ptr)
        for kw in ("anyOf", "oneOf"):
            if kw in schema:
                return self.union_parts(schema, kw, ptr)
        if "not" in schema:
            positive = self.negation(schema["not"], ptr + "/not")
            if positive is not None:
                rest = {k: v for k, v in schema.items() if k != "not"}
                return self.parts({"allOf": [rest, positive]}, ptr)
        self.check_unsupported(schema, ptr)
        types = self.allowed_types(schema, ptr)
        excluded = _Exclusion()
        if "not" in schema:
            excluded = self.values_not(schema["not"], ptr + "/not")
            if excluded is None:
                types = self.apply_not(schema["not"], types, ptr + "/not")
                excluded = _Exclusion()
            elif excluded.only_strings:
                types &= {"string"}
        out = _Parts()
        if "null" in types and not excluded.null:
            out.null = True
        if "boolean" in types:
            out.booleans = {True, False} - excluded.booleans
        if "string" in types:
            rx = self.string_regex(schema, ptr)
            if rx is not None and (excluded.strings or excluded.pattern is not None):
                rx = self.exclude_strings(rx, excluded, ptr)
            if isinstance(rx, tuple):
                out.strings.append(("long", rx))
            elif rx is not None:
                out.strings.append(("re", rx))
        if "number" in types or "integer" in types:
            rx = self.number_regex(schema, ptr, integer="number" not in types)
            if rx is not None:
                out.numbers.append(rx)
        if "object" in types:
            spec = self.object_spec(schema, ptr)
            if spec is not None:
                out.objects.append(spec)
        if "array" in types:
            spec = self.array_spec(schema, ptr)
            if spec is not None:
                out.arrays.append(spec)
        return out

    def any_parts(self, ptr: str) -> _Parts:
        out = _Parts(null=True, booleans={True, False})
        out.strings.append(("re", ANY_STRING))
        out.numbers.append(NUMBER)
        # property names use the canonical spelling, as everywhere (see the module docstring)
        out.objects.append(_ObjSpec(ptr, [], [(string_excluding([]), True, ptr, 0)], (True, ptr),
                                    0, None))
        out.arrays.append(_ArrSpec(ptr, [], (True, ptr), 0, None))
        return out

    def dependency_unions(self, schema: dict, ptr: str) -> list[dict]:
        """``dependencies`` / ``dependentRequired`` / ``dependentSchemas`` as unions: a
        property that others depend on is either absent or present with what it requires,
        ``{"anyOf": [{"properties": {name: false}}, {"required": [name, ...], ...}]}`` (the two
        branches are disjoint, so the object union keeps them exact)."""
        out = []
        for kw in _DEPENDENCY_KEYWORDS:
            deps = schema.get(kw)
            if deps is None:
                continue
            if not isinstance(deps, dict):
                raise SchemaError("must be an object", keyword=kw, pointer=ptr)
            for name, dep in deps.items():
                dptr = f"{ptr}/{kw}/{escape_pointer(name)}"
                if isinstance(dep, list):
                    if not all(isinstance(x, str) for x in dep):
                        raise SchemaError("must be a list of property names", keyword=kw,
                                          pointer=dptr)
                    present = {"required": list(dict.fromkeys([name, *dep]))}
                elif dep is True or dep == {}:
                    continue
                elif dep is False:
                    present = False
                elif isinstance(dep, dict):
                    present = {"allOf": [{"required": [name]}, dep]}
                else:
                    raise SchemaError("must be a schema or a list of names", keyword=kw,
                                      pointer=dptr)
                out.append({"anyOf": [{"properties": {name: False}}, present]})
        return out

    def conditional_union(self, schema: dict, ptr: str) -> _Parts | None:
        """``if``/``then``/``else`` as the union ``(if and then) or (not if and else)``, when
        the condition can be negated (``negation``, or values, patterns and types); None
        when it cannot (``check_unsupported`` then reports ``if``)."""
        rest = {k: v for k, v in schema.items() if k not in ("if", "then", "else")}
        if "then" not in schema and "else" not in schema:
            return self.parts(rest, ptr)  # a condition with no consequence asserts nothing
        cond = schema["if"]
        negated = self.negated(cond, ptr + "/if")
        if negated is None:
            return None
        union = {"anyOf": [{"allOf": [cond, schema.get("then", True)]},
                           {"allOf": [negated, schema.get("else", True)]}]}
        # an unsupported part of the union: report 'if', as without the rewrite
        return self.parts_if_supported({"allOf": [rest, union]}, ptr)

    def parts_if_supported(self, schema, ptr: str) -> _Parts | None:
        """``parts`` of a rewritten schema, or None when some keyword in it would be reported
        (the caller then reports its own keyword, as if it had not tried the rewrite)."""
        saved, self.report = self.report, Reporter(False)
        try:
            return self.parts(schema, ptr)
        except SchemaError:
            return None
        finally:
            self.report = saved

    def exclusive_branches(self, branches: list) -> list | None:
        """``oneOf`` as a union of disjoint branches: branch i holds and no other does,
        ``B_i and not B_j (j != i)``; None when some branch has no negation here."""
        if not 1 < len(branches) <= MAX_ONEOF_NEGATED:
            return None
        negated = [self.negated(b, "") for b in branches]
        if any(n is None for n in negated):
            return None
        return [{"allOf": [b, *(n for j, n in enumerate(negated) if j != i)]}
                for i, b in enumerate(branches)]

    def negated(self, sub, ptr: str):
        """A schema meaning ``{"not": sub}`` that structgen enforces: ``negation``'s rewrite,
        else ``{"not": sub}`` itself when ``_parts`` enforces that (values, patterns, types);
        None when neither."""
        positive = self.negation(sub, ptr)
        if positive is None and self.can_negate_natively(sub):
            return {"not": sub}
        return positive

    def can_negate_natively(self, sub) -> bool:
        """Whether ``_parts`` enforces ``{"not": sub}`` itself (values, patterns, types)."""
        sub, ptr = self.normalize(sub, "")
        if sub is True or sub is False or sub == {}:
            return True
        if not isinstance(sub, dict):
            return False
        if self.values_not(sub, ptr) is not None:
            return True
        asserts = {k for k in sub if k in ASSERTIONS}
        return asserts == {"type"}

    def negation(self, sub, ptr: str):
        """A schema without ``not`` that means ``{"not": sub}``, for the forms that have one
        (``required`` lists, unions and conjunctions of them, double negation); None for the
        others (``apply_not`` then handles type lists and reports the rest)."""
        sub, ptr = self.normalize(sub, ptr)  # allOf merged: required lists are joined
        if not isinstance(sub, dict):
            return None
        asserts = {k for k in sub if k in ASSERTIONS}
        if asserts == {"required"} and isinstance(sub["required"], list):
            names = list(dict.fromkeys(sub["required"]))
            if not names:
                return False  # every value has the empty list of properties
            # an object missing one of them: the first one missing is names[i]
            branches = [{"required": names[:i], "properties": {n: False}}
                        for i, n in enumerate(names)]
            return {"type": "object", **branches[0]} if len(branches) == 1 else \
                {"type": "object", "anyOf": branches}
        if asserts == {"anyOf"} and isinstance(sub["anyOf"], list):
            parts = [self.negation(b, f"{ptr}/anyOf/{i}") for i, b in enumerate(sub["anyOf"])]
            return None if any(p is None for p in parts) else {"allOf": parts}
        if asserts == {"not"}:
            return sub["not"]
        props = sub.get("properties")
        if asserts <= {"properties", "required", "type"} and isinstance(props, dict) and \
                len(props) == 1 and isinstance(sub.get("required", []), list):
            # a discriminator: one property with a schema (and maybe required)
            (name, psub), = props.items()
            required = set(sub.get("required", []))
            types = self.allowed_types(sub, ptr) if "type" in sub else None
            if not required <= {name} or (types is not None and types != {"object"}) or \
                    self.negated(psub, ptr) is None:
                return None
            wrong = {"required": [name], "properties": {name: {"not": psub}}}
            objects = {"anyOf": [{"properties": {name: False}}, wrong]} if required else wrong
            if types is None:  # the schema holds for every non-object: its negation for none
                return {"type": "object", **objects}
            return {"anyOf": [{"type": [t for t in TYPES if t not in ("object", "integer")]},
                              {"type": "object", **objects}]}
        return None

    def check_unsupported(self, schema: dict, ptr: str) -> None:
        for kw in ("unevaluatedItems", "unevaluatedProperties", "$dynamicRef", "$recursiveRef"):
            if kw in schema and schema[kw] is not True and schema[kw] != {}:
                self.report.unsupported(kw, ptr, "not enforced by structgen")
        if "if" in schema and ("then" in schema or "else" in schema):
            self.report.unsupported("if", ptr, "if/then/else is not enforced by structgen")
        if schema.get("uniqueItems") is True:
            mx = schema.get("maxItems")
            if not (isinstance(mx, int) and mx <= 1):
                self.report.unsupported("uniqueItems", ptr,
                                        "uniqueItems cannot be expressed by a grammar")

    def allowed_types(self, schema: dict, ptr: str) -> set[str]:
        t = schema.get("type")
        if t is None:
            return {"null", "boolean", "object", "array", "string", "number"}
        ts = [t] if isinstance(t, str) else t
        if not isinstance(ts, list) or not all(isinstance(x, str) for x in ts):
            raise SchemaError("must be a type name or a list of them", keyword="type",
                              pointer=ptr)
        bad = [x for x in ts if x not in TYPES]
        if bad:
            self.report.unsupported("type", ptr, f"unknown type {bad[0]!r}")
        out = {x for x in ts if x in TYPES}
        if "integer" in out and "number" in out:
            out.discard("integer")
        return out

    def values_not(self, sub, ptr: str) -> _Exclusion | None:
        """What ``{"not": sub}`` takes away when ``sub`` is a set of values (``enum`` /
        ``const`` of strings, null and booleans) or a ``pattern`` (then only strings that do
        not match it remain: every other value matches a pattern); None for other forms."""
        sub, sptr = self.normalize(sub, ptr)
        if not isinstance(sub, dict):
            return None
        asserts = {k for k in sub if k in ASSERTIONS}
        out = _Exclusion()
        if asserts in ({"enum"}, {"const"}):
            values = [sub["const"]] if "const" in sub else sub["enum"]
            if not isinstance(values, list) or not all(
                    v is None or isinstance(v, (str, bool)) for v in values):
                return None
            out.null = None in values
            out.booleans = {v for v in values if isinstance(v, bool)}
            out.strings = [v for v in values if isinstance(v, str)]
            return out
        if asserts in ({"pattern"}, {"pattern", "type"}) and isinstance(sub["pattern"], str):
            if "type" in sub and self.allowed_types(sub, sptr) != {"string"}:
                return None
            out.pattern = sub["pattern"]
            out.only_strings = "type" not in sub
            out.pointer = sptr
            return out
        return None

    def exclude_strings(self, rx, excluded: _Exclusion, ptr: str):
        """``rx`` (a string regex, or long-string bounds) without the excluded values and
        the strings matching the excluded pattern (in canonical spelling, as every string
        constrained by value)."""
        if isinstance(rx, tuple):
            self.report.unsupported("not", ptr + "/not", "excluding values from a string "
                                    f"longer than {MAX_STRING_LENGTH} characters")
            return rx
        if excluded.strings:
            rx = self.both(string_excluding(excluded.strings), rx, "not", ptr + "/not")
        if rx is not None and excluded.pattern is not None:
            try:
                body = pattern_body(excluded.pattern)
            except PatternError as exc:
                self.report.unsupported("pattern", excluded.pointer, f"{exc}")
                return rx
            rx = self.both('"' + body + '"', rx, "not", excluded.pointer, negate_a=True)
        return rx

    def apply_not(self, sub, types: set[str], ptr: str) -> set[str]:
        sub, ptr2 = self.normalize(sub, ptr)
        if sub is True or sub == {}:
            return set()
        if sub is False:
            return types
        if isinstance(sub, dict) and set(sub) - {"type", "description", "title"} == set() \
                and "type" in sub:
            nt = self.allowed_types(sub, ptr2)
            out = set(types)
            for t in nt:
                if t == "number":
                    out -= {"number", "integer"}
                elif t == "integer" and "number" in out:
                    self.report.unsupported("not", ptr, "'not integer' inside 'number'")
                else:
                    out.discard(t)
            return out
        self.report.unsupported("not", ptr, "'not' is enforced only for a list of types")
        return types

    # -- enum / const -----------------------------------------------------------------------
    def enum_parts(self, schema: dict, ptr: str) -> _Parts:
        if "const" in schema:
            values = [schema["const"]]
        else:
            values = schema["enum"]
            if not isinstance(values, list):
                raise SchemaError("must be a list", keyword="enum", pointer=ptr)
        others = {k for k in schema if k in ASSERTIONS} - {"enum", "const"}
        out = _Parts()
        check = self.value_checker(schema, others, ptr) if others else None
        for v in values:
            if check is not None and not check(v):
                continue
            self.add_const(out, v, ptr)
        return out

    def value_checker(self, schema: dict, keywords: set[str], ptr: str):
        """A predicate telling whether a value satisfies the sibling keywords of an enum."""
        if keywords == {"type"}:
            types = self.allowed_types(schema, ptr)
            return lambda v: _json_type(v) in types or (
                _json_type(v) == "integer" and "number" in types) or (
                _json_type(v) == "number" and "integer" in types and float(v).is_integer())
        try:
            from jsonschema import validators
        except ImportError:
            self.report.unsupported(sorted(keywords)[0], ptr,
                                    "checking enum values against sibling keywords needs the "
                                    "'jsonschema' package")
            return None
        sub = {k: v for k, v in schema.items() if k not in ("enum", "const")}
        root = self.root if isinstance(self.root, dict) else {}
        for k in ("$defs", "definitions"):
            if k in root and k not in sub:
                sub[k] = root[k]
        if "$schema" in root:
            sub["$schema"] = root["$schema"]
        try:
            validator = validators.validator_for(sub)(sub)
        except Exception as exc:  # noqa: BLE001
            self.report.unsupported(sorted(keywords)[0], ptr,
                                    f"cannot check enum values against sibling keywords: {exc}")
            return None

        def check(v) -> bool:
            try:
                return validator.is_valid(v)
            except Exception as exc:  # noqa: BLE001 - unresolvable refs and the like
                self.report.unsupported(sorted(keywords)[0], ptr,
                                        f"cannot check enum value {v!r}: {exc}")
                return True
        return check

    def add_const(self, out: _Parts, v, ptr: str) -> None:
        if v is None:
            out.null = True
        elif isinstance(v, bool):
            out.booleans.add(v)
        elif isinstance(v, str):
            lit = json_literal(v)
            if "/" in v:
                item = ("re", canonical_string(v))
            else:
                item = ("lit", lit)
            if item not in out.strings:
                out.strings.append(item)
        elif isinstance(v, (int, float)):
            if isinstance(v, float) and not v.is_integer():
                rx = re_literal(json.dumps(v))
            else:
                iv = int(v)
                rx = re_literal(str(iv)) + r"(?:\.0+)?"
                if iv == 0:
                    rx = r"-?0(?:\.0+)?"
            if rx not in out.numbers:
                out.numbers.append(rx)
        elif isinstance(v, dict):
            props = [_Prop(k, {"const": x}, ptr, True) for k, x in v.items()]
            out.objects.append(_ObjSpec(ptr, props, [], None, 0, None))
        elif isinstance(v, list):
            out.arrays.append(_ArrSpec(ptr, [({"const": x}, ptr) for x in v], None, len(v),
                                       len(v)))

    # -- strings ----------------------------------------------------------------------------
    def string_regex(self, schema: dict, ptr: str) -> str | tuple[int, int | None] | None:
        """Regex (quotes included) for the string values ``schema`` allows, None if none, or
        (for a plain string whose length bounds are over ``MAX_STRING_LENGTH``) the bounds."""
        lo = _count(schema, "minLength", ptr) or 0
        hi = _count(schema, "maxLength", ptr)
        if hi is not None and hi < lo:
            return None
        pattern = schema.get("pattern")
        fmt = schema.get("format")
        if isinstance(fmt, str) and fmt not in FORMATS:
            if fmt in STANDARD_FORMATS:
                self.report.unsupported("format", ptr, f"format {fmt!r} is not enforced")
            fmt = None
        elif not isinstance(fmt, str):
            fmt = None
        if pattern is not None and fmt is not None:
            # both: the format's strings that the pattern matches too
            if not isinstance(pattern, str):
                raise SchemaError("must be a string", keyword="pattern", pointer=ptr)
            try:
                body = pattern_body(pattern)
            except PatternError as exc:
                self.report.unsupported("pattern", ptr, f"{exc}")
                body = None
            formatted = self.string_regex({k: v for k, v in schema.items() if k != "pattern"},
                                          ptr)
            if body is None or formatted is None:
                return formatted
            return self.both('"' + body + '"', formatted, "pattern", ptr)
        if fmt is not None:
            pattern = "^(?:" + FORMATS[fmt] + ")$"
            kw = "format"
        else:
            kw = "pattern"
        if pattern is None:
            if lo == 0 and hi is None:
                return ANY_STRING
            if lo > MAX_STRING_LENGTH or (hi is not None and hi > MAX_STRING_LENGTH):
                # a long string: parsed in pieces (long_string_rule), counted by a chain of
                # rules whose length (and the parse tables, a row per chain state) is bounded
                lo, hi = self.capped_lengths(lo, hi, MAX_LONG_STRING, ptr, (
                    f"string lengths above {MAX_LONG_STRING:,} characters are not enforced "
                    "(the chain of pieces that counts them would be too long)"))
                if lo == 0 and hi is None:
                    return ANY_STRING
                return (lo, hi)
            return self.length_string(lo, hi, ptr)
        if not isinstance(pattern, str):
            raise SchemaError("must be a string", keyword="pattern", pointer=ptr)
        try:
            body = pattern_body(pattern)
        except PatternError as exc:
            self.report.unsupported(kw, ptr, f"{exc}")
            return self.length_string(lo, hi, ptr) if (lo or hi is not None) else ANY_STRING
        if lo == 0 and hi is None:
            return '"' + body + '"'
        bounds = pattern_length_bounds(pattern)
        if bounds is not None and bounds[0] >= lo and (hi is None or bounds[1] <= hi):
            return '"' + body + '"'
        try:
            with_length = pattern_with_length(pattern, lo, hi)
        except PatternError:  # the lengths leave no string the pattern matches
            return None
        if with_length is None:
            # the pattern's strings that the length counter allows (an automaton product)
            return self.both(self.length_string(lo, hi, ptr), '"' + body + '"',
                             "maxLength" if hi is not None else "minLength", ptr)
        return '"' + with_length + '"'

    def both(self, a: str, b: str, keyword: str, ptr: str, *,
             negate_a: bool = False) -> str | None:
        """Regex of the strings both ``a`` and ``b`` match (or, ``negate_a``, that ``b``
        matches and ``a`` does not; None when there are none), written with a whole-string
        lookahead; the lexer builds it as the product of the two automata
        (``json_schema_dfa.both_dfa``). A product too large for the lexer reports
        ``keyword`` (``a`` is then dropped: what ``lenient=True`` gets)."""
        if a == b and not negate_a:
            return a
        rx = f"(?{'!' if negate_a else '='}{a}\\Z){b}"
        remember(rx, "both", a, b, negate_a)
        try:
            return rx if dfa_of(rx).accepting.any() else None
        except GrammarError as exc:
            size = re.search(r"needs (\d+ byte states \(limit \d+\))", str(exc))
            self.report.unsupported(keyword, ptr, "together with the other string keywords "
                                    "this needs too large an automaton"
                                    + (f" ({size.group(1)})" if size else ""))
            return b

    def capped_lengths(self, lo: int, hi: int | None, limit: int, ptr: str,
                       why: str) -> tuple[int, int | None]:
        """``lo`` and ``hi`` with each bound over ``limit`` reported (and, for
        ``lenient=True``, dropped)."""
        if hi is not None and hi > limit:
            self.report.unsupported("maxLength", ptr, why)
            hi = None
        if lo > limit:
            self.report.unsupported("minLength", ptr, why)
            lo = 0
        return lo, hi

    def length_string(self, lo: int, hi: int | None, ptr: str) -> str:
        lo, hi = self.capped_lengths(lo, hi, MAX_STRING_LENGTH, ptr, (
            f"string length limits above {MAX_STRING_LENGTH} are not enforced (the lexer's "
            "automaton would be too large)"))
        if lo == 0 and hi is None:
            return ANY_STRING
        rx = f'"{ANY_UNIT}{{{lo},}}"' if hi is None else f'"{ANY_UNIT}{{{lo},{hi}}}"'
        remember(rx, "length", ANY_UNIT, lo, hi)
        return rx

    # -- numbers ----------------------------------------------------------------------------
    def number_regex(self, schema: dict, ptr: str, *, integer: bool) -> str | None:
        lo, lo_x, hi, hi_x = _bounds(schema, ptr)
        # a zero fraction (1.0) is an integer value; only drafts 3 and 4 deny that it is of
        # type integer (a whole multipleOf allows it in every draft)
        zero_fraction = self.zero_fraction_integers or not integer
        mult = schema.get("multipleOf")
        if mult is not None:
            if not isinstance(mult, (int, float)) or isinstance(mult, bool) or mult <= 0:
                raise SchemaError("must be a positive number", keyword="multipleOf", pointer=ptr)
            if float(mult).is_integer():
                integer = True
                mult = int(mult)
            else:
                self.report.unsupported("multipleOf", ptr, "non-integer multipleOf (floating "
                                        "point makes it ambiguous)")
                mult = None
        if integer:
            ilo = None if lo is None else _int_ceil(lo, lo_x)
            ihi = None if hi is None else _int_floor(hi, hi_x)
            if ilo is not None and ihi is not None and ilo > ihi:
                return None
            if mult is not None and mult != 1:
                rx = self.multiple_regex(mult, ilo, ihi, ptr)
            elif ilo is None and ihi is None:
                rx = INTEGER
            else:
                rx = int_range(ilo, ihi)
            if rx is None:
                return None
            return f"(?:{rx})(?:\\.0+)?" if zero_fraction else rx
        if lo is None and hi is None:
            return NUMBER
        return decimal_range(lo, lo_x, hi, hi_x)

    def multiple_regex(self, k: int, lo, hi, ptr: str) -> str | None:
        if lo is not None and hi is not None and (hi - lo) // k <= MAX_ENUMERATED_INTEGERS:
            first = -(-lo // k) * k
            vals = list(range(first, hi + 1, k))
            if not vals:
                return None
            return "(?:" + "|".join(re_literal(str(v)) for v in vals) + ")"
        j = 0
        m = k
        while m % 2 == 0 or m % 5 == 0:
            m //= 2 if m % 2 == 0 else 5
            j += 1
        if m != 1 or (lo is not None and lo > 0) or (hi is not None and hi < 0) or (
                lo is not None and hi is not None):
            self.report.unsupported("multipleOf", ptr, "multipleOf with this range is not "
                                    "expressible")
            return int_range(lo, hi) if lo is not None or hi is not None else INTEGER
        p = 10 ** j
        ends = sorted({str(x).zfill(j) for x in range(0, p, k)})
        small = [str(x) for x in range(k, p, k)]
        tail = "(?:" + "|".join(ends) + ")"
        mag = f"(?:0|{'|'.join(small) + '|' if small else ''}[1-9][0-9]*{tail})"
        if lo is not None and lo == 0:
            return mag
        if hi is not None and hi == 0:
            return f"(?:0|-{mag})"
        return f"-?{mag}"

    # -- objects ----------------------------------------------------------------------------
    def object_spec(self, schema: dict, ptr: str) -> _ObjSpec | None:
        props_in = schema.get("properties", {}) or {}
        if not isinstance(props_in, dict):
            raise SchemaError("must be an object", keyword="properties", pointer=ptr)
        required = schema.get("required", []) or []
        if not isinstance(required, list):
            required = []
        req = set(required)
        pat = schema.get("patternProperties", {}) or {}
        addl = schema.get("additionalProperties", True)
        if self.strict and "additionalProperties" not in schema:
            addl = False
        pnames = schema.get("propertyNames")
        props: list[_Prop] = []
        for name, sub in props_in.items():
            sptr = f"{ptr}/properties/{escape_pointer(name)}"
            for pp, psub in pat.items():
                if _search(pp, name):
                    sub = sub if psub is True else psub if sub is True else \
                        {"allOf": [sub, psub]}
            props.append(_Prop(name, sub, sptr, name in req))
        for name in required:
            if name in props_in:
                continue
            sub = None
            for pp, psub in pat.items():
                if _search(pp, name):
                    sub = psub if sub is None else {"allOf": [sub, psub]}
            if sub is None:
                sub = addl
            props.append(_Prop(name, sub, f"{ptr}/required", True))
        if pnames is not None and pnames is not True and pnames != {}:
            props = self.filter_property_names(props, pnames, ptr)
            if props is None:
                return None
        for p in props:
            if p.schema is False or self.parts(p.schema, p.ptr).is_empty():
                if p.required:
                    return None
                p.schema = False
        props = [p for p in props if p.schema is not False]
        lo = _count(schema, "minProperties", ptr) or 0
        hi = _count(schema, "maxProperties", ptr)
        extras: list = []
        declared = [p.name for p in props] + [n for n in props_in if n not in
                                              {p.name for p in props}]
        if pnames is not None and pnames is not True and pnames != {}:
            key_rx = None if addl is False else self.property_name_regex(pnames, declared, ptr)
            if key_rx is not None:
                extras.append((key_rx, addl, f"{ptr}/additionalProperties", 0))
            if pat:
                self.report.unsupported("patternProperties", ptr,
                                        "patternProperties together with propertyNames")
        elif pat:
            extras.extend(self.pattern_regions(pat, addl, declared, ptr))
        elif addl is not False:
            aptr = f"{ptr}/additionalProperties"
            if not self.parts(addl, aptr).is_empty():
                extras.append((string_excluding(declared), addl, aptr, 0))
        fallback = None
        if len(extras) == 1 and extras[0][0] == string_excluding(declared):
            fallback = (extras[0][1], extras[0][2])
        spec = _ObjSpec(ptr, props, extras, fallback, lo, hi, declared=declared)
        if spec.max is not None and spec.req_after[0] > spec.max:
            return None
        if extras and spec.min - spec.req_after[0] >= 2:
            # declared names appear once each, but a grammar cannot keep undeclared keys
            # apart: {"x":1,"x":2} would count as two properties and parse as one
            self.report.unsupported("minProperties", ptr, f"at least {spec.min} properties "
                                    f"with {spec.req_after[0]} required: meeting it takes "
                                    "undeclared keys, which a grammar cannot keep distinct")
        if not extras and spec.min > len(props):
            return None
        return spec

    def filter_property_names(self, props, pnames, ptr):
        out = []
        for p in props:
            if self.name_ok(p.name, pnames, ptr):
                out.append(p)
            elif p.required:
                return None
        return out

    def name_ok(self, name: str, pnames, ptr: str) -> bool:
        """Whether the declared name ``name`` satisfies ``propertyNames``: ``jsonschema``
        decides when it is installed, otherwise the string language built for
        ``propertyNames`` (which reports what it cannot enforce)."""
        try:
            from jsonschema import Draft202012Validator
        except ImportError:
            parts = self.parts(pnames, ptr + "/propertyNames")
            return bool(parts.strings) and _fullmatch(_strings_regex(parts.strings),
                                                      json_literal(name))
        try:
            sub, _ = self.normalize(pnames, ptr + "/propertyNames")
            return Draft202012Validator(sub).is_valid(name)
        except Exception as exc:  # noqa: BLE001 - whatever it is, the name is not checked
            self.report.unsupported("propertyNames", ptr, f"the declared name {name!r} could "
                                    f"not be checked against it ({type(exc).__name__})")
            return True

    def property_name_regex(self, pnames, declared, ptr: str) -> str | None:
        parts = self.parts(pnames, ptr + "/propertyNames")
        if not parts.strings:
            return None
        if len(parts.strings) == 1 and parts.strings[0][0] == "re" and \
                parts.strings[0][1] == ANY_STRING:
            return string_excluding(declared)
        # a key is one terminal: no pieces
        strings = self.without_long_strings(parts.strings, ptr + "/propertyNames",
                                            f"property names longer than {MAX_STRING_LENGTH} "
                                            "characters")
        rx = _strings_regex(strings)
        if any(_fullmatch(rx, json_literal(d)) for d in declared):
            self.report.unsupported("propertyNames", ptr, "declared properties also match "
                                    "propertyNames; other keys cannot exclude them")
        return rx

    def pattern_regions(self, pat: dict, addl, declared: list, ptr: str) -> list:
        """Undeclared keys of an object with ``patternProperties``, split by the patterns they
        match: keys matching the patterns of set T get all of their schemas, keys matching
        none get ``additionalProperties`` (declared names already carry the schemas of the
        patterns they match). Each region is one key terminal, written with whole-string
        lookaheads that the lexer builds as a product of automata."""
        addl_n = True if addl == {} else addl
        groups: dict[str, list] = {}  # patterns with the same schema act as one
        for pp, psub in pat.items():
            psub = True if psub == {} else psub
            pptr = f"{ptr}/patternProperties/{escape_pointer(pp)}"
            try:
                key = '"' + pattern_body(pp) + '"'
            except PatternError as exc:
                self.report.unsupported("patternProperties", pptr, str(exc))
                continue
            groups.setdefault(canonical_key(psub), [psub, pptr, []])[2].append(key)
        if all(k == canonical_key(addl_n) for k in groups):
            aptr = f"{ptr}/additionalProperties"
            if addl is False or self.parts(addl, aptr).is_empty():
                return []
            return [(string_excluding(declared), addl, aptr, 0)]
        glist = [(sch, gptr, keys[0] if len(keys) == 1 else
                  "(?:" + "|".join(f"(?:{k})" for k in keys) + ")")
                 for sch, gptr, keys in groups.values()]
        n = len(glist)
        overlap = [(i, j) for i in range(n) for j in range(i + 1, n)
                   if not self.regexes_disjoint([glist[i][2]], [glist[j][2]])]
        if not overlap:
            subsets = [(i,) for i in range(n)] + [()]
        elif n <= MAX_OVERLAPPING_PATTERNS:
            subsets = [tuple(i for i in range(n) if mask >> i & 1) for mask in range(1 << n)]
        else:
            self.report.unsupported("patternProperties", ptr, f"{n} overlapping patterns with "
                                    f"different schemas (at most {MAX_OVERLAPPING_PATTERNS})")
            subsets = [(i,) for i in range(n)] + [()]
        out = []
        for members in subsets:
            if members:
                sch = glist[members[0]][0] if len(members) == 1 else \
                    {"allOf": [glist[i][0] for i in members]}
                sptr = glist[members[0]][1] if len(members) == 1 else f"{ptr}/patternProperties"
            else:
                sch, sptr = addl, f"{ptr}/additionalProperties"
                if addl is False:
                    continue
            inside = [glist[i][2] for i in members]
            outside = [glist[i][2] for i in range(n) if i not in members and (
                overlap or not members)]
            rx = keys_in_region(declared, inside, outside) if inside or outside else \
                string_excluding(declared)
            if self.parts(sch, sptr).is_empty() or not self.regex_nonempty(rx):
                continue
            out.append((rx, sch, sptr, 0))
        return out

    def regex_nonempty(self, rx: str) -> bool:
        try:
            return bool(regex_to_dfa(rx).accepting.any())
        except GrammarError:
            return True

    # -- arrays -----------------------------------------------------------------------------
    def array_spec(self, schema: dict, ptr: str) -> _ArrSpec | None:
        prefix_raw = schema.get("prefixItems")
        items = schema.get("items", True)
        prefix: list = []
        rest: tuple | None
        if prefix_raw is not None:
            prefix = [(s, f"{ptr}/prefixItems/{i}") for i, s in enumerate(prefix_raw)]
            rest = (items, f"{ptr}/items")
        elif isinstance(items, list):
            prefix = [(s, f"{ptr}/items/{i}") for i, s in enumerate(items)]
            rest = (schema.get("additionalItems", True), f"{ptr}/additionalItems")
        else:
            rest = (items, f"{ptr}/items")
        lo = _count(schema, "minItems", ptr) or 0
        hi = _count(schema, "maxItems", ptr)
        if "contains" in schema:
            need = schema.get("minContains", 1)
            need = need if isinstance(need, int) else 1
            c = schema["contains"]
            if need > 0 and (c is False or c == {"not": {}}):
                return None
            if c is True or c == {}:
                lo = max(lo, need)
                if "maxContains" in schema:
                    hi = schema["maxContains"] if hi is None else min(hi, schema["maxContains"])
            elif need > 0 or "maxContains" in schema:
                self.report.unsupported("contains", ptr, "'contains' with a schema is not "
                                        "enforced by structgen")
        hi = hi if isinstance(hi, int) else None
        if rest[0] is False or self.parts(rest[0], rest[1]).is_empty():
            rest = None
        # a prefix item that admits nothing cuts the array there
        for i, (s, p) in enumerate(prefix):
            if s is False or self.parts(s, p).is_empty():
                prefix = prefix[:i]
                rest = None
                hi = i if hi is None else min(hi, i)
                break
        if rest is None:
            hi = len(prefix) if hi is None else min(hi, len(prefix))
        if hi is not None and hi < lo:
            return None
        if hi is not None and hi > 2000 or lo > 2000:
            self.report.unsupported("maxItems" if hi is not None else "minItems", ptr,
                                    "item counts above 2000 are not enforced")
            lo, hi = min(lo, 2000), None
        return _ArrSpec(ptr, prefix, rest, lo, hi)

    # -- unions -----------------------------------------------------------------------------
    def union_parts(self, schema: dict, kw: str, ptr: str) -> _Parts:
        branches = schema[kw]
        if not isinstance(branches, list) or not branches:
            raise SchemaError("must be a non-empty list", keyword=kw, pointer=ptr)
        siblings = {k: v for k, v in schema.items() if k != kw}
        merged = []
        raw = []
        for i, b in enumerate(branches):
            bptr = f"{ptr}/{kw}/{i}"
            b, bptr2 = self.normalize(b, bptr)
            if b is False:
                continue
            raw.append(b)
            if any(k in ASSERTIONS for k in siblings):
                bb = {} if b is True else b
                b = merge_schemas(siblings, bb, bptr, self.report)
            merged.append((b, bptr))
        if kw == "anyOf":  # the same branch twice adds nothing
            seen: set[str] = set()
            merged = [(b, p) for b, p in merged
                      if not (self.ckey(b) in seen or seen.add(self.ckey(b)))]
        out = _Parts()
        all_parts = [self.parts(b, p) for b, p in merged]
        if kw == "oneOf":
            overlaps = [(i, j) for i in range(len(all_parts)) for j in range(i + 1, len(all_parts))
                        if not self.parts_disjoint(all_parts[i], all_parts[j])]
            if overlaps:
                exclusive = self.exclusive_branches(raw)
                if exclusive is not None:
                    # a negation it needs may itself be unsupported: then oneOf is what is
                    # reported, as before the attempt
                    found = self.parts_if_supported({**siblings, "anyOf": exclusive}, ptr)
                    if found is not None:
                        return found
                i, j = overlaps[0]
                self.report.unsupported("oneOf", ptr, f"branches {i} and {j} may both match a "
                                        "value; oneOf is enforced only when its branches are "
                                        "disjoint or can be negated")
        for p in all_parts:
            out.union(p)
        return out

    def parts_disjoint(self, a: _Parts, b: _Parts, depth: int = 0) -> bool:
        common = a.types() & b.types()
        for t in common:
            if t == "null":
                return False
            if t == "boolean" and a.booleans & b.booleans:
                return False
            if t == "string" and not self.strings_disjoint(a.strings, b.strings):
                return False
            if t == "number" and not self.regexes_disjoint(a.numbers, b.numbers):
                return False
            if t == "object" and not all(self.objects_disjoint(x, y, depth) for x in a.objects
                                         for y in b.objects):
                return False
            if t == "array" and not all(self.arrays_disjoint(x, y, depth) for x in a.arrays
                                        for y in b.arrays):
                return False
        return True

    def strings_disjoint(self, xs, ys) -> bool:
        if all(k == "lit" for k, _ in xs) and all(k == "lit" for k, _ in ys):
            return not ({s for _, s in xs} & {s for _, s in ys})
        rx = [_string_part_regex(k, s) for k, s in xs]
        ry = [_string_part_regex(k, s) for k, s in ys]
        return self.regexes_disjoint(rx, ry)

    def regexes_disjoint(self, xs, ys) -> bool:
        rx = "|".join(f"(?:{x})" for x in xs)
        ry = "|".join(f"(?:{y})" for y in ys)
        key = (rx, ry)
        found = self.disjoint_memo.get(key)
        if found is None:
            try:
                found = dfas_disjoint(regex_to_dfa(rx), regex_to_dfa(ry))
            except GrammarError:  # cannot decide: assume they overlap
                found = False
            self.disjoint_memo[key] = found
        return found

    def objects_disjoint(self, x: _ObjSpec, y: _ObjSpec, depth: int) -> bool:
        if depth > 3:
            return False
        for a, b in ((x, y), (y, x)):
            for p in a.props:
                if not p.required:
                    continue
                j = b.names.get(p.name)
                if j is None:
                    if not any(_fullmatch(e[0], json_literal(p.name)) for e in b.extras):
                        return True
                    continue
                q = b.props[j]
                if self.parts_disjoint(self.parts(p.schema, p.ptr), self.parts(q.schema, q.ptr),
                                       depth + 1):
                    return True
        return False

    def arrays_disjoint(self, x: _ArrSpec, y: _ArrSpec, depth: int) -> bool:
        if depth > 3:
            return False
        if x.max is not None and x.max < y.min or y.max is not None and y.max < x.min:
            return True
        n = min(len(x.prefix), len(y.prefix))
        for i in range(n):
            if i < max(x.min, y.min) and self.parts_disjoint(
                    self.parts(*x.prefix[i]), self.parts(*y.prefix[i]), depth + 1):
                return True
        return False

    # -- emitting ---------------------------------------------------------------------------
    def emit_parts(self, parts: _Parts, ptr: str) -> list[str]:
        alts = []
        if parts.null:
            alts.append(self.lit("null"))
        for v in sorted(parts.booleans, reverse=True):
            alts.append(self.lit("true" if v else "false"))
        strings = parts.strings
        if any(k == "long" for k, _ in strings):
            if len(strings) == 1:
                alts.append(self.long_string_rule(*strings[0][1], ptr))
                strings = []
            else:  # beside other strings in one terminal: the bounds cannot be kept
                strings = self.without_long_strings(strings, ptr, "a string length limit above "
                                                    f"{MAX_STRING_LENGTH} in a union with other "
                                                    "strings")
        if strings:
            if all(k == "lit" for k, _ in strings):
                alts.extend(self.lit(s, "S") for _, s in strings)
            elif len(strings) == 1:
                alts.append(self.regex(strings[0][1], "S"))
            else:
                rx = "|".join(f"(?:{s})" if k == "re" else re_literal(s) for k, s in strings)
                alts.append(self.regex(rx, "S"))
        if parts.numbers:
            if len(parts.numbers) == 1:
                alts.append(self.regex(parts.numbers[0], "N"))
            else:
                alts.append(self.regex("|".join(f"(?:{n})" for n in parts.numbers), "N"))
        if parts.objects:
            alts.append(self.object_rule(parts.objects, ptr))
        if parts.arrays:
            alts.append(self.array_rule(parts.arrays, ptr))
        return alts

    def without_long_strings(self, strings: list, ptr: str, why: str) -> list:
        """``strings`` where a long string (pieces, see ``long_string_rule``) cannot be used:
        its bounds reported (``maxLength``), and dropped for ``lenient=True``."""
        if not any(k == "long" for k, _ in strings):
            return strings
        self.report.unsupported("maxLength", ptr, why)
        return [("re", ANY_STRING) if k == "long" else (k, v) for k, v in strings]

    def long_string_rule(self, lo: int, hi: int | None, ptr: str) -> str:
        """A string of ``lo`` to ``hi`` characters when that is too long for one automaton:
        lexed in pieces of exactly ``LONG_STRING_PIECE`` characters (the first with the
        opening quote) and a last piece of fewer with the closing quote, the pieces counted by
        a chain of rules. Between two pieces no other terminal can go on (a piece is full, or
        it met a quote), so the lexer splits every string the same way."""
        key = ("long", lo, hi)
        found = self.union_memo.get(key)
        if found is not None:
            return found[0]
        c = LONG_STRING_PIECE
        name = self.new_rule("s", ptr)
        self.union_memo[key] = (name, None)

        def piece(a: int, b: int | None, opens: bool, closes: bool) -> str:
            rx = (('"' if opens else "") + f"{ANY_UNIT}{{{a},{'' if b is None else b}}}"
                  + ('"' if closes else ""))
            remember(rx, "length", ANY_UNIT, a, b, opens, closes)
            return self.regex(rx, "S")

        alts = []
        if lo < c:  # the whole string in one piece
            alts.append(piece(lo, c - 1 if hi is None else min(hi, c - 1), True, True))
        # after m full pieces (m * c characters), either the last piece or one more full one;
        # without an upper bound the chain loops once the lower one is met
        m_loop = -(-lo // c) if hi is None else None
        chain: dict[int, str] = {}
        todo: list[int] = []

        def after(m: int) -> str:
            m = min(m, m_loop) if m_loop is not None else m
            if m not in chain:
                chain[m] = self.new_rule("s", ptr)
                todo.append(m)
            return chain[m]

        if hi is None or hi >= c:
            alts.append(f"{piece(c, c, True, False)} {after(1)}")
        self.rules[name] = alts
        while todo:
            m = todo.pop()
            a, b = max(0, lo - m * c), c - 1 if hi is None else min(c - 1, hi - m * c)
            body = [piece(a, b, False, True)] if a <= b else []
            if hi is None or (m + 1) * c <= hi:
                body.append(f"{piece(c, c, False, False)} {after(m + 1)}")
            self.rules[chain[m]] = body
        return name

    def object_rule(self, specs: list[_ObjSpec], ptr: str) -> str:
        if len(specs) == 1:
            return self.object_chain(specs[0])
        return self.object_union(specs, ptr)

    def object_chain(self, spec: _ObjSpec) -> str:
        key = ("chain", id(spec))
        found = self.union_memo.get(key)
        if found is not None:
            return found[0]
        name = self.new_rule("o", spec.ptr)
        self.union_memo[key] = (name, spec)
        counted = spec.min > 0 or spec.max is not None
        cap = max(spec.min, spec.max if spec.max is not None else 0)
        rules: dict = {}
        todo = []

        def rule(i: int, c: int, first: bool) -> str:
            k = (i, c if counted else 0, first)
            r = rules.get(k)
            if r is None:
                r = self.new_rule("o", spec.ptr)
                rules[k] = r
                todo.append((k, r))
            return r

        def bump(c: int) -> int:
            return min(c + 1, cap) if spec.max is None else c + 1

        self.rules[name] = [f"{self.LB} {rule(0, 0, True)}"]
        while todo:
            (i, c, first), r = todo.pop()
            sep = "" if first else self.COMMA + " "
            alts = []
            can_add = spec.max is None or c < spec.max
            if i < len(spec.props):
                p = spec.props[i]
                if can_add:
                    v = self.value(p.schema, p.ptr)
                    alts.append(f"{sep}{self.lit(json_literal(p.name), 'K')} {self.COLON} {v} "
                                f"{rule(i + 1, bump(c), False)}")
                if not p.required:
                    alts.append(rule(i + 1, c, first))
            else:
                if c >= spec.min:
                    alts.append(self.RB)
                if can_add:
                    for rx, sch, eptr, prio in spec.extras:
                        v = self.value(sch, eptr)
                        alts.append(f"{sep}{self.regex(rx, 'K', prio)} {self.COLON} {v} "
                                    f"{rule(i, bump(c), False)}")
            self.rules[r] = alts
        return name

    def object_union(self, specs: list[_ObjSpec], ptr: str) -> str:
        for s in specs:
            if any(e[0] != string_excluding(s.declared) for e in s.extras):
                self.report.unsupported("anyOf", ptr, "a union of object schemas where one "
                                        "uses patternProperties or propertyNames")
                return self.object_chain(specs[0])
        ukey = ("ounion", tuple(id(s) for s in specs))
        found = self.union_memo.get(ukey)
        if found is not None:
            return found[0]
        name = self.new_rule("u", ptr)
        self.union_memo[ukey] = (name, specs)
        all_names = list(dict.fromkeys(n for s in specs for n in [*s.names, *s.declared]))
        other_rx = string_excluding(all_names)
        states: dict = {}
        todo: list = []

        def norm_c(s: _ObjSpec, c: int) -> int:
            if s.max is None:
                return min(c, s.min)
            return c

        def state_rule(first: bool, members: frozenset) -> str:
            k = (first, members)
            r = states.get(k)
            if r is None:
                if len(states) >= MAX_UNION_STATES:
                    raise SchemaError("object union needs too many states", keyword="anyOf",
                                      pointer=ptr)
                r = self.new_rule("u", ptr)
                states[k] = r
                todo.append((k, r))
            return r

        start = frozenset((b, 0, 0) for b in range(len(specs)))
        self.rules[name] = [f"{self.LB} {state_rule(True, start)}"]
        while todo:
            (first, members), r = todo.pop()
            sep = "" if first else self.COMMA + " "
            alts = []
            if any(specs[b].req_after[i] == 0 and c >= specs[b].min for b, i, c in members):
                alts.append(self.RB)
            keys = [(self.lit(json_literal(n), "K"), n) for n in all_names] + [
                (self.regex(other_rx, "K"), None)]
            for tok, kname in keys:
                groups: dict[str, tuple] = {}
                for b, i, c in members:
                    s = specs[b]
                    if s.max is not None and c >= s.max:
                        continue
                    j = s.names.get(kname) if kname is not None else None
                    if j is not None:
                        if j < i or s.req_after[i] - s.req_after[j] > 0:
                            continue
                        p = s.props[j]
                        target, sch, sptr = (b, j + 1, norm_c(s, c + 1)), p.schema, p.ptr
                    else:
                        if s.req_after[i] > 0 or s.extra_fallback is None or (
                                kname is not None and kname in s.declared):
                            continue  # a name the branch declares false, or no extras
                        sch, sptr = s.extra_fallback
                        target = (b, len(s.props), norm_c(s, c + 1))
                    gk = canonical_key(True if sch == {} else sch)  # {} and true: any value
                    g = groups.setdefault(gk, (sch, sptr, set()))
                    g[2].add(target)
                if not groups:
                    continue
                glist = list(groups.values())
                if len(glist) > 1:
                    gp = [self.parts(sch, sp) for sch, sp, _ in glist]
                    for x in range(len(gp)):
                        for y in range(x + 1, len(gp)):
                            if not self.parts_disjoint(gp[x], gp[y]):
                                self.report.unsupported(
                                    "anyOf", ptr, f"branches give property {kname!r} "
                                    "overlapping schemas; the union is not expressible")
                for sch, sptr, targets in glist:
                    v = self.value(sch, sptr)
                    alts.append(f"{sep}{tok} {self.COLON} {v} "
                                f"{state_rule(False, frozenset(targets))}")
            self.rules[r] = alts
        return name

    def array_rule(self, specs: list[_ArrSpec], ptr: str) -> str:
        ukey = ("aunion", tuple(id(s) for s in specs))
        found = self.union_memo.get(ukey)
        if found is not None:
            return found[0]
        name = self.new_rule("a", ptr)
        self.union_memo[ukey] = (name, specs)
        states: dict = {}
        todo: list = []

        def norm(s: _ArrSpec, i: int) -> int:
            if s.max is None and s.rest is not None:
                return min(i, max(len(s.prefix), s.min))
            return i

        def state_rule(first: bool, members: frozenset) -> str:
            k = (first, members)
            r = states.get(k)
            if r is None:
                if len(states) >= MAX_UNION_STATES:
                    raise SchemaError("array needs too many states", keyword="items",
                                      pointer=ptr)
                r = self.new_rule("a", ptr)
                states[k] = r
                todo.append((k, r))
            return r

        start = frozenset((b, 0) for b in range(len(specs)))
        self.rules[name] = [f"{self.LS} {state_rule(True, start)}"]
        while todo:
            (first, members), r = todo.pop()
            sep = "" if first else self.COMMA + " "
            alts = []
            if any(i >= specs[b].min for b, i in members):
                alts.append(self.RS)
            groups: dict[str, tuple] = {}
            for b, i in members:
                s = specs[b]
                if s.max is not None and i >= s.max:
                    continue
                if i < len(s.prefix):
                    sch, sptr = s.prefix[i]
                elif s.rest is not None:
                    sch, sptr = s.rest
                else:
                    continue
                g = groups.setdefault(canonical_key(sch), (sch, sptr, set()))
                g[2].add((b, norm(s, i + 1)))
            glist = list(groups.values())
            if len(glist) > 1:
                gp = [self.parts(sch, sp) for sch, sp, _ in glist]
                for x in range(len(gp)):
                    for y in range(x + 1, len(gp)):
                        if not self.parts_disjoint(gp[x], gp[y]):
                            self.report.unsupported("anyOf", ptr, "array branches with "
                                                    "overlapping item schemas")
            for sch, sptr, targets in glist:
                v = self.value(sch, sptr)
                alts.append(f"{sep}{v} {state_rule(False, frozenset(targets))}")
            self.rules[r] = alts
        return name


# ----------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------

_LARK_ESCAPE = re.compile(r'\\\\"|\\.|/|\n', re.S)


_LARK_UNESCAPE = re.compile(r'\\\\"|\\(?:x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8}|.)',
                            re.S)
_LARK_CHAR_ESCAPES = {"n": "\n", "f": "\f", "t": "\t", "r": "\r"}


def lark_unescape(text: str) -> str:
    """What Lark makes of the text between the slashes of ``/regex/``
    (``lark.load_grammar.eval_escaping``, which builds a Python literal and evaluates it):
    ``\\n \\f \\t \\r \\xHH \\uHHHH \\UHHHHHHHH`` become the characters, ``\\"`` a quote, a
    doubled backslash before a quote one backslash, any other escape stays. Written out here
    because evaluating a literal per terminal was a tenth of a schema's compile;
    ``tests/test_json_schema.py`` compares the two."""
    if "\\" not in text:
        return text
    if (len(text) - len(text.rstrip("\\"))) % 2:
        raise GrammarError(f"regex {text!r} ends in the middle of an escape")

    def sub(m) -> str:
        t = m.group(0)
        if t == '\\\\"':
            return '\\"'
        c = t[1]
        if c in _LARK_CHAR_ESCAPES:
            return _LARK_CHAR_ESCAPES[c]
        if c in "xuU" and len(t) > 2:
            return chr(int(t[2:], 16))
        if c == '"':
            return '"'
        if c in "xuU":  # a malformed escape: Lark's literal fails to evaluate
            raise GrammarError(f"bad escape in regex {text!r}")
        return t

    return _LARK_UNESCAPE.sub(sub, text)


def _lark_regex(rx: str) -> str:
    """Regex text as it must appear between slashes in a Lark grammar: ``/`` escaped, and
    Lark's literal unescaping (which turns backslash-backslash-quote into an escaped quote)
    avoided by writing the quote as a class."""
    def sub(m) -> str:
        t = m.group(0)
        if t == '\\\\"':
            return '\\\\["]'
        if t == "/":
            return "\\/"
        if t == "\n":
            return "\\n"
        return t

    return _LARK_ESCAPE.sub(sub, rx)


def _strings_regex(strings: list[tuple[str, object]]) -> str:
    """One regex for a union's string parts (regexes, literals spelled as JSON, long
    strings)."""
    return "(?:" + "|".join(_string_part_regex(k, s) for k, s in strings) + ")"


def _string_part_regex(kind: str, value) -> str:
    if kind == "long":  # Python's re counts to any bound; an automaton would not be built
        lo, hi = value
        return f'"{ANY_UNIT}{{{lo},{"" if hi is None else hi}}}"'
    return value if kind == "re" else re_literal(value)


def _json_type(v) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, int):
        return "integer"
    if isinstance(v, float):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    return "object"


def _bounds(schema: dict, ptr: str):
    lo = schema.get("minimum")
    hi = schema.get("maximum")
    lo_x = hi_x = False
    emin = schema.get("exclusiveMinimum")
    emax = schema.get("exclusiveMaximum")
    if isinstance(emin, bool):
        lo_x = emin and lo is not None
    elif isinstance(emin, (int, float)):
        if lo is None or emin >= lo:
            lo, lo_x = emin, True
    if isinstance(emax, bool):
        hi_x = emax and hi is not None
    elif isinstance(emax, (int, float)):
        if hi is None or emax <= hi:
            hi, hi_x = emax, True
    for v, kw in ((lo, "minimum"), (hi, "maximum")):
        if v is not None and (not isinstance(v, (int, float)) or isinstance(v, bool)):
            raise SchemaError("must be a number", keyword=kw, pointer=ptr)
    return lo, lo_x, hi, hi_x


def _count(schema: dict, keyword: str, ptr: str) -> int | None:
    """A non-negative count keyword (``maxItems`` ...); integral floats such as 2.0 count."""
    v = schema.get(keyword)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0 or v != int(v):
        raise SchemaError("must be a non-negative integer", keyword=keyword, pointer=ptr)
    return int(v)


def _int_ceil(x, strict: bool) -> int:
    import math

    c = math.ceil(x)
    return c + 1 if strict and c == x else c


def _int_floor(x, strict: bool) -> int:
    import math

    f = math.floor(x)
    return f - 1 if strict and f == x else f


def _search(pattern: str, text: str) -> bool:
    try:
        return re.search(pattern, text) is not None
    except re.error:
        return False


def _fullmatch(rx: str, text: str) -> bool:
    try:
        return re.fullmatch(rx, text) is not None
    except re.error:
        return False


def _prune(rules: dict[str, list[str]]) -> dict[str, list[str]]:
    """Drop alternatives that use rules deriving no string (dead union or chain states).

    A worklist over the alternatives, each waiting on its rules not yet known productive:
    linear in the grammar (a pass-until-nothing-changes loop is quadratic on the long chains
    that counted repetitions and long strings build)."""
    split = {n: [a.split() for a in dict.fromkeys(alts)] for n, alts in rules.items()}
    waiting: dict[str, list[tuple[str, int]]] = {}  # rule -> alternatives that use it
    missing: dict[tuple[str, int], int] = {}
    productive: set[str] = set()
    todo: list[str] = []
    for n, alts in split.items():
        for k, a in enumerate(alts):
            uses = {sym for sym in a if sym in split}
            missing[(n, k)] = len(uses)
            for sym in uses:
                waiting.setdefault(sym, []).append((n, k))
            if not uses and n not in productive:
                productive.add(n)
                todo.append(n)
    while todo:
        for n, k in waiting.get(todo.pop(), ()):
            missing[(n, k)] -= 1
            if missing[(n, k)] == 0 and n not in productive:
                productive.add(n)
                todo.append(n)
    return {n: [" ".join(a) for a in alts if all(sym not in split or sym in productive
                                                 for sym in a)]
            for n, alts in split.items() if n in productive}
