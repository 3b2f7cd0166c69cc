"""Domain errors. Raised below the API; mapped once to the OpenAI error body in api/errors.py."""

from __future__ import annotations


class AssistdError(Exception):
    status_code = 400
    error_type = "invalid_request_error"

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code

    def body(self) -> dict:
        return {
            "error": {
                "message": self.message,
                "type": self.error_type,
                "param": self.param,
                "code": self.code,
            }
        }


class InvalidRequest(AssistdError):
    """The client sent something we cannot act on (400)."""


class NotFound(AssistdError):
    status_code = 404

    @classmethod
    def of(cls, kind: str, object_id: str) -> NotFound:
        return cls(f"No {kind} found with id '{object_id}'.")


class Unauthenticated(AssistdError):
    status_code = 401

    def __init__(self, message: str) -> None:
        super().__init__(message, code="invalid_api_key")


class ActiveRunConflict(InvalidRequest):
    """A thread already has an active run. The hosted API answers 400, not 409 (the SDK retries 409)."""


class PayloadTooLarge(InvalidRequest):
    pass


class ServerError(AssistdError):
    status_code = 500
    error_type = "server_error"
