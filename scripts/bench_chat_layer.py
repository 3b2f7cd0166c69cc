"""Should assistd hand its chat layer to the engine? llama.cpp's server (`assistd engine`, the xllamacpp wheel
assistd embeds) offers `/v1/chat/completions` with jinja templates, tools, tool_choice, reasoning_format and
its own tool-call and reasoning parsers, `/apply-template` and `/tokenize`. This measures, on the default
model (SmolLM2-135M, whose template knows no tools):

  1. what that chat layer offers here: each feature yes/no with its evidence (status, error text, the chat
     format the engine picked as /slots reports it, the prompt it rendered);
  2. the cost of counting before sending through the engine: a turn must be rendered and counted before it
     is sent (engine/context.py fit: 1 render when it fits, 3 and a count per message when it truncates):
     local ChatRenderer + GGUFVocab (what assistd does) vs /apply-template + /tokenize over loopback HTTP,
     for threads of 2, 20 and 60 messages of ~60 tokens, with the engine idle and with 4 replies generating;
  3. function calling on the default model: the engine's layer (tools, tool_choice auto / required) vs
     assistd's path (scripts/bench_tools.py's prompts and functions: the tool format's prompt, its grammar
     when a call is required, free generation under auto), temperature 0.7, cap 128 tokens, 4 at once;
  4. KV reuse on turn 2 of a thread (timings.cache_n): chat endpoint vs /completion with token ids;
  5. (beyond the default model's template) the same chat layer with other families' real templates
     (tests/fixtures/templates) on the same weights: the format picked, whether tools reach the prompt,
     calls under auto / required / a named function, reasoning split and echo, enable_thinking.

    .venv/bin/python scripts/bench_chat_layer.py [--reps 50] [--n 40] [--templates qwen3,...] [--json [PATH]]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from assistd.llm.vocab import prompt_tokens
from assistd.tools.calls import format_for, template_takes_tools, validate_arguments
from bench_support import (
    ENTRY,
    MODEL_PATH,
    ROOT,
    EngineProcess,
    Renderer,
    free_port,
    load,
    raw_completion,
    stop_process,
    wait_healthy,
)
from bench_tools import FUNCTIONS, SCHEMAS, judge, prompts

TOOLS = [{"type": "function", "function": f} for f in FUNCTIONS]
WORDS_TEXT = (
    "the a report shows our team will review budget data next week after client feedback on quarterly "
    "results while engineers fix deployment issues and update documentation for new users who asked about "
    "pricing travel plans meeting notes summary project timeline risks and open questions"
)
WORDS = WORDS_TEXT.split()
INSTRUCTIONS = "You are a helpful assistant for a small company. Answer briefly and precisely."
THINK_REPLY = 'root ::= "<think>" [a-z ]{3,20} "</think>" "Hello there."'
SECRET = "SECRETREASONING"
TEMPLATES_DIR = ROOT / "tests" / "fixtures" / "templates"


# --- helpers ---------------------------------------------------------------------------------------------


def loadavg() -> str:
    return Path("/proc/loadavg").read_text().strip()


def machine() -> dict[str, Any]:
    cpu = next(
        (
            ln.split(":", 1)[1].strip()
            for ln in Path("/proc/cpuinfo").read_text().splitlines()
            if "model name" in ln
        ),
        platform.processor(),
    )
    mem = next(ln for ln in Path("/proc/meminfo").read_text().splitlines() if ln.startswith("MemTotal"))
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "mem": mem.split(":", 1)[1].strip(),
        "python": sys.version.split()[0],
    }


def chat(client: httpx.Client, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    r = client.post("/v1/chat/completions", json=body, headers={"Connection": "close"})
    try:
        return r.status_code, r.json()
    except ValueError:
        return r.status_code, {"error": {"message": r.text[:200]}}


def error_text(body: dict[str, Any]) -> str:
    err = body.get("error")
    return (err.get("message") if isinstance(err, dict) else str(err)) or ""


def message(body: dict[str, Any]) -> dict[str, Any]:
    choices = body.get("choices") or [{}]
    return choices[0].get("message") or {}


def last_slot_params(client: httpx.Client) -> dict[str, Any]:
    """The params of the slot that ran the newest task (GET /slots): chat_format, reasoning_format."""
    slots = [s for s in client.get("/slots").json() if "id_task" in s]
    return max(slots, key=lambda s: s["id_task"])["params"] if slots else {}


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def check_call(msg: dict[str, Any], wanted: str | None) -> tuple[bool, bool, bool]:
    """(a tool call came back, its function exists and its arguments validate, it is the wanted function)."""
    calls = msg.get("tool_calls") or []
    if not calls:
        return False, False, False
    fn = calls[0].get("function") or {}
    name, args = fn.get("name"), fn.get("arguments")
    if not isinstance(args, str):
        args = json.dumps(args)
    valid = name in SCHEMAS and validate_arguments(SCHEMAS[name], args) is None
    return True, valid, name == wanted


def yn(flag: bool) -> str:
    return "yes" if flag else "no"


# --- 1. what the chat layer offers -----------------------------------------------------------------------


def capabilities(engine: EngineProcess, renderer: Renderer, k: int = 4) -> list[dict[str, str]]:
    c = engine.client
    user = [{"role": "user", "content": "What's the weather in Paris?"}]
    base = {"messages": user, "max_tokens": 64, "temperature": 0.7, "top_p": ENTRY.top_p}
    found: list[dict[str, str]] = []

    def add(feature: str, answer: str, evidence: str) -> None:
        found.append({"feature": feature, "answer": answer, "evidence": evidence})

    props = c.get("/props").json()
    caps = props.get("chat_template_caps") or {}
    status, plain = chat(c, {**base, "seed": 1})
    plain_tokens = (plain.get("usage") or {}).get("prompt_tokens")
    status, body = chat(c, {**base, "tools": TOOLS, "seed": 1})
    params = last_slot_params(c)
    tools_tokens = (body.get("usage") or {}).get("prompt_tokens")
    add(
        "/v1/chat/completions with tools (jinja on)",
        yn(status == 200),
        f"HTTP {status} {error_text(body)}; /props chat_template_caps supports_tools="
        f"{caps.get('supports_tools')} supports_tool_calls={caps.get('supports_tool_calls')}",
    )
    add(
        "chat format llama.cpp picks for this template",
        str(params.get("chat_format")),
        f"/slots params chat_format={params.get('chat_format')!r} reasoning_format="
        f"{params.get('reasoning_format')!r} generation_prompt={params.get('generation_prompt')!r}",
    )
    applied = c.post("/apply-template", json={"messages": user, "tools": TOOLS}).json().get("prompt", "")
    add(
        "tools reach the prompt",
        yn(tools_tokens != plain_tokens or "get_weather" in applied),
        f"prompt_tokens {plain_tokens} without tools, {tools_tokens} with 3 tools; "
        f"/apply-template with tools names get_weather: {'get_weather' in applied}",
    )

    def calls_under(extra: dict[str, Any]) -> tuple[int, list[str]]:
        got, errors = 0, []
        for seed in range(k):
            status, body = chat(c, {**base, "tools": TOOLS, "seed": seed, **extra})
            if status != 200:
                errors.append(f"HTTP {status} {error_text(body)}")
            elif message(body).get("tool_calls"):
                got += 1
        return got, errors

    got, errors = calls_under({"tool_choice": "required"})
    add(
        'tool_choice "required" accepted',
        yn(not errors),
        f"{len(errors)} errors of {k}; {errors[:1]}" if errors else f"HTTP 200 for {k} of {k}",
    )
    add('tool_choice "required" forces a call', yn(got == k), f"{got} of {k} replies carry tool_calls")
    named = {"type": "function", "function": {"name": "convert_currency"}}
    got, errors = calls_under({"tool_choice": named})
    add(
        "tool_choice named function accepted",
        yn(not errors),
        (f"{errors[0]}" if errors else f"HTTP 200, {got} of {k} replies carry tool_calls")
        + "; llama.cpp parses tool_choice as a string only",
    )
    status, body = chat(c, {**base, "tools": TOOLS, "tool_choice": "some_function"})
    add("tool_choice other strings", f"HTTP {status}", error_text(body))
    status, body = chat(c, {**base, "tools": TOOLS, "grammar": 'root ::= "x"'})
    add("a grammar of ours with tools", yn(status == 200), f"HTTP {status} {error_text(body)}")

    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "temperature": {"type": "integer"}},
        "required": ["city", "temperature"],
    }
    fmt = {"type": "json_schema", "json_schema": {"name": "w", "schema": schema}}
    ok = 0
    for seed in range(k):
        status, body = chat(c, {**base, "response_format": fmt, "seed": seed, "max_tokens": 128})
        content = message(body).get("content") or ""
        ok += status == 200 and validate_arguments(schema, content) is None
    add("response_format json_schema", yn(ok == k), f"{ok} of {k} replies validate against the schema")
    unique = {
        "type": "array",
        "items": {"type": "integer"},
        "uniqueItems": True,
        "minItems": 3,
        "maxItems": 3,
    }
    fmt_u = {"type": "json_schema", "json_schema": {"name": "u", "schema": unique}}
    ok = 0
    for seed in range(k):
        status, body = chat(c, {**base, "response_format": fmt_u, "seed": seed})
        content = message(body).get("content") or ""
        try:
            value = json.loads(content)
            ok += isinstance(value, list) and len(set(value)) == len(value) == 3
        except ValueError:
            pass
    add(
        "json_schema keyword uniqueItems enforced",
        yn(ok == k),
        f"HTTP {status}, {ok} of {k} arrays of 3 hold distinct items (accepted without an error)",
    )

    messages = [{"role": "system", "content": INSTRUCTIONS}, *user]
    r = c.post("/apply-template", json={"messages": messages})
    prompt = r.json().get("prompt") if r.status_code == 200 else None
    add(
        "/apply-template",
        yn(r.status_code == 200),
        f"HTTP {r.status_code}; equals assistd's own render: {prompt == renderer.render(messages)}",
    )

    status, body = chat(c, {**base, "reasoning_format": "deepseek", "seed": 1})
    status_bad, bad = chat(c, {**base, "reasoning_format": "bogus"})
    add(
        "reasoning_format reaches it",
        yn(status == 200 and status_bad != 200),
        f'"deepseek": HTTP {status}; "bogus": HTTP {status_bad} {error_text(bad)}',
    )
    forced = {"messages": user, "grammar": THINK_REPLY, "max_tokens": 40, "temperature": 0.7, "seed": 3}
    split = []
    for fmt_name in ("none", "auto", "deepseek"):
        status, body = chat(c, {**forced, "reasoning_format": fmt_name})
        msg = message(body)
        split.append(
            f"{fmt_name}: content={msg.get('content')!r} reasoning_content={msg.get('reasoning_content')!r}"
        )
    add(
        "reasoning split from a reply written <think>…</think>answer (grammar-forced)",
        yn(any("reasoning_content='" in s for s in split)),
        "; ".join(split),
    )
    deltas: list[str] = []
    body = {**forced, "reasoning_format": "deepseek", "stream": True}
    with c.stream("POST", "/v1/chat/completions", json=body, headers={"Connection": "close"}) as r:
        for line in r.iter_lines():
            if line.startswith("data:") and "[DONE]" not in line:
                for choice in json.loads(line[5:]).get("choices") or []:
                    deltas.append((choice.get("delta") or {}).get("content") or "")
    streamed = "".join(deltas)
    add(
        "think markup kept out of streamed content",
        yn("<think>" not in streamed),
        f"content deltas joined: {streamed!r}",
    )
    applied = [
        c.post("/apply-template", json={"messages": user, "chat_template_kwargs": kw}).json().get("prompt")
        for kw in ({}, {"add_generation_prompt": False}, {"enable_thinking": False})
    ]
    status, body = chat(c, {**base, "chat_template_kwargs": {"enable_thinking": False}, "seed": 1})
    add(
        "chat_template_kwargs reach the template",
        "accepted; no effect seen" if len(set(applied)) == 1 else "yes",
        f"chat HTTP {status}; /apply-template renders differ with kwargs: {len(set(applied)) > 1} "
        "(SmolLM2's template reads no extra variable; add_generation_prompt in kwargs does not override)",
    )
    turns = [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello.", "reasoning_content": SECRET},
        {"role": "user", "content": "Again"},
    ]
    echoed = SECRET in (c.post("/apply-template", json={"messages": turns}).json().get("prompt") or "")
    add("earlier turn's reasoning_content written back into the prompt", yn(echoed), "/apply-template")
    return found


# --- 2. counting before sending ------------------------------------------------------------------------


def make_thread(n: int, renderer: Renderer, seed: int) -> list[dict[str, str]]:
    """`n` messages of about 60 tokens each, alternating, ending with a user message."""
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        role = "user" if (n - 1 - i) % 2 == 0 else "assistant"
        words: list[str] = []
        while renderer.count(" ".join(words)) < 60 and len(words) < 200:
            words += rnd.sample(WORDS, 5)
        out.append({"role": role, "content": " ".join(words).capitalize() + "."})
    return out


class Load:
    """4 replies of 128 tokens generating on the engine while a measurement runs (bounded)."""

    def __init__(self, engine: EngineProcess, renderer: Renderer) -> None:
        self._stop = threading.Event()
        prompt = renderer.render([{"role": "user", "content": "Write a long story about a lighthouse."}])
        self._threads = [
            threading.Thread(target=self._loop, args=(engine, prompt, i), daemon=True) for i in range(4)
        ]

    def _loop(self, engine: EngineProcess, prompt: str, i: int) -> None:
        for k in range(10_000):
            if self._stop.is_set():
                return
            raw_completion(engine.client, prompt, 128, temperature=0.8, seed=1000 * i + k, cache_prompt=False)

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        time.sleep(2.0)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=120)


def counting(engine: EngineProcess, renderer: Renderer, reps: int, sizes: list[int]) -> list[dict[str, Any]]:
    http = httpx.Client(base_url=engine.url, timeout=60)
    vocab = renderer.vocab

    def local_count(text: str) -> int:
        return len(vocab.tokenize(text))

    def local_render(messages: list[dict[str, Any]]) -> int:
        return len(prompt_tokens(vocab, renderer.render(messages)))

    def engine_count(text: str) -> int:
        r = http.post("/tokenize", json={"content": text, "add_special": False, "parse_special": True})
        return len(r.json()["tokens"])

    def engine_render(messages: list[dict[str, Any]]) -> int:
        prompt = http.post("/apply-template", json={"messages": messages}).json()["prompt"]
        r = http.post("/tokenize", json={"content": prompt, "add_special": True, "parse_special": True})
        return len(r.json()["tokens"])

    def engine_template(messages: list[dict[str, Any]]) -> str:
        return http.post("/apply-template", json={"messages": messages}).json()["prompt"]

    paths = {
        "local": (local_render, local_count, renderer.render),
        "engine HTTP": (engine_render, engine_count, engine_template),
    }
    rows: list[dict[str, Any]] = []
    try:
        for state in ("idle", "4 replies generating"):
            threads = {n: make_thread(n, renderer, seed=n) for n in sizes}
            ctx = Load(engine, renderer) if state != "idle" else None
            if ctx:
                ctx.__enter__()
            try:
                for n, thread in threads.items():
                    messages = [{"role": "system", "content": INSTRUCTIONS}, *thread]
                    agree = local_render(messages) == engine_render(messages)
                    tokens = local_render(messages)
                    samples: dict[str, dict[str, list[float]]] = {
                        name: {"fits": [], "truncating": [], "render_only": []} for name in paths
                    }
                    for _ in range(reps):  # the paths interleaved: a change of load hits both
                        for name, (render, count, render_only) in paths.items():
                            t0 = time.perf_counter()
                            render(messages)
                            t1 = time.perf_counter()
                            # fit() truncating: the whole render, an estimate per message, 2 more renders
                            render(messages)
                            for m in thread:
                                count(m["content"])
                            render(messages[:1] + thread[len(thread) // 2 :])
                            render(messages[:1] + thread[-1:])
                            t2 = time.perf_counter()
                            render_only(messages)
                            t3 = time.perf_counter()
                            samples[name]["fits"].append(1000 * (t1 - t0))
                            samples[name]["truncating"].append(1000 * (t2 - t1))
                            samples[name]["render_only"].append(1000 * (t3 - t2))
                    for name, got in samples.items():
                        row: dict[str, Any] = {
                            "state": state,
                            "messages": n,
                            "prompt_tokens": tokens,
                            "path": name,
                        }
                        for key, values in got.items():
                            row[f"{key}_median_ms"] = statistics.median(values)
                            row[f"{key}_p95_ms"] = pct(values, 0.95)
                        row["same_tokens_as_local"] = agree
                        rows.append(row)
            finally:
                if ctx:
                    ctx.__exit__()
    finally:
        http.close()
    return rows


# --- 3. function calling ----------------------------------------------------------------------------------


def function_calling(
    engine: EngineProcess,
    renderer: Renderer,
    n: int,
    parallel: int,
    temperature: float,
    cap: int,
    verbose: bool = False,
) -> dict[str, dict[str, Any]]:
    template = renderer.vocab.chat_template
    fmt = format_for(template)
    takes = template_takes_tools(template)
    grammar = fmt.grammar(FUNCTIONS, parallel=False)
    continuation = fmt.grammar(FUNCTIONS, parallel=False, continuation=True)
    names = [f["name"] for f in FUNCTIONS]
    opening = fmt.call_markers(names)
    others = [m for m in fmt.stop_markers(names) if not any(o in m for o in opening)]

    def prepared(question: str) -> str:
        messages, tools_arg = fmt.prepare([{"role": "user", "content": question}], TOOLS, takes)
        return renderer.render(messages, tools_arg)

    def completion(
        prompt: str,
        n_predict: int,
        seed: int,
        penalty: float,
        stop: list[str] | None = None,
        grammar: str = "",
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "prompt": prompt,
            "n_predict": n_predict,
            "temperature": temperature,
            "top_p": ENTRY.top_p,
            "repeat_penalty": penalty,
            "seed": seed,
            "stop": stop or [],
            "cache_prompt": True,
        }
        if grammar:
            body["grammar"] = grammar
        return engine.client.post("/completion", json=body, headers={"Connection": "close"}).json()

    def ask(i: int, question: str, wanted: str, mode: str) -> tuple:
        start = time.perf_counter()
        if mode.startswith("engine"):
            choice = "required" if "required" in mode else "auto"
            body = {
                "messages": [{"role": "user", "content": question}],
                "tools": TOOLS,
                "tool_choice": choice,
                "max_tokens": cap,
                "temperature": temperature,
                "top_p": ENTRY.top_p,
                "repeat_penalty": 1.0 if choice == "required" else ENTRY.repeat_penalty,
                "seed": i,
            }
            _, out = chat(engine.client, body)
            msg = message(out)
            got = check_call(msg, wanted)
            tokens = int((out.get("usage") or {}).get("completion_tokens") or 0)
            prompt_n = int((out.get("usage") or {}).get("prompt_tokens") or 0)
            plain = not got[0] and bool((msg.get("content") or "").strip())
            capped = ((out.get("choices") or [{}])[0].get("finish_reason")) == "length"
            text = json.dumps(msg)
        elif "required" in mode:  # bench_tools' constrained mode: one call under the format's grammar
            prompt = prepared(question)
            out_t = raw_completion(
                engine.client,
                prompt,
                cap,
                temperature=temperature,
                grammar=grammar,
                seed=i,
                repeat_penalty=1.0,
            )
            got = judge(fmt, out_t.text, wanted)
            tokens, text, prompt_n = out_t.tokens, out_t.text, out_t.prompt_tokens
            plain = not got[0] and bool(text.strip())
            capped = tokens >= cap
        else:  # engine/reply.py _auto: free text until a call opens, the call then finished under the grammar
            prompt = prepared(question)
            first = completion(prompt, cap, i, ENTRY.repeat_penalty, stop=[*opening, *others])
            text, tokens = first["content"], int(first.get("tokens_predicted") or 0)
            prompt_n = int(first.get("tokens_evaluated") or 0)
            capped = first.get("stop_type") == "limit"
            if first.get("stop_type") == "word" and first.get("stopping_word") in opening:
                head = fmt.head(text)
                rest = completion(prompt + head, cap, i, 1.0, grammar=continuation)
                call_text = head[len(text) :] + rest["content"]
                got = judge(fmt, call_text, wanted)
                tokens += int(rest.get("tokens_predicted") or 0)
                capped = rest.get("stop_type") == "limit"
                text = head + rest["content"]
            else:
                got = (False, False, False)
            plain = not got[0] and bool(text.strip())
        took = time.perf_counter() - start
        if verbose:
            print(
                f"[{mode} {i}] {took:.1f}s {tokens} tokens {question!r} -> {text[:200]!r} {got}", flush=True
            )
        return (*got, plain, capped, took, tokens, text, prompt_n)

    modes = [
        "engine chat, auto",
        "engine chat, required",
        "assistd, auto (free; a call opened is finished under the grammar)",
        "assistd, required (grammar)",
    ]
    results: dict[str, list[tuple]] = {m: [] for m in modes}
    with ThreadPoolExecutor(parallel) as pool:
        for mode in modes:  # one mode at a time: the times compare
            jobs = [pool.submit(ask, i, q, w, mode) for i, (q, w) in enumerate(prompts(n))]
            results[mode] = [j.result() for j in jobs]
    table: dict[str, dict[str, Any]] = {}
    for mode, rs in results.items():
        k = len(rs)
        table[mode] = {
            "replies": k,
            "call": sum(r[0] for r in rs) / k,
            "valid": sum(r[1] for r in rs) / k,
            "right_function": sum(r[2] for r in rs) / k,
            "plain_answer": sum(r[3] for r in rs) / k,
            "cut_at_cap": sum(r[4] for r in rs) / k,
            "s_per_reply": statistics.mean(r[5] for r in rs),
            "tokens": statistics.mean(r[6] for r in rs),
            "prompt_tokens": statistics.mean(r[8] for r in rs),
            "example": rs[0][7][:160],
        }
    return table


# --- 4. KV reuse across turns ----------------------------------------------------------------------------


def kv_reuse(engine: EngineProcess, renderer: Renderer, threads: int = 4) -> dict[str, dict[str, float]]:
    c = engine.client
    vocab = renderer.vocab

    def via_chat(messages: list[dict[str, Any]]) -> tuple[str, int, int]:
        _, body = chat(c, {"messages": messages, "max_tokens": 32, "temperature": 0.0})
        timings = body.get("timings") or {}
        return (
            message(body).get("content") or "",
            int(timings.get("cache_n", 0)),
            int(timings.get("prompt_n", 0)),
        )

    def via_completion(messages: list[dict[str, Any]]) -> tuple[str, int, int]:
        ids = prompt_tokens(vocab, renderer.render(messages))
        body = {"prompt": ids, "n_predict": 32, "temperature": 0.0, "cache_prompt": True}
        out = c.post("/completion", json=body, headers={"Connection": "close"}).json()
        timings = out.get("timings") or {}
        return out.get("content") or "", int(timings.get("cache_n", 0)), int(timings.get("prompt_n", 0))

    table = {}
    for name, send, seed0 in (
        ("/v1/chat/completions (messages)", via_chat, 500),
        ("/completion (token ids, assistd)", via_completion, 600),
    ):
        t1, t2 = [], []
        for k in range(threads):
            thread = make_thread(20, renderer, seed=seed0 + k)
            messages = [{"role": "system", "content": f"{INSTRUCTIONS} Case {seed0 + k}."}, *thread]
            reply, cache1, new1 = send(messages)
            follow = [
                *messages,
                {"role": "assistant", "content": reply},
                {"role": "user", "content": "Go on."},
            ]
            _, cache2, new2 = send(follow)
            t1.append((cache1, new1))
            t2.append((cache2, new2))
        table[name] = {
            "turn1_cached": statistics.mean(a for a, _ in t1),
            "turn1_evaluated": statistics.mean(b for _, b in t1),
            "turn2_cached": statistics.mean(a for a, _ in t2),
            "turn2_evaluated": statistics.mean(b for _, b in t2),
        }
    return table


# --- 5. other families' templates on the same weights ------------------------------------------------------

TEMPLATE_ENGINE = """
import sys, time, xllamacpp
p = xllamacpp.CommonParams()
p.model.path = sys.argv[1]
p.chat_template = open(sys.argv[2]).read()
p.n_parallel = 4; p.n_ctx = 4096 * 4; p.kv_unified = False; p.ctx_shift = False
p.cpuparams.n_threads = int(sys.argv[4]); p.cpuparams_batch.n_threads = int(sys.argv[4])
p.hostnames = ["127.0.0.1"]; p.port = int(sys.argv[3]); p.endpoint_slots = True; p.verbosity = 5
server = xllamacpp.Server(p)
print("listening", server.listening_address, flush=True)
for _ in range(86400):
    time.sleep(1)
"""


class TemplateEngine:
    """llama.cpp's server from the same wheel, on the default model's weights, with another chat template
    (the `assistd engine` command takes none); debug log, so that the grammar's laziness shows."""

    def __init__(self, template: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        fd, log = tempfile.mkstemp(prefix="bench-template-engine-", suffix=".log")
        self.log = Path(log)
        threads = str(max(1, (os.cpu_count() or 2) // 2))
        cmd = [sys.executable, "-c", TEMPLATE_ENGINE, str(MODEL_PATH), str(template), str(self.port), threads]
        self.proc = subprocess.Popen(cmd, stdout=fd, stderr=subprocess.STDOUT, cwd=ROOT)
        os.close(fd)
        wait_healthy(self.proc, self.url, lambda: self.log.read_text(errors="replace")[-4000:], "engine")
        self.client = httpx.Client(base_url=self.url, timeout=600)

    def log_size(self) -> int:
        return self.log.stat().st_size

    def log_since(self, offset: int) -> str:
        with self.log.open("rb") as f:
            f.seek(offset)
            return f.read().decode(errors="replace")

    def stop(self) -> None:
        self.client.close()
        stop_process(self.proc)
        self.log.unlink(missing_ok=True)


def template_family(name: str, k: int, temperature: float, cap: int) -> dict[str, Any]:
    engine = TemplateEngine(TEMPLATES_DIR / f"{name}.jinja")
    c = engine.client
    out: dict[str, Any] = {"template": name}
    try:
        out["caps"] = {
            key.removeprefix("supports_"): v
            for key, v in (c.get("/props").json().get("chat_template_caps") or {}).items()
        }
        user = [{"role": "user", "content": "What's the weather in Paris?"}]
        applied = (
            c.post("/apply-template", json={"messages": user, "tools": TOOLS}).json().get("prompt") or ""
        )
        out["tools_in_prompt"] = "convert_currency" in applied
        cases = prompts(k)

        def run(extra_of: Any, label: str) -> None:
            offset = engine.log_size()

            def one(i: int) -> tuple:
                question, wanted = cases[i]
                body = {
                    "messages": [{"role": "user", "content": question}],
                    "tools": TOOLS,
                    "max_tokens": cap,
                    "temperature": temperature,
                    "top_p": ENTRY.top_p,
                    "seed": i,
                    **extra_of(wanted),
                }
                status, resp = chat(c, body)
                if status != 200:
                    return (False, False, False, f"HTTP {status} {error_text(resp)}", False)
                capped = (resp.get("choices") or [{}])[0].get("finish_reason") == "length"
                return (*check_call(message(resp), wanted), "", capped)

            with ThreadPoolExecutor(4) as pool:
                rs = list(pool.map(one, range(k)))
            log = engine.log_since(offset)
            out[label] = {
                "call": sum(r[0] for r in rs),
                "valid": sum(r[1] for r in rs),
                "right_function": sum(r[2] for r in rs),
                "of": k,
                "cut_at_cap": sum(r[4] for r in rs),
                "grammar_lazy": "awaiting trigger" in log,
                "errors": sorted({r[3] for r in rs if r[3]}),
                "failed": sum(1 for r in rs if r[3]),
            }
            if label == "auto":
                out["chat_format"] = last_slot_params(c).get("chat_format")

        run(lambda w: {"tool_choice": "auto"}, "auto")
        run(lambda w: {"tool_choice": "required"}, "required")
        run(lambda w: {"tool_choice": {"type": "function", "function": {"name": w}}}, "named")

        rendered = [
            c.post("/apply-template", json={"messages": user, **extra}).json().get("prompt")
            for extra in (
                {},
                {"chat_template_kwargs": {"enable_thinking": False}},
                {"chat_template_kwargs": {"reasoning_effort": "high"}},
                {"reasoning_effort": "high"},
            )
        ]
        out["prompt_changed_by"] = {
            "chat_template_kwargs enable_thinking=false": rendered[0] != rendered[1],
            "chat_template_kwargs reasoning_effort=high": rendered[0] != rendered[2],
            "request reasoning_effort=high": rendered[0] != rendered[3],
        }
        source = (TEMPLATES_DIR / f"{name}.jinja").read_text()
        gen = (rendered[0] or "").rstrip()
        if "<|channel|>" in source:  # harmony: the analysis channel, then the final one
            grammar: str | None = (
                'root ::= "<|channel|>analysis<|message|>" [a-z ]{3,20} '
                '"<|end|><|start|>assistant<|channel|>final<|message|>Hello there."'
            )
        elif "<think>" in source or "think" in gen:
            grammar = THINK_REPLY.replace('"<think>" ', "") if gen.endswith("<think>") else THINK_REPLY
        else:
            grammar = None
        if grammar:
            body = {"messages": user, "grammar": grammar, "max_tokens": 60, "temperature": 0.7, "seed": 3}
            status, resp = chat(c, {**body, "reasoning_format": "deepseek"})
            msg = message(resp)
            out["reasoning_split"] = (
                {"content": msg.get("content"), "reasoning_content": msg.get("reasoning_content")}
                if status == 200
                else f"HTTP {status} {error_text(resp)}"
            )
        else:
            out["reasoning_split"] = "n/a (the template writes no reasoning markup)"
        turns = [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello.", "reasoning_content": SECRET},
            {"role": "user", "content": "Again"},
        ]
        r = c.post("/apply-template", json={"messages": turns})
        out["earlier_reasoning_echoed"] = (
            SECRET in r.text if r.status_code == 200 else f"HTTP {r.status_code}"
        )
        call = {
            "id": "a1b2c3d4e",  # Mistral wants 9 letters and digits
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city": "Rome"}'},
        }
        loop = [
            {"role": "user", "content": "Weather in Rome?"},
            {"role": "assistant", "content": "", "tool_calls": [call], "reasoning_content": SECRET},
            {"role": "tool", "tool_call_id": "a1b2c3d4e", "content": "sunny"},
        ]
        r = c.post("/apply-template", json={"messages": loop, "tools": TOOLS})
        out["tool_loop_reasoning_kept"] = (
            SECRET in r.text if r.status_code == 200 else f"HTTP {r.status_code}"
        )
    finally:
        engine.stop()
    return out


# --- output ------------------------------------------------------------------------------------------------


def print_tables(doc: dict[str, Any]) -> None:
    m = doc["machine"]
    print(f"\nmachine: {m['cpu']}, {m['cores']} cores, {m['mem']}; model {MODEL_PATH.name}")
    print(f"load before {doc['load_before']} · after {doc['load_after']}")
    if "capabilities" in doc:
        print("\n## 1. llama.cpp's chat layer on this engine (SmolLM2's template)\n")
        print("| feature | answer | evidence |\n|---|---|---|")
        for row in doc["capabilities"]:
            evidence = row["evidence"].replace("|", "\\|").replace("\n", "\\n")
            print(f"| {row['feature']} | {row['answer']} | {evidence} |")
    if "counting" in doc:
        print(f"\n## 2. render + count before sending, ms per turn ({doc['reps']} reps; median / p95)\n")
        print(
            "| engine | messages | prompt tokens | path | fits: 1 render + count "
            "| truncating: 3 renders + a count per message | template alone | same count |"
        )
        print("|---|---|---|---|---|---|---|---|")
        for r in doc["counting"]:
            print(
                f"| {r['state']} | {r['messages']} | {r['prompt_tokens']} | {r['path']} | "
                f"{r['fits_median_ms']:.2f} / {r['fits_p95_ms']:.2f} | "
                f"{r['truncating_median_ms']:.2f} / {r['truncating_p95_ms']:.2f} | "
                f"{r['render_only_median_ms']:.2f} / {r['render_only_p95_ms']:.2f} | "
                f"{yn(r['same_tokens_as_local'])} |"
            )
    if "function_calling" in doc:
        print(f"\n## 3. function calling, {doc['n']} requests, temperature 0.7, cap 128, 4 at once\n")
        print(
            "| path | replies | a call | call valid | right function | plain answer | cut at cap "
            "| s/reply | tokens | prompt tokens |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|")
        for mode, r in doc["function_calling"].items():
            shares = " | ".join(
                f"{100 * r[key]:.0f}%"
                for key in ("call", "valid", "right_function", "plain_answer", "cut_at_cap")
            )
            print(
                f"| {mode} | {r['replies']} | {shares} | {r['s_per_reply']:.2f} | {r['tokens']:.0f} | "
                f"{r['prompt_tokens']:.0f} |"
            )
    if "kv_reuse" in doc:
        print("\n## 4. KV reuse, threads of 20 messages (mean tokens; cached = timings.cache_n)\n")
        print(
            "| path | turn 1 cached | turn 1 evaluated | turn 2 cached | turn 2 evaluated |"
            "\n|---|---|---|---|---|"
        )
        for path, r in doc["kv_reuse"].items():
            print(
                f"| {path} | {r['turn1_cached']:.0f} | {r['turn1_evaluated']:.0f} | "
                f"{r['turn2_cached']:.0f} | {r['turn2_evaluated']:.0f} |"
            )
    if doc.get("templates"):
        k = doc["templates"][0]["auto"]["of"]
        print(f"\n## 5. other families' templates on SmolLM2's weights ({k} requests per tool_choice)\n")
        print(
            "| template | caps tool_calls | format | tools in prompt | auto: valid call "
            "| required: valid call (grammar lazy; cut at cap) "
            "| named: valid call to that function (grammar lazy) | errors |"
        )
        print("|---|---|---|---|---|---|---|---|")
        for t in doc["templates"]:
            errors = "; ".join(
                f"{mode}: {t[mode]['failed']}/{k} {e}"
                for mode in ("auto", "required", "named")
                for e in t[mode]["errors"]
            )
            print(
                f"| {t['template']} | {t['caps'].get('tool_calls')} | {t.get('chat_format')} | "
                f"{yn(t['tools_in_prompt'])} | {t['auto']['valid']}/{k} | {t['required']['valid']}/{k} "
                f"({yn(t['required']['grammar_lazy'])}; {t['required']['cut_at_cap']}) | "
                f"{t['named']['right_function']}/{k} ({yn(t['named']['grammar_lazy'])}) | {errors} |"
            )
        print(
            "\n| template | reasoning split (forced reply, reasoning_format deepseek) "
            "| earlier turn's reasoning echoed | reasoning kept in a tool loop | prompt changed by |"
        )
        print("|---|---|---|---|---|")
        for t in doc["templates"]:
            split = t["reasoning_split"]
            if isinstance(split, dict):
                split = f"content={split['content']!r} reasoning_content={split['reasoning_content']!r}"
            changed = (
                ", ".join(key for key, v in t["prompt_changed_by"].items() if v) or "none of those tried"
            )
            split = split.replace("|", "\\|")
            print(
                f"| {t['template']} | {split} | {t['earlier_reasoning_echoed']} | "
                f"{t['tool_loop_reasoning_kept']} | {changed} |"
            )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=50, help="repetitions per counting measurement")
    ap.add_argument("--sizes", default="2,20,60", help="thread lengths (messages) for the counting cost")
    ap.add_argument("--n", type=int, default=40, help="function-calling requests per path")
    ap.add_argument("--temperature", type=float, default=0.7)
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--parallel", type=int, default=4)
    ap.add_argument(
        "--templates",
        default="qwen3,llama-3.3,mistral-small-3.2,deepseek-r1-distill,gpt-oss",
        help="tests/fixtures/templates to try on the same weights (section 5); '' skips",
    )
    ap.add_argument("--k", type=int, default=8, help="requests per tool_choice in section 5")
    ap.add_argument("--verbose", action="store_true", help="print every function-calling reply")
    ap.add_argument("--only", default="1,2,3,4,5", help="sections to run")
    ap.add_argument(
        "--json", nargs="?", const="-", help="also write the results as JSON (to PATH, or stdout)"
    )
    args = ap.parse_args()
    only = set(args.only.split(","))

    doc: dict[str, Any] = {"machine": machine(), "load_before": loadavg(), "reps": args.reps, "n": args.n}
    print(f"model {MODEL_PATH.name}; {load()}", flush=True)
    renderer = Renderer()
    engine = EngineProcess(args.parallel, 4096)
    try:
        if "1" in only:
            doc["capabilities"] = capabilities(engine, renderer)
            print("1 done", loadavg(), flush=True)
        if "2" in only:
            sizes = [int(s) for s in args.sizes.split(",")]
            doc["counting"] = counting(engine, renderer, args.reps, sizes)
            print("2 done", loadavg(), flush=True)
        if "3" in only:
            doc["function_calling"] = function_calling(
                engine, renderer, args.n, args.parallel, args.temperature, args.max_tokens, args.verbose
            )
            print("3 done", loadavg(), flush=True)
        if "4" in only:
            doc["kv_reuse"] = kv_reuse(engine, renderer)
            print("4 done", loadavg(), flush=True)
    finally:
        engine.stop()
    if "5" in only and args.templates:
        doc["templates"] = [
            template_family(name, args.k, args.temperature, args.max_tokens)
            for name in args.templates.split(",")
            if name
        ]
        print("5 done", loadavg(), flush=True)
    doc["load_after"] = loadavg()
    print_tables(doc)
    if args.json == "-":
        print(json.dumps(doc, indent=1))
    elif args.json:
        Path(args.json).write_text(json.dumps(doc, indent=1) + "\n")


if __name__ == "__main__":
    main()
