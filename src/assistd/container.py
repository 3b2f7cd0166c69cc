"""The long-lived objects of one server process, built in the app lifespan and injected into handlers."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any

from assistd.config import ModelEntry, Settings
from assistd.engine.events import EventBus
from assistd.engine.runner import RunExecutor
from assistd.engine.store import RunStore
from assistd.engine.toolbox import Toolbox
from assistd.engine.worker import RunEngine
from assistd.ids import now
from assistd.leases import make_worker_id
from assistd.llm.catalog import ModelCatalog
from assistd.llm.embedded import default_slots
from assistd.llm.engines import open_backend
from assistd.llm.registry import ModelRegistry
from assistd.services.assistants import AssistantService
from assistd.services.files import FileService
from assistd.services.messages import MessageService
from assistd.services.runs import RunService, active_run_id
from assistd.services.threads import ThreadService
from assistd.services.tool_resources import ToolResourceResolver
from assistd.services.usage import UsageService
from assistd.services.vector_stores import build_file_search
from assistd.storage import migrate
from assistd.storage.blobs import BlobStore
from assistd.storage.db import Database
from assistd.tools.calls import check_function_tools
from assistd.tools.code_interpreter import CodeInterpreter

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
    runs: RunService
    bus: EventBus
    registry: ModelRegistry
    engine: RunEngine
    usage: UsageService
    # Features that plug in later (run engine, vector stores, code interpreter) register here.
    extras: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def build(cls, settings: Settings) -> Container:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        db = Database(settings.database)
        if settings.migrate:
            db.create_schema()
        else:
            migrate.require_head(db)  # the operator upgrades first (`assistd db upgrade`)
        blobs = BlobStore(settings.blob_dir)
        catalog = ModelCatalog(settings.model_entries(), settings.default_model, created=now())
        resources = ToolResourceResolver()
        messages = MessageService(db, resources)
        assistants = AssistantService(db, catalog, resources)
        assistants.tools_checks.append(check_function_tools)
        threads = ThreadService(db, resources, messages)
        files = FileService(db, blobs, settings.max_upload_bytes)
        worker_id = make_worker_id()
        runs = RunService(
            db,
            catalog,
            assistants,
            threads,
            messages,
            settings.run_expiry_seconds,
            settings.run_lease_seconds,
            worker_id,
        )
        messages.active_run = active_run_id
        bus = EventBus()
        registry = ModelRegistry(catalog, lambda name: open_backend(*_engine_args(settings, catalog, name)))
        extras: dict[str, Any] = {}
        usage = UsageService(db)
        code_interpreter = CodeInterpreter(settings)  # kernels start in start(), in the background
        code_interpreter.on_session_started = usage.record_code_session
        extras["code_interpreter"] = code_interpreter
        assistants.tools_checks.append(code_interpreter.check_tools)  # a 400 when it has no sandbox
        threads.delete_hooks.append(lambda _s, row: code_interpreter.close_session(row.id))
        file_search = build_file_search(settings, db, blobs, worker_id)  # models/Chroma load on first use
        file_search.install(resources, files, messages, threads)
        extras["file_search"] = file_search
        executor = RunExecutor(RunStore(db, bus), registry, catalog, Toolbox(extras, files, blobs), settings)
        engine = RunEngine(
            RunStore(db, bus), executor, worker_id, settings.run_lease_seconds, _run_threads(settings)
        )
        return cls(
            settings=settings,
            db=db,
            blobs=blobs,
            catalog=catalog,
            resources=resources,
            assistants=assistants,
            threads=threads,
            messages=messages,
            files=files,
            runs=runs,
            bus=bus,
            registry=registry,
            engine=engine,
            usage=usage,
            extras=extras,
        )

    def start(self) -> None:
        """Starts background work (blocking parts: call from a worker thread)."""
        self.engine.start()
        if "file_search" in self.extras:  # the indexing worker; resumes files a stopped process left
            self.extras["file_search"].start()
        if "code_interpreter" in self.extras:  # warms the kernel pool without delaying readiness
            start = self.extras["code_interpreter"].start
            threading.Thread(target=start, name="code-interpreter-start", daemon=True).start()
        if self.settings.load_models_at_start:
            self.registry.load_all()

    def close(self) -> None:
        self.engine.shutdown()
        self.registry.close()
        if "file_search" in self.extras:
            self.extras["file_search"].close()
        if "code_interpreter" in self.extras:
            self.extras["code_interpreter"].shutdown()
        self.db.dispose()


def slots_of(settings: Settings, entry: ModelEntry) -> int:
    return entry.parallel or settings.parallel or default_slots(entry)


def _engine_args(settings: Settings, catalog: ModelCatalog, name: str) -> tuple[ModelEntry, int, int]:
    entry = catalog.require(name)
    return entry, slots_of(settings, entry), settings.kv_cache_bytes


def _run_threads(settings: Settings) -> int:
    """Threads that execute runs: enough for every slot of every model to be busy while as many runs wait
    for a tool (code, file search) or in the queue."""
    slots = sum(slots_of(settings, entry) for entry in settings.model_entries())
    return max(8, 2 * slots)
