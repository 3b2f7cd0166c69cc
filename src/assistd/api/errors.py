"""The one place where errors become HTTP responses, always in the OpenAI error body."""

from __future__ import annotations

import logging

from litestar import MediaType, Request, Response
from litestar.exceptions import HTTPException, ValidationException

from assistd.errors import AssistdError

log = logging.getLogger("assistd.api")


def _body(message: str, type_: str, param: str | None = None, code: str | None = None) -> dict:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def _respond(status: int, body: dict, headers: dict[str, str] | None = None) -> Response:
    return Response(content=body, status_code=status, media_type=MediaType.JSON, headers=headers)


def domain_error(_: Request, exc: AssistdError) -> Response:
    return _respond(exc.status_code, exc.body())


def http_error(request: Request, exc: HTTPException) -> Response:
    status = exc.status_code
    if isinstance(exc, ValidationException):
        extra = exc.extra if isinstance(exc.extra, list) else []
        first = extra[0] if extra and isinstance(extra[0], dict) else {}
        param = first.get("key")
        message = first.get("message") or exc.detail
        return _respond(400, _body(f"Invalid '{param}': {message}." if param else str(message),
                                   "invalid_request_error", param))
    if status == 404:
        message = f"Invalid URL ({request.method} {request.url.path})"
        return _respond(404, _body(message, "invalid_request_error"))
    if status == 405:
        message = f"Invalid method for URL ({request.method} {request.url.path})"
        return _respond(405, _body(message, "invalid_request_error"))
    if status == 413:
        return _respond(400, _body("The request body is too large.", "invalid_request_error", "file",
                                   "file_too_large"))
    if status >= 500:
        log.error("HTTP %s on %s %s: %s", status, request.method, request.url.path, exc.detail)
        return _respond(status, _body("The server had an error processing your request.", "server_error"))
    return _respond(status, _body(str(exc.detail), "invalid_request_error"), exc.headers)


def unexpected_error(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return _respond(
        500,
        _body(
            "The server had an error while processing your request. Sorry about that! "
            "The server log has the details.",
            "server_error",
        ),
    )


EXCEPTION_HANDLERS = {AssistdError: domain_error, HTTPException: http_error, Exception: unexpected_error}
