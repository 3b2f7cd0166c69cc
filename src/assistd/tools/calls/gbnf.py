"""JSON Schema -> GBNF (llama.cpp grammar) conversion.

`GrammarBuilder` collects named rules; `SchemaCompiler.visit(schema)` returns the name of a rule that
matches exactly the JSON texts we are willing to generate for that schema, every one of which validates
against it. A construct we cannot honour raises `UnsupportedSchema` naming it and where it is, so that it can
be refused when the tool is stored rather than fail in the middle of a run.

Whitespace inside generated JSON is at most one space after `:` and `,` (the form small models have seen
most) so that the model cannot run away in blanks.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

# Keywords that only annotate (jsonschema does not assert them), safe to ignore while generating.
ANNOTATIONS = {
    "title", "description", "default", "examples", "example", "$schema", "$id", "$comment", "deprecated",
    "readOnly", "writeOnly", "contentMediaType", "contentEncoding", "nullable", "strict", "$anchor",
    "discriminator", "x-order",
}  # fmt: skip
# Keywords we honour. Anything else that jsonschema asserts is refused.
HANDLED = {
    "type", "properties", "required", "additionalProperties", "items", "minItems", "maxItems", "enum",
    "const", "anyOf", "oneOf", "allOf", "$ref", "$defs", "definitions", "minLength", "maxLength", "format",
    "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum",
}  # fmt: skip
# Formats we generate exactly; other formats are annotations for jsonschema unless a format checker is used.
FORMATS = {"date", "time", "date-time", "uuid"}
MAX_DIGITS = 15  # digits in an unbounded integer part / fraction / exponent

TYPES = ("null", "boolean", "object", "array", "number", "integer", "string")


class UnsupportedSchema(ValueError):
    def __init__(self, construct: str, path: str, why: str = "") -> None:
        self.construct = construct
        self.path = path or "(root)"
        self.why = why
        super().__init__(
            f"unsupported JSON schema construct '{construct}' at {self.path}" + (f": {why}" if why else "")
        )


def literal(text: str) -> str:
    """A GBNF string literal matching `text` exactly."""
    out = []
    for ch in text:
        if ch == "\\":
            out.append("\\\\")
        elif ch == '"':
            out.append('\\"')
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 0x20:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def json_literal(value: Any) -> str:
    return literal(json.dumps(value, ensure_ascii=False))


PRIMITIVES = {
    "sp": '" "?',
    # \u escapes stop short of the surrogates (D800-DFFF): a lone one is not encodable text
    "json-char": r'[^"\\\x00-\x1f] | "\\" (["\\/bfnrt] | "u" json-u-hex)',
    "json-u-hex": "[0-9a-cA-CeEfF] [0-9a-fA-F]{3} | [dD] [0-7] [0-9a-fA-F]{2}",
    "json-string": r'"\"" json-char* "\""',
    "json-int": f'"-"? ("0" | [1-9] [0-9]{{0,{MAX_DIGITS - 1}}})',
    "json-frac": f'"." [0-9]{{1,{MAX_DIGITS}}}',
    "json-exp": "[eE] [-+]? [0-9]{1,2}",  # 1e99 at most: a float, never inf
    "json-number": "json-int json-frac? json-exp?",
    "json-boolean": '"true" | "false"',
    "json-null": '"null"',
    "json-value": "json-object | json-array | json-string | json-number | json-boolean | json-null",
    "json-member": 'json-string sp ":" sp json-value',
    "json-object": '"{" sp ( json-member ( "," sp json-member )* )? "}"',
    "json-array": '"[" sp ( json-value ( "," sp json-value )* )? "]"',
    "date": '[0-9]{4} "-" ( "0" [1-9] | "1" [0-2] ) "-" ( "0" [1-9] | [1-2] [0-9] | "3" [0-1] )',
    "time": '( [01] [0-9] | "2" [0-3] ) ":" [0-5] [0-9] ":" [0-5] [0-9] ( "." [0-9]{3} )? '
    '( "Z" | [+-] ( [01] [0-9] | "2" [0-3] ) ":" [0-5] [0-9] )',
    "date-time": 'date "T" time',
    "uuid": '[0-9a-fA-F]{8} "-" [0-9a-fA-F]{4} "-" [0-9a-fA-F]{4} "-" [0-9a-fA-F]{4} "-" [0-9a-fA-F]{12}',
}
PRIMITIVE_DEPS = {
    "json-char": ["json-u-hex"],
    "json-string": ["json-char"],
    "json-int": [],
    "json-number": ["json-int", "json-frac", "json-exp"],
    "json-value": ["json-object", "json-array", "json-string", "json-number", "json-boolean", "json-null"],
    "json-member": ["json-string", "json-value", "sp"],
    "json-object": ["json-member", "sp"],
    "json-array": ["json-value", "sp"],
    "date-time": ["date", "time"],
}


class GrammarBuilder:
    """Named GBNF rules; identical bodies share one name."""

    def __init__(self) -> None:
        self.rules: dict[str, str] = {}
        self._by_body: dict[str, str] = {}

    def add(self, hint: str, body: str) -> str:
        if body in self._by_body:
            return self._by_body[body]
        name = self.reserve(hint)
        self.rules[name] = body
        self._by_body[body] = name
        return name

    def reserve(self, hint: str) -> str:
        base = re.sub(r"[^a-zA-Z0-9-]+", "-", hint).strip("-").lower() or "r"
        name, i = base, 1
        while name in self.rules or name in PRIMITIVES:
            i += 1
            name = f"{base}-{i}"
        self.rules[name] = ""  # placeholder, filled by set()
        return name

    def set(self, name: str, body: str) -> None:
        self.rules[name] = body

    def primitive(self, name: str) -> str:
        if name not in self.rules:
            self.rules[name] = PRIMITIVES[name]
            for dep in PRIMITIVE_DEPS.get(name, []):
                self.primitive(dep)
        return name

    def text(self, root_body: str) -> str:
        lines = [f"root ::= {root_body}"]
        lines += [f"{name} ::= {body}" for name, body in self.rules.items()]
        return "\n".join(lines) + "\n"


class SchemaCompiler:
    """Visits one JSON schema (with local $refs) and adds its rules to a GrammarBuilder."""

    def __init__(self, builder: GrammarBuilder, root_schema: Any, prefix: str) -> None:
        self.b = builder
        self.root = root_schema
        self.prefix = prefix
        self._refs: dict[str, str] = {}

    # ------------------------------------------------------------------------------------------ entry
    def visit(self, schema: Any, path: str = "") -> str:
        if schema is True or schema == {}:
            return self.b.primitive("json-value")
        if schema is False:
            raise UnsupportedSchema("false", path, "no value validates against it")
        if not isinstance(schema, dict):
            raise UnsupportedSchema(type(schema).__name__, path, "a schema must be an object or a boolean")
        for key in schema:
            if key not in HANDLED and key not in ANNOTATIONS:
                raise UnsupportedSchema(key, path)
        hint = f"{self.prefix}{path.replace('/', '-')}" or self.prefix
        if "$ref" in schema:
            return self._ref(schema, path)
        if "allOf" in schema:
            return self._all_of(schema, path)
        if "anyOf" in schema or "oneOf" in schema:
            return self._union(schema, path, hint)
        if "const" in schema or "enum" in schema:
            return self._enum(schema, path, hint)
        types = self._types(schema, path)
        alts = [self._typed(t, schema, path, hint) for t in types]
        return alts[0] if len(alts) == 1 else self.b.add(hint, " | ".join(alts))

    # ------------------------------------------------------------------------------------------ parts
    def _types(self, schema: dict, path: str) -> list[str]:
        t = schema.get("type")
        if t is None:
            return self._implied_types(schema)
        types = t if isinstance(t, list) else [t]
        for one in types:
            if one not in TYPES:
                raise UnsupportedSchema(f"type: {one}", path, "unknown type")
        if "number" in types and "integer" in types:
            types = [x for x in types if x != "integer"]
        return list(dict.fromkeys(types))

    @staticmethod
    def _implied_types(schema: dict) -> list[str]:
        if any(k in schema for k in ("properties", "required", "additionalProperties")):
            return ["object"]
        if any(k in schema for k in ("items", "minItems", "maxItems")):
            return ["array"]
        if any(k in schema for k in ("minLength", "maxLength", "format")):
            return ["string"]
        if any(k in schema for k in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")):
            return ["number"]
        return ["null", "boolean", "object", "array", "number", "string"]

    def _typed(self, t: str, schema: dict, path: str, hint: str) -> str:
        if t == "null":
            return self.b.primitive("json-null")
        if t == "boolean":
            return self.b.primitive("json-boolean")
        if t == "string":
            return self._string(schema, path, hint)
        if t in ("integer", "number"):
            return self._number(t, schema, path, hint)
        if t == "array":
            return self._array(schema, path, hint)
        return self._object(schema, path, hint)

    def _ref(self, schema: dict, path: str) -> str:
        ref = schema["$ref"]
        if len(schema) > 1 and any(k not in ANNOTATIONS for k in schema if k != "$ref"):
            raise UnsupportedSchema("$ref with sibling keywords", path)
        if ref in self._refs:
            return self._refs[ref]
        if not isinstance(ref, str) or not ref.startswith("#"):
            raise UnsupportedSchema(f"$ref: {ref}", path, "only local references (#/...) are supported")
        target: Any = self.root
        for part in [p for p in ref[1:].split("/") if p]:
            part = part.replace("~1", "/").replace("~0", "~")
            if not isinstance(target, dict) or part not in target:
                raise UnsupportedSchema(f"$ref: {ref}", path, "the reference does not resolve")
            target = target[part]
        name = self.b.reserve(f"{self.prefix}-ref-{ref.rsplit('/', 1)[-1]}")
        self._refs[ref] = name  # before visiting: recursive schemas refer to the rule by name
        self.b.set(name, self.visit(target, f"{path}/$ref"))
        return name

    def _all_of(self, schema: dict, path: str) -> str:
        parts = schema["allOf"]
        rest = {k: v for k, v in schema.items() if k != "allOf" and k not in ANNOTATIONS}
        if isinstance(parts, list) and len(parts) == 1 and not rest:
            return self.visit(parts[0], f"{path}/allOf/0")
        raise UnsupportedSchema("allOf", path, "only a single-schema allOf is supported")

    def _union(self, schema: dict, path: str, hint: str) -> str:
        key = "anyOf" if "anyOf" in schema else "oneOf"
        alts = schema[key]
        rest = {k: v for k, v in schema.items() if k != key and k not in ANNOTATIONS}
        if not isinstance(alts, list) or not alts:
            raise UnsupportedSchema(key, path, "must be a non-empty list")
        if rest or ("anyOf" in schema and "oneOf" in schema):
            raise UnsupportedSchema(f"{key} with sibling keywords", path)
        if key == "oneOf" and not _pairwise_disjoint(alts, self.root):
            raise UnsupportedSchema("oneOf", path, "its alternatives may overlap; use anyOf")
        names = [self.visit(a, f"{path}/{key}/{i}") for i, a in enumerate(alts)]
        return self.b.add(hint, " | ".join(dict.fromkeys(names)))

    def _enum(self, schema: dict, path: str, hint: str) -> str:
        values = [schema["const"]] if "const" in schema else schema["enum"]
        if not isinstance(values, list) or not values:
            raise UnsupportedSchema("enum", path, "must be a non-empty list")
        rest = {k for k in schema if k not in ANNOTATIONS and k not in ("const", "enum", "type")}
        if rest:
            raise UnsupportedSchema(f"enum with {sorted(rest)[0]}", path)
        if "type" in schema:
            types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
            values = [v for v in values if _json_type_in(v, types)]
            if not values:
                raise UnsupportedSchema("enum", path, "no value has the schema's type")
        return self.b.add(hint, " | ".join(dict.fromkeys(json_literal(v) for v in values)))

    def _string(self, schema: dict, path: str, hint: str) -> str:
        fmt = schema.get("format")
        lo, hi = schema.get("minLength", 0), schema.get("maxLength")
        if fmt in FORMATS:
            if "minLength" in schema or "maxLength" in schema:
                raise UnsupportedSchema("format with minLength/maxLength", path)
            return self.b.add(f"{fmt}-string", rf'"\"" {self.b.primitive(fmt)} "\""')
        if lo == 0 and hi is None:
            return self.b.primitive("json-string")
        if not _is_count(lo) or (hi is not None and (not _is_count(hi) or hi < lo)):
            raise UnsupportedSchema(
                "minLength/maxLength", path, "must be integers with minLength <= maxLength"
            )
        char = self.b.primitive("json-char")
        reps = f"{{{lo},{'' if hi is None else hi}}}"
        return self.b.add(hint, rf'"\"" {char}{reps} "\""')

    def _number(self, t: str, schema: dict, path: str, hint: str) -> str:
        lo, lo_excl = _bound(schema, "minimum", "exclusiveMinimum", path)
        hi, hi_excl = _bound(schema, "maximum", "exclusiveMaximum", path)
        if lo is None and hi is None:
            return self.b.primitive("json-int" if t == "integer" else "json-number")
        if t == "number" and _whole(lo) and _whole(hi) and (lo is None or lo >= 0) and not lo_excl:
            # integer part in [lo, hi) with any fraction, or hi itself
            top = None if hi is None else int(hi) - 1
            head = int_range(self.b, 0 if lo is None else int(lo), top)
            frac = self.b.primitive("json-frac")
            body = f"{head} {frac}?" if head else ""
            if hi is not None and not hi_excl:
                body = f"{body} | {literal(str(int(hi)))}" if body else literal(str(int(hi)))
            if not body:
                raise UnsupportedSchema("minimum/maximum", path, "the range holds no value")
            return self.b.add(hint, body)
        # integers, or numbers whose bounds we honour by generating whole numbers only
        first = None if lo is None else (math.floor(lo) + 1 if lo_excl and _whole(lo) else math.ceil(lo))
        last = None if hi is None else (math.ceil(hi) - 1 if hi_excl and _whole(hi) else math.floor(hi))
        if first is not None and last is not None and first > last:
            raise UnsupportedSchema("minimum/maximum", path, "no whole number lies in the range")
        body = int_range(self.b, first, last)
        return self.b.add(hint, body)

    def _array(self, schema: dict, path: str, hint: str) -> str:
        items = schema.get("items", True)
        if isinstance(items, list):
            raise UnsupportedSchema("items (array form)", path, "tuple schemas are not supported")
        lo, hi = schema.get("minItems", 0), schema.get("maxItems")
        if not _is_count(lo) or (hi is not None and (not _is_count(hi) or hi < lo)):
            raise UnsupportedSchema("minItems/maxItems", path, "must be integers with minItems <= maxItems")
        item = self.visit(items, f"{path}/items")
        sp = self.b.primitive("sp")
        if hi == 0:
            return self.b.add(hint, f'"[" {sp} "]"')
        more = f'( "," {sp} {item} ){{{max(lo - 1, 0)},{"" if hi is None else hi - 1}}}'
        seq = f"{item} {more}"
        body = f'"[" {sp} {seq} "]"' if lo >= 1 else f'"[" {sp} ( {seq} )? "]"'
        return self.b.add(hint, body)

    def _object(self, schema: dict, path: str, hint: str) -> str:
        props = schema.get("properties") or {}
        required = schema.get("required") or []
        extra = schema.get("additionalProperties", True)
        if not isinstance(props, dict) or not isinstance(required, list):
            raise UnsupportedSchema("properties/required", path, "malformed")
        if not props and not required and extra is not False:
            if extra is True or extra == {}:
                return self.b.primitive("json-object")
            return self._map(extra, path, hint)
        for name in required:
            if name not in props:
                if extra is False:
                    raise UnsupportedSchema("required", path, f"'{name}' is required but not allowed")
                props = {**props, name: extra if isinstance(extra, dict) else True}
        sp = self.b.primitive("sp")
        pairs = []
        for name, sub in props.items():
            value = self.visit(sub, f"{path}/properties/{name}")
            pairs.append(
                (
                    self.b.add(f"{hint}-{name}-kv", f'{json_literal(name)} {sp} ":" {sp} {value}'),
                    name in required,
                )
            )
        return self.b.add(hint, f'"{{" {sp} {self._members(pairs, hint)} "}}"')

    def _members(self, pairs: list[tuple[str, bool]], hint: str) -> str:
        """Members in declared order; optional ones may be left out, commas only between members."""
        if all(req for _, req in pairs):
            return f' "," {self.b.primitive("sp")} '.join(kv for kv, _ in pairs)
        sp = self.b.primitive("sp")
        after = ""  # members from i on, when one was already written
        start = ""  # members from i on, when none was written yet
        for i in range(len(pairs) - 1, -1, -1):
            kv, req = pairs[i]
            nxt_after = f" {after}" if after else ""
            nxt_start = start
            new_after = f'"," {sp} {kv}{nxt_after}' if req else f'( "," {sp} {kv} )?{nxt_after}'
            if req:
                new_start = f"{kv}{nxt_after}"
            else:
                new_start = f"( {kv}{nxt_after} )" + (f" | {nxt_start}" if nxt_start else "")
                if not nxt_start:
                    new_start = f"( {kv}{nxt_after} )?"
            after = self.b.add(f"{hint}-after-{i}", new_after)
            start = self.b.add(f"{hint}-from-{i}", new_start)
        return start

    def _map(self, extra: Any, path: str, hint: str) -> str:
        value = self.visit(extra, f"{path}/additionalProperties")
        sp, key = self.b.primitive("sp"), self.b.primitive("json-string")
        kv = self.b.add(f"{hint}-kv", f'{key} {sp} ":" {sp} {value}')
        return self.b.add(hint, f'"{{" {sp} ( {kv} ( "," {sp} {kv} )* )? "}}"')


# ------------------------------------------------------------------------------------------ integers
def int_range(b: GrammarBuilder, lo: int | None, hi: int | None) -> str:
    """GBNF for the decimal integers in [lo, hi] (None: unbounded), no leading zeros."""
    alts = []
    if lo is None or lo < 0:  # negative part: "-" followed by magnitudes in [max(1, -hi), -lo]
        mag_lo = 1 if hi is None or hi >= 0 else -hi
        mag_hi = None if lo is None else -lo
        alts.append(f'"-" ( {_nonneg(mag_lo, mag_hi)} )')
    if hi is None or hi >= 0:
        alts.append(_nonneg(max(lo or 0, 0), hi))
    return " | ".join(f"( {a} )" for a in alts) if len(alts) > 1 else alts[0]


def _nonneg(lo: int, hi: int | None) -> str:
    cap = 10 ** (MAX_DIGITS + 1) - 1
    hi = cap if hi is None else min(hi, cap)
    alts = []
    for digits in range(len(str(lo)), len(str(hi)) + 1):
        a = max(lo, 0 if digits == 1 else 10 ** (digits - 1))
        z = min(hi, 10**digits - 1)
        if a <= z:
            alts.append(_same_length(str(a), str(z)))
    return " | ".join(alts)


def _same_length(a: str, z: str) -> str:
    """Decimal strings of len(a) between a and z (inclusive, numeric order equals text order)."""
    if not a:
        return '""'
    if a == z:
        return literal(a)
    n = len(a) - 1
    if a[0] == z[0]:
        return f"{literal(a[0])} ( {_same_length(a[1:], z[1:])} )"
    if a[1:] == "0" * n and z[1:] == "9" * n:
        return _digits(a[0], z[0]) + (f" [0-9]{{{n}}}" if n else "")
    alts = []
    low_first, high_first = a[0], z[0]
    if a[1:] != "0" * n:
        alts.append(f"{literal(a[0])} ( {_same_length(a[1:], '9' * n)} )")
        low_first = chr(ord(a[0]) + 1)
    if z[1:] != "9" * n:
        high_first = chr(ord(z[0]) - 1)
    if low_first <= high_first:
        alts.append(_digits(low_first, high_first) + (f" [0-9]{{{n}}}" if n else ""))
    if z[1:] != "9" * n:
        alts.append(f"{literal(z[0])} ( {_same_length('0' * n, z[1:])} )")
    return " | ".join(f"( {x} )" for x in alts)


def _digits(a: str, z: str) -> str:
    return f"[{a}]" if a == z else f"[{a}-{z}]"


# ------------------------------------------------------------------------------------------ helpers
def _is_count(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and x >= 0


def _whole(x: float | None) -> bool:
    return x is None or float(x).is_integer()


def _bound(schema: dict, plain: str, exclusive: str, path: str) -> tuple[float | None, bool]:
    value, excl = schema.get(plain), schema.get(exclusive)
    if isinstance(excl, bool):  # draft 4 form: a flag on minimum/maximum
        return _num(value, plain, path), excl and value is not None
    value, excl_value = _num(value, plain, path), _num(excl, exclusive, path)
    if excl_value is None:
        return value, False
    if value is None:
        return excl_value, True
    # both given: the tighter one wins
    tighter_excl = excl_value >= value if plain == "minimum" else excl_value <= value
    return (excl_value, True) if tighter_excl else (value, False)


def _num(x: Any, key: str, path: str) -> float | None:
    if x is None:
        return None
    if isinstance(x, bool) or not isinstance(x, int | float) or not math.isfinite(x):
        raise UnsupportedSchema(key, path, "must be a finite number")
    return x


def _json_type_in(value: Any, types: list[str]) -> bool:
    if value is None:
        return "null" in types
    if isinstance(value, bool):
        return "boolean" in types
    if isinstance(value, int):
        return "integer" in types or "number" in types
    if isinstance(value, float):
        return "number" in types or ("integer" in types and value.is_integer())
    if isinstance(value, str):
        return "string" in types
    if isinstance(value, list):
        return "array" in types
    return "object" in types


def _kinds(schema: Any, root: Any) -> set[str] | None:
    """The JSON types a schema admits, or None when unknown (anything)."""
    if isinstance(schema, dict) and "$ref" in schema:
        return None
    if not isinstance(schema, dict):
        return None
    if "const" in schema or "enum" in schema:
        values = [schema["const"]] if "const" in schema else schema.get("enum") or []
        kinds = set()
        for v in values:
            kinds |= {t for t in TYPES if _json_type_in(v, [t])}
        return kinds
    t = schema.get("type")
    if t is None:
        return None
    kinds = set(t if isinstance(t, list) else [t])
    if "number" in kinds or "integer" in kinds:
        kinds |= {"number", "integer"}
    return kinds


def _pairwise_disjoint(alts: list, root: Any) -> bool:
    """Conservative: True only when no JSON value can match two alternatives."""
    for i in range(len(alts)):
        for j in range(i + 1, len(alts)):
            if not _disjoint(alts[i], alts[j], root):
                return False
    return True


def _disjoint(a: Any, b: Any, root: Any) -> bool:
    ka, kb = _kinds(a, root), _kinds(b, root)
    if ka is not None and kb is not None and not (ka & kb):
        return True
    for x, y in ((a, b), (b, a)):
        if _is_dict_with_values(x) and _is_dict_with_values(y):
            xs = [x["const"]] if "const" in x else x["enum"]
            ys = [y["const"]] if "const" in y else y["enum"]
            return not any(_same_json(u, v) for u in xs for v in ys)
    if isinstance(a, dict) and isinstance(b, dict) and ka == kb == {"object"}:
        # a discriminator: a property required by both whose allowed constants differ
        pa, pb = a.get("properties") or {}, b.get("properties") or {}
        both = set(a.get("required") or []) & set(b.get("required") or [])
        for key in both & set(pa) & set(pb):
            sa, sb = pa[key], pb[key]
            if (
                isinstance(sa, dict)
                and isinstance(sb, dict)
                and ("const" in sa or "enum" in sa)
                and ("const" in sb or "enum" in sb)
                and _disjoint(sa, sb, root)
            ):
                return True
    return False


def _is_dict_with_values(x: Any) -> bool:
    return isinstance(x, dict) and ("const" in x or "enum" in x)


def _same_json(a: Any, b: Any) -> bool:
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)
