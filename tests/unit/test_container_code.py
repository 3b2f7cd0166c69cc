"""ContainerService.run_code with real sandboxed kernels: a container is a code interpreter session keyed by
its id. Its files are in /mnt/data; what the code writes, changes or removes there comes back as container
files; uploads and deletions reach a live kernel; expiry ends the kernel and the files; another worker
running the container starts afresh with the files placed again; usage counts its kernel as a session.
Most tests share one container (kernels are slow to start)."""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import update
from sqlmodel import select

from assistd.config import Settings
from assistd.errors import InvalidRequest, NotFound
from assistd.protocol.common import PageQuery
from assistd.protocol.containers import ContainerCreate
from assistd.services.containers import ContainerService
from assistd.services.files import FileService
from assistd.services.usage import CODE_SESSION, UsageService
from assistd.storage.blobs import BlobStore
from assistd.storage.containers import ContainerRow
from assistd.storage.db import Database
from assistd.storage.usage import UsageEventRow
from assistd.tools.code_interpreter import CodeInterpreter
from assistd.tools.code_interpreter.homes import CONTAINER_MOVED, ContainerHomes, KernelHomes, KeyedHomes
from assistd.tools.code_interpreter.interpreter import CodeInterpreterUnavailable
from tests.sandbox_support import require_isolation

CSV = b"city,temp\nParis,21\nOslo,12\nRome,27\n"
PNG = b"\x89PNG\r\n\x1a\n"
WAIT = 60


@pytest.fixture(scope="module", autouse=True)
def isolation():
    require_isolation()


class Worker:
    """One worker's view: its own database engine, interpreter and container service, as a process has."""

    def __init__(self, path: str, worker_id: str, blobs: BlobStore, **settings) -> None:
        self.db = Database(f"sqlite:///{path}")
        options = {"kernel_pool_size": 0, "code_preload": "", "code_home_check_seconds": 0.2, **settings}
        homes = KeyedHomes(KernelHomes(self.db, worker_id), ContainerHomes(self.db, worker_id))
        self.interpreter = CodeInterpreter(Settings(**options), homes=homes)
        self.interpreter.on_session_started = UsageService(self.db).record_code_session
        self.files = FileService(self.db, blobs, 10 * 1024 * 1024)
        self.containers = ContainerService(self.db, blobs, 10 * 1024 * 1024, self.interpreter)

    def close(self) -> None:
        self.interpreter.shutdown()
        self.db.dispose()


@pytest.fixture(scope="module")
def rig(tmp_path_factory) -> Iterator[Callable[[str], Worker]]:
    root = tmp_path_factory.mktemp("containers")
    path = str(root / "db.sqlite")
    Database(f"sqlite:///{path}").create_schema()
    blobs = BlobStore(root / "files")
    made: dict[str, Worker] = {}

    def worker(worker_id: str) -> Worker:
        if worker_id not in made:
            made[worker_id] = Worker(path, worker_id, blobs)
        return made[worker_id]

    yield worker
    for w in made.values():
        w.close()


@pytest.fixture(scope="module")
def a(rig) -> Worker:
    return rig("worker-a")


@pytest.fixture(scope="module")
def container(a) -> str:
    uploaded = a.files.upload("p", "weather.csv", "assistants", io.BytesIO(CSV))
    created = a.containers.create("p", ContainerCreate.parse({"name": "c", "file_ids": [uploaded.id]}))
    return created.id


def files_by_path(w: Worker, container_id: str) -> dict[str, object]:
    page = w.containers.list_files("p", container_id, PageQuery(limit=100))
    return {f.path: f for f in page.data}


def content(w: Worker, container_id: str, file_id: str) -> bytes:
    path, _name = w.containers.file_content("p", container_id, file_id)
    return path.read_bytes()


def test_code_sees_the_containers_files(a, container):
    run = a.containers.run_code(
        "p", container, "import pandas as pd\nprint(pd.read_csv('/mnt/data/weather.csv')['temp'].mean())"
    )
    assert not run.error, run.logs
    assert "20.0" in run.logs
    assert run.files == [] and run.images == []  # an input file is not an output unless changed
    assert run.outputs == [{"type": "logs", "logs": run.logs}]


def test_files_the_code_writes_become_container_files(a, container):
    code = (
        "import os\nos.makedirs('/mnt/data/out', exist_ok=True)\nopen('/mnt/data/out/r.txt', 'w').write('hi')"
    )
    run = a.containers.run_code("p", container, code)
    assert not run.error, run.logs
    assert [(f.filename, f.path) for f in run.files] == [("r.txt", "/mnt/data/out/r.txt")]
    written = files_by_path(a, container)["/mnt/data/out/r.txt"]
    assert written.id == run.files[0].file_id and written.id.startswith("cfile_")
    assert written.source == "assistant" and written.bytes == 2
    assert content(a, container, written.id) == b"hi"
    # changed: the same container file, its new body; removed: its row goes
    run = a.containers.run_code("p", container, "open('/mnt/data/out/r.txt', 'w').write('hello')")
    assert [f.file_id for f in run.files] == [written.id]
    assert content(a, container, written.id) == b"hello"
    run = a.containers.run_code("p", container, "import os\nos.remove('/mnt/data/out/r.txt')")
    assert not run.error, run.logs
    assert "/mnt/data/out/r.txt" not in files_by_path(a, container)
    with pytest.raises(NotFound):
        a.containers.get_file("p", container, written.id)


def test_images_become_container_files(a, container):
    code = "import matplotlib.pyplot as plt\nplt.plot([1, 2, 3])\nplt.show()"
    run = a.containers.run_code("p", container, code)
    assert not run.error, run.logs
    (image,) = run.images
    assert image.path == f"/mnt/data/{image.file_id}.png"
    assert {"type": "image", "file_id": image.file_id} in run.outputs
    assert content(a, container, image.file_id).startswith(PNG)
    assert files_by_path(a, container)[image.path].source == "assistant"


def test_uploads_and_deletions_reach_the_live_kernel(a, container):
    a.containers.run_code("p", container, "kept = 41")
    added = a.containers.upload_file("p", container, "notes.txt", io.BytesIO(b"first"))
    run = a.containers.run_code("p", container, "print(kept + 1, open('/mnt/data/notes.txt').read())")
    assert "42 first" in run.logs, run.logs  # the same kernel: its variables are still there
    replaced = a.containers.upload_file("p", container, "notes.txt", io.BytesIO(b"second"))
    assert replaced.id != added.id and replaced.path == added.path
    assert "second" in a.containers.run_code("p", container, "print(open('/mnt/data/notes.txt').read())").logs
    a.containers.delete_file("p", container, replaced.id)
    run = a.containers.run_code(
        "p", container, "import os\nprint(os.path.exists('/mnt/data/notes.txt'), kept)"
    )
    assert "False 41" in run.logs, run.logs


def test_a_container_is_one_counted_session(a, container):
    with a.db.session() as s:
        refs = s.exec(select(UsageEventRow.ref).where(UsageEventRow.kind == CODE_SESSION)).all()
    assert len([r for r in refs if r.startswith(container + "/")]) == 1
    assert a.interpreter.sessions_started("p") == 1


def test_unknown_and_foreign_containers_are_not_found(a, container):
    for project, container_id in (("p", "cntr_nope"), ("other", container)):
        with pytest.raises(NotFound) as found:
            a.containers.run_code(project, container_id, "1")
        assert found.value.param == "container_id"
        with pytest.raises(NotFound):
            a.containers.require(project, container_id, param="tools[0].container")
    assert container not in a.interpreter.sessions or a.interpreter.sessions[container].project == "p"


def test_another_worker_starts_afresh_with_the_files(rig, a, container):
    b = rig("worker-b")
    a.containers.run_code("p", container, "here = 'a'")
    kernel = a.interpreter.sessions[container].kernel
    run = b.containers.run_code(
        "p", container, "print('here' in dir(), open('/mnt/data/weather.csv').read()[:4])"
    )
    assert "False city" in run.logs and CONTAINER_MOVED in run.logs
    with b.db.session() as s:
        assert s.get(ContainerRow, container).worker_id == "worker-b"
    deadline = time.monotonic() + WAIT  # worker A's home check ends its stale kernel
    while (container in a.interpreter.sessions or kernel.alive()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert container not in a.interpreter.sessions and not kernel.alive()


def test_an_expired_container_loses_its_kernel_and_files(rig, a):
    made = a.containers.create(
        "p",
        ContainerCreate.parse({"name": "short", "expires_after": {"anchor": "last_active_at", "minutes": 1}}),
    )
    cid = made.id
    a.containers.run_code("p", cid, "open('/mnt/data/x.txt', 'w').write('x')")
    (written,) = a.containers.list_files("p", cid, PageQuery()).data
    blob = a.containers.blobs.path(written.id)
    kernel = a.interpreter.sessions[cid].kernel
    with a.db.session() as s:  # the clock moves on: idle for 61 s
        s.execute(
            update(ContainerRow)
            .where(ContainerRow.id == cid)
            .values(last_active_at=ContainerRow.last_active_at - 61)
        )
    assert a.containers.get("p", cid).status == "expired"
    assert not blob.exists() and a.containers.list_files("p", cid, PageQuery()).data == []
    # ended after the commit, by this call or by the home check the expiry's notification woke (which may
    # hold the session: the kernel is then still being killed when this call returns)
    deadline = time.monotonic() + WAIT
    while (cid in a.interpreter.sessions or kernel.alive()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert cid not in a.interpreter.sessions and not kernel.alive()
    with pytest.raises(InvalidRequest) as refused:
        a.containers.run_code("p", cid, "1")
    assert refused.value.code == "container_expired"
    with pytest.raises(InvalidRequest):
        a.containers.upload_file("p", cid, "y.txt", io.BytesIO(b"y"))


def test_auto_containers(a):
    uploaded = a.files.upload("p", "in.txt", "assistants", io.BytesIO(b"auto"))
    cid = a.containers.create_auto("p", [uploaded.id])
    obj = a.containers.get("p", cid)
    assert obj.name == "auto" and obj.expires_after.minutes == 20 and obj.status == "running"
    assert [f.path for f in a.containers.list_files("p", cid, PageQuery()).data] == ["/mnt/data/in.txt"]
    with pytest.raises(InvalidRequest) as bad:
        a.containers.create_auto("p", ["file-nope"], param="tools[0].container.file_ids")
    assert bad.value.param == "tools[0].container.file_ids[0]"


def test_without_a_sandbox_code_fails_closed_and_files_still_work(tmp_path):
    db = Database(f"sqlite:///{tmp_path / 'db.sqlite'}")
    db.create_schema()
    interpreter = CodeInterpreter(Settings(kernel_pool_size=0, code_bwrap_path="/nonexistent/bwrap"))
    service = ContainerService(db, BlobStore(tmp_path / "files"), 1024, interpreter)
    try:
        cid = service.create("p", ContainerCreate.parse({"name": "n"})).id
        service.upload_file("p", cid, "a.txt", io.BytesIO(b"a"))
        with pytest.raises(CodeInterpreterUnavailable, match=r"code interpreter is disabled.*bubblewrap"):
            service.run_code("p", cid, "print(1)")
        assert len(interpreter.sessions) == 0
        assert [f.path for f in service.list_files("p", cid, PageQuery()).data] == ["/mnt/data/a.txt"]
    finally:
        interpreter.shutdown()
        db.dispose()
