"""LLMBackend on llama.cpp's server engine, over its HTTP API: the embedded engine (llm/embedded.py) and an
operator-run `llama-server` alike. The engine batches the generations of its slots (continuous batching),
keeps each slot's KV cells for the next turn and a host-memory prompt cache across threads, constrains
decoding to a GBNF grammar, and counts tokens; a closed stream frees the slot. Prompts are rendered and
counted here (llm/vocab.py) so that truncation happens before a prompt is sent."""

from __future__ import annotations

import base64
import io
import logging
from collections.abc import Callable
from typing import Any

from assistd.llm.backend import PLACEHOLDER, GenerationParams, GenerationResult
from assistd.llm.errors import EngineError, ModelLoadError
from assistd.llm.http import EngineHTTP
from assistd.llm.vocab import ChatRenderer, RemotePrompting, Vocab

log = logging.getLogger("assistd.llm")

STOP_TYPES = {"limit": "length", "eos": "stop", "word": "stop"}


class LlamaServerBackend(RemotePrompting):
    def __init__(self, name: str, http: EngineHTTP, vocab: Vocab, props: dict[str, Any], engine: str) -> None:
        self.name = name
        self.engine = engine  # "embedded llama.cpp server" or the remote URL, for logs and doctor
        self._http = http
        self._vocab = vocab
        self.owned_engine: Any = None  # the embedded engine this backend started, closed with it
        settings = props.get("default_generation_settings") or {}
        self.n_ctx = int(settings.get("n_ctx") or 0)  # per slot: what one run may use
        self.slots = max(1, int(props.get("total_slots") or 1))
        # a projector (`--mmproj`): images go with the prompt, each where the engine's media marker is
        self.vision = bool((props.get("modalities") or {}).get("vision"))
        self._media_marker = str(props.get("media_marker") or "<__media__>")
        self._image_tokens: dict[str, int] = {}  # an image's prompt tokens, by its size
        if not self.n_ctx:
            raise ModelLoadError(f"{http.label}: /props does not tell the context size")
        self.chat_template = vocab.chat_template
        if not self.chat_template:
            raise ModelLoadError(
                f"{http.label}: the model has no chat template (GGUF metadata or the engine's /props); "
                "set `chat_template` for it in the models file"
            )
        self._renderer = ChatRenderer(self.chat_template, vocab.bos_text, vocab.eos_text)

    def _multimodal_text(self, prompt: str) -> str:
        """The prompt as the engine's multimodal text: a media marker where each image is, and the BOS the
        engine adds itself left out (a rendered template may have written it)."""
        # a marker the text itself holds (a client may type a well-known one) would take an image's place
        text = prompt.replace(self._media_marker, self._media_marker[:1] + "\u200b" + self._media_marker[1:])
        text = PLACEHOLDER.sub(lambda _m: self._media_marker, text)
        bos = self._vocab.bos_text
        return text[len(bos) :] if bos and text.startswith(bos) else text

    def image_tokens(self, data: bytes) -> int:
        """The prompt tokens the engine gives an image (its projector's count for the image's size):
        measured once per size with a prompt of the image alone."""
        from PIL import Image

        with Image.open(io.BytesIO(data)) as image:  # a prepared image: checked, and small enough
            key = f"{image.width}x{image.height}"
        if key not in self._image_tokens:
            body = {
                "prompt": {
                    "prompt_string": self._media_marker,
                    "multimodal_data": [base64.b64encode(data).decode()],
                },
                "n_predict": 0,
                "cache_prompt": False,
            }
            reply = self._http.post_json("/completion", body)
            text = len(self.prompt_tokens(""))  # what a prompt holds besides its image (a BOS)
            self._image_tokens[key] = max(1, int(reply.get("tokens_evaluated") or 0) - text)
        return self._image_tokens[key]

    def busy_slots(self) -> int:
        """How many of the engine's slots are generating now (its /slots endpoint)."""
        return sum(1 for slot in self._http.get_json("/slots", timeout=10) if slot.get("is_processing"))

    def close(self) -> None:
        self._http.close()
        if self.owned_engine is not None:
            self.owned_engine.close()
            self.owned_engine = None

    def generate(
        self,
        prompt: str,
        params: GenerationParams,
        on_text: Callable[[str], None],
        cancelled: Callable[[], bool],
    ) -> GenerationResult:
        images = [key for key in PLACEHOLDER.findall(prompt) if key in params.images]
        if images:  # text with the engine's media markers, and the images in their order
            pieces = [piece for piece in PLACEHOLDER.split(prompt) if piece]  # each tokenized on its own
            count = len(self.prompt_tokens(pieces[0] if pieces else "")) + sum(
                self.count_tokens(piece) for piece in pieces[1:]
            )
            count += sum(self.image_tokens(params.images[key]) for key in images)
            request: Any = {
                "prompt_string": self._multimodal_text(prompt),
                "multimodal_data": [base64.b64encode(params.images[key]).decode() for key in images],
            }
        else:
            tokens = self.prompt_tokens(prompt)  # sent as ids: counted as the engine sees them
            request, count = tokens, len(tokens)
        body: dict[str, Any] = {
            "prompt": request,
            "n_predict": max(1, min(params.max_tokens, self.n_ctx - count)),
            "temperature": params.temperature,
            "top_p": params.top_p,
            "repeat_penalty": params.repeat_penalty,
            "stop": params.stop,
            "stream": True,
            "cache_prompt": True,  # the slot's KV cells (and the host cache) serve the next turn
            "return_tokens": False,
        }
        if params.grammar:
            body["grammar"] = params.grammar
        if params.preserved_tokens:  # the family's markup: llama.cpp prints control tokens only when named
            body["preserved_tokens"] = params.preserved_tokens
        if params.seed is not None:
            body["seed"] = params.seed
        pieces: list[str] = []
        final: dict[str, Any] = {}
        completion_tokens = 0
        for batch in self._http.event_batches("/completion", body, cancelled):
            # the tokens that came together are handed on as one piece: one delta, not one per token
            text = "".join([event.get("content") or "" for event in batch])
            if text:
                pieces.append(text)
                on_text(text)
            for event in batch:
                if event.get("stop"):
                    final = event
                else:
                    completion_tokens += 1
            if not final and cancelled():  # leaving the stream closes it: the engine frees the slot
                break
        if not final:
            if not cancelled():
                raise EngineError(f"{self.label} ended its reply without its final event")
            finish = "cancelled"
        else:
            finish = STOP_TYPES.get(final.get("stop_type", ""), "stop")
            if final.get("truncated"):
                finish = "length"
        timings = final.get("timings") or {}
        return GenerationResult(
            text="".join(pieces),
            prompt_tokens=int(final.get("tokens_evaluated") or count),
            completion_tokens=int(final.get("tokens_predicted", completion_tokens)),
            finish_reason=finish,  # type: ignore[arg-type]
            cached_tokens=int(timings.get("cache_n") or 0),
        )
