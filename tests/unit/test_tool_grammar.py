"""Schema -> grammar on a table of schemas: every grammar compiles in llama.cpp, and every string a random
walk of the grammar can produce is JSON that validates against its schema (a sampler below walks the GBNF)."""

from __future__ import annotations

import json
import random
import re

import jsonschema
import pytest

from assistd.errors import InvalidRequest
from assistd.tools.calls import (
    FORMATS,
    UnsupportedSchema,
    check_function_tools,
    check_json_schema,
    json_schema_grammar,
    validate_arguments,
)
from assistd.tools.calls.gbnf import GrammarBuilder, int_range

llama_cpp = pytest.importorskip("llama_cpp")

SCHEMAS = {
    "strings": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    "enum-optional-int-range": {
        "type": "object",
        "properties": {
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            "days": {"type": "integer", "minimum": 1, "maximum": 14},
            "verbose": {"type": "boolean"},
        },
        "required": ["unit"],
    },
    "all-optional": {
        "type": "object",
        "properties": {"a": {"type": "string"}, "b": {"type": "integer"}, "c": {"type": "null"}},
    },
    "nested": {
        "type": "object",
        "properties": {
            "order": {
                "type": "object",
                "properties": {
                    "items": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {
                                "sku": {"type": "string"},
                                "qty": {"type": "integer", "minimum": 1},
                            },
                            "required": ["sku", "qty"],
                            "additionalProperties": False,
                        },
                        "minItems": 1,
                    },
                    "gift": {"type": "boolean"},
                    "note": {"type": ["string", "null"]},
                },
                "required": ["items", "gift"],
            },
            "price": {"type": "number"},
        },
        "required": ["order", "price"],
        "additionalProperties": False,
    },
    "unions": {
        "type": "object",
        "properties": {
            "id": {"anyOf": [{"type": "string", "maxLength": 8}, {"type": "integer"}]},
            "shape": {
                "oneOf": [
                    {
                        "type": "object",
                        "properties": {"kind": {"const": "circle"}, "r": {"type": "number", "minimum": 0}},
                        "required": ["kind", "r"],
                    },
                    {
                        "type": "object",
                        "properties": {"kind": {"const": "square"}, "side": {"type": "number"}},
                        "required": ["kind", "side"],
                    },
                ]
            },
            "tag": {"oneOf": [{"type": "string"}, {"type": "boolean"}, {"type": "null"}]},
        },
        "required": ["id", "shape", "tag"],
    },
    "numbers": {
        "type": "object",
        "properties": {
            "pct": {"type": "number", "minimum": 0, "maximum": 100},
            "pos": {"type": "number", "exclusiveMinimum": 0},
            "t": {"type": "number", "minimum": -40.5, "maximum": 60.2},
            "neg": {"type": "integer", "minimum": -50, "maximum": -3},
            "around": {"type": "integer", "minimum": -5, "maximum": 5},
            "big": {"type": "integer", "minimum": 999, "exclusiveMaximum": 123457},
        },
        "required": ["pct", "pos", "t", "neg", "around", "big"],
    },
    "string-forms": {
        "type": "object",
        "properties": {
            "code": {"type": "string", "minLength": 3, "maxLength": 3},
            "day": {"type": "string", "format": "date"},
            "at": {"type": "string", "format": "date-time"},
            "id": {"type": "string", "format": "uuid"},
            "email": {"type": "string", "format": "email", "description": "annotation only"},
        },
        "required": ["code", "day", "at", "id"],
    },
    "refs-recursive": {
        "type": "object",
        "$defs": {
            "node": {
                "type": "object",
                "properties": {
                    "label": {"type": "string"},
                    "children": {"type": "array", "items": {"$ref": "#/$defs/node"}},
                },
                "required": ["label"],
            }
        },
        "properties": {"tree": {"$ref": "#/$defs/node"}},
        "required": ["tree"],
    },
    "array-bounds-and-map": {
        "type": "object",
        "properties": {
            "pair": {"type": "array", "items": {"type": "integer"}, "minItems": 2, "maxItems": 3},
            "scores": {"type": "object", "additionalProperties": {"type": "number"}},
            "free": {"type": "object"},
            "anything": {},
            "version": {"const": 2},
        },
        "required": ["pair", "scores", "free", "anything", "version"],
    },
    "code_interpreter": {
        "type": "object",
        "properties": {"code": {"type": "string", "description": "Python code to run"}},
        "required": ["code"],
    },
    "file_search": {
        "type": "object",
        "properties": {"query": {"type": "string", "description": "what to look for"}},
        "required": ["query"],
    },
    "no-parameters": None,
    "empty-object": {"type": "object", "properties": {}},
}

UNSUPPORTED = {
    "pattern": {"type": "object", "properties": {"z": {"type": "string", "pattern": "^[0-9]{5}$"}}},
    "not": {"type": "object", "properties": {"x": {"not": {"type": "string"}}}},
    "if": {"type": "object", "if": {"required": ["a"]}, "then": {"required": ["b"]}},
    "patternProperties": {"type": "object", "patternProperties": {"^x": {"type": "string"}}},
    "uniqueItems": {"type": "object", "properties": {"t": {"type": "array", "uniqueItems": True}}},
    "multipleOf": {"type": "object", "properties": {"n": {"type": "integer", "multipleOf": 5}}},
    "minProperties": {"type": "object", "minProperties": 1},
    "prefixItems": {
        "type": "object",
        "properties": {"p": {"type": "array", "prefixItems": [{"type": "string"}]}},
    },
    "allOf": {"type": "object", "allOf": [{"required": ["a"]}, {"required": ["b"]}]},
    "oneOf": {"type": "object", "properties": {"v": {"oneOf": [{"type": "number"}, {"type": "integer"}]}}},
    "$ref": {"type": "object", "properties": {"r": {"$ref": "https://example.com/s.json"}}},
    "type: array": {"type": "array", "items": {"type": "string"}},
    "false": {"type": "object", "properties": {"never": False}, "required": ["never"]},
    "contains": {"type": "object", "properties": {"l": {"type": "array", "contains": {"type": "integer"}}}},
    "dependentRequired": {"type": "object", "dependentRequired": {"a": ["b"]}},
}


# ------------------------------------------------------------------------------------------- a GBNF sampler
class Sampler:
    """Random strings of a GBNF grammar (the subset our builder writes)."""

    TOKEN = re.compile(
        r'\s*(?:("(?:[^"\\]|\\.)*")|(\[(?:[^\]\\]|\\.)*\])|([a-zA-Z0-9-]+)|(\{\d*,?\d*\})|([()|?*+]))'
    )
    POOL = [chr(c) for c in range(0x20, 0x7F)] + ["é", "中", "\u2028", "\t", "\n"]

    def __init__(self, text: str, seed: int) -> None:
        self.rules = {}
        for line in text.strip().splitlines():
            name, body = line.split(" ::= ", 1)
            self.rules[name] = self._parse(body)
        self.rnd = random.Random(seed)

    def _parse(self, body: str):
        tokens = []
        pos = 0
        while pos < len(body.rstrip()):
            m = self.TOKEN.match(body, pos)
            assert m, body[pos:]
            tokens.append(next((i, g) for i, g in enumerate(m.groups()) if g is not None))
            pos = m.end()
        node, rest = self._alt(tokens)
        assert not rest, rest
        return node

    def _alt(self, tokens):
        seqs, seq = [], []
        while tokens and tokens[0] != (4, ")"):
            if tokens[0] == (4, "|"):
                seqs.append(seq)
                seq, tokens = [], tokens[1:]
                continue
            item, tokens = self._item(tokens)
            seq.append(item)
        seqs.append(seq)
        return ("alt", seqs), tokens

    def _item(self, tokens):
        (kind, text), tokens = tokens[0], tokens[1:]
        if kind == 0:
            node = ("lit", json.loads(text.replace("\\x", "\\u00")))
        elif kind == 1:
            node = ("cls", text)
        elif kind == 2:
            node = ("ref", text)
        else:
            assert text == "(", text
            node, tokens = self._alt(tokens)
            tokens = tokens[1:]
        while tokens and (tokens[0][0] == 3 or tokens[0][1] in ("?", "*", "+")):
            (_, op), tokens = tokens[0], tokens[1:]
            lo, hi = {"?": (0, 1), "*": (0, None), "+": (1, None)}.get(op, (None, None))
            if lo is None:
                a, _, b = op[1:-1].partition(",")
                lo, hi = int(a or 0), (int(a) if "," not in op else (int(b) if b else None))
            node = ("rep", node, lo, hi)
        return node, tokens

    def sample(self, name: str = "root") -> str:
        return self._gen(self.rules[name], 0)

    def _gen(self, node, depth: int) -> str:
        kind = node[0]
        deep = depth > 12
        if kind == "lit":
            return node[1]
        if kind == "ref":
            return self._gen(self.rules[node[1]], depth + 1)
        if kind == "cls":
            return self._char(node[1])
        if kind == "alt":
            seq = self.rnd.choice(node[1])
            return "".join(self._gen(x, depth) for x in seq)
        _, inner, lo, hi = node
        top = lo if deep else min(hi if hi is not None else lo + 3, lo + 3)
        return "".join(self._gen(inner, depth + 1) for _ in range(self.rnd.randint(lo, top)))

    def _char(self, cls: str) -> str:
        body = cls[1:-1]
        negated = body.startswith("^")
        body = body[1:] if negated else body
        chars, ranges, i = set(), [], 0
        unescape = {"n": "\n", "r": "\r", "t": "\t"}

        def one(j):
            if body[j] == "\\":
                if body[j + 1] == "x":
                    return chr(int(body[j + 2 : j + 4], 16)), j + 4
                return unescape.get(body[j + 1], body[j + 1]), j + 2
            return body[j], j + 1

        while i < len(body):
            c, i = one(i)
            if i < len(body) - 1 and body[i] == "-":
                d, i = one(i + 1)
                ranges.append((c, d))
            else:
                chars.add(c)
        inside = lambda ch: ch in chars or any(a <= ch <= b for a, b in ranges)  # noqa: E731
        pool = [c for c in self.POOL if inside(c) != negated]
        if not negated:
            pool += [chr(self.rnd.randint(ord(a), ord(b))) for a, b in ranges]
        return self.rnd.choice(pool)


def samples(grammar: str, n: int = 150, seed: int = 0) -> list[str]:
    s = Sampler(grammar, seed)
    return [s.sample() for _ in range(n)]


def compiles(grammar: str) -> None:
    assert llama_cpp.LlamaGrammar.from_string(grammar, verbose=False) is not None


def function(name: str, schema: dict | None) -> dict:
    return {"name": name, "parameters": schema} if schema is not None else {"name": name}


# ------------------------------------------------------------------------------------------- tests
@pytest.mark.parametrize("key", list(SCHEMAS))
def test_response_format_grammar_compiles_and_every_sample_validates(key):
    schema = SCHEMAS[key]
    grammar = json_schema_grammar(schema)
    compiles(grammar)
    for text in samples(grammar):
        value = json.loads(text)
        json.dumps(value, allow_nan=False, ensure_ascii=False).encode()  # finite numbers, no lone surrogates
        if schema is not None:
            jsonschema.validate(value, schema)
        else:
            assert isinstance(value, dict)


@pytest.mark.parametrize("fmt", list(FORMATS.values()), ids=lambda f: f.name)
@pytest.mark.parametrize("key", list(SCHEMAS))
def test_call_grammar_compiles_and_every_sample_parses_and_validates(fmt, key):
    schema = SCHEMAS[key]
    grammar = fmt.grammar([function("f", schema), function("g", SCHEMAS["strings"])], parallel=True)
    compiles(grammar)
    for text in samples(grammar, n=60):
        reply = fmt.parse(text)
        assert reply.calls and reply.text == "", text
        for call in reply.calls:
            json.loads(call.arguments, parse_constant=_no_constants)  # strict JSON: no NaN/Infinity
            call.arguments.encode()
            assert (
                validate_arguments(schema if call.name == "f" else SCHEMAS["strings"], call.arguments) is None
            )


@pytest.mark.parametrize("fmt", list(FORMATS.values()), ids=lambda f: f.name)
def test_grammar_options_single_named_ordered_and_continuation(fmt):
    fns = [
        function("get_weather", SCHEMAS["enum-optional-int-range"]),
        function("lookup", SCHEMAS["strings"]),
        function("code_interpreter", SCHEMAS["code_interpreter"]),
    ]
    one = fmt.grammar(fns, parallel=False)
    compiles(one)
    assert all(len(fmt.parse(t).calls) == 1 for t in samples(one, 40))

    several = [len(fmt.parse(t).calls) for t in samples(fmt.grammar(fns, parallel=True, max_calls=3), 80)]
    assert min(several) == 1 and max(several) == (1 if fmt.single_call else 3)  # harmony: a call a message

    named = fmt.grammar(fns, name="lookup", parallel=False)
    compiles(named)
    assert {c.name for t in samples(named, 30) for c in fmt.parse(t).calls} == {"lookup"}

    ordered = fmt.grammar(fns, names=["code_interpreter", "get_weather"])
    compiles(ordered)
    for text in samples(ordered, 40):
        expected = ["code_interpreter"] if fmt.single_call else ["code_interpreter", "get_weather"]
        assert [c.name for c in fmt.parse(text).calls] == expected
    assert fmt.grammar(fns, all_functions=True) == fmt.grammar(fns, names=[f["name"] for f in fns])

    rest = fmt.grammar(fns, continuation=True)
    compiles(rest)
    for text in samples(rest, 40):
        reply = fmt.parse(fmt.start_marker + text)
        assert reply.calls and reply.text == ""
        assert not text.lstrip().startswith(fmt.start_marker)

    with pytest.raises(ValueError):
        fmt.grammar(fns, name="nope")


@pytest.mark.parametrize(
    ("lo", "hi"),
    [
        (0, 0),
        (1, 14),
        (-5, 5),
        (-50, -3),
        (7, 7),
        (999, 123456),
        (0, 1440),
        (-1000, -1),
        (10, 99),
        (123, 4567),
    ],
)
def test_int_range_matches_exactly_the_integers_in_range(lo, hi):
    regex = re.compile(_to_regex(int_range(GrammarBuilder(), lo, hi)))
    span = (
        range(lo - 50, hi + 51) if hi - lo < 2000 else [*range(lo - 50, lo + 500), *range(hi - 500, hi + 50)]
    )
    for n in span:
        assert bool(regex.fullmatch(str(n))) == (lo <= n <= hi), n
    assert not regex.fullmatch("007") and not regex.fullmatch("-0")


@pytest.mark.parametrize(("lo", "hi"), [(None, None), (3, None), (None, -2), (None, 40)])
def test_int_range_open_ended(lo, hi):
    regex = re.compile(_to_regex(int_range(GrammarBuilder(), lo, hi)))
    for n in [-(10**12), -101, -3, -2, -1, 0, 1, 2, 3, 4, 39, 40, 41, 10**12]:
        expected = (lo is None or n >= lo) and (hi is None or n <= hi)
        assert bool(regex.fullmatch(str(n))) == expected, n


def _no_constants(name: str):
    raise AssertionError(f"{name} in arguments")


def _to_regex(gbnf: str) -> str:
    out = re.sub(r'"([^"]*)"', lambda m: re.escape(m.group(1)), gbnf)
    return out.replace(" ", "")


@pytest.mark.parametrize("construct", list(UNSUPPORTED))
def test_unsupported_constructs_are_refused_naming_them(construct):
    schema = UNSUPPORTED[construct]
    tools = [
        {"type": "code_interpreter"},
        {"type": "function", "function": {"name": "ok", "parameters": SCHEMAS["nested"]}},
        {"type": "function", "function": {"name": "bad", "parameters": schema}},
    ]
    with pytest.raises(InvalidRequest) as info:
        check_function_tools(tools, "tools")
    assert info.value.param == "tools[2].function.parameters"
    assert f"'{construct}" in info.value.message and "'bad'" in info.value.message
    with pytest.raises(UnsupportedSchema):
        FORMATS["hermes"].grammar([{"name": "bad", "parameters": schema}])


def test_supported_tools_pass_the_check():
    tools = [{"type": "function", "function": function(k, s)} for k, s in SCHEMAS.items()]
    check_function_tools([{"type": "file_search"}, *tools], "tools")
    check_json_schema(SCHEMAS["nested"], "response_format.json_schema.schema")
    with pytest.raises(InvalidRequest) as info:
        check_json_schema(UNSUPPORTED["not"], "response_format.json_schema.schema")
    assert info.value.param == "response_format.json_schema.schema"


def test_literals_with_quotes_backslashes_and_unicode_survive():
    schema = {
        "type": "object",
        "properties": {"s": {"enum": ['say "hi"', "back\\slash", "naïve 中", "line\nbreak"]}},
        "required": ["s"],
    }
    grammar = json_schema_grammar(schema)
    compiles(grammar)
    seen = {json.loads(t)["s"] for t in samples(grammar, 80)}
    assert seen == set(schema["properties"]["s"]["enum"])


def test_validate_arguments_messages():
    schema = SCHEMAS["enum-optional-int-range"]
    assert validate_arguments(schema, '{"unit": "celsius", "days": 3}') is None
    assert "not JSON" in validate_arguments(schema, '{"unit": ')
    assert "object" in validate_arguments(schema, "[1]")
    assert "'kelvin' is not one of" in validate_arguments(schema, '{"unit": "kelvin"}')
    assert "days" in validate_arguments(schema, '{"unit": "celsius", "days": 99}')
    assert validate_arguments(None, "{}") is None
