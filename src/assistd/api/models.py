from __future__ import annotations

from litestar import Controller

from assistd.api.params import get
from assistd.container import Container
from assistd.protocol.models import ModelList, ModelObject


class ModelController(Controller):
    path = "/models"
    tags = ["Models"]

    @get("/")
    def list_(self, svc: Container, project: str) -> ModelList:
        return ModelList(data=svc.catalog.objects(svc.sees_images))

    @get("/{model_id:path}")
    def retrieve(self, svc: Container, project: str, model_id: str) -> ModelObject:
        return svc.catalog.object(model_id.lstrip("/"), svc.sees_images)
