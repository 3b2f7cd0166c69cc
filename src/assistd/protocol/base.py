"""Request parsing and the shared field types of the wire models.

Requests are validated here, not by the web framework, so that every mistake becomes one OpenAI-shaped
400 naming the `param`, and unknown fields (newer SDKs send new ones) are ignored with a logged warning.

Validation is strict, as the hosted API is: a JSON string is never taken for a number or a boolean
(`"max_completion_tokens": "10"` is a 400). Before any recursive work (pydantic, grammar compilation,
JSON Schema validation, storage), one iterative pass over the body refuses bodies nested deeper than
MAX_JSON_DEPTH and strings holding NUL characters (PostgreSQL text and jsonb cannot store them, so they
are refused on every database alike).
"""

from __future__ import annotations

import logging
import types
import typing
from dataclasses import dataclass
from typing import Annotated, Any, Literal, TypeVar

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
# Levels of objects and arrays in a request body (the body itself is level 1). A function's `parameters`
# four levels down still gets about 30 levels of JSON Schema objects (properties + name: 2 levels each).
MAX_JSON_DEPTH = 64


@dataclass(frozen=True)
class TooDeep:
    """A body the JSON decoder refused for its nesting (see api/body.py): `path` leads to where it passed
    MAX_JSON_DEPTH. RequestModel.parse turns it into a 400 naming the parameter."""

    path: tuple[str | int, ...]


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
        if isinstance(data, TooDeep) and data.path[:1] != (0,):  # (a top-level array is no object)
            raise _too_deep(cls, data.path)
        if not isinstance(data, dict):
            raise InvalidRequest("The request body must be a JSON object.")
        _check_body(cls, data)
        try:
            model = cls.model_validate(data, strict=True)
        except ValidationError as exc:
            raise _to_invalid_request(exc, data) from None
        if model.model_extra:
            log.warning("ignoring unknown fields %s in %s", sorted(model.model_extra), where or cls.__name__)
        return model

    def provided(self) -> set[str]:
        """The known fields the client sent (partial updates use this)."""
        return self.model_fields_set - set(self.model_extra or ())


def _check_body(cls: type[BaseModel], data: dict[str, Any]) -> None:
    """One iterative pass over the body: nesting within MAX_JSON_DEPTH, no NUL in any string or key."""
    stack: list[tuple[Any, tuple[str | int, ...]]] = [(data, ())]
    while stack:
        value, path = stack.pop()
        if isinstance(value, str):
            if "\x00" in value:
                raise _has_nul(path)
            continue
        if not isinstance(value, dict | list):
            continue
        if len(path) >= MAX_JSON_DEPTH:
            raise _too_deep(cls, path)
        for key, item in value.items() if isinstance(value, dict) else enumerate(value):
            if isinstance(key, str) and "\x00" in key:
                raise _has_nul(path or (key,))
            stack.append((item, (*path, key)))


def _has_nul(path: tuple[str | int, ...]) -> InvalidRequest:
    param = render_path(path) or None
    return InvalidRequest(
        f"Invalid '{param}': strings must not contain NUL characters (\\u0000).",
        param=param,
        code="invalid_value",
    )


def _too_deep(cls: type[BaseModel], path: tuple[str | int, ...]) -> InvalidRequest:
    param = render_path(declared_prefix(cls, path)) or None
    where = f"'{param}'" if param else "The request body"
    return InvalidRequest(
        f"Invalid {where}: JSON nested more than {MAX_JSON_DEPTH} levels deep.",
        param=param,
        code="invalid_value",
    )


def render_path(steps: tuple[str | int, ...] | list[str | int]) -> str:
    path = ""
    for step in steps:
        path = f"{path}[{step}]" if isinstance(step, int) else (f"{path}.{step}" if path else str(step))
    return path


def declared_prefix(cls: type[BaseModel], steps: tuple[str | int, ...]) -> tuple[str | int, ...]:
    """The part of a body path that the request model declares: `tools[0].function.parameters` for a path
    that goes on inside the free-form JSON Schema; an undeclared top-level key names itself."""
    annotations: list[Any] = [cls]
    for i, step in enumerate(steps):
        found = []
        for annotation in _members(annotations):
            if isinstance(step, str) and isinstance(annotation, type) and issubclass(annotation, BaseModel):
                found += [f.annotation for n, f in annotation.model_fields.items() if (f.alias or n) == step]
            elif isinstance(step, int) and typing.get_origin(annotation) is list:
                found.append(typing.get_args(annotation)[0])
        if not found:
            return steps[: max(i, 1)]
        annotations = found
    return steps


def _members(annotations: list[Any]) -> list[Any]:
    """The concrete types behind Annotated[...] and unions."""
    out: list[Any] = []
    for annotation in annotations:
        origin = typing.get_origin(annotation)
        if origin is Annotated:
            out += _members([typing.get_args(annotation)[0]])
        elif origin in (typing.Union, types.UnionType):
            out += _members(list(typing.get_args(annotation)))
        else:
            out.append(annotation)
    return out


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
# Accepted on assistants and runs as the SDK sends it (Agency Swarm sends null). Kept with the assistant
# and the run (a run's own value wins) and given to the model family's template (families/registry.py:
# gpt-oss writes `Reasoning: low|medium|high`, Qwen3 turns thinking off for none/minimal); the SDK's
# Assistant and Run objects do not echo it.
ReasoningEffort = Literal["none", "minimal", "low", "medium", "high", "xhigh", "max"] | None
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
