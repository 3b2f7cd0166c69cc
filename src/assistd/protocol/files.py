from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

UPLOAD_PURPOSES = ("assistants", "batch", "fine-tune", "vision", "user_data", "evals")
ALL_PURPOSES = (*UPLOAD_PURPOSES, "assistants_output", "batch_output", "fine-tune-results")
MIN_EXPIRY, MAX_EXPIRY = 3600, 2_592_000


class UploadForm(BaseModel):
    """The multipart form of `POST /v1/files` as the OpenAPI schema shows it (api/files.py reads it)."""

    model_config = ConfigDict(populate_by_name=True)

    file: bytes
    purpose: Literal[UPLOAD_PURPOSES]  # type: ignore[valid-type]
    expires_after_anchor: Literal["created_at"] | None = Field(None, alias="expires_after[anchor]")
    expires_after_seconds: int | None = Field(
        None, alias="expires_after[seconds]", ge=MIN_EXPIRY, le=MAX_EXPIRY
    )


class FileObject(BaseModel):
    id: str
    object: Literal["file"] = "file"
    bytes: int
    created_at: int
    filename: str
    purpose: str
    status: str
    expires_at: int | None = None
    status_details: str | None = None


class FileDeleted(BaseModel):
    id: str
    object: Literal["file"] = "file"
    deleted: bool = True
