from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from assistd.protocol.base import Metadata, RequestModel
from assistd.protocol.messages import MessageCreate
from assistd.protocol.tools import ToolResources


class ThreadCreate(RequestModel):
    messages: list[MessageCreate] | None = Field(None, max_length=1000)
    metadata: Metadata = None
    tool_resources: ToolResources | None = None


class ThreadUpdate(RequestModel):
    metadata: Metadata = None
    tool_resources: ToolResources | None = None


class ThreadObject(BaseModel):
    id: str
    object: Literal["thread"] = "thread"
    created_at: int
    tool_resources: dict[str, Any] | None
    metadata: dict[str, str]
