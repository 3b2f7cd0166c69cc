"""Items of the Responses and Conversations APIs: their canonical form, and the parsing of client items.

An item's canonical form is exactly the JSON the API returns for it, as the SDK reads it
(`openai.types.conversations.ConversationItem`, `openai.types.responses.ResponseItem`): storage keeps it
as it is (`conversation_items.data`, `response_items.data`) and answers it as it is.

`parse_items(value, param)` reads what a client sends as Responses `input` or Conversations `items`: a string
(one user message), easy messages (`{"role", "content"}` without `type`), messages with typed parts,
function calls and their outputs, reasoning, file search and code interpreter calls, and item references
(kept as `{"type": "item_reference", "id"}`: whoever holds the items resolves them). Ids the client gave
are kept; the others are made here with the item's prefix. Every mistake is one InvalidRequest naming the
exact param (`input[2].content[0].type`). The parser walks the value without recursion and reads only the
fields it knows, each checked for its JSON type, so a body nested deep, a string holding NUL, a non-string
key or a value of the wrong type is a 400 wherever it is.
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Iterable
from typing import Any

from assistd.errors import InvalidRequest
from assistd.ids import new_id
from assistd.protocol.messages import is_image_url

MESSAGE_PREFIX = "msg_"
FUNCTION_CALL_PREFIX = "fc_"
FUNCTION_CALL_OUTPUT_PREFIX = "fco_"
REASONING_PREFIX = "rs_"
FILE_SEARCH_CALL_PREFIX = "fs_"
CODE_INTERPRETER_CALL_PREFIX = "ci_"
# The id prefix of each item type that gets one.
ITEM_PREFIXES = {
    "message": MESSAGE_PREFIX,
    "function_call": FUNCTION_CALL_PREFIX,
    "function_call_output": FUNCTION_CALL_OUTPUT_PREFIX,
    "reasoning": REASONING_PREFIX,
    "file_search_call": FILE_SEARCH_CALL_PREFIX,
    "code_interpreter_call": CODE_INTERPRETER_CALL_PREFIX,
}
ITEM_TYPES = (*ITEM_PREFIXES, "item_reference")

MAX_TEXT = 10 * 1024 * 1024  # characters of one string: the hosted API's limit on input strings
MAX_NAME = 512  # characters of an id, a call id, a name, a filename, a title
MAX_ITEMS = 10_000  # items of one input
MAX_PARTS = 1_000  # parts, annotations, results, outputs... of one item
MAX_INT = 2**63 - 1
ID_PATTERN = re.compile(r"[A-Za-z0-9_.:-]+")  # a client's item id; it goes into URL paths

ROLES = ("user", "assistant", "system", "developer")
STATUSES = ("in_progress", "completed", "incomplete")
FILE_SEARCH_STATUSES = ("in_progress", "searching", "completed", "incomplete", "failed")
CODE_INTERPRETER_STATUSES = ("in_progress", "completed", "incomplete", "interpreting", "failed")
IMAGE_DETAILS = ("low", "high", "auto", "original")
FILE_DETAILS = ("auto", "low", "high")
PHASES = ("commentary", "final_answer")
INPUT_PARTS = ("input_text", "input_image", "input_file")
OUTPUT_PARTS = ("output_text", "refusal")
ANNOTATIONS = ("file_citation", "url_citation", "container_file_citation", "file_path")

# What `include` may name (openai.types.responses.ResponseIncludable).
FILE_SEARCH_RESULTS = "file_search_call.results"
CODE_INTERPRETER_OUTPUTS = "code_interpreter_call.outputs"
INCLUDABLE = (
    FILE_SEARCH_RESULTS,
    "web_search_call.results",
    "web_search_call.action.sources",
    "message.input_image.image_url",
    "computer_call_output.output.image_url",
    CODE_INTERPRETER_OUTPUTS,
    "reasoning.encrypted_content",
    "message.output_text.logprobs",
)


# ---------------------------------------------------------------------------------------------------------
# Canonical forms made by the server


def input_text_part(text: str) -> dict[str, Any]:
    return {"type": "input_text", "text": text}


def output_text_part(text: str, annotations: Iterable[dict[str, Any]] = ()) -> dict[str, Any]:
    """An assistant's text: `annotations` always a list, `logprobs` an empty list (ResponseOutputText has
    both; the SDK's strict readers expect them)."""
    return {"type": "output_text", "text": text, "annotations": list(annotations), "logprobs": []}


def message_item(role: str, text: str, id: str | None = None, status: str = "completed") -> dict[str, Any]:
    """A message of one text part: `output_text` for the assistant, `input_text` for the other roles."""
    part = output_text_part(text) if role == "assistant" else input_text_part(text)
    return {
        "id": id or new_id(MESSAGE_PREFIX),
        "type": "message",
        "status": status,
        "role": role,
        "content": [part],
    }


# ---------------------------------------------------------------------------------------------------------
# Reading client items


def parse_items(value: Any, param: str, *, max_items: int = MAX_ITEMS) -> list[dict[str, Any]]:
    """The canonical items of a Responses `input` (a string: one user message) or a list of items; `param`
    names the value in errors (`input`, `items`)."""
    if isinstance(value, str):
        _check_text(value, param, MAX_TEXT)
        return [message_item("user", value)]
    if not isinstance(value, list):
        raise _wrong_type(param, "a string or an array of input items", value)
    if len(value) > max_items:
        raise _too_many(param, max_items, len(value))
    return [parse_item(item, f"{param}[{i}]") for i, item in enumerate(value)]


def parse_item(value: Any, param: str) -> dict[str, Any]:
    """One client item in canonical form (see parse_items)."""
    obj = _Obj(value, param)
    kind = obj.raw("type")
    if kind is None:
        if obj.raw("role") is not None:
            return _message(obj)
        if obj.raw("id") is not None and obj.raw("content") is None:
            return _reference(obj)
        raise _missing(obj.at("type"))
    kind = obj.choice("type", ITEM_TYPES)
    return _PARSERS[kind](obj)


def _message(obj: _Obj) -> dict[str, Any]:
    role = obj.choice("role", ROLES)
    content = obj.raw("content")
    param = obj.at("content")
    if content is None:
        raise _missing(param)
    if isinstance(content, str):
        _check_text(content, param, MAX_TEXT)
        parts = [output_text_part(content) if role == "assistant" else input_text_part(content)]
    elif isinstance(content, list):
        if len(content) > MAX_PARTS:
            raise _too_many(param, MAX_PARTS, len(content))
        read = _output_part if role == "assistant" else _input_part
        parts = [read(part, f"{param}[{i}]") for i, part in enumerate(content)]
    else:
        raise _wrong_type(param, "a string or an array of content parts", content)
    item = {
        "id": obj.item_id(MESSAGE_PREFIX),
        "type": "message",
        "status": obj.choice("status", STATUSES, default="completed"),
        "role": role,
        "content": parts,
    }
    phase = obj.choice("phase", PHASES, default=None)
    if phase is not None:
        item["phase"] = phase
    return item


def _input_part(value: Any, param: str) -> dict[str, Any]:
    part = _Obj(value, param)
    kind = part.choice("type", INPUT_PARTS)
    if kind == "input_text":
        return input_text_part(part.text("text"))
    if kind == "input_image":
        image_url = part.text("image_url", required=False)
        if image_url is not None and not is_image_url(image_url):
            raise InvalidRequest(
                f"Invalid '{part.at('image_url')}': expected an http(s) URL or a data:image/... URL.",
                param=part.at("image_url"),
                code="invalid_value",
            )
        out = {
            "type": "input_image",
            "detail": part.choice("detail", IMAGE_DETAILS, default="auto"),
            "file_id": part.name("file_id", required=False),
            "image_url": image_url,
        }
        part.one_of(out, ("file_id", "image_url"))
        return out
    out = {"type": "input_file"}
    for key, limit in (("file_id", MAX_NAME), ("file_data", MAX_TEXT), ("file_url", MAX_TEXT)):
        if (text := part.text(key, required=False, limit=limit)) is not None:
            out[key] = text
    part.one_of(out, ("file_id", "file_data", "file_url"))
    if "file_url" in out and not _is_http_url(out["file_url"]):
        raise InvalidRequest(
            f"Invalid '{part.at('file_url')}': expected an http(s) URL.", param=part.at("file_url")
        )
    if (filename := part.name("filename", required=False)) is not None:
        out["filename"] = filename
    if (detail := part.choice("detail", FILE_DETAILS, default=None)) is not None:
        out["detail"] = detail
    return out


def _output_part(value: Any, param: str) -> dict[str, Any]:
    part = _Obj(value, param)
    kind = part.choice("type", OUTPUT_PARTS)
    if kind == "refusal":
        return {"type": "refusal", "refusal": part.text("refusal")}
    text = part.text("text")
    annotations = part.array("annotations", required=False) or []
    where = part.at("annotations")
    return output_text_part(text, [_annotation(a, f"{where}[{i}]") for i, a in enumerate(annotations)])


def _annotation(value: Any, param: str) -> dict[str, Any]:
    note = _Obj(value, param)
    kind = note.choice("type", ANNOTATIONS)
    if kind == "file_citation":
        fields = {
            "file_id": note.name("file_id"),
            "filename": note.name("filename"),
            "index": note.int("index"),
        }
    elif kind == "url_citation":
        fields = {
            "url": note.text("url"),
            "title": note.text("title"),
            "start_index": note.int("start_index"),
            "end_index": note.int("end_index"),
        }
    elif kind == "container_file_citation":
        fields = {
            "container_id": note.name("container_id"),
            "file_id": note.name("file_id"),
            "filename": note.name("filename"),
            "start_index": note.int("start_index"),
            "end_index": note.int("end_index"),
        }
    else:
        fields = {"file_id": note.name("file_id"), "index": note.int("index")}
    return {"type": kind, **fields}


def _function_call(obj: _Obj) -> dict[str, Any]:
    item = {
        "id": obj.item_id(FUNCTION_CALL_PREFIX),
        "type": "function_call",
        "status": obj.choice("status", STATUSES, default="completed"),
        "call_id": obj.name("call_id"),
        "name": obj.name("name"),
        "arguments": obj.text("arguments"),
    }
    if (namespace := obj.name("namespace", required=False)) is not None:
        item["namespace"] = namespace
    return item


def _function_call_output(obj: _Obj) -> dict[str, Any]:
    output = obj.raw("output")
    param = obj.at("output")
    if output is None:
        raise _missing(param)
    if isinstance(output, str):
        _check_text(output, param, MAX_TEXT)
    elif isinstance(output, list):
        if len(output) > MAX_PARTS:
            raise _too_many(param, MAX_PARTS, len(output))
        output = [_input_part(part, f"{param}[{i}]") for i, part in enumerate(output)]
    else:
        raise _wrong_type(param, "a string or an array of content parts", output)
    return {
        "id": obj.item_id(FUNCTION_CALL_OUTPUT_PREFIX),
        "type": "function_call_output",
        "status": obj.choice("status", STATUSES, default="completed"),
        "call_id": obj.name("call_id"),
        "output": output,
    }


def _reasoning(obj: _Obj) -> dict[str, Any]:
    item: dict[str, Any] = {
        "id": obj.item_id(REASONING_PREFIX),
        "type": "reasoning",
        "status": obj.choice("status", STATUSES, default="completed"),
        "summary": obj.texts("summary", "summary_text"),
    }
    if obj.raw("content") is not None:
        item["content"] = obj.texts("content", "reasoning_text")
    if (encrypted := obj.text("encrypted_content", required=False)) is not None:
        item["encrypted_content"] = encrypted
    return item


def _file_search_call(obj: _Obj) -> dict[str, Any]:
    queries = obj.array("queries")
    where = obj.at("queries")
    results = obj.array("results", required=False)
    return {
        "id": obj.item_id(FILE_SEARCH_CALL_PREFIX),
        "type": "file_search_call",
        "status": obj.choice("status", FILE_SEARCH_STATUSES, default="completed"),
        "queries": [_check_text(q, f"{where}[{i}]", MAX_TEXT) for i, q in enumerate(queries)],
        "results": None
        if results is None
        else [_result(r, f"{obj.at('results')}[{i}]") for i, r in enumerate(results)],
    }


def _result(value: Any, param: str) -> dict[str, Any]:
    result = _Obj(value, param)
    out: dict[str, Any] = {}
    for key in ("file_id", "filename"):
        if (name := result.name(key, required=False)) is not None:
            out[key] = name
    if (score := result.number("score", required=False)) is not None:
        out["score"] = score
    if (text := result.text("text", required=False)) is not None:
        out["text"] = text
    attributes = result.raw("attributes")
    if attributes is not None:
        out["attributes"] = _attributes(attributes, result.at("attributes"))
    return out


def _attributes(value: Any, param: str) -> dict[str, str | float | bool]:
    if not isinstance(value, dict):
        raise _wrong_type(param, "an object", value)
    if len(value) > MAX_PARTS:
        raise _too_many(param, MAX_PARTS, len(value))
    out: dict[str, str | float | bool] = {}
    for key, item in value.items():
        if not isinstance(key, str):
            raise _wrong_type(param, "an object with string keys", value)
        _check_text(key, param, MAX_NAME)
        where = f"{param}.{key}"
        if isinstance(item, str):
            out[key] = _check_text(item, where, MAX_TEXT)
        elif isinstance(item, bool) or (isinstance(item, int | float) and _finite(item)):
            out[key] = item
        else:
            raise _wrong_type(where, "a string, a number or a boolean", item)
    return out


def _code_interpreter_call(obj: _Obj) -> dict[str, Any]:
    outputs = obj.array("outputs", required=False)
    where = obj.at("outputs")
    return {
        "id": obj.item_id(CODE_INTERPRETER_CALL_PREFIX),
        "type": "code_interpreter_call",
        "status": obj.choice("status", CODE_INTERPRETER_STATUSES, default="completed"),
        "container_id": obj.name("container_id"),
        "code": obj.text("code", required=False),
        "outputs": None
        if outputs is None
        else [_code_output(o, f"{where}[{i}]") for i, o in enumerate(outputs)],
    }


def _code_output(value: Any, param: str) -> dict[str, Any]:
    output = _Obj(value, param)
    if output.choice("type", ("logs", "image")) == "logs":
        return {"type": "logs", "logs": output.text("logs")}
    return {"type": "image", "url": output.text("url")}


def _reference(obj: _Obj) -> dict[str, Any]:
    return {"type": "item_reference", "id": obj.name("id")}


_PARSERS = {
    "message": _message,
    "function_call": _function_call,
    "function_call_output": _function_call_output,
    "reasoning": _reasoning,
    "file_search_call": _file_search_call,
    "code_interpreter_call": _code_interpreter_call,
    "item_reference": _reference,
}


# ---------------------------------------------------------------------------------------------------------
# Reading items back


def check_include(values: Iterable[Any], param: str = "include") -> tuple[str, ...]:
    """The `include` values of a request, each one the SDK knows (400 naming `param` otherwise)."""
    found = []
    for value in values:
        if value not in INCLUDABLE:
            raise _bad_choice(param, str(value), INCLUDABLE)
        found.append(value)
    return tuple(found)


def view_item(item: dict[str, Any], include: Collection[str] = ()) -> dict[str, Any]:
    """An item as a read answers it: file search results and code interpreter outputs only when `include`
    names them (the hosted API answers `null` otherwise)."""
    kind = item.get("type")
    if kind == "file_search_call" and FILE_SEARCH_RESULTS not in include and item.get("results") is not None:
        return {**item, "results": None}
    if (
        kind == "code_interpreter_call"
        and CODE_INTERPRETER_OUTPUTS not in include
        and item.get("outputs") is not None
    ):
        return {**item, "outputs": None}
    return item


def file_refs(items: list[dict[str, Any]], param: str) -> list[tuple[str, str]]:
    """(file_id, param) of every file the canonical `items` name in their parts (input_image, input_file),
    with the param of the client's item list they came from, for an existence check."""
    refs = []
    for i, item in enumerate(items):
        if item.get("type") == "message":
            parts, where = item["content"], f"{param}[{i}].content"
        elif item.get("type") == "function_call_output" and isinstance(item["output"], list):
            parts, where = item["output"], f"{param}[{i}].output"
        else:
            continue
        for j, part in enumerate(parts):
            if part["type"] in ("input_image", "input_file") and part.get("file_id"):
                refs.append((part["file_id"], f"{where}[{j}].file_id"))
    return refs


# ---------------------------------------------------------------------------------------------------------
# Field readers and the errors, in the hosted API's words


class _Obj:
    """A JSON object of the client's, read field by field; every error names `param.field`."""

    def __init__(self, value: Any, param: str) -> None:
        if not isinstance(value, dict):
            raise _wrong_type(param, "an object", value)
        self.value = value
        self.param = param

    def at(self, key: str) -> str:
        return f"{self.param}.{key}"

    def raw(self, key: str) -> Any:
        return self.value.get(key)

    def text(self, key: str, *, required: bool = True, limit: int = MAX_TEXT) -> Any:
        value = self.value.get(key)
        if value is None:
            if required:
                raise _missing(self.at(key))
            return None
        if not isinstance(value, str):
            raise _wrong_type(self.at(key), "a string", value)
        return _check_text(value, self.at(key), limit)

    def name(self, key: str, *, required: bool = True) -> Any:
        return self.text(key, required=required, limit=MAX_NAME)

    def item_id(self, prefix: str) -> str:
        given = self.name("id", required=False)
        if given is None:
            return new_id(prefix)
        if not ID_PATTERN.fullmatch(given):
            raise InvalidRequest(
                f"Invalid '{self.at('id')}': an item id holds only letters, digits and '_', '-', '.', ':'.",
                param=self.at("id"),
                code="invalid_value",
            )
        return given

    def choice(self, key: str, choices: tuple[str, ...], *, default: Any = ...) -> Any:
        value = self.value.get(key)
        if value is None:
            if default is ...:
                raise _missing(self.at(key))
            return default
        if not isinstance(value, str):
            raise _wrong_type(self.at(key), "a string", value)
        if value not in choices:
            raise _bad_choice(self.at(key), value, choices)
        return value

    def int(self, key: str) -> int:
        value = self.value.get(key)
        if value is None:
            raise _missing(self.at(key))
        if isinstance(value, bool) or not isinstance(value, int):
            raise _wrong_type(self.at(key), "an integer", value)
        if not 0 <= value <= MAX_INT:
            raise InvalidRequest(
                f"Invalid '{self.at(key)}': expected an integer from 0 to {MAX_INT}.",
                param=self.at(key),
                code="invalid_value",
            )
        return value

    def number(self, key: str, *, required: bool = True) -> Any:
        value = self.value.get(key)
        if value is None:
            if required:
                raise _missing(self.at(key))
            return None
        if isinstance(value, bool) or not isinstance(value, int | float) or not _finite(value):
            raise _wrong_type(self.at(key), "a number", value)
        return value

    def array(self, key: str, *, required: bool = True) -> Any:
        value = self.value.get(key)
        if value is None:
            if required:
                raise _missing(self.at(key))
            return None
        if not isinstance(value, list):
            raise _wrong_type(self.at(key), "an array", value)
        if len(value) > MAX_PARTS:
            raise _too_many(self.at(key), MAX_PARTS, len(value))
        return value

    def texts(self, key: str, kind: str) -> list[dict[str, str]]:
        """An array of `{"type": kind, "text": ...}` parts (reasoning summaries and texts)."""
        where = self.at(key)
        out = []
        for i, value in enumerate(self.array(key)):
            part = _Obj(value, f"{where}[{i}]")
            part.choice("type", (kind,))
            out.append({"type": kind, "text": part.text("text")})
        return out

    def one_of(self, out: dict[str, Any], keys: tuple[str, ...]) -> None:
        """Exactly one of `keys` is set in `out`."""
        given = [key for key in keys if out.get(key) is not None]
        if len(given) == 1:
            return
        names = " or ".join(f"'{key}'" for key in keys)
        if not given:
            raise InvalidRequest(
                f"Missing required parameter: '{self.at(keys[0])}' (give one of {names}).",
                param=self.at(keys[0]),
                code="missing_required_parameter",
            )
        raise InvalidRequest(
            f"Invalid '{self.at(given[1])}': give only one of {names}.", param=self.at(given[1])
        )


def _check_text(value: Any, param: str, limit: int) -> str:
    if not isinstance(value, str):
        raise _wrong_type(param, "a string", value)
    if len(value) > limit:
        raise InvalidRequest(
            f"Invalid '{param}': string too long. Expected a string with maximum length {limit}, "
            f"but got a string with length {len(value)} instead.",
            param=param,
            code="string_above_max_length",
        )
    if "\x00" in value:
        raise InvalidRequest(
            f"Invalid '{param}': strings must not contain NUL characters (\\u0000).",
            param=param,
            code="invalid_value",
        )
    return value


def _finite(value: int | float) -> bool:
    return isinstance(value, int) or math.isfinite(value)


def _is_http_url(value: str) -> bool:
    return is_image_url(value) and value[:5].lower() != "data:"


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a decimal"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _shown(value: str) -> str:
    return value if len(value) <= 64 else value[:64] + "…"


def _missing(param: str) -> InvalidRequest:
    return InvalidRequest(
        f"Missing required parameter: '{param}'.", param=param, code="missing_required_parameter"
    )


def _wrong_type(param: str, expected: str, value: Any) -> InvalidRequest:
    return InvalidRequest(
        f"Invalid type for '{param}': expected {expected}, but got {_json_type(value)} instead.",
        param=param,
        code="invalid_type",
    )


def _bad_choice(param: str, value: str, choices: Iterable[str]) -> InvalidRequest:
    options = [f"'{c}'" for c in choices]
    listed = options[0] if len(options) == 1 else ", ".join(options[:-1]) + f", and {options[-1]}"
    return InvalidRequest(
        f"Invalid value: '{_shown(value)}'. Supported values are: {listed}.",
        param=param,
        code="invalid_value",
    )


def _too_many(param: str, limit: int, got: int) -> InvalidRequest:
    return InvalidRequest(
        f"Invalid '{param}': array too long. Expected an array with maximum length {limit}, "
        f"but got an array with length {got} instead.",
        param=param,
        code="array_above_max_length",
    )
