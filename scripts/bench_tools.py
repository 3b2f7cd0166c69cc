"""Function calling on the default model: grammar-constrained calls (tool_choice required) vs free generation.

For N prompts (varied user requests over three function schemas) the prompt is built with the tool format's
`prepare` and the model's own chat template (rendered as assistd's backend does), then llama.cpp's server
engine (an `assistd engine` process, the engine assistd generates with) answers
  - constrained: decoding under a grammar for one call to any of the functions,
  - free: the same prompt without a grammar,
and we count the replies whose tool call parses and whose arguments validate against the schema, and those
that hit the token cap (a grammar bounds the form, not the length of a string: a rambling model is cut off).

--grammar chooses who turns the JSON schemas into the grammar (our format's tool-call wrapper around it):
  assistd     our compiler (tools/calls/gbnf.py), GBNF: what assistd sends;
  llguidance  llama.cpp's json_schema_to_grammar as the xllamacpp wheel builds it (with LLGUIDANCE: it
              returns `%json {schema}` for llguidance, not GBNF), the wrapper rewritten in llguidance's Lark;
  gbnf-port   the Python port of llama.cpp's json_schema_to_grammar in llama-cpp-python (GBNF).

    .venv/bin/python scripts/bench_tools.py --n 100 [--grammar assistd]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
from concurrent.futures import ThreadPoolExecutor

from assistd.tools.calls import format_for, template_takes_tools, validate_arguments
from bench_support import ENTRY, MODEL_PATH, EngineProcess, Renderer, load, raw_completion

FUNCTIONS = [
    {
        "name": "get_weather",
        "description": "Get the current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "City name, e.g. Paris"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city"],
        },
    },
    {
        "name": "convert_currency",
        "description": "Convert an amount of money from one currency to another.",
        "parameters": {
            "type": "object",
            "properties": {
                "amount": {"type": "number", "minimum": 0},
                "from_currency": {
                    "type": "string",
                    "minLength": 3,
                    "maxLength": 3,
                    "description": "ISO code",
                },
                "to_currency": {"type": "string", "minLength": 3, "maxLength": 3, "description": "ISO code"},
            },
            "required": ["amount", "from_currency", "to_currency"],
        },
    },
    {
        "name": "create_event",
        "description": "Put an event in the user's calendar.",
        "parameters": {
            "type": "object",
            "properties": {
                "title": {"type": "string"},
                "date": {"type": "string", "format": "date"},
                "attendees": {"type": "array", "items": {"type": "string"}, "maxItems": 5},
                "all_day": {"type": "boolean"},
                "reminder_minutes": {"type": "integer", "minimum": 0, "maximum": 1440},
            },
            "required": ["title", "date"],
        },
    },
]
SCHEMAS = {f["name"]: f["parameters"] for f in FUNCTIONS}

CITIES = ["Paris", "Tokyo", "Berlin", "Lima", "Cairo", "Oslo", "Toronto", "Hanoi", "Madrid", "Nairobi"]
CURRENCIES = ["USD", "EUR", "JPY", "GBP", "CHF", "CNY", "INR", "BRL"]
NAMES = ["Alice", "Bob", "Chen", "Dana", "Emeka", "Farah"]
EVENTS = ["team sync", "dentist", "project review", "birthday dinner", "yoga class", "budget meeting"]
WEATHER = [
    "What's the weather like in {city}?",
    "Is it raining in {city} right now?",
    "How warm is it in {city} today, in {unit}?",
    "Tell me the current temperature in {city}.",
]
CURRENCY = [
    "Convert {amount} {a} to {b}.",
    "How much is {amount} {a} in {b}?",
    "I have {amount} {a}; what is that in {b}?",
]
EVENT = [
    "Schedule a {event} on {date} with {who}.",
    "Add '{event}' to my calendar for {date}.",
    "Create an all-day event called {event} on {date} and remind me {mins} minutes before.",
]


def prompts(n: int, seed: int = 7) -> list[tuple[str, str]]:
    """(user message, the function it asks for), cycling through the three kinds."""
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        kind = i % 3
        if kind == 0:
            text = rnd.choice(WEATHER).format(
                city=rnd.choice(CITIES), unit=rnd.choice(["celsius", "fahrenheit"])
            )
            out.append((text, "get_weather"))
        elif kind == 1:
            a, b = rnd.sample(CURRENCIES, 2)
            text = rnd.choice(CURRENCY).format(amount=rnd.choice([5, 20, 99.5, 250, 1000]), a=a, b=b)
            out.append((text, "convert_currency"))
        else:
            date = f"2026-{rnd.randint(1, 12):02d}-{rnd.randint(1, 28):02d}"
            who = " and ".join(rnd.sample(NAMES, 2))
            text = rnd.choice(EVENT).format(
                event=rnd.choice(EVENTS), date=date, who=who, mins=rnd.choice([10, 30])
            )
            out.append((text, "create_event"))
    return out


def judge(fmt, text: str, wanted: str) -> tuple[bool, bool, bool]:
    """(a call parsed, its arguments validate, it calls the function the user asked for), first call only."""
    reply = fmt.parse(text)
    if not reply.calls:
        return False, False, False
    call = reply.calls[0]
    valid = call.name in SCHEMAS and validate_arguments(SCHEMAS[call.name], call.arguments) is None
    return True, valid, call.name == wanted


def table(rows: dict[str, list[tuple]]) -> str:
    lines = [
        "| decoding | replies | call parses | arguments validate | right function | cut at the cap "
        "| s per reply | tokens |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for mode, rs in rows.items():
        n = len(rs)
        shares = [f"{100 * sum(r[k] for r in rs) / n:.0f}%" for k in (0, 1, 2, 5)]
        mean_t = statistics.mean(r[3] for r in rs)
        mean_tok = statistics.mean(r[4] for r in rs)
        label = "grammar (tool_choice required)" if mode == "constrained" else "free (no grammar)"
        lines.append(f"| {label} | {n} | {' | '.join(shares)} | {mean_t:.2f} | {mean_tok:.0f} |")
    return "\n".join(lines)


def llguidance_grammar(functions: list[dict]) -> str:
    """The generic format's single-call wrapper in llguidance's Lark, each function's arguments from
    llama.cpp's json_schema_to_grammar (`%json {...}` in this build)."""
    import xllamacpp

    from assistd.tools.calls.formats import args_schema

    lines = ["%llguidance {}", 'start: "<tool_call>" "\\n"? "[" "\\n"? call "\\n"? "]</tool_call>"']
    lines.append("call: " + " | ".join(f"call_{i}" for i in range(len(functions))))
    for i, fn in enumerate(functions):
        converted = xllamacpp.json_schema_to_grammar(json.dumps(args_schema(fn["parameters"])))
        body = converted.split("start:", 1)[1].strip()  # "%json {...}"
        name = json.dumps(json.dumps(fn["name"]))
        lines.append(f'call_{i}: "{{\\"name\\":" " "? {name} "," " "? "\\"arguments\\":" " "? args_{i} "}}"')
        lines.append(f"args_{i}: {body}")
    return "\n".join(lines) + "\n"


def port_grammar(functions: list[dict]) -> str:
    """The generic format's single-call wrapper in GBNF around llama-cpp-python's port of llama.cpp's
    json_schema_to_grammar."""
    from llama_cpp.llama_grammar import SchemaConverter

    from assistd.tools.calls.formats import args_schema

    conv = SchemaConverter(prop_order={}, allow_fetch=False, dotall=False, raw_pattern=False)
    calls = []
    for fn in functions:
        schema = conv.resolve_refs(args_schema(fn["parameters"]), fn["name"])
        args = conv.visit(schema, f"{fn['name'].replace('_', '-')}-args")
        name = json.dumps(json.dumps(fn["name"]))
        calls.append(f'"{{\\"name\\":" space {name} "," space "\\"arguments\\":" space {args} "}}"')
    root = 'root ::= "<tool_call>" "\\n"? "[" "\\n"? call "\\n"? "]</tool_call>"'
    return f"{root}\ncall ::= {' | '.join(f'( {c} )' for c in calls)}\n{conv.format_grammar()}\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100, help="number of prompts")
    ap.add_argument("--max-tokens", type=int, default=128, help="cap for grammar-constrained replies")
    ap.add_argument("--free-max-tokens", type=int, default=64, help="cap for free replies (a call needs ~40)")
    ap.add_argument("--temperature", type=float, default=0.7)
    ap.add_argument("--threads", type=int, default=None, help="engine CPU threads (default: the engine's)")
    ap.add_argument("--parallel", type=int, default=4, help="requests at once (engine slots)")
    ap.add_argument("--grammar", choices=["assistd", "llguidance", "gbnf-port"], default="assistd")
    ap.add_argument("--no-free", action="store_true", help="only the grammar-constrained replies")
    ap.add_argument("--verbose", action="store_true", help="print every reply")
    args = ap.parse_args()

    renderer = Renderer()
    template = renderer.vocab.chat_template
    fmt = format_for(template)
    takes = template_takes_tools(template)
    tools = [{"type": "function", "function": f} for f in FUNCTIONS]
    if args.grammar == "assistd":
        grammar = fmt.grammar(FUNCTIONS, parallel=False)
    else:
        assert fmt.name == "generic", "the other grammars are written for the generic format's wrapper"
        grammar = llguidance_grammar(FUNCTIONS) if args.grammar == "llguidance" else port_grammar(FUNCTIONS)
    if args.verbose:
        print(grammar)
    print(
        f"model {MODEL_PATH.name} · format {fmt.name} · template takes tools: {takes} · n={args.n} · "
        f"grammar {args.grammar} ({len(grammar)} chars) · llama.cpp server engine, {args.parallel} slots; "
        f"{load()}"
    )

    engine = EngineProcess(args.parallel, 2048, args.threads)
    modes = ("constrained",) if args.no_free else ("constrained", "free")
    rows: dict[str, list[tuple]] = {mode: [] for mode in modes}

    def ask(i: int, question: str, wanted: str, mode: str) -> tuple:
        messages, tools_arg = fmt.prepare([{"role": "user", "content": question}], tools, takes)
        prompt = renderer.render(messages, tools_arg)
        cap = args.max_tokens if mode == "constrained" else args.free_max_tokens
        grammar_of_mode = grammar if mode == "constrained" else None
        # as a run asks (engine/reply.py `verbatim`): no repetition penalty under a grammar
        penalty = 1.0 if grammar_of_mode else ENTRY.repeat_penalty
        out = raw_completion(
            engine.client,
            prompt,
            cap,
            temperature=args.temperature,
            grammar=grammar_of_mode,
            seed=i,
            repeat_penalty=penalty,
        )
        row = (*judge(fmt, out.text, wanted), out.total, out.tokens, out.tokens >= cap)
        if args.verbose:
            print(f"[{i} {mode}] {question!r} -> {out.text!r} {row[:3]}", flush=True)
        return row

    try:
        with ThreadPoolExecutor(args.parallel) as pool:
            jobs = [
                (mode, pool.submit(ask, i, question, wanted, mode))
                for i, (question, wanted) in enumerate(prompts(args.n))
                for mode in modes
            ]
            for k, (mode, job) in enumerate(jobs):
                rows[mode].append(job.result())
                done, last = divmod(k + 1, len(modes))
                if not args.verbose and not last and done % 10 == 0 and done < args.n:
                    print(f"after {done}/{args.n}:\n{table(rows)}", flush=True)
    finally:
        engine.stop()

    print(f"\n{load()}")
    print(table(rows))


if __name__ == "__main__":
    main()
