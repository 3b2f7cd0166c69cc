"""Containers and their files: requests and responses (openai.types.container_*, containers.*)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field, StrictInt

from assistd.protocol.base import RequestModel, WireModel, max_len

MEMORY_LIMITS = ("1g", "4g", "16g", "64g")
DEFAULT_EXPIRY_MINUTES = 20  # the hosted API's default, and its expiry of `auto` containers
MAX_EXPIRY_MINUTES = 10080  # a week
MAX_FILE_IDS = 100


class ContainerExpiresAfterParam(WireModel):
    anchor: Literal["last_active_at"]
    minutes: StrictInt = Field(ge=1, le=MAX_EXPIRY_MINUTES)


class ContainerNetworkPolicyParam(WireModel):
    type: Literal["disabled", "allowlist"]
    allowed_domains: list[str] | None = None


class ContainerCreate(RequestModel):
    name: Annotated[str, max_len(256)]
    expires_after: ContainerExpiresAfterParam | None = None
    file_ids: list[str] | None = Field(None, max_length=MAX_FILE_IDS)
    memory_limit: Literal[MEMORY_LIMITS] | None = None  # type: ignore[valid-type]
    network_policy: ContainerNetworkPolicyParam | None = None


class ContainerFileCreate(RequestModel):
    """The JSON form of `POST /v1/containers/{id}/files` (the other form is a multipart `file` upload)."""

    file_id: str


class ContainerExpiresAfter(BaseModel):
    anchor: Literal["last_active_at"] = "last_active_at"
    minutes: int


class ContainerNetworkPolicy(BaseModel):
    type: Literal["disabled"] = "disabled"  # kernels have no network (README: code interpreter)


class ContainerObject(BaseModel):
    id: str
    object: Literal["container"] = "container"
    created_at: int
    name: str
    status: Literal["running", "expired"]
    expires_after: ContainerExpiresAfter
    last_active_at: int
    memory_limit: str | None = None
    network_policy: ContainerNetworkPolicy = Field(default_factory=ContainerNetworkPolicy)


class ContainerDeleted(BaseModel):
    id: str
    object: Literal["container.deleted"] = "container.deleted"
    deleted: bool = True


class ContainerFileObject(BaseModel):
    id: str
    object: Literal["container.file"] = "container.file"
    bytes: int
    container_id: str
    created_at: int
    path: str
    source: str  # user (uploaded, or copied from a file) | assistant (written by the container's code)


class ContainerFileDeleted(BaseModel):
    id: str
    object: Literal["container.file.deleted"] = "container.file.deleted"
    deleted: bool = True
