"""The long-lived objects of one server process, built in the app lifespan and injected into handlers."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from assistd.config import Settings
from assistd.ids import now
from assistd.llm.catalog import ModelCatalog
from assistd.services.assistants import AssistantService
from assistd.services.files import FileService
from assistd.services.messages import MessageService
from assistd.services.threads import ThreadService
from assistd.services.tool_resources import ToolResourceResolver
from assistd.storage.blobs import BlobStore
from assistd.storage.db import Database

log = logging.getLogger("assistd")


@dataclass
class Container:
    settings: Settings
    db: Database
    blobs: BlobStore
    catalog: ModelCatalog
    resources: ToolResourceResolver
    assistants: AssistantService
    threads: ThreadService
    messages: MessageService
    files: FileService
    # Features that plug in later (run engine, vector stores, code interpreter) register here.
    extras: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def build(cls, settings: Settings) -> Container:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        db = Database(settings.database)
        db.create_schema()
        blobs = BlobStore(settings.blob_dir)
        catalog = ModelCatalog(settings.model_entries(), settings.default_model, created=now())
        resources = ToolResourceResolver()
        messages = MessageService(db, resources)
        return cls(
            settings=settings,
            db=db,
            blobs=blobs,
            catalog=catalog,
            resources=resources,
            assistants=AssistantService(db, catalog, resources),
            threads=ThreadService(db, resources, messages),
            messages=messages,
            files=FileService(db, blobs, settings.max_upload_bytes),
        )

    def close(self) -> None:
        self.db.dispose()
