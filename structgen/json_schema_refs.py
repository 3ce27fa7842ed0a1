"""Schema plumbing for the JSON Schema front end: errors with JSON pointers, ``$ref``
resolution, ``allOf`` merging, and the keyword tables (what is enforced, what is annotation).

Only in-document references are resolved (``#``, ``#/json/pointer``, ``#anchor``, and ``$id``
values of sub-schemas); anything else is reported.
"""

from __future__ import annotations

import json
import math
import warnings
from urllib.parse import unquote, urljoin

from .errors import UnsupportedFeatureError

# Keywords that assert something about an instance. Every other keyword is an annotation or
# unknown, and JSON Schema says to ignore those.
ASSERTIONS = frozenset({
    "type", "enum", "const", "multipleOf", "maximum", "exclusiveMaximum", "minimum",
    "exclusiveMinimum", "maxLength", "minLength", "pattern", "maxItems", "minItems",
    "uniqueItems", "maxContains", "minContains", "maxProperties", "minProperties", "required",
    "dependentRequired", "dependencies", "properties", "patternProperties",
    "additionalProperties", "propertyNames", "items", "prefixItems", "additionalItems",
    "contains", "unevaluatedItems", "unevaluatedProperties", "allOf", "anyOf", "oneOf", "not",
    "if", "then", "else", "dependentSchemas", "format", "$ref", "$dynamicRef", "$recursiveRef",
})
TYPES = ("null", "boolean", "object", "array", "string", "number", "integer")
# allOf of two unions becomes one union over the pairs of branches; beyond this many pairs the
# grammar would grow too large
MAX_UNION_PRODUCT = 64


class SchemaError(UnsupportedFeatureError):
    """A schema keyword structgen does not enforce (or a schema it cannot satisfy).

    ``keyword`` names the keyword and ``pointer`` is the JSON pointer of the schema object that
    holds it (``""`` is the root)."""

    def __init__(self, message: str, *, keyword: str | None = None, pointer: str = "") -> None:
        self.keyword = keyword
        self.pointer = pointer
        kw = f"'{keyword}'" if keyword else "schema"
        super().__init__(f"{kw} at {pointer or '/'}: {message}")


class UnsatisfiableSchemaError(SchemaError):
    """The schema (or a required part of it) accepts no value at all."""


def escape_pointer(token: str) -> str:
    return str(token).replace("~", "~0").replace("/", "~1")


class Reporter:
    """Raises or (``lenient``) warns about keywords that are not enforced."""

    def __init__(self, lenient: bool) -> None:
        self.lenient = lenient
        self.ignored: list[tuple[str, str, str]] = []

    def unsupported(self, keyword: str, pointer: str, why: str) -> None:
        """Report a keyword that cannot be enforced; returns only in lenient mode."""
        err = SchemaError(why, keyword=keyword, pointer=pointer)
        if not self.lenient:
            raise err
        self.ignored.append((keyword, pointer, why))
        warnings.warn(f"structgen ignores {err}", stacklevel=4)


class RefResolver:
    """Resolves in-document ``$ref`` values against the root schema.

    References are URIs resolved against the base URI in effect where they appear (the
    ``$id`` values on the way from the root, as RFC 3986 joins them); a target is a schema
    with that ``$id``, an ``$anchor`` (or a draft 7 ``$id: "#name"``) under that base, or a
    JSON pointer inside one of them. Only targets inside the document are found.
    """

    def __init__(self, root, *, ref_overrides_siblings: bool = False) -> None:
        self.root = root
        # draft 7 and earlier: beside $ref every keyword, $id included, is ignored
        self.ref_overrides_siblings = ref_overrides_siblings
        self.ids: dict[str, tuple[object, str]] = {"": (root, "")}
        self.legacy: dict[str, tuple[object, str]] = {}  # by raw $id value and '#anchor'
        self.where: dict[int, str] = {}  # id() of each schema object in the document -> pointer
        self._index(root, "", "")

    def _id_of(self, node: dict) -> str | None:
        if self.ref_overrides_siblings and "$ref" in node:
            return None
        for key in ("$id", "id"):
            v = node.get(key)
            if isinstance(v, str) and v:
                return v
        return None

    def _index(self, node, ptr: str, base: str) -> None:
        stack = [(node, ptr, base)]
        while stack:
            node, ptr, base = stack.pop()
            if isinstance(node, dict):
                self.where.setdefault(id(node), ptr)
                own = self._id_of(node)
                if own is not None:
                    if own.startswith("#") and not own.startswith("#/"):  # draft 7 anchor
                        self.ids.setdefault(_strip_empty_fragment(base) + own, (node, ptr))
                    else:
                        base = _join(base, own)
                        self.ids.setdefault(_strip_empty_fragment(base), (node, ptr))
                    self.legacy.setdefault(own, (node, ptr))
                    if "#" in own:
                        self.legacy.setdefault("#" + own.split("#", 1)[1], (node, ptr))
                anchor = node.get("$anchor")
                if isinstance(anchor, str) and anchor:
                    self.ids.setdefault(_strip_empty_fragment(base).split("#")[0] + "#" + anchor,
                                        (node, ptr))
                    self.legacy.setdefault("#" + anchor, (node, ptr))
                for k, v in node.items():
                    if k in ("enum", "const", "examples", "default"):
                        continue
                    if isinstance(v, (dict, list)):
                        stack.append((v, ptr + "/" + escape_pointer(k), base))
            elif isinstance(node, list):
                for i, v in enumerate(node):
                    if isinstance(v, (dict, list)):
                        stack.append((v, f"{ptr}/{i}", base))

    def base_of(self, pointer: str) -> str:
        """The base URI in effect at ``pointer`` (the root's ``$id`` joined with every
        ``$id`` on the way down)."""
        node = self.root
        base = ""
        if isinstance(node, dict) and self._id_of(node) and not self._id_of(node).startswith("#"):
            base = _join(base, self._id_of(node))
        for raw in pointer.split("/")[1:] if pointer else []:
            tok = raw.replace("~1", "/").replace("~0", "~")
            if isinstance(node, dict) and tok in node:
                node = node[tok]
            elif isinstance(node, list) and tok.isdigit() and int(tok) < len(node):
                node = node[int(tok)]
            else:
                break
            own = self._id_of(node) if isinstance(node, dict) else None
            if own is not None and not own.startswith("#"):
                base = _join(base, own)
        return base

    def resolve(self, ref: str, pointer: str, holder=None):
        """(target schema, its JSON pointer) for ``ref``; raises SchemaError if not local.

        ``holder`` is the schema object holding the ``$ref``: when it is part of the document
        its own place gives the base URI (``pointer`` may name where a merged copy is used)."""
        if not isinstance(ref, str):
            raise SchemaError("must be a string", keyword="$ref", pointer=pointer)
        place = self.where.get(id(holder), pointer) if holder is not None else pointer
        target = _join(self.base_of(place), ref)
        uri, _, frag = target.partition("#")
        if uri in self.ids or uri == "":
            node, ptr = self.ids.get(uri, (self.root, ""))
            if not frag:
                return node, ptr
            if frag.startswith("/"):
                return self._walk(node, ptr, frag, ref, pointer)
            found = self.ids.get(uri + "#" + frag)
            if found is not None:
                return found
        # older habits: a bare $id value, an anchor anywhere, a root $id ending in the ref
        found = self.legacy.get(ref)
        if found is not None and not ref.startswith("#/"):
            return found
        base, _, frag = ref.partition("#")
        if base:
            root_id = self.root.get("$id") if isinstance(self.root, dict) else None
            if base in self.legacy:
                node, ptr = self.legacy[base]
                if frag and not frag.startswith("/"):
                    found = self.legacy.get("#" + frag)
                    if found is None:
                        raise SchemaError(f"unknown anchor in {ref!r}", keyword="$ref",
                                          pointer=pointer)
                    return found
                return self._walk(node, ptr, frag, ref, pointer)
            if not (isinstance(root_id, str) and (root_id.rstrip("#") == base
                                                  or root_id.endswith("/" + base))):
                raise SchemaError(f"reference {ref!r} points outside the document (only "
                                  "in-document references are resolved)",
                                  keyword="$ref", pointer=pointer)
        if frag and not frag.startswith("/"):
            found = self.legacy.get("#" + frag)
            if found is None:
                raise SchemaError(f"unknown anchor in {ref!r}", keyword="$ref", pointer=pointer)
            return found
        return self._walk(self.root, "", frag, ref, pointer)

    def _walk(self, node, ptr: str, frag: str, ref: str, pointer: str):
        if not frag:
            return node, ptr
        for raw in frag.split("/")[1:]:
            tok = unquote(raw).replace("~1", "/").replace("~0", "~")
            if isinstance(node, dict) and tok in node:
                node = node[tok]
            elif isinstance(node, list) and tok.isdigit() and int(tok) < len(node):
                node = node[int(tok)]
            else:
                raise SchemaError(f"reference {ref!r} does not resolve", keyword="$ref",
                                  pointer=pointer)
            ptr = ptr + "/" + escape_pointer(tok)
        return node, ptr


def _join(base: str, ref: str) -> str:
    """RFC 3986 reference resolution, also for schemes ``urljoin`` leaves alone (``urn:``)."""
    if ref.startswith("#"):
        return base.split("#", 1)[0] + ref
    return urljoin(base, ref)


def _strip_empty_fragment(uri: str) -> str:
    return uri[:-1] if uri.endswith("#") else uri


def canonical_key(schema) -> str:
    return json.dumps(schema, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      default=str)


# ----------------------------------------------------------------------------------------------
# allOf merging
# ----------------------------------------------------------------------------------------------

def _types_of(schema: dict) -> set[str] | None:
    t = schema.get("type")
    if t is None:
        return None
    ts = {t} if isinstance(t, str) else set(t)
    return ts


def _intersect_types(a: set | None, b: set | None) -> set | None:
    if a is None:
        return b
    if b is None:
        return a
    out = a & b
    if "integer" in a and "number" in b or "integer" in b and "number" in a:
        out.add("integer")
    return out


def merge_schemas(a: dict, b: dict, pointer: str, report: Reporter) -> dict:
    """The conjunction of two (ref-free at top level) schema objects, as one schema object.

    Sub-schemas under the same property are combined lazily as ``{"allOf": [x, y]}``."""
    out = dict(a)
    obj_keys = ("properties", "patternProperties", "additionalProperties")
    arr_keys = ("prefixItems", "items", "additionalItems")
    if any(k in a for k in obj_keys) and any(k in b for k in obj_keys):
        out.update(_merge_object_keywords(a, b, pointer, report))
        b = {k: v for k, v in b.items() if k not in obj_keys}
    if any(k in a for k in arr_keys) and any(k in b for k in arr_keys):
        out.update(_merge_array_keywords(a, b))
        b = {k: v for k, v in b.items() if k not in arr_keys}
    for k, v in b.items():
        if k not in out:
            out[k] = v
            continue
        old = out[k]
        if old == v:
            continue
        if k == "type":
            t = _intersect_types(_types_of({"type": old}), _types_of({"type": v}))
            out[k] = sorted(t) if t is not None else None
        elif k == "required":
            out[k] = list(dict.fromkeys(list(old) + list(v)))
        elif k in ("properties", "patternProperties", "$defs", "definitions",
                   "dependentSchemas"):
            merged = dict(old)
            for name, sub in v.items():
                merged[name] = sub if name not in merged else _conj(merged[name], sub)
            out[k] = merged
        elif k in ("additionalProperties", "items", "additionalItems", "propertyNames",
                   "contains", "unevaluatedProperties", "unevaluatedItems"):
            if isinstance(old, list) or isinstance(v, list):
                report.unsupported(k, pointer, "allOf with two tuple-style 'items' lists")
                continue
            out[k] = _conj(old, v)
        elif k in ("minimum", "minLength", "minItems", "minProperties", "minContains"):
            out[k] = max(old, v)
        elif k in ("maximum", "maxLength", "maxItems", "maxProperties", "maxContains"):
            out[k] = min(old, v)
        elif k == "exclusiveMinimum" and not isinstance(v, bool) and not isinstance(old, bool):
            out[k] = max(old, v)
        elif k == "exclusiveMaximum" and not isinstance(v, bool) and not isinstance(old, bool):
            out[k] = min(old, v)
        elif k == "enum":
            out[k] = [x for x in old if any(_json_equal(x, y) for y in v)]
        elif k == "const":
            if not _json_equal(old, v):
                out["enum"] = []
        elif k == "allOf":
            out["allOf"] = list(old) + list(v)
        elif k in ("anyOf", "oneOf"):
            # two unions of one kind: each branch of the first takes the second along, as
            # anyOf(A) and U = anyOf(a and U), oneOf(A) and U = oneOf(a and U) for any U
            if not isinstance(old, list) or not isinstance(v, list):
                continue  # the union's own check reports the malformed one
            if len(old) * len(v) > MAX_UNION_PRODUCT:
                report.unsupported(k, pointer, f"allOf of two '{k}' lists of {len(old)} and "
                                   f"{len(v)} branches (over {MAX_UNION_PRODUCT} combinations)")
                continue
            out[k] = [_conj(branch, {k: v}) for branch in old]
        elif k in ("dependentRequired", "dependentSchemas", "dependencies"):
            if not isinstance(old, dict) or not isinstance(v, dict):
                continue
            merged = dict(old)
            for name, dep in v.items():
                merged[name] = dep if name not in merged else _conj_dependency(merged[name], dep)
            out[k] = merged
        elif k == "uniqueItems":
            out[k] = bool(old) or bool(v)
        elif k == "multipleOf":
            if isinstance(old, int) and isinstance(v, int):
                out[k] = old * v // math.gcd(old, v)
            else:
                report.unsupported(k, pointer, "allOf with two different non-integer multipleOf")
        elif k == "not":
            out[k] = {"anyOf": [old, v]}
        elif k in ("pattern", "format", "if", "then", "else", "$ref"):
            # one schema object holds one of each: the two cannot be merged into one
            report.unsupported(k, pointer, f"allOf combining two different '{k}' values")
        elif k in ASSERTIONS:
            report.unsupported(k, pointer, "allOf combining two different values of this keyword")
        # annotations: keep the first
    return out


def _merge_object_keywords(a: dict, b: dict, pointer: str, report: Reporter) -> dict:
    """properties / patternProperties / additionalProperties of a conjunction: each key gets the
    conjunction of what each side says about it (additionalProperties of one side applies to
    the other side's declared names)."""
    import re

    def side_for(s: dict, name: str):
        props = s.get("properties") or {}
        if name in props:
            return props[name]
        hits = [sub for pat, sub in (s.get("patternProperties") or {}).items()
                if _safe_search(re, pat, name)]
        if hits:
            return hits[0] if len(hits) == 1 else {"allOf": hits}
        return s.get("additionalProperties", True)

    pa, pb = a.get("patternProperties") or {}, b.get("patternProperties") or {}
    out: dict = {}
    names = list(dict.fromkeys(list(a.get("properties") or {}) + list(b.get("properties") or {})))
    if names:
        out["properties"] = {n: _conj(side_for(a, n), side_for(b, n)) for n in names}
    if pa or pb:
        aa, ab = a.get("additionalProperties", True), b.get("additionalProperties", True)
        if (pa and pb and pa != pb) or (pa and ab not in (True, {})) or \
                (pb and aa not in (True, {})):
            report.unsupported("patternProperties", pointer,
                               "allOf combining patternProperties with another object schema")
        out["patternProperties"] = dict(pa) | dict(pb)
    add = _conj(a.get("additionalProperties", True), b.get("additionalProperties", True))
    if add is not True:
        out["additionalProperties"] = add
    return out


def _safe_search(re_mod, pattern: str, text: str) -> bool:
    try:
        return re_mod.search(pattern, text) is not None
    except re_mod.error:
        return False


def _merge_array_keywords(a: dict, b: dict) -> dict:
    def split(s: dict):
        if "prefixItems" in s:
            return list(s["prefixItems"]), s.get("items", True)
        if isinstance(s.get("items"), list):
            return list(s["items"]), s.get("additionalItems", True)
        return [], s.get("items", True)

    xa, ra = split(a)
    xb, rb = split(b)
    n = max(len(xa), len(xb))
    prefix = [_conj(xa[i] if i < len(xa) else ra, xb[i] if i < len(xb) else rb)
              for i in range(n)]
    out: dict = {"items": _conj(ra, rb)}
    if prefix:
        out["prefixItems"] = prefix
    return out


def _conj_dependency(x, y):
    """Both dependencies of one property: required names (a list) or schemas."""
    if isinstance(x, list) and isinstance(y, list):
        return list(dict.fromkeys(x + y))
    return _conj({"required": x} if isinstance(x, list) else x,
                 {"required": y} if isinstance(y, list) else y)


def _conj(x, y):
    if x is True or x == {}:
        return y
    if y is True or y == {}:
        return x
    if x is False or y is False:
        return False
    return {"allOf": [x, y]}


def _json_equal(a, b) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_json_equal(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


json_equal = _json_equal
