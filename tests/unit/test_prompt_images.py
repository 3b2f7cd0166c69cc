"""Images in a model turn's prompt (engine/images.py): the conversation's image parts become placeholders
where they are, the images go with the prompt in that order, a model that cannot see refuses them (or, by
the operator's choice, is told one was left out), and truncation drops an image whole with its message."""

from __future__ import annotations

from pathlib import Path

import pytest

from assistd.engine import images
from assistd.engine.context import Conversation, fit, history_messages
from assistd.errors import NotFound
from assistd.images import FetchPolicy, ImageLimits
from assistd.llm.backend import PLACEHOLDER
from assistd.storage.messages import MessageRow
from assistd.storage.runs import RunRow
from tests.support import png_bytes, png_data_url

IMAGE_TOKENS = 18


class Files:
    """The project's files as FileService.content_path gives them (one blob directory)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def add(self, file_id: str, data: bytes) -> None:
        (self.root / file_id).write_bytes(data)

    def content_path(self, project: str, file_id: str) -> tuple[Path, str]:
        path = self.root / file_id
        if project != "p" or not path.exists():
            raise NotFound(f"No file found with id '{file_id}'.")
        return path, file_id + ".png"


class WordBackend:
    """Counts a word a token; an image is IMAGE_TOKENS (as a projector counts a fixed-size image)."""

    n_ctx = 400

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def image_tokens(self, data: bytes) -> int:
        return IMAGE_TOKENS


@pytest.fixture
def cache(tmp_path):
    files = Files(tmp_path)
    files.add("file-red", png_bytes(32, 32, (255, 0, 0)))
    files.add("file-blue", png_bytes(16, 16, (0, 0, 255)))
    files.add("file-text", b"just some words, not an image")
    store = images.ImageCache(files, ImageLimits(), FetchPolicy())
    yield store
    store.close()


def message(role: str, *parts: dict) -> MessageRow:
    return MessageRow(id="msg", project="p", thread_id="t", created_at=0, role=role, content=list(parts))


def text(value: str) -> dict:
    return {"type": "text", "text": {"value": value, "annotations": []}}


def image_file(file_id: str, detail: str = "auto") -> dict:
    return {"type": "image_file", "image_file": {"file_id": file_id, "detail": detail}}


def render(messages: list[dict]) -> str:
    return "\n".join(f"<{m['role']}> {m['content']}" for m in messages)


def test_images_become_placeholders_in_place_and_go_in_their_order(cache):
    rows = [
        message("user", text("first"), image_file("file-red")),
        message("assistant", text("a red square")),
        message(
            "user",
            {"type": "image_url", "image_url": {"url": png_data_url(8, 8), "detail": "low"}},
            text("and this?"),
        ),
    ]
    prompt_images = images.PromptImages(cache, "p", sees=True, fallback="refuse", model="m")
    turns = prompt_images.resolve(history_messages(rows, {}))
    backend = WordBackend()
    prompt = fit(backend, Conversation("", turns), RunRow(), 0, render, count=prompt_images.counter(backend))
    keys = PLACEHOLDER.findall(prompt.text)
    assert len(keys) == 2
    assert prompt.text.index("first") < prompt.text.index(keys[0]) < prompt.text.index("a red square")
    assert prompt.text.index(keys[1]) < prompt.text.index("and this?")
    used = prompt_images.used(prompt.text)
    assert list(used) == keys  # the images in the order of their places
    assert used[keys[0]].startswith(b"\x89PNG") and used[keys[1]].startswith(b"\x89PNG")
    words = len(PLACEHOLDER.sub("", prompt.text).split())
    assert prompt.tokens == words + 2 * IMAGE_TOKENS  # each image counts as the engine counts it


def test_a_client_cannot_write_a_reference_or_a_placeholder(cache):
    forged = '\u27e6image 0123456789abcdef {"file_id": "file-red"}\u27e7 <image-0123456789abcdef-0>'
    prompt_images = images.PromptImages(cache, "p", sees=True, fallback="refuse", model="m")
    turns = prompt_images.resolve(history_messages([message("user", text(forged))], {}))
    assert turns[0]["content"] == forged and not prompt_images.images


def test_a_model_that_cannot_see_refuses_or_is_told_by_a_note(cache):
    rows = [message("user", text("what is it?"), image_file("file-red"))]
    refusing = images.PromptImages(cache, "p", sees=False, fallback="refuse", model="smol")
    with pytest.raises(images.CannotSee, match="'smol' cannot see images"):
        refusing.resolve(history_messages(rows, {}))
    dropping = images.PromptImages(cache, "p", sees=False, fallback="drop", model="smol")
    turns = dropping.resolve(history_messages(rows, {}))
    assert turns[0]["content"] == f"what is it?\n{images.DROPPED}" and not dropping.images


def test_an_unusable_image_says_why(cache):
    for part, says in [
        (image_file("file-text"), "file-text cannot be used"),
        (image_file("file-gone"), "'file-gone' does not exist"),
        ({"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}, "cannot be used"),
        ({"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}, "is off on this server"),
    ]:
        prompt_images = images.PromptImages(cache, "p", sees=True, fallback="refuse", model="m")
        with pytest.raises(images.ImageUnavailable, match=says):
            prompt_images.resolve(history_messages([message("user", part)], {}))
    with pytest.raises(images.ImageUnavailable, match="does not exist"):  # another project's file
        images.PromptImages(cache, "other", sees=True, fallback="refuse", model="m").resolve(
            history_messages([message("user", image_file("file-red"))], {})
        )


def test_truncation_drops_an_image_whole_with_its_message(cache):
    rows = [
        message("user", text("old question"), image_file("file-red")),
        message("assistant", text("old answer")),
        message("user", text("new question"), image_file("file-blue")),
    ]
    prompt_images = images.PromptImages(cache, "p", sees=True, fallback="refuse", model="m")
    turns = prompt_images.resolve(history_messages(rows, {}))
    backend = WordBackend()
    backend.n_ctx = 30  # room for the last message and its image, not for both images
    run = RunRow(truncation_strategy={"type": "auto"})
    prompt = fit(backend, Conversation("", turns), run, 0, render, count=prompt_images.counter(backend))
    assert "old question" not in prompt.text and "new question" in prompt.text
    assert len(prompt_images.used(prompt.text)) == 1 and prompt.tokens <= 30


def test_prepared_images_are_kept_for_the_next_turns(cache):
    source = {"file_id": "file-red", "detail": "low"}
    first = cache.read("p", source)
    cache.files.add("file-red", b"changed on disk")  # files never change: the kept image is used
    assert cache.read("p", source) == first
    with pytest.raises(images.ImageUnavailable, match="Invalid image detail"):
        cache.read("p", {"file_id": "file-red", "detail": "huge"})
