from __future__ import annotations

from litestar import Controller, Request

from assistd.api.params import get
from assistd.container import Container


class UsageController(Controller):
    """Usage per project, in the shape of OpenAI's organization usage API."""

    path = "/organization/usage"
    tags = ["Usage"]

    @get("/code_interpreter_sessions")
    def code_interpreter_sessions(self, request: Request, svc: Container, project: str) -> dict:
        return svc.usage.code_interpreter_sessions(project, dict(request.query_params))

    @get("/completions")
    def completions(self, request: Request, svc: Container, project: str) -> dict:
        return svc.usage.completions(project, dict(request.query_params))
