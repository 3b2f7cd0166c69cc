"""Function calling on the default model: grammar-constrained calls (tool_choice required) vs free generation.

For N prompts (varied user requests over three function schemas) the prompt is built with the tool format's
`prepare` and the model's own chat template (rendered like llama-cpp-python does), then the model answers
  - constrained: decoding under the format's grammar (one call, any of the functions),
  - free: the same prompt without a grammar,
and we count the replies whose tool call parses and whose arguments validate against the schema.

    .venv/bin/python scripts/bench_tools.py --n 100
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from assistd.tools.calls import format_for, template_takes_tools, validate_arguments  # noqa: E402

DEFAULT_MODEL = ROOT / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"

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
        "| decoding | replies | call parses | arguments validate | right function | s per reply | tokens |",
        "|---|---|---|---|---|---|---|",
    ]
    for mode, rs in rows.items():
        n = len(rs)
        shares = [f"{100 * sum(r[k] for r in rs) / n:.0f}%" for k in range(3)]
        mean_t = statistics.mean(r[3] for r in rs)
        mean_tok = statistics.mean(r[4] for r in rs)
        label = "grammar (tool_choice required)" if mode == "constrained" else "free (no grammar)"
        lines.append(f"| {label} | {n} | {' | '.join(shares)} | {mean_t:.2f} | {mean_tok:.0f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100, help="number of prompts")
    ap.add_argument("--model", default=str(DEFAULT_MODEL))
    ap.add_argument("--max-tokens", type=int, default=128, help="cap for grammar-constrained replies")
    ap.add_argument("--free-max-tokens", type=int, default=64, help="cap for free replies (a call needs ~40)")
    ap.add_argument("--temperature", type=float, default=0.7)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--verbose", action="store_true", help="print every reply")
    args = ap.parse_args()

    import llama_cpp
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    llm = llama_cpp.Llama(model_path=args.model, n_ctx=2048, n_threads=args.threads, seed=1, verbose=False)
    template = llm.metadata["tokenizer.chat_template"]
    eos = llm._model.token_get_text(llm.token_eos())
    bos = llm._model.token_get_text(llm.token_bos())
    render = Jinja2ChatFormatter(template, eos_token=eos, bos_token=bos)
    fmt = format_for(template)
    takes = template_takes_tools(template)
    tools = [{"type": "function", "function": f} for f in FUNCTIONS]
    grammar = llama_cpp.LlamaGrammar.from_string(fmt.grammar(FUNCTIONS, parallel=False), verbose=False)
    print(f"model {Path(args.model).name} · format {fmt.name} · template takes tools: {takes} · n={args.n}")

    rows = {"constrained": [], "free": []}
    for i, (question, wanted) in enumerate(prompts(args.n)):
        messages, tools_arg = fmt.prepare([{"role": "user", "content": question}], tools, takes)
        prompt = render(messages=messages, tools=tools_arg).prompt
        for mode in ("constrained", "free"):
            t0 = time.perf_counter()
            out = llm.create_completion(
                prompt,
                max_tokens=args.max_tokens if mode == "constrained" else args.free_max_tokens,
                temperature=args.temperature,
                seed=i,
                grammar=grammar if mode == "constrained" else None,
            )
            dt = time.perf_counter() - t0
            text = out["choices"][0]["text"]
            rows[mode].append((*judge(fmt, text, wanted), dt, out["usage"]["completion_tokens"]))
            if args.verbose:
                print(f"[{i} {mode}] {question!r} -> {text!r} {rows[mode][-1][:3]}", flush=True)
        if not args.verbose and (i + 1) % 10 == 0 and i + 1 < args.n:
            print(f"after {i + 1}/{args.n}:\n{table(rows)}", flush=True)

    print()
    print(table(rows))


if __name__ == "__main__":
    main()
