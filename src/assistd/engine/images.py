"""Images in a model turn's prompt. A conversation's image parts (an Assistants message's `image_file` and
`image_url`, a response's `input_image`) are first written into its text as references (`ref`): tokens
with a nonce of this process, so no client text can forge one. Building a turn, `PromptImages` reads each
referenced image (an uploaded file, a `data:` URL, or a remote URL where the operator allows it), checks
and scales it in the capped child process (assistd.images), and puts a placeholder in its place; the
backend sends the placeholders' images to the engine with the prompt, each where its placeholder is, and
the chat template never sees more than a word. A model that cannot see images refuses them (CannotSee) or,
with `--vision-fallback drop`, is told with a note that an image was left out."""

from __future__ import annotations

import collections
import hashlib
import json
import re
import secrets
import threading
from collections.abc import Callable
from typing import Any

from assistd.errors import NotFound
from assistd.images import (
    BadImage,
    FetchPolicy,
    ImageFetchFailed,
    ImageFetchRefused,
    ImageLimits,
    ImageReader,
    decode_data_url,
    fetch_image,
    is_data_url,
)
from assistd.llm.backend import PLACEHOLDER, image_placeholder

NONCE = secrets.token_hex(8)
REF = re.compile(rf"\u27e6image {NONCE} (\{{[^\u27e7]*\}})\u27e7")
DROPPED = "[an image was left out: this model cannot see images]"
CACHE_BYTES = 128 * 1024 * 1024  # prepared images kept for the next turns of their threads


class ImageUnavailable(Exception):
    """An image of the conversation could not be used: the run (or response) fails, saying why."""


class ImageMissing(ImageUnavailable):
    """The image's file does not exist (a message's own check names the file)."""


class CannotSee(Exception):
    """The model cannot see images and the operator's fallback is to refuse."""

    def __init__(self, model: str) -> None:
        super().__init__(
            f"The model '{model}' cannot see images: the conversation holds images. Use a vision model "
            "(a models-file entry with `mmproj`), or remove the images."
        )


def ref(part: dict[str, Any]) -> str:
    """The reference that stands for an image part in a conversation's text."""
    source = image_source(part)
    return f"\u27e6image {NONCE} {json.dumps(source, separators=(',', ':'))}\u27e7" if source else ""


def image_source(part: dict[str, Any]) -> dict[str, Any] | None:
    """Where an image part's image is and at which detail: {"file_id"} or {"url"}, and "detail"."""
    kind = part.get("type")
    if kind == "image_file":
        body = part.get("image_file") or {}
        return {"file_id": body.get("file_id"), "detail": body.get("detail") or "auto"}
    if kind == "image_url":
        body = part.get("image_url") or {}
        return {"url": body.get("url"), "detail": body.get("detail") or "auto"}
    if kind == "input_image":
        if part.get("file_id"):
            return {"file_id": part["file_id"], "detail": part.get("detail") or "auto"}
        if part.get("image_url"):
            return {"url": part["image_url"], "detail": part.get("detail") or "auto"}
    return None


def has_images(text: str) -> bool:
    return REF.search(text) is not None


def without_refs(text: str) -> str:
    """The text with its image references left out (a search query, a title)."""
    return REF.sub("", text).strip()


def holds_images(parts: Any) -> bool:
    """Whether a message's content parts hold an image."""
    return isinstance(parts, list) and any(isinstance(p, dict) and image_source(p) is not None for p in parts)


class ImageCache:
    """Reads and prepares the images of a project's conversations (shared by every turn of a process);
    prepared images are kept, by file and detail or by URL and detail, up to CACHE_BYTES."""

    def __init__(self, files: Any, limits: ImageLimits, policy: FetchPolicy) -> None:
        self.files = files
        self.limits = limits
        self.policy = policy
        self.decoder = ImageReader(limits)  # the capped decoding process (started on first use)
        self._cache: collections.OrderedDict[tuple[str, ...], bytes] = collections.OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def read(self, project: str, source: dict[str, Any]) -> bytes:
        detail = source.get("detail") or "auto"
        if detail not in ("low", "high", "auto"):
            raise ImageUnavailable(f"Invalid image detail '{detail}': use low, high or auto.")
        if source.get("file_id"):
            key: tuple[str, ...] = (project, "file", str(source["file_id"]), detail)
        else:
            url = str(source.get("url") or "")
            key = ("url", hashlib.sha256(url.encode()).hexdigest(), detail)
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        data = self._prepared(project, source, detail)
        with self._lock:
            if key not in self._cache:
                self._cache[key] = data
                self._bytes += len(data)
                while self._bytes > CACHE_BYTES and self._cache:
                    _, old = self._cache.popitem(last=False)
                    self._bytes -= len(old)
        return data

    def close(self) -> None:
        self.decoder.close()

    def check(self, project: str, part: dict[str, Any]) -> None:
        """Refuses (ImageUnavailable) an image part whose image cannot be used, reading it as a turn will
        (and keeping it for that turn); a remote URL is fetched only when a turn needs it."""
        source = image_source(part)
        if source is None:
            return
        if source.get("url") is not None and not is_data_url(str(source["url"])):
            return
        try:
            self.read(project, source)
        except ImageMissing:
            return  # the message's own check of its files says so

    def forget(self, project: str, file_id: str) -> None:
        """Drops a deleted file's prepared images."""
        with self._lock:
            for key in [k for k in self._cache if k[:3] == (project, "file", file_id)]:
                self._bytes -= len(self._cache.pop(key))

    def _prepared(self, project: str, source: dict[str, Any], detail: str) -> bytes:
        what = source.get("file_id") or _short(str(source.get("url") or ""))
        try:
            return self.decoder.prepare(self._raw(project, source), detail).data
        except BadImage as exc:
            raise ImageUnavailable(f"The image {what} cannot be used: {exc}") from None

    def _raw(self, project: str, source: dict[str, Any]) -> bytes:
        file_id = source.get("file_id")
        if file_id:
            try:
                path, _ = self.files.content_path(project, file_id)
            except NotFound:
                raise ImageMissing(f"The image file '{file_id}' does not exist (deleted?).") from None
            if path.stat().st_size > self.limits.max_bytes:
                raise ImageUnavailable(
                    f"The image file '{file_id}' is larger than {self.limits.max_bytes // 2**20} MB."
                )
            return path.read_bytes()
        url = str(source.get("url") or "")
        if is_data_url(url):
            try:
                return decode_data_url(url, self.limits.max_bytes)
            except BadImage as exc:
                raise ImageUnavailable(f"The image URL cannot be used: {exc}") from None
        try:
            return fetch_image(url, self.policy)
        except (ImageFetchRefused, ImageFetchFailed) as exc:
            raise ImageUnavailable(f"The image at {_short(url)} could not be fetched: {exc}") from None


class PromptImages:
    """The images of one model turn: references resolved into placeholders, and the images the final
    (fitted) prompt still holds, in their order."""

    def __init__(
        self, reader: ImageCache | None, project: str, sees: bool, fallback: str, model: str
    ) -> None:
        self.reader = reader
        self.project = project
        self.sees = sees
        self.fallback = fallback
        self.model = model
        self.images: dict[str, bytes] = {}

    def resolve(self, turns: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The turns with their image references made placeholders (or notes, or CannotSee)."""
        out = []
        for turn in turns:
            content = turn.get("content")
            if isinstance(content, str) and "\u27e6image" in content:
                turn = {**turn, "content": REF.sub(self._placeholder, content)}
            out.append(turn)
        return out

    def _placeholder(self, match: re.Match[str]) -> str:
        if not self.sees:
            if self.fallback == "drop":
                return DROPPED
            raise CannotSee(self.model)
        assert self.reader is not None
        data = self.reader.read(self.project, json.loads(match.group(1)))
        key = image_placeholder(len(self.images))
        self.images[key] = data
        return key

    def used(self, text: str) -> dict[str, bytes]:
        """The images the prompt holds, in the order of their places in it."""
        return {key: self.images[key] for key in PLACEHOLDER.findall(text) if key in self.images}

    def counter(self, backend: Any) -> Callable[[str], int]:
        """Counts a prompt's tokens with its images' tokens, as the engine counts them: the text between
        two images is tokenized on its own."""
        if not self.images:
            return backend.count_tokens

        def count(text: str) -> int:
            keys = PLACEHOLDER.findall(text)
            if not keys:
                return backend.count_tokens(text)
            images = sum(backend.image_tokens(self.images[k]) for k in keys if k in self.images)
            return sum(backend.count_tokens(piece) for piece in PLACEHOLDER.split(text) if piece) + images

        return count


def _short(url: str) -> str:
    return url if len(url) <= 80 else url[:60] + "…"
