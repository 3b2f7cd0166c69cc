"""Request parsing and the shared field types of the wire models.

Requests are validated here, not by the web framework, so that every mistake becomes one OpenAI-shaped
400 naming the `param`, and unknown fields (newer SDKs send new ones) are ignored with a logged warning.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    ValidationError,
    WithJsonSchema,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, core_schema

from assistd.errors import InvalidRequest

log = logging.getLogger("assistd.requests")

M = TypeVar("M", bound="RequestModel")

METADATA_MAX_KEYS = 16
METADATA_MAX_KEY = 64
METADATA_MAX_VALUE = 512


class WireModel(BaseModel):
    """A nested part of a request: unknown keys are dropped."""

    model_config = ConfigDict(extra="ignore")


class RequestModel(BaseModel):
    """A request body. Unknown top-level keys are kept aside and logged, never an error."""

    model_config = ConfigDict(extra="allow")

    @classmethod
    def parse(cls: type[M], data: Any, *, where: str = "") -> M:
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise InvalidRequest("The request body must be a JSON object.")
        try:
            model = cls.model_validate(data)
        except ValidationError as exc:
            raise _to_invalid_request(exc, data) from None
        if model.model_extra:
            log.warning("ignoring unknown fields %s in %s", sorted(model.model_extra), where or cls.__name__)
        return model

    def provided(self) -> set[str]:
        """The known fields the client sent (partial updates use this)."""
        return self.model_fields_set - set(self.model_extra or ())


def param_path(loc: tuple[Any, ...], data: Any = None) -> str:
    """The client's name for an error location: `tools[0].function.name`.

    Pydantic's `loc` also holds union member labels (`str`, `list[...]`) and discriminator tags; walking
    the request body along it keeps only the steps that exist in the body (plus a missing last key).
    """
    path, current = "", data
    for i, part in enumerate(loc):
        if isinstance(part, int) and isinstance(current, list) and 0 <= part < len(current):
            path, current = f"{path}[{part}]", current[part]
        elif isinstance(part, str) and isinstance(current, dict) and part in current:
            path, current = (f"{path}.{part}" if path else part), current[part]
        elif (
            isinstance(part, str) and i == len(loc) - 1 and isinstance(current, dict) and not _is_label(part)
        ):
            path = f"{path}.{part}" if path else part  # a missing key
            current = None
    return path


def _is_label(part: str) -> bool:
    return part in {"str", "int", "float", "bool", "list[...]", "dict[...]", "none"} or part.startswith(
        ("function-", "union[", "tagged-union[", "literal[", "list[", "dict[", "nullable[")
    )


def _best_error(errors: list[Any], data: Any) -> tuple[Any, str]:
    """Among the errors of union branches, the one that went deepest into the body; at equal depth a
    broken constraint beats a type mismatch (so `content: []` reports "at least 1 item", not "a string")."""

    def score(error: Any) -> tuple[int, int]:
        path = param_path(error["loc"], data)
        depth = path.count(".") + path.count("[")
        kind = error["type"]
        mismatch = kind.endswith(("_type", "_parsing")) or kind == "is_instance_of"
        if kind == "literal_error" and isinstance(error.get("input"), dict | list):
            mismatch = True  # an object offered where a string literal ("auto") would do
        return depth, 0 if mismatch else 1

    best = max(errors, key=score)
    param = param_path(best["loc"], data)
    if best["type"] in {"union_tag_invalid", "union_tag_not_found"}:
        tag = str((best.get("ctx") or {}).get("discriminator", "type")).strip("'")
        param = f"{param}.{tag}" if param else tag
    return best, param


def _to_invalid_request(exc: ValidationError, data: Any = None) -> InvalidRequest:
    error, param_text = _best_error(exc.errors(), data)
    param = param_text or None
    kind = error["type"]
    if kind in {"missing", "union_tag_not_found"}:
        return InvalidRequest(f"Missing required parameter: '{param}'.", param=param)
    message = error["msg"]
    if message.startswith("Value error, "):
        message = message[len("Value error, ") :]
    if kind in {"literal_error", "enum", "union_tag_invalid"}:
        return InvalidRequest(f"Invalid value for '{param}': {message}.", param=param, code="invalid_value")
    if kind.endswith("_type") or kind.endswith("_parsing"):
        return InvalidRequest(f"Invalid type for '{param}': {message}.", param=param, code="invalid_type")
    return InvalidRequest(f"Invalid '{param}': {message}.", param=param, code="invalid_value")


def _check_metadata(value: dict[str, str] | None) -> dict[str, str] | None:
    if value is None:
        return None
    if len(value) > METADATA_MAX_KEYS:
        raise ValueError(f"metadata may hold at most {METADATA_MAX_KEYS} keys, got {len(value)}")
    for key, item in value.items():
        if len(key) > METADATA_MAX_KEY:
            raise ValueError(f"metadata keys are at most {METADATA_MAX_KEY} characters ('{key[:20]}…')")
        if len(item) > METADATA_MAX_VALUE:
            raise ValueError(f"metadata values are at most {METADATA_MAX_VALUE} characters (key '{key}')")
    return value


# The same limits as the OpenAPI schema shows them (the validator words the 400).
METADATA_SCHEMA = {
    "anyOf": [
        {
            "type": "object",
            "maxProperties": METADATA_MAX_KEYS,
            "propertyNames": {"maxLength": METADATA_MAX_KEY},
            "additionalProperties": {"type": "string", "maxLength": METADATA_MAX_VALUE},
        },
        {"type": "null"},
    ]
}
Metadata = Annotated[
    dict[str, str] | None, AfterValidator(_check_metadata), WithJsonSchema(METADATA_SCHEMA, mode="validation")
]
# Sampling numbers: JSON numbers only (strict: no "0.5" strings, no booleans), in the OpenAI ranges.
Temperature = Annotated[float | None, Field(ge=0, le=2, strict=True)]
TopP = Annotated[float | None, Field(ge=0, le=1, strict=True)]


@dataclass(frozen=True)
class max_len:
    """`Annotated[str | None, max_len(256)]`: at most 256 characters, refused in the OpenAI wording; the
    schema shows it as `maxLength`."""

    limit: int

    def check(self, value: str | None) -> str | None:
        if value is not None and len(value) > self.limit:
            raise ValueError(
                f"string too long, expected at most {self.limit} characters but got {len(value)}"
            )
        return value

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        return core_schema.no_info_after_validator_function(self.check, handler(source))

    def __get_pydantic_json_schema__(
        self, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {**handler(schema), "maxLength": self.limit}  # beside `anyOf`, it constrains the string
