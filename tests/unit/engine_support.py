"""An engine wired to a real temporary SQLite database and the scripted fake model."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from assistd.config import ModelEntry, Settings
from assistd.engine.claims import ClaimQueue
from assistd.engine.events import EventBus
from assistd.engine.runner import RunExecutor
from assistd.engine.store import RunStore
from assistd.engine.toolbox import Toolbox
from assistd.engine.worker import RunEngine
from assistd.llm.catalog import ModelCatalog
from assistd.llm.fake import ScriptedBackend
from assistd.llm.registry import ModelRegistry
from assistd.protocol.assistants import AssistantCreate
from assistd.protocol.runs import RunCreate
from assistd.protocol.threads import ThreadCreate
from assistd.services.assistants import AssistantService
from assistd.services.files import FileService
from assistd.services.messages import MessageService
from assistd.services.runs import RunService, active_run_id
from assistd.services.threads import ThreadService
from assistd.services.tool_resources import ToolResourceResolver
from assistd.storage.blobs import BlobStore
from assistd.storage.db import Database

MODEL = "fake"
PROJECT = "p"


STOPS = ("completed", "failed", "cancelled", "expired", "incomplete", "requires_action")


@dataclass
class Rig:
    db: Database
    backend: ScriptedBackend
    runs: RunService
    threads: ThreadService
    assistants: AssistantService
    store: RunStore
    bus: EventBus
    engine: RunEngine
    executor: RunExecutor
    settings: Settings

    def assistant(self, **fields: Any) -> str:
        return self.assistants.create(PROJECT, AssistantCreate.parse({"model": MODEL, **fields})).id

    def thread(self, text: str = "Hello?") -> str:
        return self.threads.create(
            PROJECT, ThreadCreate.parse({"messages": [{"role": "user", "content": text}]})
        ).id

    def create_run(self, thread_id: str, assistant_id: str, **fields: Any):
        return self.runs.create(PROJECT, thread_id, RunCreate.parse({"assistant_id": assistant_id, **fields}))

    def wait(
        self,
        thread_id: str,
        run_id: str,
        statuses=STOPS,
        timeout: float = 30,
    ):
        """The run once it has one of `statuses`; at a status its executor stops at (the default ones),
        once the executor has returned too: the events of its last commit are handed to the subscribers
        after that commit, which a read may see first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run = self.runs.get(PROJECT, thread_id, run_id)
            if run.status in statuses and (run.status not in STOPS or not self.executing(run_id)):
                return run
            time.sleep(0.01)
        raise AssertionError(f"run stayed {run.status}")

    def executing(self, run_id: str) -> bool:
        return run_id in self.engine.active


def build_rig(
    tmp_path: Path,
    replies: list[str] | None = None,
    delay: float = 0.0,
    n_ctx: int = 4096,
    model: dict[str, Any] | None = None,
    **settings_fields: Any,
) -> Rig:
    """`model`: fields of the fake model's models-file entry (e.g. its max_reply_tokens)."""
    settings = Settings(data_dir=tmp_path, run_lease_seconds=2, **settings_fields)
    db = Database(f"sqlite:///{tmp_path / 'engine.db'}")
    db.create_schema()
    backend = ScriptedBackend(replies, name=MODEL, n_ctx=n_ctx, delay=delay)
    catalog = ModelCatalog(
        [ModelEntry(name=MODEL, path=tmp_path / "none.gguf", n_ctx=n_ctx, **(model or {}))], MODEL, created=0
    )
    resources = ToolResourceResolver()
    messages = MessageService(db, resources)
    assistants = AssistantService(db, catalog, resources)
    threads = ThreadService(db, resources, messages)
    files = FileService(db, BlobStore(tmp_path / "files"), 10_000)
    runs = RunService(db, catalog, assistants, threads, messages, settings.run_expiry_seconds)
    messages.active_run = active_run_id
    bus = EventBus()
    store = RunStore(ClaimQueue(db, bus, settings.run_lease_seconds))
    registry = ModelRegistry(catalog, lambda _name: backend)
    executor = RunExecutor(store, registry, catalog, Toolbox({}, files, files.blobs), settings)
    engine = RunEngine(store.queue, {"run_": executor}, "host:1:aa", settings.run_lease_seconds)
    return Rig(db, backend, runs, threads, assistants, store, bus, engine, executor, settings)


class Recorder:
    """Collects the events the bus publishes for one run, as an SSE subscriber would."""

    def __init__(self, bus: EventBus, run_id: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.sub = bus.subscribe(run_id, self.loop)

    def names(self) -> list[str]:
        return [event.name for event in self.events()]

    def events(self) -> list[Any]:
        self.loop.run_until_complete(asyncio.sleep(0.01))
        out = []
        while not self.sub.queue.empty():
            out.append(self.sub.queue.get_nowait())
        return out

    def close(self) -> None:
        self.sub.close()
        self.loop.close()
