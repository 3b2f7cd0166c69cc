"""Grammar evaluation: our JSON-schema compiler (tools/calls/gbnf.py) vs llama.cpp's json_schema_to_grammar as
the embedded engine's wheel ships it (xllamacpp, built with LLGuidance: it returns `%llguidance` +
`%json {schema}`, not GBNF), on schema constructs one at a time.

For each schema: does our compiler take it (or refuse it with a 400 when the tool is stored), and how many
of --n replies sampled at temperature 1 under each grammar are complete JSON that validates against the
schema, and how many ran into the token cap (unbounded digits or blanks); llama.cpp's server engine (an
`assistd engine` process), --max-tokens per reply.

Usage: .venv/bin/python scripts/bench_grammar.py [--n 12] [--max-tokens 96]
"""

from __future__ import annotations

import argparse
import json

from assistd.tools.calls import UnsupportedSchema, json_schema_grammar
from bench_support import EngineProcess, Renderer, load, raw_completion


def obj(name: str, schema: dict) -> dict:
    return {"type": "object", "properties": {name: schema}, "required": [name], "additionalProperties": False}


SCHEMAS = {
    "string enum": obj("unit", {"type": "string", "enum": ["celsius", "fahrenheit"]}),
    "minLength/maxLength": obj("code", {"type": "string", "minLength": 3, "maxLength": 3}),
    "format date": obj("day", {"type": "string", "format": "date"}),
    "integer range": obj("n", {"type": "integer", "minimum": 1000, "maximum": 1440}),
    "number, exclusive bound": obj("x", {"type": "number", "exclusiveMinimum": 0.5, "maximum": 2.5}),
    "array maxItems": obj("names", {"type": "array", "items": {"type": "string"}, "maxItems": 3}),
    "nested $ref": {
        "$defs": {"p": {"type": "object", "properties": {"age": {"type": "integer", "minimum": 0}}}},
        **obj("person", {"$ref": "#/$defs/p"}),
    },
    "pattern": obj("code", {"type": "string", "pattern": "^[A-Z]{3}-[0-9]{2}$"}),
    "uniqueItems": obj(
        "a", {"type": "array", "items": {"type": "integer"}, "uniqueItems": True, "minItems": 2}
    ),
    "multipleOf": obj("m", {"type": "integer", "multipleOf": 7}),
}


def valid(text: str, schema: dict) -> bool:
    import jsonschema

    try:
        jsonschema.validate(json.loads(text), schema)
    except (ValueError, jsonschema.ValidationError):
        return False
    return True


def main() -> int:
    import xllamacpp

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=12)
    parser.add_argument("--max-tokens", type=int, default=96)
    args = parser.parse_args()
    renderer = Renderer()
    prompt = renderer.render([{"role": "user", "content": "Answer with a JSON object of example values."}])
    print(f"{args.n} replies per schema and grammar, temperature 1, cap {args.max_tokens} tokens; {load()}\n")
    print("| schema | our compiler | valid (ours) | llama.cpp json_schema_to_grammar (llguidance) | valid |")
    print("|---|---|---|---|---|")
    engine = EngineProcess(2, 1024)
    try:
        for label, schema in SCHEMAS.items():
            theirs = xllamacpp.json_schema_to_grammar(json.dumps(schema))
            try:
                ours: str | None = json_schema_grammar(schema)
                taken = "compiles"
            except UnsupportedSchema as exc:
                ours, taken = None, f"refuses ({exc.construct})"
            counts = []
            for grammar in (ours, theirs):
                if grammar is None:
                    counts.append("-")
                    continue
                replies = [
                    raw_completion(
                        engine.client, prompt, args.max_tokens, temperature=1.0, grammar=grammar, seed=seed
                    )
                    for seed in range(args.n)
                ]
                ok = sum(valid(r.text, schema) for r in replies)
                cut = sum(r.tokens >= args.max_tokens for r in replies)
                counts.append(f"{ok}/{args.n}" + (f" ({cut} cut at the cap)" if cut else ""))
            kind = theirs.splitlines()[0] if theirs.startswith("%") else "GBNF"
            print(f"| {label} | {taken} | {counts[0]} | {kind} | {counts[1]} |", flush=True)
    finally:
        engine.stop()
    print(f"\n{load()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
