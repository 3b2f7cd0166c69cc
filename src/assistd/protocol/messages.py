from __future__ import annotations

import re
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, field_validator

from assistd.protocol.base import Metadata, RequestModel, WireModel


class TextPart(WireModel):
    type: Literal["text"]
    text: str


class ImageFileRef(WireModel):
    file_id: str
    detail: Literal["auto", "low", "high"] | None = None


class ImageFilePart(WireModel):
    type: Literal["image_file"]
    image_file: ImageFileRef


DATA_IMAGE_URL = re.compile(r"data:image/[\w.+-]+(;[\w.+-]+=[\w.+-]+)*(;base64)?,", re.IGNORECASE)


class ImageUrlRef(WireModel):
    url: str
    detail: Literal["auto", "low", "high"] | None = None

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not is_image_url(value):
            shown = value if len(value) <= 60 else value[:60] + "…"
            raise ValueError(f"expected an http(s) URL or a data:image/... URL, got '{shown}'")
        return value


def is_image_url(value: str) -> bool:
    """An absolute http(s) URL with a host, or a data: URL of an image (as the hosted API accepts)."""
    if any(ch.isspace() for ch in value):
        return False
    if value[:5].lower() == "data:":
        return DATA_IMAGE_URL.match(value) is not None
    try:
        parts = urlsplit(value)
        return parts.scheme.lower() in ("http", "https") and bool(parts.hostname)
    except ValueError:  # a malformed port or IPv6 host
        return False


class ImageUrlPart(WireModel):
    type: Literal["image_url"]
    image_url: ImageUrlRef


ContentPart = Annotated[TextPart | ImageFilePart | ImageUrlPart, Field(discriminator="type")]


class AttachmentTool(WireModel):
    type: Literal["code_interpreter", "file_search"]


class Attachment(WireModel):
    file_id: str
    tools: list[AttachmentTool] = Field(default_factory=list)


class MessageCreate(RequestModel):
    role: Literal["user", "assistant"]
    content: str | Annotated[list[ContentPart], Field(min_length=1)]
    attachments: list[Attachment] | None = None
    metadata: Metadata = None

    def content_parts(self) -> list[dict[str, Any]]:
        """The stored form: text parts get `{value, annotations: []}` as the API returns them."""
        if isinstance(self.content, str):
            return [text_part(self.content)]
        parts = []
        for part in self.content:
            if isinstance(part, TextPart):
                parts.append(text_part(part.text))
            else:
                parts.append(part.model_dump(exclude_none=True))
        return parts


class MessageUpdate(RequestModel):
    metadata: Metadata = None


class MessageObject(BaseModel):
    id: str
    object: Literal["thread.message"] = "thread.message"
    created_at: int
    thread_id: str
    status: str
    incomplete_details: dict[str, Any] | None
    completed_at: int | None
    incomplete_at: int | None
    role: str
    content: list[dict[str, Any]]
    assistant_id: str | None
    run_id: str | None
    attachments: list[dict[str, Any]] | None
    metadata: dict[str, str]


def text_part(value: str, annotations: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"type": "text", "text": {"value": value, "annotations": annotations or []}}
