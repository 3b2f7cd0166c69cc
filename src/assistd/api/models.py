from __future__ import annotations

from litestar import Controller

from assistd.api.params import get
from assistd.container import Container
from assistd.protocol.models import ModelObject


class ModelController(Controller):
    path = "/models"
    tags = ["Models"]

    @get("/")
    def list_(self, svc: Container, project: str) -> dict:
        models = svc.catalog.objects()
        return {"object": "list", "data": [m.model_dump() for m in models]}

    @get("/{model_id:path}")
    def retrieve(self, svc: Container, project: str, model_id: str) -> ModelObject:
        return svc.catalog.object(model_id.lstrip("/"))
