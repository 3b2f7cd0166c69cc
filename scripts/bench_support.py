"""What the generation benchmarks share: llama.cpp's server engine as a process of its own (`assistd engine`),
an assistd server as a process (embedded engine, or the model served by an engine at `url`), the exact
prompt assistd renders for a run, and one streamed request to the engine's own /completion API (the raw
baseline: the same body assistd's backend sends, without assistd in between).

Every server here is a separate process, so that the benchmark's client threads never share a GIL with
what they measure."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

warnings.filterwarnings("ignore", category=DeprecationWarning)  # the SDK's Assistants API deprecation
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))

from tests.support import KEY_A, ServerProcess, free_port, stop_process, wait_healthy  # noqa: E402

from assistd.config import DEFAULT_MODEL_FILE, DEFAULT_MODEL_NAME, ModelEntry  # noqa: E402

MODEL_PATH = ROOT / "models" / DEFAULT_MODEL_FILE
REMOTE_NAME = "smol-remote"
# The sampling assistd sends when a run sets only the temperature (the model entry's defaults).
ENTRY = ModelEntry(name=DEFAULT_MODEL_NAME, path=MODEL_PATH)


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f}"


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo), or the platform's processor where there is none."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or "unknown CPU"


class EngineProcess:
    """`assistd engine MODEL`: llama.cpp's server engine alone on a free loopback port, no key."""

    def __init__(
        self,
        parallel: int,
        n_ctx: int,
        n_threads: int | None = None,
        cache_bytes: int = 1 << 30,
        n_gpu_layers: int = 0,
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        fd, log_path = tempfile.mkstemp(prefix="bench-engine-", suffix=".log")
        self._log = Path(log_path)
        cmd = [sys.executable, "-m", "assistd", "engine", str(MODEL_PATH), "--port", str(self.port)]
        cmd += ["--parallel", str(parallel), "--n-ctx", str(n_ctx), "--kv-cache-bytes", str(cache_bytes)]
        cmd += ["--n-gpu-layers", str(n_gpu_layers)]
        if n_threads:
            cmd += ["--n-threads", str(n_threads)]
        env = {k: v for k, v in os.environ.items() if k != "ASSISTD_ENGINE_KEY"}  # no key: loopback only
        self.proc = subprocess.Popen(cmd, stdout=fd, stderr=subprocess.STDOUT, cwd=ROOT, env=env)
        os.close(fd)
        wait_healthy(self.proc, self.url, self._log.read_text, "engine")
        self.client = httpx.Client(base_url=self.url, timeout=600, limits=httpx.Limits(max_connections=64))

    def stop(self) -> None:
        self.client.close()
        stop_process(self.proc)
        self._log.unlink(missing_ok=True)


def assistd_server(data_dir: Path, url: str | None = None, args: list[str] | None = None) -> ServerProcess:
    """`assistd serve` in a process of its own: its default model on the embedded engine, or (url) also
    REMOTE_NAME, served by the engine at `url` through a models file."""
    extra = list(args or [])
    if url:
        data_dir.mkdir(parents=True, exist_ok=True)
        models = data_dir / "models.toml"
        models.write_text(f'[[models]]\nname = "{REMOTE_NAME}"\nurl = "{url}"\npath = "{MODEL_PATH}"\n')
        extra += ["--models-file", str(models)]
    return ServerProcess(data_dir, args=extra)


def sdk_client(server: ServerProcess) -> Any:
    import openai

    return openai.OpenAI(base_url=f"{server.base_url}/v1", api_key=KEY_A, max_retries=0, timeout=600)


class Renderer:
    """The prompt assistd renders for a run of an assistant with `instructions` on a thread of plain user
    and assistant messages (engine/prompt.py: the instructions as the system message, then the thread),
    through the same chat renderer and GGUF tokenizer as its backend (llm/vocab.py)."""

    def __init__(self) -> None:
        from assistd.llm.vocab import ChatRenderer, GGUFVocab

        self.vocab = GGUFVocab(MODEL_PATH, DEFAULT_MODEL_NAME)
        assert self.vocab.chat_template
        self._renderer = ChatRenderer(self.vocab.chat_template, self.vocab.bos_text, self.vocab.eos_text)

    def prompt(self, instructions: str, thread: list[dict[str, str]]) -> str:
        head = [{"role": "system", "content": instructions}] if instructions else []
        return self._renderer.render(head + thread)

    @property
    def plain_stop(self) -> list[str]:
        """The stop strings assistd sends with a run that offers no tools (its tool markup ends a reply)."""
        from assistd.tools.calls import format_for

        return list(format_for(self.vocab.chat_template).stop_markers([]))

    def render(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None) -> str:
        return self._renderer.render(messages, tools)

    def count(self, text: str) -> int:
        return len(self.vocab.tokenize(text))


@dataclass
class Timed:
    total: float  # seconds from the request to the end of the reply
    ttft: float  # seconds from the request to the first text
    tokens: int  # completion tokens (the engine's count)
    prompt_tokens: int = 0
    cached_tokens: int = 0
    text: str = ""
    id: str = ""  # the run's or response's id
    created: float = 0.0  # seconds from the request to its `created` event (0: not measured)
    started_at: float = 0.0  # the request's wall-clock time (time.time(), to match a server's log)
    tail: float = 0.0  # seconds from the last text to the end of the reply (its final events)


def raw_completion(
    client: httpx.Client,
    prompt: str,
    max_tokens: int,
    temperature: float = 0.0,
    cache_prompt: bool = True,
    grammar: str | None = None,
    seed: int | None = None,
    stop: list[str] | None = None,
    repeat_penalty: float = ENTRY.repeat_penalty,
) -> Timed:
    """One streamed /completion on the engine, the body assistd's backend sends (llm/llama_server.py)."""
    body: dict[str, Any] = {
        "prompt": prompt,
        "n_predict": max_tokens,
        "temperature": temperature,
        "top_p": ENTRY.top_p,
        "repeat_penalty": repeat_penalty,
        "stop": stop or [],
        "stream": True,
        "cache_prompt": cache_prompt,
        "return_tokens": False,
    }
    if grammar:
        body["grammar"] = grammar
    if seed is not None:
        body["seed"] = seed
    pieces: list[str] = []
    start = time.perf_counter()
    first = last = None
    final: dict[str, Any] = {}
    # a connection of its own, as assistd's backend does: llama.cpp's server may close a connection after a
    # streamed reply while announcing keep-alive (llm/http.py)
    with client.stream("POST", "/completion", json=body, headers={"Connection": "close"}) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if not line.startswith("data:"):
                continue
            event = json.loads(line[5:])
            if event.get("content"):
                pieces.append(event["content"])
                last = time.perf_counter()
                first = first or last
            if event.get("stop"):
                final = event
    end = time.perf_counter()
    timings = final.get("timings") or {}
    return Timed(
        total=end - start,
        ttft=(first or end) - start,
        tokens=int(final.get("tokens_predicted") or 0),
        prompt_tokens=int(final.get("tokens_evaluated") or 0),
        cached_tokens=int(timings.get("cache_n") or 0),
        text="".join(pieces),
        tail=end - (last or end),
    )


def assistd_run(client: Any, assistant_id: str, thread_id: str, max_tokens: int) -> Timed:
    """One streamed run through the official SDK, timed from the create request to the first message delta."""
    start = time.perf_counter()
    first = None
    with client.beta.threads.runs.stream(
        thread_id=thread_id, assistant_id=assistant_id, max_completion_tokens=max_tokens, temperature=0.0
    ) as stream:
        for event in stream:
            if event.event == "thread.message.delta" and first is None:
                first = time.perf_counter()
        run = stream.get_final_run()
    end = time.perf_counter()
    if run.status not in ("completed", "incomplete"):
        raise RuntimeError(f"run {run.id} ended {run.status}: {run.last_error}")
    usage = run.usage
    return Timed(
        total=end - start,
        ttft=(first or end) - start,
        tokens=usage.completion_tokens if usage else 0,
        prompt_tokens=usage.prompt_tokens if usage else 0,
    )


def assistd_response(
    client: Any,
    model: str,
    instructions: str | None,
    text: Any,  # the input: a string, or items
    max_tokens: int,
    previous_response_id: str | None = None,
) -> Timed:
    """One streamed response through the official SDK (`responses.create(stream=True)`), timed from the
    request to `response.created` and to the first output_text delta; `text` is the final output_text."""
    started_at = time.time()
    start = time.perf_counter()
    created = first = last = None
    final = None
    stream = client.responses.create(
        model=model,
        instructions=instructions,
        input=text,
        max_output_tokens=max_tokens,
        temperature=0.0,
        stream=True,
        **({"previous_response_id": previous_response_id} if previous_response_id else {}),
    )
    with stream:
        for event in stream:
            if event.type == "response.created" and created is None:
                created = time.perf_counter()
            elif event.type == "response.output_text.delta":
                last = time.perf_counter()
                first = first or last
            elif event.type in ("response.completed", "response.incomplete", "response.failed"):
                final = event.response
    end = time.perf_counter()
    if final is None or final.status not in ("completed", "incomplete"):
        status = final.status if final is not None else "no final event"
        raise RuntimeError(f"response ended {status}: {getattr(final, 'error', None)}")
    usage = final.usage
    details = usage.input_tokens_details if usage else None
    return Timed(
        total=end - start,
        ttft=(first or end) - start,
        tokens=usage.output_tokens if usage else 0,
        prompt_tokens=usage.input_tokens if usage else 0,
        cached_tokens=details.cached_tokens if details else 0,
        text=final.output_text,
        id=final.id,
        created=(created or end) - start,
        started_at=started_at,
        tail=end - (last or end),
    )


ENGINE_REQUEST = re.compile(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) .*HTTP Request: POST \S+/completion ")


def engine_request_times(server_log: str) -> list[float]:
    """When an assistd server's engine requests (streamed /completion) were answered with their headers,
    as wall-clock times, from its log (httpx logs each; llama.cpp sends a stream's headers at once)."""
    out = []
    for line in server_log.splitlines():
        found = ENGINE_REQUEST.search(line)
        if found:
            out.append(datetime.strptime(found.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp())
    return out


def time_to_engine(timed: Timed, engine_times: list[float]) -> float | None:
    """Seconds from a request (sent alone: nothing else in flight) to its server's first engine request,
    matched by time in the server's log (`engine_request_times`); None when none falls before its first
    text."""
    for t in engine_times:
        if timed.started_at - 0.001 <= t <= timed.started_at + timed.ttft + 0.001:
            return max(0.0, t - timed.started_at)
    return None
