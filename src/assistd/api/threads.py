from __future__ import annotations

from typing import Any

from litestar import Controller

from assistd.api.params import delete, get, post
from assistd.container import Container
from assistd.protocol.common import Deleted
from assistd.protocol.threads import ThreadCreate, ThreadObject, ThreadUpdate


class ThreadController(Controller):
    path = "/threads"
    tags = ["Threads"]

    @post("/", body=ThreadCreate)
    def create(self, svc: Container, project: str, data: Any = None) -> ThreadObject:
        return svc.threads.create(project, ThreadCreate.parse(data))

    @get("/{thread_id:str}")
    def retrieve(self, svc: Container, project: str, thread_id: str) -> ThreadObject:
        return svc.threads.get(project, thread_id)

    @post("/{thread_id:str}", body=ThreadUpdate)
    def update(self, svc: Container, project: str, thread_id: str, data: Any = None) -> ThreadObject:
        return svc.threads.update(project, thread_id, ThreadUpdate.parse(data))

    @delete("/{thread_id:str}")
    def delete_(self, svc: Container, project: str, thread_id: str) -> Deleted:
        return svc.threads.delete(project, thread_id)
