"""Benchmark: a turn with one image through assistd vs llama.cpp's engine driven raw; turn 2 on its thread.

The tiny random-weight vision model of the tests (tests/vision_model.py: a Gemma 3 with a SigLIP projector;
an image is 18 prompt tokens) on two engines with the same slots, per-slot context and threads:
  - raw: llama.cpp's server engine (xllamacpp) in this process, driven with its own streamed /completion
    API: the prompt assistd renders for the turn (the model's chat template, through assistd's renderer,
    with the engine's media marker where the image is), the image's bytes, the body assistd's backend
    sends (llm/llama_server.py `generate`);
  - assistd: an `assistd serve` process whose models file holds the same model (embedded engine), driven
    with the official SDK: a new thread with a user message [text, image_url data: URL], then a streamed
    run (`runs.stream`); turn 2 is a second user message on the same thread ("And now?") and another
    streamed run. Beside it (unless --no-responses) the Responses API: `responses.create(stream=True)` with
    [input_text, input_image], then turn 2 with `previous_response_id`.

Each round has an image of its own (a 640x480 photo-like PNG: gradients and noise, seeded by the round), so
no turn 1 can reuse an earlier round's image from the engine's KV cells; the sides are interleaved (which
goes first alternates by round) and a warm-up round (model load, the per-size image token probe) is left
out. TTFT = request (the run's or response's create; raw: the /completion request) to the first text;
max 8 completion tokens (Responses: 16, its least), temperature 0; p50 over the rounds. Goals: assistd's
turn-1 TTFT <= 1.05 x raw; turn 2 (its prompt's first turn, image included, held by the slot) no slower
than turn 1. Each round also times a turn 1 of text alone on every side (a new thread, no image; a serial
number in it), the overhead assistd has without images.

The runs side's thread create (the message with the image: assistd reads, checks and prepares the image in
its capped decoding process there, engine/images.py ImageCache.check) is timed apart; the Responses side's
turn 1 holds that work in its TTFT.

Usage: .venv/bin/python scripts/bench_vision.py [--rounds 7] [--threads N] [--parallel 1] [--no-responses]
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench_support import KEY_A, ServerProcess, Timed, assistd_response, assistd_run, cpu_model, load

NAME = "tiny-vision"
QUESTION = "Describe this photo in one short sentence."
FOLLOW_UP = "And now?"
TOKENS = 8
RESPONSE_TOKENS = 16  # the Responses API's least max_output_tokens (the first text comes as early)
SIZE = (640, 480)
CACHE_BYTES = 1 << 30  # the host prompt cache: `assistd serve`'s default (--kv-cache-bytes)


def photo(seed: int) -> bytes:
    """A photo-like 640x480 PNG: smooth colour gradients with sensor-like noise; different per seed."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    h, w = SIZE[1], SIZE[0]
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    channels = []
    for _ in range(3):
        a, b, c = rng.uniform(-1, 1, 3)
        base = 128 + 90 * np.sin(a * x / 97 + b * y / 71 + c * 6)
        channels.append(base + rng.normal(0, 6, (h, w)))
    pixels = np.clip(np.stack(channels, axis=-1), 0, 255).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(out, format="PNG")
    return out.getvalue()


def data_url(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode()


class RawEngine:
    """llama.cpp's server engine in this process, set up as assistd's embedded engine sets it up
    (llm/embedded.py), and the prompts assistd's backend sends it for this model."""

    def __init__(self, model: Path, mmproj: Path, slots: int, n_ctx: int, threads: int) -> None:
        import xllamacpp

        from assistd.llm.vocab import ChatRenderer, GGUFVocab
        from assistd.tools.calls import format_for

        params: Any = xllamacpp.CommonParams()
        params.model.path = str(model)
        params.mmproj.path = str(mmproj)
        params.n_parallel = slots
        params.n_ctx = n_ctx * slots
        params.kv_unified = False
        params.ctx_shift = False
        params.n_gpu_layers = 0
        params.cpuparams.n_threads = threads
        params.cpuparams_batch.n_threads = threads
        params.cache_ram_mib = CACHE_BYTES >> 20
        params.cache_prompt = True
        params.hostnames = ["127.0.0.1"]
        params.port = 0
        params.api_keys = []
        params.verbosity = 0
        self._server = xllamacpp.Server(params)
        self.client = httpx.Client(base_url=self._server.listening_address, timeout=600)
        props = self.client.get("/props").json()
        assert (props.get("modalities") or {}).get("vision"), "the engine did not load the projector"
        self.marker = str(props["media_marker"])
        self.vocab = GGUFVocab(model, NAME)
        assert self.vocab.chat_template
        self._renderer = ChatRenderer(self.vocab.chat_template, self.vocab.bos_text, self.vocab.eos_text)
        self.stop = list(format_for(self.vocab.chat_template).stop_markers([]))  # a run without tools

    def prompt(self, thread: list[dict[str, str]]) -> str:
        """The thread (the image as assistd's placeholder) rendered as assistd renders it, then made the
        engine's multimodal text as its backend makes it: the media marker in the placeholder's place, the
        BOS the engine adds itself left out."""
        from assistd.llm.backend import image_placeholder

        text = self._renderer.render(thread).replace(image_placeholder(0), self.marker)
        bos = self.vocab.bos_text
        return text[len(bos) :] if bos and text.startswith(bos) else text

    def complete(self, prompt: str, image_b64: str | None) -> Timed:
        """One streamed /completion, the body assistd's backend sends (sampling: the model entry's
        defaults and the run's temperature 0): with an image, the multimodal text and the image; without,
        the prompt's token ids."""
        from assistd.llm.vocab import prompt_tokens

        body = {
            "prompt": {"prompt_string": prompt, "multimodal_data": [image_b64]}
            if image_b64
            else prompt_tokens(self.vocab, prompt),
            "n_predict": TOKENS,
            "temperature": 0.0,
            "top_p": 0.9,
            "repeat_penalty": 1.1,
            "stop": self.stop,
            "stream": True,
            "cache_prompt": True,
            "return_tokens": False,
        }
        pieces: list[str] = []
        final: dict[str, Any] = {}
        start = time.perf_counter()
        first = None
        # a connection of its own, as assistd's backend does (llm/http.py)
        with self.client.stream("POST", "/completion", json=body, headers={"Connection": "close"}) as reply:
            reply.raise_for_status()
            for line in reply.iter_lines():
                if not line.startswith("data:"):
                    continue
                event = json.loads(line[5:])
                if event.get("content"):
                    pieces.append(event["content"])
                    first = first or time.perf_counter()
                if event.get("stop"):
                    final = event
        end = time.perf_counter()
        return Timed(
            total=end - start,
            ttft=(first or end) - start,
            tokens=int(final.get("tokens_predicted") or 0),
            prompt_tokens=int(final.get("tokens_evaluated") or 0),
            cached_tokens=int((final.get("timings") or {}).get("cache_n") or 0),
            text="".join(pieces),
        )

    def close(self) -> None:
        self.client.close()
        del self._server


class Side:
    """One way of sending the two turns; keeps every round's timings."""

    label = ""

    def __init__(self) -> None:
        self.turns: list[tuple[Timed, Timed]] = []
        self.texts: list[Timed] = []  # a turn 1 of text alone, each round (assistd's overhead without images)
        self.setup: list[float] = []  # seconds spent before turn 1's request (the runs side's thread create)

    def round(self, image: bytes, serial: int) -> None:
        self.turns.append(self.two_turns(image))
        self.texts.append(self.text_turn(f"{QUESTION}\nPhoto number {serial:06d}."))

    def clear(self) -> None:
        self.turns.clear()
        self.texts.clear()
        self.setup.clear()

    def two_turns(self, image: bytes) -> tuple[Timed, Timed]:
        raise NotImplementedError

    def text_turn(self, text: str) -> Timed:
        raise NotImplementedError

    def text_p50(self) -> float:
        return statistics.median(t.ttft for t in self.texts) * 1000

    def p50(self, turn: int) -> float:
        return statistics.median(t[turn].ttft for t in self.turns) * 1000

    def tokens(self, turn: int) -> str:
        counts = sorted({t[turn].prompt_tokens for t in self.turns})
        return "/".join(str(c) for c in counts)

    def cached(self, turn: int) -> str:
        counts = [t[turn].cached_tokens for t in self.turns]
        return f"{statistics.median(counts):.0f}" if any(counts) else "n/a"


class RawSide(Side):
    label = "llama.cpp engine, raw"

    def __init__(self, engine: RawEngine) -> None:
        super().__init__()
        self.engine = engine

    def two_turns(self, image: bytes) -> tuple[Timed, Timed]:
        from assistd.llm.backend import image_placeholder

        image_b64 = base64.b64encode(image).decode()  # the client holds it (its data: URL)
        thread = [{"role": "user", "content": f"{QUESTION}\n{image_placeholder(0)}"}]
        first = self.engine.complete(self.engine.prompt(thread), image_b64)
        thread += [{"role": "assistant", "content": first.text}, {"role": "user", "content": FOLLOW_UP}]
        return first, self.engine.complete(self.engine.prompt(thread), image_b64)

    def text_turn(self, text: str) -> Timed:
        prompt = self.engine._renderer.render([{"role": "user", "content": text}])
        return self.engine.complete(prompt, None)


class RunsSide(Side):
    label = "assistd runs (runs.stream)"

    def __init__(self, client: Any) -> None:
        super().__init__()
        self.client = client
        self.assistant = client.beta.assistants.create(model=NAME, temperature=0)

    def two_turns(self, image: bytes) -> tuple[Timed, Timed]:
        content = [
            {"type": "text", "text": QUESTION},
            {"type": "image_url", "image_url": {"url": data_url(image)}},
        ]
        start = time.perf_counter()
        thread = self.client.beta.threads.create(messages=[{"role": "user", "content": content}])
        self.setup.append(time.perf_counter() - start)
        first = self.run(thread.id)
        self.client.beta.threads.messages.create(thread.id, role="user", content=FOLLOW_UP)
        return first, self.run(thread.id)

    def text_turn(self, text: str) -> Timed:
        thread = self.client.beta.threads.create(messages=[{"role": "user", "content": text}])
        return self.run(thread.id)

    def run(self, thread_id: str) -> Timed:
        return assistd_run(self.client, self.assistant.id, thread_id, TOKENS)


class ResponsesSide(Side):
    label = "assistd responses (stream=True)"

    def __init__(self, client: Any) -> None:
        super().__init__()
        self.client = client

    def two_turns(self, image: bytes) -> tuple[Timed, Timed]:
        content = [
            {"type": "input_text", "text": QUESTION},
            {"type": "input_image", "image_url": data_url(image)},
        ]
        first = self.respond([{"role": "user", "content": content}], None)
        return first, self.respond(FOLLOW_UP, first.id)

    def text_turn(self, text: str) -> Timed:
        return self.respond(text, None)

    def respond(self, input: Any, previous: str | None) -> Timed:
        return assistd_response(self.client, NAME, None, input, RESPONSE_TOKENS, previous)


def table(sides: list[Side], raw: Side, threads: int, parallel: int) -> str:
    lines = [
        "| side | threads / slots | turn-1 TTFT p50 | vs raw | turn-2 TTFT p50 | turn2 / turn1 "
        "| prompt tokens t1 / t2 | t2 cached tokens p50 | text-only turn-1 TTFT p50 (vs raw) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for side in sides:
        t1, t2, text = side.p50(0), side.p50(1), side.text_p50()
        lines.append(
            f"| {side.label} | {threads} / {parallel} | {t1:.1f} ms | {t1 / raw.p50(0):.2f} "
            f"| {t2:.1f} ms | {t2 / t1:.2f} | {side.tokens(0)} / {side.tokens(1)} | {side.cached(1)} "
            f"| {text:.1f} ms ({text / raw.text_p50():.2f}) |"
        )
    return "\n".join(lines)


def main() -> int:
    import openai
    import xllamacpp
    from tests.vision_model import build_vision_model  # importable once bench_support set the path

    from assistd.llm.embedded import default_threads

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7, help="measured rounds (after a warm-up round)")
    parser.add_argument("--threads", type=int, default=None, help="engine CPU threads (default assistd's)")
    parser.add_argument("--parallel", type=int, default=1, help="slots of each engine")
    parser.add_argument("--n-ctx", type=int, default=1024, help="context of each slot")
    parser.add_argument("--no-responses", action="store_true", help="skip the Responses API side")
    args = parser.parse_args()
    threads = args.threads or default_threads()
    began = time.perf_counter()
    model, mmproj = build_vision_model()
    print(
        f"machine: {cpu_model()}, {os.cpu_count()} cores; model {model.parent.name} + mmproj, "
        f"xllamacpp {getattr(xllamacpp, '__version__', '?')}; {args.parallel} slot(s) of {args.n_ctx} "
        f"tokens, {threads} thread(s); images {SIZE[0]}x{SIZE[1]} PNG (~{len(photo(0)) // 1024} KiB); "
        f"at start {load()}",
        flush=True,
    )
    engine = RawEngine(model, mmproj, args.parallel, args.n_ctx, threads)
    with tempfile.TemporaryDirectory(prefix="bench-vision-") as tmp:
        models = Path(tmp) / "models.toml"
        models.write_text(
            f'[[models]]\nname = "{NAME}"\npath = "{model}"\nmmproj = "{mmproj}"\n'
            f"n_ctx = {args.n_ctx}\nparallel = {args.parallel}\nn_threads = {threads}\n"
        )
        serve = ["--models-file", str(models), "--kernel-pool-size", "0"]
        server = ServerProcess(Path(tmp) / "data", args=[*serve, "--kv-cache-bytes", str(CACHE_BYTES)])
        try:
            client = openai.OpenAI(
                base_url=f"{server.base_url}/v1", api_key=KEY_A, max_retries=0, timeout=600
            )
            raw = RawSide(engine)
            sides: list[Side] = [raw, RunsSide(client)]
            if not args.no_responses:
                sides.append(ResponsesSide(client))
            for side in sides:  # warm-up: the model loaded, the image size's token count probed
                side.round(photo(10_000), 10_000)
                side.clear()
            for r in range(args.rounds):
                image = photo(r)  # one image per round, the same on every side (each engine sees it once)
                for side in sides if r % 2 == 0 else sides[::-1]:
                    side.round(image, r)
                print(f"round {r + 1}/{args.rounds} done; {load()}", flush=True)
        finally:
            server.stop()
            engine.close()
    print(
        f"\n{TOKENS} tokens per turn, temperature 0, p50 of {args.rounds} rounds (warm-up left out); "
        f"{cpu_model()}, {os.cpu_count()} cores; at the end {load()}; "
        f"{time.perf_counter() - began:.0f} s in all\n"
    )
    print(table(sides, raw, threads, args.parallel))
    runs = sides[1]
    ratio = runs.p50(0) / raw.p50(0)
    met = "met" if ratio <= 1.05 else "MISSED"
    print(f"\nassistd runs / raw, turn-1 TTFT p50: {ratio:.2f} (goal <= 1.05: {met})")
    for side in sides[1:]:  # per round: assistd's TTFT less raw's, with the image and with text alone
        pairs = zip(side.turns, raw.turns, strict=True)
        image = statistics.median((o[0].ttft - r[0].ttft) * 1000 for o, r in pairs)
        text = statistics.median((o.ttft - r.ttft) * 1000 for o, r in zip(side.texts, raw.texts, strict=True))
        print(
            f"{side.label}: over raw p50 {image:+.1f} ms with the image, {text:+.1f} ms with text alone "
            f"(the image's own share {image - text:+.1f} ms)"
        )
    for side in sides:
        per_round = statistics.median(b.ttft / a.ttft for a, b in side.turns)
        print(f"{side.label}: turn2/turn1 per round p50 {per_round:.2f}")
    print(
        f"runs side, thread create with the image (upload, check and prepare; not in TTFT): "
        f"p50 {statistics.median(runs.setup) * 1000:.1f} ms"
    )
    short = [s.label for s in sides[:2] for a, b in s.turns if min(a.tokens, b.tokens) < TOKENS]
    if short:
        print(f"note: replies ended before {TOKENS} tokens on: {', '.join(sorted(set(short)))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
