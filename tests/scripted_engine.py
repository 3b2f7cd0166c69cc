"""A llama.cpp-server-compatible engine whose replies a test scripts: model families (gpt-oss, Qwen3,
DeepSeek-R1, Mistral, ...) are tested end to end without weights. The real assistd server registers it by
`url` (models file: `url`, no `path`, `chat_template`), and the test scripts the exact raw text the model
would write.

    with ScriptedEngine(CHATML, eog_tokens=["<|im_end|>"]) as engine:
        engine.script("Hello from the script.")
        ...  # a run on a server whose models file names engine.url
        assert not engine.requests[-1].continuation

What assistd can observe behaves as llama.cpp's server does (its tools/server, 2025):

- `GET /health`, `/props` (chat_template, bos/eos text, total_slots, default_generation_settings.n_ctx),
  `/slots` (is_processing per slot), `/v1/models` (owned_by "llamacpp").
- `POST /tokenize` and `/detokenize`: an invertible tokenizer. Each special string (control_tokens,
  eog_tokens, bos, eos; matched only with parse_special) and each user token (user_tokens: always matched,
  always printed, like Qwen3's `<think>`) is one token, the longest match first; ordinary text is cut into
  tokens of up to `piece_size` characters, a newline ending a token.
- `POST /completion` (`/completions`): the scripted reply is tokenized and emitted token by token, as SSE
  events `data: {...}` (stream) or one JSON. A special token prints as "" unless it is in the request's
  `preserved_tokens` (or the engine runs with `special=True`, llama.cpp's `--special`); an eog token ends
  the reply (stop_type "eos"); a `stop` string ends it at its first occurrence, unprinted (stop_type
  "word", held back while only its start has been written); `n_predict` reached: "limit"; the prompt and
  the reply filling `n_ctx`: "limit" with `truncated`; the end of the scripted text: "eos". A prompt of
  `n_ctx` tokens or more is refused with 400 (exceed_context_size_error). `timings.cache_n` counts the
  prompt tokens the slot had from its previous request (llama.cpp's prompt cache; the last prompt token
  is always evaluated). Slots run at once up to `slots`; other requests wait for one. As llama.cpp: text
  held back for a stop string when `n_predict` ends the reply is lost from a stream (not from a JSON
  answer), and the connection closes after a stream although the answer announced keep-alive.
- `POST /v1/completions`: the same generation in OpenAI's completions form (engine "openai").

Which reply a request gets: when its prompt is the prompt of the request that started the last reply
followed by a non-empty proper prefix of that reply (assistd cuts a reply where a tool call opens and asks
again with the prompt + the text so far, under a grammar), the rest of that reply (a continuation);
otherwise the next scripted reply, or `default_reply` when none is left. Every request is recorded in
`engine.requests` (ScriptedRequest)."""

from __future__ import annotations

import json
import re
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

DEFAULT_REPLY = "OK."
MODEL_PATH = "scripted"
ORDINARY_BASE = 0x10000  # ids of ordinary-text tokens start here, in order of first sight


class RequestError(Exception):
    """An answer other than 200, with llama.cpp's error body."""

    def __init__(self, status: int, message: str, kind: str = "invalid_request_error", **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.body = {"error": {"code": status, "message": message, "type": kind, **extra}}


class Tokenizer:
    """Invertible: a token's text is fixed, and the text of a token list is the concatenation."""

    def __init__(
        self,
        specials: list[str],
        eog: set[str],
        user_tokens: list[str],
        bos: str,
        piece_size: int,
    ) -> None:
        if piece_size < 1:
            raise ValueError("piece_size must be at least 1")
        self.piece_size = piece_size
        self._text: dict[int, str] = {}
        self._ids: dict[str, int] = {}
        for text in specials:  # ids 0..K-1
            self._add(text)
        self.n_special = len(self._ids)
        for text in user_tokens:
            if text not in self._ids:
                self._add(text)
        self.eog_ids = {self._ids[text] for text in eog}
        self.bos_id = self._ids[bos] if bos else None
        self._ordinary: dict[str, int] = {}
        self._next_ordinary = ORDINARY_BASE
        self._lock = threading.Lock()
        self._with_special = _alternation(list(self._ids))
        self._user_only = _alternation(list(self._ids)[self.n_special :])

    def _add(self, text: str) -> None:
        token = len(self._ids)
        self._ids[text] = token
        self._text[token] = text

    def is_special(self, token: int) -> bool:
        return token < self.n_special

    def is_eog(self, token: int) -> bool:
        return token in self.eog_ids

    def known(self, token: Any) -> bool:
        return isinstance(token, int) and not isinstance(token, bool) and token in self._text

    def tokenize(self, text: str, add_special: bool = False, parse_special: bool = True) -> list[int]:
        tokens = [self.bos_id] if add_special and self.bos_id is not None else []
        pattern = self._with_special if parse_special else self._user_only
        pos = 0
        if pattern is not None:
            for match in pattern.finditer(text):
                tokens += self._ordinary_tokens(text[pos : match.start()])
                tokens.append(self._ids[match.group()])
                pos = match.end()
        tokens += self._ordinary_tokens(text[pos:])
        return tokens

    def _ordinary_tokens(self, run: str) -> list[int]:
        tokens = []
        for line in re.findall(r"[^\n]*\n|[^\n]+", run):
            for start in range(0, len(line), self.piece_size):
                tokens.append(self._ordinary_id(line[start : start + self.piece_size]))
        return tokens

    def _ordinary_id(self, chunk: str) -> int:
        with self._lock:
            token = self._ordinary.get(chunk)
            if token is None:
                token = self._next_ordinary
                self._next_ordinary += 1
                self._ordinary[chunk] = token
                self._text[token] = chunk
            return token

    def text(self, token: int) -> str:
        return self._text[token]

    def detokenize(self, tokens: list[int]) -> str:
        return "".join(self._text[t] for t in tokens)

    @property
    def n_vocab(self) -> int:
        return self._next_ordinary


def _alternation(texts: list[str]) -> re.Pattern[str] | None:
    """A pattern of `texts`, the longest first where several match at one position."""
    if not texts:
        return None
    return re.compile("|".join(re.escape(t) for t in sorted(texts, key=len, reverse=True)))


@dataclass
class ScriptedRequest:
    """One generation request as the engine saw it."""

    path: str  # "/completion" or "/v1/completions"
    prompt: str  # the prompt, detokenized (special tokens as text)
    body: dict[str, Any]  # the JSON body as sent
    continuation: bool  # the rest of the previous reply after a prefix of it
    served: str  # the raw text chosen to generate (the rest of the reply for a continuation)
    content: str = ""  # the text the engine sent (special tokens hidden, stop strings cut)
    stop_type: str = ""  # "eos", "word", "limit"; "" while generating or when the client left
    tokens_predicted: int = 0
    cache_n: int = 0
    disconnected: bool = False  # the client closed the stream before its end
    done: threading.Event = field(default_factory=threading.Event, repr=False, compare=False)

    @property
    def grammar(self) -> str | None:
        return self.body.get("grammar")

    @property
    def preserved_tokens(self) -> list[str]:
        return list(self.body.get("preserved_tokens") or [])


@dataclass
class _Slot:
    id: int
    busy: bool = False
    cache: list[int] = field(default_factory=list)
    used_at: float = 0.0
    task: int = -1


@dataclass
class _Generation:
    """The state of one reply, as llama.cpp's slot keeps it (generated_text, n_sent_text, n_decoded)."""

    text: str = ""
    sent: int = 0
    tokens: list[int] = field(default_factory=list)
    stop_type: str = ""
    stopping_word: str = ""
    truncated: bool = False


class ScriptedEngine:
    def __init__(
        self,
        chat_template: str,
        control_tokens: tuple[str, ...] | list[str] = (),
        eog_tokens: tuple[str, ...] | list[str] = (),
        bos: str = "",
        eos: str = "",
        n_ctx: int = 8192,
        slots: int = 4,
        piece_size: int = 3,
        user_tokens: tuple[str, ...] | list[str] = (),
        special: bool = False,
        piece_delay: float = 0.0,
        api_key: str | None = None,
    ) -> None:
        """`control_tokens`, `eog_tokens`, `bos`, `eos`: special tokens (printed only when preserved); the
        eos and every eog token end a reply. `user_tokens`: single tokens always printed. `special`: print
        every special token (llama.cpp's --special). `piece_delay`: seconds before each generated token.
        `api_key`: required as a Bearer token on everything but /health and /v1/models."""
        specials = _unique([*control_tokens, *eog_tokens, bos, eos])
        self.chat_template = chat_template
        self.bos, self.eos = bos, eos
        self.n_ctx = n_ctx
        self.special = special
        self.piece_delay = piece_delay
        self.api_key = api_key
        self.default_reply = DEFAULT_REPLY
        self.tokenizer = Tokenizer(
            specials, set(_unique([*eog_tokens, eos])), _unique(list(user_tokens)), bos, piece_size
        )
        self.requests: list[ScriptedRequest] = []
        self._replies: deque[str] = deque()
        self._last: tuple[str, str] | None = None  # (the prompt that started the last reply, the reply)
        self._lock = threading.Lock()
        self._slots = [_Slot(i) for i in range(max(1, slots))]
        self._slot_free = threading.Condition(self._lock)
        self._tasks = 0
        self._started = int(time.time())
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, args=(0.05,), name="scripted-engine", daemon=True
        )
        self._thread.start()

    # -- the test's side ----------------------------------------------------------------------------------

    def script(self, *texts: str) -> None:
        """Appends raw reply texts, served in order to the requests that are not continuations."""
        with self._lock:
            self._replies.extend(texts)

    @property
    def pending(self) -> int:
        """Scripted replies not served yet."""
        with self._lock:
            return len(self._replies)

    def busy(self) -> int:
        with self._lock:
            return sum(1 for slot in self._slots if slot.busy)

    def tokenize(self, text: str, add_special: bool = False, parse_special: bool = True) -> list[int]:
        return self.tokenizer.tokenize(text, add_special, parse_special)

    def detokenize(self, tokens: list[int]) -> str:
        return self.tokenizer.detokenize(tokens)

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> ScriptedEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- endpoints ----------------------------------------------------------------------------------------

    def props(self) -> dict[str, Any]:
        return {
            "default_generation_settings": {
                "id": 0,
                "id_task": -1,
                "n_ctx": self.n_ctx,
                "speculative": False,
                "is_processing": False,
                "params": _params({}),
            },
            "total_slots": len(self._slots),
            "model_alias": MODEL_PATH,
            "model_path": MODEL_PATH,
            "modalities": {"vision": False, "audio": False},
            "endpoint_slots": True,
            "endpoint_props": False,
            "endpoint_metrics": False,
            "webui": False,
            "chat_template": self.chat_template,
            "bos_token": self.bos,
            "eos_token": self.eos,
            "build_info": "scripted",
        }

    def slots(self) -> list[dict[str, Any]]:
        with self._lock:
            return [
                {
                    "id": slot.id,
                    "id_task": slot.task,
                    "n_ctx": self.n_ctx,
                    "speculative": False,
                    "is_processing": slot.busy,
                    "params": _params({}),
                    "prompt": "",
                    "next_token": {
                        "has_next_token": slot.busy,
                        "has_new_line": False,
                        "n_remain": -1,
                        "n_decoded": 0,
                        "stopping_word": "",
                    },
                }
                for slot in self._slots
            ]

    def models(self) -> dict[str, Any]:
        meta = {
            "vocab_type": 2,
            "n_vocab": self.tokenizer.n_vocab,
            "n_ctx_train": self.n_ctx,
            "n_embd": 0,
            "n_params": 0,
            "size": 0,
        }
        return {
            "models": [
                {
                    "name": MODEL_PATH,
                    "model": MODEL_PATH,
                    "modified_at": "",
                    "size": "",
                    "digest": "",
                    "type": "model",
                    "description": "",
                    "tags": [""],
                    "capabilities": ["completion"],
                    "parameters": "",
                    "details": {},
                }
            ],
            "object": "list",
            "data": [
                {
                    "id": MODEL_PATH,
                    "object": "model",
                    "created": self._started,
                    "owned_by": "llamacpp",
                    "meta": meta,
                }
            ],
        }

    def tokenize_request(self, body: dict[str, Any]) -> dict[str, Any]:
        content = body.get("content")
        if not isinstance(content, str):
            raise RequestError(400, '"content" must be provided')
        tokens = self.tokenize(content, bool(body.get("add_special")), bool(body.get("parse_special", True)))
        if body.get("with_pieces"):
            return {"tokens": [{"id": t, "piece": self.tokenizer.text(t)} for t in tokens]}
        return {"tokens": tokens}

    def detokenize_request(self, body: dict[str, Any]) -> dict[str, Any]:
        return {"content": self.detokenize(self._checked_tokens(body.get("tokens") or []))}

    # -- generation ---------------------------------------------------------------------------------------

    def prompt_tokens(self, prompt: Any) -> list[int]:
        """llama.cpp's prompt forms: a string (special tokens parsed, BOS added), token ids, or a mix."""
        if isinstance(prompt, str):
            return self.tokenize(prompt, add_special=True)
        if isinstance(prompt, list) and not any(isinstance(p, list) for p in prompt):
            tokens: list[int] = []
            for part in prompt:
                tokens += self.tokenize(part, add_special=not tokens) if isinstance(part, str) else [part]
            return self._checked_tokens(tokens)
        raise RequestError(400, "the scripted engine takes one prompt: a string or a list of token ids")

    def _checked_tokens(self, tokens: Any) -> list[int]:
        if not isinstance(tokens, list) or not all(self.tokenizer.known(t) for t in tokens):
            raise RequestError(400, "invalid token in the prompt (not in the vocabulary)")
        return tokens

    def start(self, path: str, body: dict[str, Any], prompt: Any) -> tuple[ScriptedRequest, list[int]]:
        """Checks the prompt and picks the reply; the request is recorded."""
        tokens = self.prompt_tokens(prompt)
        if not tokens:
            raise RequestError(400, "the prompt is empty")
        if len(tokens) >= self.n_ctx:
            raise RequestError(
                400,
                "the request exceeds the available context size, try increasing it",
                "exceed_context_size_error",
                n_prompt_tokens=len(tokens),
                n_ctx=self.n_ctx,
            )
        text = self.detokenize(tokens)
        with self._lock:
            rest = self._continuation(text)
            if rest is not None:
                served, continuation = rest, True
            else:
                served = self._replies.popleft() if self._replies else self.default_reply
                continuation = False
                self._last = (text, served)
            request = ScriptedRequest(path, text, body, continuation, served)
            self.requests.append(request)
        return request, tokens

    def _continuation(self, prompt: str) -> str | None:
        if self._last is None:
            return None
        base, reply = self._last
        if not prompt.startswith(base):
            return None
        head = prompt[len(base) :]
        if 0 < len(head) < len(reply) and reply.startswith(head):
            return reply[len(head) :]
        return None

    def acquire(self, prompt: list[int]) -> tuple[_Slot, int]:
        """An idle slot (the one whose cache shares the longest start with `prompt`, else the least recently
        used), waiting for one; and how many prompt tokens its cache holds."""
        with self._slot_free:
            while all(slot.busy for slot in self._slots):
                self._slot_free.wait()
            idle = [slot for slot in self._slots if not slot.busy]
            best = max(idle, key=lambda slot: _common_start(slot.cache, prompt))
            shared = _common_start(best.cache, prompt)
            if shared == 0:
                best = min(idle, key=lambda slot: slot.used_at)
            best.busy = True
            self._tasks += 1
            best.task = self._tasks
            return best, shared

    def release(self, slot: _Slot, tokens: list[int]) -> None:
        with self._slot_free:
            slot.busy = False
            slot.cache = tokens
            slot.used_at = time.monotonic()
            slot.task = -1
            self._slot_free.notify()

    def tokens_of(self, request: ScriptedRequest) -> list[int]:
        return self.tokenize(request.served)

    def preserved(self, body: dict[str, Any]) -> set[int]:
        """The token ids of `preserved_tokens` (llama.cpp keeps a string that is one token)."""
        ids = set()
        for text in body.get("preserved_tokens") or []:
            if isinstance(text, str):
                tokens = self.tokenize(text)
                if len(tokens) == 1:
                    ids.add(tokens[0])
        return ids

    def generate(self, body: dict[str, Any], request: ScriptedRequest, n_prompt: int) -> Any:
        """Yields (text to send, token) per generated token, as llama.cpp's process_token does; returns the
        _Generation (through StopIteration.value)."""
        gen = _Generation()
        stops = _stop_words(body.get("stop"))
        preserved = self.preserved(body)
        n_predict = _int(body.get("n_predict", body.get("max_tokens", -1)), -1)
        tokens = self.tokens_of(request)
        if n_predict == 0:
            gen.stop_type = "limit"
            return gen
        for i, token in enumerate(tokens):
            if self.piece_delay:
                time.sleep(self.piece_delay)
            gen.tokens.append(token)
            is_special = self.tokenizer.is_special(token)
            piece = self.tokenizer.text(token) if not is_special or self.special or token in preserved else ""
            gen.text += piece
            is_eog = self.tokenizer.is_eog(token)
            last = i == len(tokens) - 1
            pos = min(gen.sent, len(gen.text))
            tail = gen.text[pos:]
            send = True
            found = _full_stop(tail, len(piece), stops)
            if found is not None:
                at, gen.stopping_word = found
                gen.text = gen.text[: pos + at]
                gen.stop_type = "word"
            elif not (is_eog or last) and _partial_stop(tail, stops):
                send = False  # the start of a stop string: held back until it is known
            out = gen.text[pos:] if send else ""
            gen.sent += len(out)
            yield out, token
            if gen.stop_type:
                break
            if is_eog:
                gen.stop_type = "eos"
                break
            if n_predict > 0 and len(gen.tokens) >= n_predict:
                gen.stop_type = "limit"
                break
            if n_prompt + len(gen.tokens) >= self.n_ctx:
                gen.stop_type, gen.truncated = "limit", True
                break
        else:
            gen.stop_type = "eos"  # the model would write its end-of-generation token here
        return gen


def _unique(texts: list[str]) -> list[str]:
    return list(dict.fromkeys(t for t in texts if t))


def _common_start(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def _int(value: Any, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _stop_words(stop: Any) -> list[str]:
    if isinstance(stop, str):
        return [stop] if stop else []
    return [s for s in stop or [] if isinstance(s, str) and s]


def _full_stop(text: str, last_piece: int, stops: list[str]) -> tuple[int, str] | None:
    """The first stop string in the text's end (what the last token may have completed): (position, word)."""
    best: tuple[int, str] | None = None
    for word in stops:
        at = text.find(word, max(0, len(text) - len(word) - last_piece))
        if at >= 0 and (best is None or at < best[0]):
            best = (at, word)
    return best


def _partial_stop(text: str, stops: list[str]) -> bool:
    """Whether the text ends with the start of a stop string."""
    return any(text.endswith(word[:n]) for word in stops for n in range(1, len(word)))


def _params(body: dict[str, Any]) -> dict[str, Any]:
    """llama.cpp's `generation_settings` (the part a client may read)."""
    return {
        "n_predict": _int(body.get("n_predict", body.get("max_tokens", -1)), -1),
        "seed": _int(body.get("seed", -1), -1),
        "temperature": body.get("temperature", 0.8),
        "top_k": body.get("top_k", 40),
        "top_p": body.get("top_p", 0.95),
        "min_p": body.get("min_p", 0.05),
        "repeat_penalty": body.get("repeat_penalty", 1.0),
        "stop": _stop_words(body.get("stop")),
        "stream": bool(body.get("stream", False)),
        "grammar": body.get("grammar") or "",
        "preserved_tokens": list(body.get("preserved_tokens") or []),
        "cache_prompt": bool(body.get("cache_prompt", True)),
    }


def _timings(n_prompt: int, cache_n: int, predicted: int) -> dict[str, Any]:
    prompt_n = n_prompt - cache_n
    return {
        "cache_n": cache_n,
        "prompt_n": prompt_n,
        "prompt_ms": 0.01 * prompt_n,
        "prompt_per_token_ms": 0.01,
        "prompt_per_second": 100000.0,
        "predicted_n": predicted,
        "predicted_ms": 0.01 * predicted,
        "predicted_per_token_ms": 0.01,
        "predicted_per_second": 100000.0,
    }


class _ClientGone(Exception):
    pass


def _handler(engine: ScriptedEngine) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive for JSON requests, as llama.cpp's server
        server_version = "llama.cpp"

        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            self._answer(self._get)

        def do_POST(self) -> None:
            self._answer(self._post)

        def _answer(self, route: Any) -> None:
            path = self.path.split("?", 1)[0]
            try:
                public = path in ("/health", "/v1/health", "/models", "/v1/models")
                key = self.headers.get("Authorization")
                if engine.api_key and not public and key != f"Bearer {engine.api_key}":
                    raise RequestError(401, "Invalid API Key", "authentication_error")
                route(path)
            except RequestError as exc:
                self._json(exc.status, exc.body)
            except _ClientGone:
                self.close_connection = True
            except Exception as exc:  # a bug here: answered as llama.cpp answers an internal error
                self._json(500, RequestError(500, f"{type(exc).__name__}: {exc}", "server_error").body)

        def _get(self, path: str) -> None:
            if path in ("/health", "/v1/health"):
                self._json(200, {"status": "ok"})
            elif path == "/props":
                self._json(200, engine.props())
            elif path == "/slots":
                self._json(200, engine.slots())
            elif path in ("/models", "/v1/models"):
                self._json(200, engine.models())
            else:
                raise RequestError(404, "File Not Found", "not_found_error")

        def _post(self, path: str) -> None:
            body = self._body()
            if path == "/tokenize":
                self._json(200, engine.tokenize_request(body))
            elif path == "/detokenize":
                self._json(200, engine.detokenize_request(body))
            elif path in ("/completion", "/completions"):
                self._completion("/completion", body, openai=False)
            elif path in ("/v1/completions",):
                self._completion(path, body, openai=True)
            else:
                raise RequestError(404, "File Not Found", "not_found_error")

        def _body(self) -> dict[str, Any]:
            data = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            try:
                body = json.loads(data or b"{}")
            except ValueError as exc:
                raise RequestError(400, f"invalid JSON: {exc}") from exc
            if not isinstance(body, dict):
                raise RequestError(400, "the body must be a JSON object")
            return body

        def _json(self, status: int, body: Any) -> None:
            data = json.dumps(body).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True

        # -- /completion and /v1/completions -----------------------------------------------------------

        def _completion(self, path: str, body: dict[str, Any], openai: bool) -> None:
            request, tokens = engine.start(path, body, body.get("prompt"))
            stream = bool(body.get("stream", False))
            slot, shared = engine.acquire(tokens)
            cache_n = min(shared, len(tokens) - 1) if body.get("cache_prompt", True) else 0
            request.cache_n = cache_n
            generated: list[int] = []
            released = False
            try:
                if stream:
                    self._start_stream()
                steps = engine.generate(body, request, len(tokens))
                while True:
                    try:
                        out, token = next(steps)
                    except StopIteration as done:
                        gen: _Generation = done.value
                        break
                    generated.append(token)
                    request.content += out
                    request.tokens_predicted = len(generated)
                    if stream:
                        self._event(
                            self._partial(openai, out, token, slot.id, len(generated), len(tokens), body)
                        )
                request.stop_type = gen.stop_type
                if not stream:
                    request.content = gen.text
                final = self._final(openai, gen, slot.id, len(tokens), cache_n, stream, body, request)
                # as llama.cpp: the slot is free before its final result reaches the client (a /slots
                # read after the reply never sees it busy)
                released = True
                engine.release(slot, tokens + generated)
                if stream:
                    self._event(final)
                    if openai:
                        self._chunk(b"data: [DONE]\n\n")
                    self._chunk(b"")
                    self.close_connection = True
                else:
                    self._json(200, final)
            except (BrokenPipeError, ConnectionResetError) as exc:
                request.disconnected = True
                raise _ClientGone from exc
            finally:
                if not released:
                    engine.release(slot, tokens + generated)
                request.done.set()

        def _start_stream(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()

        def _chunk(self, data: bytes) -> None:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()

        def _event(self, event: dict[str, Any]) -> None:
            self._chunk(b"data: " + json.dumps(event).encode() + b"\n\n")

        def _partial(
            self, openai: bool, out: str, token: int, slot: int, predicted: int, n_prompt: int, body: dict
        ) -> dict[str, Any]:
            if openai:
                return _openai_event(out, None)
            return {
                "index": 0,
                "content": out,
                "tokens": [token] if body.get("return_tokens") else [],
                "stop": False,
                "id_slot": slot,
                "tokens_predicted": predicted,
                "tokens_evaluated": n_prompt,
            }

        def _final(
            self,
            openai: bool,
            gen: _Generation,
            slot: int,
            n_prompt: int,
            cache_n: int,
            stream: bool,
            body: dict[str, Any],
            request: ScriptedRequest,
        ) -> dict[str, Any]:
            timings = _timings(n_prompt, cache_n, len(gen.tokens))
            if openai:
                finish = "length" if gen.stop_type == "limit" else "stop"
                event = _openai_event("" if stream else gen.text, finish)
                event["usage"] = {
                    "completion_tokens": len(gen.tokens),
                    "prompt_tokens": n_prompt,
                    "total_tokens": n_prompt + len(gen.tokens),
                    "prompt_tokens_details": {"cached_tokens": cache_n},
                }
                event["timings"] = timings
                return event
            return {
                "index": 0,
                "content": "" if stream else gen.text,
                "tokens": [] if stream or not body.get("return_tokens") else gen.tokens,
                "id_slot": slot,
                "stop": True,
                "model": MODEL_PATH,
                "tokens_predicted": len(gen.tokens),
                "tokens_evaluated": n_prompt,
                "generation_settings": _params(body),
                "prompt": request.prompt,
                "has_new_line": "\n" in gen.text,
                "truncated": gen.truncated,
                "stop_type": gen.stop_type,
                "stopping_word": gen.stopping_word,
                "tokens_cached": n_prompt + len(gen.tokens),
                "timings": timings,
            }

    return Handler


def _openai_event(text: str, finish: str | None) -> dict[str, Any]:
    return {
        "choices": [{"text": text, "index": 0, "logprobs": None, "finish_reason": finish}],
        "created": int(time.time()),
        "model": MODEL_PATH,
        "system_fingerprint": "scripted",
        "object": "text_completion",
        "id": "cmpl-scripted",
    }
