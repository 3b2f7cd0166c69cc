from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, model_serializer


class ModelObject(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str
    shutdown_date: int | None = None
    # assistd's own: {"vision": true} for a model that sees images (left out otherwise)
    capabilities: dict[str, Any] | None = None

    @model_serializer(mode="wrap")
    def _without_unknowns(self, handler: Any) -> dict[str, Any]:
        data = handler(self)
        if data.get("capabilities") is None:
            data.pop("capabilities", None)
        return data


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelObject]
