"""The published OpenAPI document (`/schema/openapi.json`): Litestar's, completed where it cannot see.

Handlers take the raw JSON body (`data: Any = None`) and parse it with `Model.parse`, so that every mistake is
one OpenAI-shaped 400 naming the `param`; Litestar therefore sees `{}` as every body, and it documents its own
`{status_code, detail}` as the error. A route names what it really takes in its decorator (Litestar keeps
unknown decorator keywords in `handler.opt`):

    @post("/", body=AssistantCreate)                              # a JSON body: AssistantCreate.parse
    @apost("/", body=UploadForm, body_media="multipart/form-data")
    @get("/{run_id}/steps", query=[query_param("include[]", ...)])  # read from request.query_params

`document(app)` then puts in: the pydantic JSON schema of each body model, the OpenAI error body for every
error status a route can answer, the event stream beside the JSON answer of routes that can stream, and
Bearer auth. The server never answers 409 (an active run is a 400, as on the hosted API: the SDK retries 409)
nor 413 (a body past the limit is a 400), so neither is declared.
"""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Litestar
from litestar.handlers import HTTPRouteHandler
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import (
    Components,
    OpenAPI,
    OpenAPIMediaType,
    OpenAPIResponse,
    Operation,
    Parameter,
    Reference,
    RequestBody,
    Schema,
    SecurityScheme,
)
from litestar.openapi.spec.enums import OpenAPIType
from litestar.params import Parameter as QueryParameter
from litestar.response import Stream
from litestar.routes import HTTPRoute
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

REF = "#/components/schemas/{model}"
BEARER = "bearer"
EVENT_STREAM = "text/event-stream"


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None
    code: str | None


class ErrorResponse(BaseModel):
    """The body of every error answer (api/errors.py), as the hosted API sends it."""

    error: ErrorDetail


ERRORS = {
    "400": "Invalid request: the message says what is wrong and `param` names the field.",
    "401": "No API key, or a key this server does not know.",
    "404": "No such object in the key's project, or no such route.",
}


def documented(**schema: Any) -> Any:
    """A query parameter taken as a string and parsed by the handler, shown with the schema it must meet."""
    return QueryParameter(schema_extra={"one_of": None, **schema})


# The cursor query of list routes (api/params.py page_query; PageQuery.from_query checks it).
Limit = Annotated[str | None, documented(type="integer", minimum=1, maximum=100, default=20)]
Order = Annotated[str | None, documented(type="string", enum=["asc", "desc"], default="desc")]
Cursor = Annotated[str | None, documented(type="string", description="An object id of the list")]


def query_param(name: str, required: bool = False, **schema: Any) -> Parameter:
    """A query parameter a handler reads from `request.query_params` (`query=[...]` in its decorator)."""
    array = schema.get("type") == "array"
    return Parameter(
        name=name,
        param_in="query",
        schema=schema,  # type: ignore[arg-type]  # a JSON schema dict is emitted as it is
        required=required,
        style="form" if array else None,
        explode=True if array else None,
    )


def openapi_config(version: str) -> OpenAPIConfig:
    return OpenAPIConfig(
        title="assistd",
        version=version,
        path="/schema",
        description="The OpenAI Assistants API v2 on local models. Every /v1 route takes `Authorization: "
        "Bearer <key>`; errors are `{error: {message, type, param, code}}`.",
        security=[{BEARER: []}],
        components=Components(
            security_schemes={BEARER: SecurityScheme(type="http", scheme="bearer", description="API key")}
        ),
    )


def document(app: Litestar) -> OpenAPI:
    """Completes the document Litestar builds (once, cached on the app) from the route handlers."""
    openapi = app.openapi_schema
    operations = list(_operations(app, openapi))
    models = {handler.opt["body"] for handler, _ in operations if "body" in handler.opt}
    refs = _add_components(openapi, [ErrorResponse, *sorted(models, key=lambda m: m.__name__)])
    for handler, operation in operations:
        if "body" in handler.opt:
            model = handler.opt["body"]
            media = handler.opt.get("body_media", "application/json")
            required = any(field.is_required() for field in model.model_fields.values())
            operation.request_body = RequestBody(
                required=required, content={media: OpenAPIMediaType(schema=refs[model])}
            )
        if "query" in handler.opt:
            operation.parameters = [*(operation.parameters or []), *handler.opt["query"]]
        if _can_stream(handler):
            _add_event_stream(operation)
        _add_errors(operation, refs[ErrorResponse])
    return openapi


def _operations(app: Litestar, openapi: OpenAPI) -> Any:
    """(handler, its operation in the document) for every documented route handler."""
    for route in app.routes:
        if not isinstance(route, HTTPRoute) or route.path_format not in (openapi.paths or {}):
            continue
        path_item = openapi.paths[route.path_format]  # type: ignore[index]
        for handler in route.route_handlers:
            for method in handler.http_methods:
                operation = getattr(path_item, method.lower(), None)
                if isinstance(operation, Operation) and handler.include_in_schema:
                    yield handler, operation


def _add_components(openapi: OpenAPI, models: list[type[BaseModel]]) -> dict[type[BaseModel], Reference]:
    """The pydantic JSON schemas of `models` (validation side: what the parser accepts) as components."""
    keys, top = models_json_schema([(m, "validation") for m in models], ref_template=REF, by_alias=True)
    schemas = openapi.components.schemas
    for name, schema in top.get("$defs", {}).items():
        if name in schemas:
            raise RuntimeError(f"OpenAPI component {name!r} is declared twice; rename one of the models")
        schemas[name] = schema  # type: ignore[assignment]  # a JSON schema dict is emitted as it is
    return {model: Reference(ref=keys[(model, "validation")]["$ref"]) for model in models}


def _can_stream(handler: HTTPRouteHandler) -> bool:
    returned = handler.parsed_fn_signature.return_type
    types = [t.annotation for t in returned.inner_types] if returned.is_union else [returned.annotation]
    return any(isinstance(t, type) and issubclass(t, Stream) for t in types)


def _add_event_stream(operation: Operation) -> None:
    """`X | Stream` is documented as `oneOf: [X, {}]`, which any JSON matches twice: X as JSON, or events."""
    ok = operation.responses["200"]  # type: ignore[index]
    assert isinstance(ok, OpenAPIResponse) and ok.content
    json = ok.content["application/json"].schema
    if isinstance(json, Schema) and json.one_of:
        json = next(s for s in json.one_of if isinstance(s, Reference))
    ok.content = {
        "application/json": OpenAPIMediaType(schema=json),
        EVENT_STREAM: OpenAPIMediaType(
            schema=Schema(
                type=OpenAPIType.STRING,
                description="With `stream: true`: server-sent events (`event:` and `data:` lines), "
                "ended by `event: done`.",
            )
        ),
    }
    ok.description = "The object, or its events when the request asks to stream."


def _add_errors(operation: Operation, error: Reference) -> None:
    responses = operation.responses or {}
    has_path_params = any(
        isinstance(p, Parameter) and p.param_in == "path" for p in operation.parameters or []
    )
    for status, description in ERRORS.items():
        if status == "404" and not (has_path_params or operation.request_body):
            continue  # only an id in the path or the body (assistant_id, file_ids...) can name nothing
        responses[status] = OpenAPIResponse(
            description=description, content={"application/json": OpenAPIMediaType(schema=error)}
        )
    operation.responses = responses
