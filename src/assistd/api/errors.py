"""The one place where errors become HTTP responses, always in the OpenAI error body."""

from __future__ import annotations

import logging

from litestar import MediaType, Request, Response
from litestar.exceptions import HTTPException, SerializationException, ValidationException

from assistd.errors import AssistdError
from assistd.services.files import too_large
from assistd.storage.retry import is_transient

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
        return _respond(
            400,
            _body(
                f"Invalid '{param}': {message}." if param else str(message), "invalid_request_error", param
            ),
        )
    if isinstance(exc.__cause__, SerializationException):
        return _respond(400, _body(_unparsable(str(exc.detail)), "invalid_request_error"))
    if status == 404:
        raw_path = request.scope.get("raw_path")  # as sent: `%2F` stays visible
        shown = raw_path.partition(b"?")[0].decode("latin-1") if raw_path else request.url.path
        message = f"Invalid URL ({request.method} {shown})"
        return _respond(404, _body(message, "invalid_request_error"))
    if status == 405:
        message = f"Invalid method for URL ({request.method} {request.url.path})"
        return _respond(405, _body(message, "invalid_request_error"))
    if status == 413:
        return _too_large(request)
    if status >= 500:
        log.error("HTTP %s on %s %s: %s", status, request.method, request.url.path, exc.detail)
        return _respond(status, _body("The server had an error processing your request.", "server_error"))
    return _respond(status, _body(str(exc.detail), "invalid_request_error"), exc.headers)


def _too_large(request: Request) -> Response:
    """A body past the server's limit (Litestar stops reading it): for uploads, the file-size error."""
    container = getattr(request.app.state, "container", None)
    if request.url.path.rstrip("/").endswith("/files") and container is not None:
        return domain_error(request, too_large(container.files.max_bytes))
    return _respond(
        400, _body("The request body is too large.", "invalid_request_error", code="body_too_large")
    )


def _unparsable(detail: str) -> str:
    return (
        "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your "
        f"HTTP library correctly. The OpenAI API expects a JSON payload.) Details: {detail}"
    )


def undecodable_body(request: Request, exc: UnicodeDecodeError) -> Response:
    """The JSON decoder meets bytes that are not UTF-8 (Litestar lets this through as a bare error)."""
    log.warning("request body of %s %s is not UTF-8: %s", request.method, request.url.path, exc)
    message = _unparsable(f"the body is not valid UTF-8 ({exc.reason})")
    return _respond(400, _body(message, "invalid_request_error"))


def unexpected_error(request: Request, exc: Exception) -> Response:
    if is_transient(exc):  # the database (or Chroma) is restarting: the client retries (the SDK does)
        log.warning("%s %s: a shared service is unavailable: %s", request.method, request.url.path, exc)
        body = _body(
            "A service the server depends on (its database or vector store) is briefly unavailable; "
            "retry the request.",
            "server_error",
            code="service_unavailable",
        )
        return _respond(503, body, {"Retry-After": "1"})
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return _respond(
        500,
        _body(
            "The server had an error while processing your request. Sorry about that! "
            "The server log has the details.",
            "server_error",
        ),
    )


EXCEPTION_HANDLERS = {
    AssistdError: domain_error,
    HTTPException: http_error,
    UnicodeDecodeError: undecodable_body,
    Exception: unexpected_error,
}
