"""The long-lived objects of one server process, built in the app lifespan and injected into handlers."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from assistd.config import ModelEntry, Settings
from assistd.engine.claims import ClaimQueue
from assistd.engine.event_log import DatabaseBus
from assistd.engine.events import EventBus
from assistd.engine.images import ImageCache
from assistd.engine.responses.executor import ResponseExecutor
from assistd.engine.runner import RunExecutor
from assistd.engine.store import RunStore
from assistd.engine.toolbox import Toolbox
from assistd.engine.worker import PEEK_SECONDS, RunEngine
from assistd.ids import now
from assistd.images import FetchPolicy, ImageLimits
from assistd.leases import make_worker_id
from assistd.llm.backend import sees_images
from assistd.llm.catalog import ModelCatalog
from assistd.llm.embedded import default_slots
from assistd.llm.engines import can_see, open_backend
from assistd.llm.registry import ModelRegistry
from assistd.metrics import Metrics
from assistd.metrics.state import StateCollector
from assistd.services.assistants import AssistantService
from assistd.services.containers import ContainerService
from assistd.services.conversations import ConversationService
from assistd.services.files import FileService
from assistd.services.ingest_queue import INGEST_CHANNEL
from assistd.services.messages import MessageService
from assistd.services.responses import ResponseService
from assistd.services.runs import RunService, active_run_id
from assistd.services.threads import ThreadService
from assistd.services.tool_resources import ToolResourceResolver
from assistd.services.usage import UsageService
from assistd.services.vector_stores import build_file_search
from assistd.storage import migrate
from assistd.storage.blobs import BlobStore
from assistd.storage.db import Database
from assistd.storage.notify import RUNS, THREADS, Listener, notify
from assistd.tools.calls import check_function_tools
from assistd.tools.code_interpreter import CodeInterpreter
from assistd.tools.code_interpreter.homes import ContainerHomes, KernelHomes, KeyedHomes

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
    conversations: ConversationService
    responses: ResponseService
    # Features that plug in later (run engine, vector stores, code interpreter) register here.
    extras: dict[str, Any] = field(default_factory=dict)

    def sees_images(self, model: str) -> bool | None:
        """Whether `model` sees images: its loaded engine says, else its models-file entry (None: a remote
        engine not reached yet)."""
        backend = self.registry.loaded(model)
        if backend is not None:
            return sees_images(backend)
        return can_see(self.catalog.require(model))

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
        runs = RunService(db, catalog, assistants, threads, messages, settings.run_expiry_seconds)
        messages.active_run = active_run_id
        conversations = ConversationService(db)
        conversations.active_run = active_run_id  # a thread is copied into a conversation between runs
        listener = Listener(db)  # PostgreSQL LISTEN (nothing on SQLite: workers and streams poll)
        bus = DatabaseBus(db, listener) if _database_events(settings, db) else EventBus()
        loaded_hooks: list[Callable[[Any], Any]] = []  # each model's backend as it loads

        def load(name: str) -> Any:
            backend = open_backend(*_engine_args(settings, catalog, name))
            for hook in loaded_hooks:
                hook(backend)
            return backend

        registry = ModelRegistry(catalog, load)
        runs.refuses_images = lambda model: _refuses_images(settings, catalog, registry, model)
        extras: dict[str, Any] = {}
        metrics = Metrics(log_json=settings.log_json)  # GET /metrics; the scrape-time gauges: below
        extras["metrics"] = metrics
        usage = UsageService(db)
        # kernels start in start(), in the background; kernel_homes tells the run queue where they live
        homes = KeyedHomes(KernelHomes(db, worker_id), ContainerHomes(db, worker_id))  # threads', containers'
        code_interpreter = CodeInterpreter(settings, homes=homes)
        code_interpreter.on_session_started = metrics.code_session_started(usage.record_code_session)
        extras["code_interpreter"] = code_interpreter
        assistants.tools_checks.append(code_interpreter.check_tools)  # a 400 when it has no sandbox
        # the deleting transaction removes the home row (cascade); other workers see the thread gone
        threads.delete_hooks.append(lambda _s, row: code_interpreter.close_session(row.id, release=False))
        # ... and wherever else its kernel lives: that worker is woken to look (it also looks every few s)
        threads.delete_hooks.append(lambda s, row: notify(s, db, THREADS, row.id))
        listener.on(THREADS, code_interpreter.wake)
        # containers are code interpreter sessions too (their kernels close on delete or expiry, as above)
        extras["containers"] = ContainerService(db, blobs, settings.max_upload_bytes, code_interpreter)
        file_search = build_file_search(settings, db, blobs, worker_id)  # models/Chroma load on first use
        file_search.install(resources, files, messages, threads)
        extras["file_search"] = file_search
        file_search.worker.queue.on_failed = metrics.ingest_failures.inc
        listener.on(INGEST_CHANNEL, lambda _store_id: file_search.worker.wake())  # files attached elsewhere
        queue = ClaimQueue(db, bus, settings.run_lease_seconds)  # the work queue: runs and responses
        queue.on_end.append(metrics.job_ended)
        toolbox = Toolbox(extras, files, blobs)
        toolbox.images = ImageCache(
            files, ImageLimits.from_settings(settings), FetchPolicy.from_settings(settings)
        )
        extras["images"] = toolbox.images
        files.delete_hooks.append(lambda _s, row: toolbox.images.forget(row.project, row.id))
        messages.image_check = toolbox.images.check  # a message's unusable image is a 400 at its creation
        files.image_max_bytes = settings.image_max_bytes
        files.image_check = toolbox.images.decoder.inspect  # an upload for `vision` must be a usable image
        executor = RunExecutor(RunStore(queue), registry, catalog, toolbox, settings)
        executor.loop.metrics = metrics
        responses = ResponseService(db, catalog, bus, resources)
        responses.conversations = conversations
        responses.refuses_images = runs.refuses_images
        responses.image_check = toolbox.images.check
        responses.containers = extras["containers"]  # a response's code_interpreter runs in a container
        response_executor = ResponseExecutor(queue, responses, registry, catalog, toolbox, settings)
        responses.count_prompt = response_executor.count_prompt
        response_executor.metrics = metrics
        engine = RunEngine(
            queue,
            {"run_": executor, "resp_": response_executor},
            worker_id,
            settings.run_lease_seconds,
            capacity=_worker_runs(settings, registry),
            executes=settings.role != "api",
            listener=listener,
            # processes sharing one SQLite file (`--processes N`, or API and worker roles on one box): no
            # NOTIFY wakes them, so each looks at the queue by a read every PEEK_SECONDS
            peek_seconds=None if db.is_postgres or not isinstance(bus, DatabaseBus) else PEEK_SECONDS,
        )

        def grow(backend: Any) -> None:
            """A model just loaded: an engine at `url` tells its slots, and this worker uses all of them."""
            if not settings.worker_runs:
                engine.capacity = _worker_runs(settings, registry, backend)

        loaded_hooks.append(grow)
        runs.on_queued = lambda s, run_id: engine.wake_others(s, db, run_id)
        responses.on_queued = lambda s, response_id: engine.wake_others(s, db, response_id)
        responses.on_cancelling = lambda s, response_id: notify(s, db, RUNS, f"cancel:{response_id}")
        conversations.resolve_reference = responses.stored_item  # a conversation's item_reference
        runs.on_cancelling = lambda s, run_id: notify(s, db, RUNS, f"cancel:{run_id}")
        extras["listener"] = listener
        metrics.registry.register(StateCollector(db, registry, extras))
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
            conversations=conversations,
            responses=responses,
            extras=extras,
        )

    def start(self) -> None:
        """Starts background work (blocking parts: call from a worker thread). An API-only process executes
        nothing: no run engine, no indexing worker, no kernels, no models."""
        self.extras["listener"].start()
        self.bus.start()
        self.engine.start()
        if self.settings.role == "api":
            return
        if "file_search" in self.extras:  # the indexing worker; resumes files a stopped process left
            self.extras["file_search"].start()
        if "code_interpreter" in self.extras:  # warms the kernel pool without delaying readiness
            start = self.extras["code_interpreter"].start
            threading.Thread(target=start, name="code-interpreter-start", daemon=True).start()
        if self.settings.load_models_at_start:
            self.registry.load_all()

    def close(self) -> None:
        self.engine.shutdown()
        self.bus.stop()
        self.extras["listener"].stop()
        self.registry.close()
        self.extras["images"].close()  # the image decoding process
        if "file_search" in self.extras:
            self.extras["file_search"].close()
        if "code_interpreter" in self.extras:
            self.extras["code_interpreter"].shutdown()
        self.db.dispose()


def slots_of(settings: Settings, entry: ModelEntry) -> int:
    return entry.parallel or settings.parallel or default_slots(entry)


def _engine_args(settings: Settings, catalog: ModelCatalog, name: str) -> tuple[ModelEntry, int, int, float]:
    entry = catalog.require(name)
    return entry, slots_of(settings, entry), settings.kv_cache_bytes, settings.stream_interval_ms / 1000


def _refuses_images(settings: Settings, catalog: ModelCatalog, registry: ModelRegistry, model: str) -> bool:
    """Whether runs with images are refused at creation for `model`: it cannot see them (its entry says so,
    or its loaded engine), and the operator's fallback is to refuse. A remote llama.cpp server not reached
    yet is asked when a run executes."""
    if settings.vision_fallback != "refuse":
        return False
    backend = registry.loaded(model)
    return not sees_images(backend) if backend is not None else can_see(catalog.require(model)) is False


def _worker_runs(settings: Settings, registry: ModelRegistry, loading: Any = None) -> int:
    """Runs this worker executes at once: as many as its models have slots, so that in a cluster a busy
    worker leaves the queue to an idle one instead of holding runs it cannot generate for yet. A loaded
    model counts its engine's slots (an engine at `url`: its /props `total_slots`, unless the models file
    says `parallel`); one not loaded yet, what its entry says."""
    if settings.worker_runs:
        return settings.worker_runs
    total = 0
    for entry in settings.model_entries():
        backend = registry.loaded(entry.name)
        if backend is None and getattr(loading, "name", None) == entry.name:
            backend = loading
        total += getattr(backend, "slots", 0) or slots_of(settings, entry)
    return total


def _database_events(settings: Settings, db: Database) -> bool:
    if settings.events != "auto":
        return settings.events == "database"
    return db.is_postgres or settings.role != "all"
