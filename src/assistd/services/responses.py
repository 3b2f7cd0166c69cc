"""Responses as resources: creation (checked, then written with its input items in one transaction, and
queued for the engine), retrieval, deletion, cancel, input items. Executing a response is the engine's job
(engine/responses/executor.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import literal
from sqlmodel import Session, select

from assistd.engine.events import Event
from assistd.engine.images import ImageUnavailable, holds_images
from assistd.engine.responses import events as ev
from assistd.engine.responses.tape import TERMINAL, finish_response, output_of
from assistd.errors import InvalidRequest, NotFound
from assistd.ids import created_at_of, new_id
from assistd.llm.catalog import ModelCatalog
from assistd.protocol.common import ListPage, PageQuery
from assistd.protocol.items import check_include, file_refs, parse_items, view_item
from assistd.protocol.responses import ResponseCreate, ResponseInput
from assistd.services.response_views import response_object
from assistd.services.tool_resources import ToolResourceResolver
from assistd.storage.db import Database
from assistd.storage.responses import ResponseItemRow, ResponseRow
from assistd.tools.calls import UnsupportedSchema, check_function_tools, json_schema_grammar

PREFIX = "resp_"
CONVERSATION_UPTO = "conversation_upto"  # (params) the conversation's last position when it was created
ECHOED = (
    "tool_choice",
    "parallel_tool_calls",
    "text",
    "reasoning",
    "temperature",
    "top_p",
    "max_output_tokens",
    "max_tool_calls",
    "truncation",
    "top_logprobs",
    "user",
    "safety_identifier",
    "prompt_cache_key",
)


class ResponseService:
    def __init__(self, db: Database, catalog: ModelCatalog, bus: Any, resources: Any) -> None:
        self.db = db
        self.catalog = catalog
        self.bus = bus
        self.resources = resources
        self.conversations: Any = None  # ConversationService (plugged in by the container)
        self.containers: Any = None  # ContainerService, when the code interpreter is there
        self.on_queued: Callable[[Session, str], None] | None = None  # wakes the workers (PostgreSQL)
        self.on_cancelling: Callable[[Session, str], None] | None = None
        # counts a response's first prompt (the engine's, engine/responses/executor.py)
        self.count_prompt: Callable[[ResponseRow, list[dict], list[dict]], int] | None = None
        # whether a model's responses with images are refused at creation (services/runs.py says how)
        self.refuses_images: Callable[[str], bool] | None = None
        # checks an input_image part (project, part): an unusable image is a 400 (services/messages.py)
        self.image_check: Callable[[str, dict[str, Any]], None] | None = None

    # ------------------------------------------------------------------------------------------ create
    def create(self, project: str, req: ResponseCreate, response_id: str | None = None) -> dict[str, Any]:
        """Checks the request, writes the response (queued) with its input items and queues it."""
        response_id = response_id or new_id(PREFIX)
        stored = req.store is not False
        if req.background and not stored:
            raise InvalidRequest("background responses must be stored: store cannot be false", param="store")
        include = check_include(req.include or [])
        if self.image_check is not None:  # before the transaction: decoding an image may take seconds
            self._check_images(project, parse_items(req.input or [], "input"), self.image_check)
        with self.db.session() as s:
            row, items, _ = self._prepare(s, project, req, response_id, containers=True)
            row.meta = req.metadata or {}
            row.background = bool(req.background)
            row.stored = stored
            s.add(row)
            s.flush()  # before its items (their foreign key)
            for seq, item in enumerate(items, start=1):  # input items: -1, -2... (output items count up)
                s.add(
                    ResponseItemRow(
                        response_id=response_id,
                        seq=-seq,
                        output=False,
                        item_id=item.get("id"),
                        type=item["type"],
                        data=item,
                    )
                )
            if row.conversation_id:
                self.conversations.append(s, project, row.conversation_id, items)
                # what the conversation holds now, its input last, is what the response reads (not what
                # later requests append before it runs)
                upto = self.conversations.require(s, project, row.conversation_id).item_seq
                row.params = {**row.params, CONVERSATION_UPTO: upto}
            s.flush()
            obj = response_object(row, [], include)
            # as hosted: a response the client waits for is in progress from the start (a background
            # one queued); the row says queued until a worker takes it
            created = obj if row.background else {**obj, "status": "in_progress"}
            self.bus.emit(
                s, response_id, [Event("response.created", ev.event("response.created", response=created))]
            )
            if self.on_queued is not None:
                self.on_queued(s, response_id)
        return obj

    def input_tokens(self, project: str, req: ResponseInput) -> int:
        """The prompt tokens a response made with `req` would start with (`usage.input_tokens` of its first
        turn): rendered as the engine renders it, counted by the model's tokenizer."""
        with self.db.session() as s:
            row, items, before = self._prepare(
                s, project, req, new_id(PREFIX), containers=False, history=True
            )
        assert self.count_prompt is not None
        return self.count_prompt(row, before, items)  # (nothing was appended to a conversation here)

    @staticmethod
    def _check_images(project: str, items: list[dict[str, Any]], check: Callable[[str, dict], None]) -> None:
        for j, item in enumerate(items):
            if item["type"] != "message" or not isinstance(item.get("content"), list):
                continue
            for i, part in enumerate(item["content"]):
                if part.get("type") != "input_image":
                    continue
                try:
                    check(project, part)
                except ImageUnavailable as exc:
                    where = "file_id" if part.get("file_id") else "image_url"
                    raise InvalidRequest(str(exc), param=f"input[{j}].content[{i}].{where}") from None

    def _prepare(
        self,
        s: Session,
        project: str,
        req: ResponseInput,
        response_id: str,
        containers: bool,
        history: bool = False,
    ) -> tuple[ResponseRow, list[dict[str, Any]], list[dict[str, Any]]]:
        """The response's row (not added), its input items and the items before them (read when `history`
        asks, or the input refers to them: an item_reference, a function_call_output); every check."""
        model = req.model or self.catalog.default
        self.catalog.require(model)
        conversation_id = _conversation_id(req.conversation)
        if conversation_id and req.previous_response_id:
            raise InvalidRequest(
                "previous_response_id cannot be used together with conversation", param="previous_response_id"
            )
        items = parse_items(req.input if req.input is not None else [], "input")
        params = {k: _dump(getattr(req, k, None)) for k in ECHOED if getattr(req, k, None) is not None}
        params["tools"] = [echoed_tool(_dump(t)) for t in req.tools or []]
        if "text" in params:
            params["text"] = echoed_text(params["text"])
        params["include"] = list(getattr(req, "include", None) or [])
        previous = self._previous(s, project, req.previous_response_id)
        if conversation_id:
            self.conversations.require(s, project, conversation_id)
        _check_tool_choice(params.get("tool_choice"), params["tools"])
        _check_schemas(params)
        for file_id, where in file_refs(items, "input"):  # input_image / input_file ids: the project's files
            if not ToolResourceResolver.known_files(s, project, [file_id]):
                raise NotFound(f"No file found with id '{file_id}'.", param=where)
        self._check_stores(s, project, params["tools"])
        images = any(holds_images(i.get("content")) for i in items if i["type"] == "message")
        if images and self.refuses_images is not None and self.refuses_images(model):
            raise InvalidRequest(
                f"The model '{model}' cannot see images, and the input holds images. Use a vision "
                "model (a models-file entry with `mmproj`), or an input without images.",
                param="model",
            )
        # the items before the input: read here only when the input refers to them (the engine reads them)
        needs = history or any(i["type"] in ("item_reference", "function_call_output") for i in items)
        before = self.history(s, project, previous, conversation_id) if needs else []
        items = self._resolve_references(items, before)
        _check_outputs(items, before)
        # last: an `auto` container is made here, once every check has passed
        container_id = self._container(project, params["tools"], previous) if containers else None
        row = ResponseRow(
            id=response_id,
            project=project,
            created_at=created_at_of(response_id, PREFIX),
            status="queued",
            model=model,
            instructions=req.instructions,
            params=params,
            previous_response_id=req.previous_response_id,
            conversation_id=conversation_id,
            container_id=container_id,
        )
        return row, items, before

    def _previous(self, s: Session, project: str, previous_id: str | None) -> ResponseRow | None:
        if previous_id is None:
            return None
        row = s.get(ResponseRow, previous_id)
        if row is None or row.project != project or not row.stored:
            raise NotFound(
                f"Previous response with id '{previous_id}' not found.", param="previous_response_id"
            )
        return row

    def _check_stores(self, s: Session, project: str, tools: list[dict[str, Any]]) -> None:
        exists = getattr(self.resources, "store_exists", None)
        for i, tool in enumerate(tools):
            if tool["type"] != "file_search" or exists is None:
                continue
            for j, store_id in enumerate(tool["vector_store_ids"]):
                if not exists(s, project, store_id):
                    raise NotFound(
                        f"Vector store with id '{store_id}' not found.",
                        param=f"tools[{i}].vector_store_ids[{j}]",
                    )

    def _container(
        self, project: str, tools: list[dict[str, Any]], previous: ResponseRow | None
    ) -> str | None:
        """The code interpreter session of the response: the container named, the previous response's, or
        a new one (`auto`)."""
        for i, tool in enumerate(tools):
            if tool["type"] != "code_interpreter":
                continue
            if self.containers is None:
                raise InvalidRequest("code_interpreter is not available on this server", param=f"tools[{i}]")
            interpreter = getattr(self.containers, "interpreter", None)
            if interpreter is not None:  # no sandbox: refused here, with the reason (it fails closed)
                interpreter.check_tools([tool], f"tools[{i}]")
            container = tool["container"]
            if isinstance(container, str):
                self.containers.require(project, container, param=f"tools[{i}].container")
                return container
            if (
                previous is not None
                and previous.container_id
                and self.containers.alive(project, previous.container_id)
            ):
                return previous.container_id
            return self.containers.create_auto(project, container.get("file_ids") or [])
        return None

    @staticmethod
    def _resolve_references(
        items: list[dict[str, Any]], before: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        """`item_reference` items become the items they name (from the response's chain or conversation)."""
        if not any(i["type"] == "item_reference" for i in items):
            return items
        known = {item.get("id"): item for item in before}
        out = []
        for n, item in enumerate(items):
            if item["type"] != "item_reference":
                out.append(item)
            elif item["id"] in known:
                out.append(known[item["id"]])
            else:
                raise NotFound(f"Item with id '{item['id']}' not found.", param=f"input[{n}].id")
        return out

    # ------------------------------------------------------------------------------------- history
    def history(
        self,
        s: Session,
        project: str,
        previous: ResponseRow | None,
        conversation_id: str | None,
        upto: int | None = None,
    ) -> list[dict[str, Any]]:
        """The items before a response's input: its conversation's (up to position `upto`), or those of its
        previous responses (their input and output, oldest first)."""
        if conversation_id:
            return self.conversations.items_in_order(s, project, conversation_id, upto)
        if previous is None:
            return []
        return chain_items(s, previous.id)

    # ---------------------------------------------------------------------------------------- reads
    def get(
        self, project: str, response_id: str, include: tuple[str, ...] = (), unstored: bool = False
    ) -> dict[str, Any]:
        """The response; `unstored`: also one made with `store: false` (its own create answers it)."""
        include = check_include(include)
        with self.db.session() as s:
            row = self._require(s, project, response_id, unstored)
            return response_object(row, output_of(s, response_id), include)

    def status(self, project: str, response_id: str, unstored: bool = False) -> str:
        """Its status alone (one row read); `unstored`: also one made with `store: false`."""
        with self.db.session() as s:
            return self._require(s, project, response_id, unstored).status

    def _require(self, s: Session, project: str, response_id: str, unstored: bool = False) -> ResponseRow:
        row = s.get(ResponseRow, response_id)
        if row is None or row.project != project or not (row.stored or unstored):
            raise NotFound(f"Response with id '{response_id}' not found.", param="response_id")
        return row

    def delete(self, project: str, response_id: str, queue: Any = None) -> dict[str, Any]:
        """Deletes the response; one still executing is first ended `cancelled` (its streams and a client
        waiting for it see it end; its worker stops at its next write, which finds it gone)."""
        with self.db.session() as s:
            status = self._require(s, project, response_id).status
        if status not in TERMINAL and queue is not None:
            finish_response(queue, response_id, "cancelled", guard="any")
            self._cancelling(response_id)
        with self.db.session() as s:
            row = self._require(s, project, response_id)
            s.delete(row)
        forget = getattr(self.bus, "forget_log", None)
        if forget is not None:
            forget(response_id)
        return {"id": response_id, "object": "response", "deleted": True}

    def stored_item(self, s: Session, project: str, item_id: str) -> dict[str, Any] | None:
        """An item of one of the project's stored responses, by its id (a conversation's item_reference)."""
        row = s.exec(
            select(ResponseItemRow.data)
            .join(ResponseRow, ResponseRow.id == ResponseItemRow.response_id)  # type: ignore[arg-type]
            .where(
                ResponseItemRow.item_id == item_id,
                ResponseRow.project == project,
                ResponseRow.stored == True,  # noqa: E712
            )
            .limit(1)
        ).first()
        return row

    def _cancelling(self, response_id: str) -> None:
        """Tells the workers of other nodes at once (PostgreSQL NOTIFY; else at a lease renewal)."""
        if self.on_cancelling is not None:
            with self.db.session() as s:
                self.on_cancelling(s, response_id)

    def input_items(self, project: str, response_id: str, page: PageQuery, include: tuple[str, ...] = ()):
        include = check_include(include)
        with self.db.session() as s:
            self._require(s, project, response_id)
            items = [view_item(i, include) for i in input_of(s, response_id)]
        return page_items(items, page)

    # --------------------------------------------------------------------------------------- cancel
    def cancel(self, project: str, response_id: str, queue: Any) -> dict[str, Any]:
        """A background response ends `cancelled` at once (its worker stops at its next write)."""
        with self.db.session() as s:
            row = self._require(s, project, response_id)
            if not row.background:
                raise InvalidRequest("Only background responses can be cancelled.", param="response_id")
            status = row.status
        if status not in TERMINAL:
            finish_response(queue, response_id, "cancelled", guard="any")
            self._cancelling(response_id)
        return self.get(project, response_id)


MAX_CHAIN = 10_000


def chain_items(s: Session, last_id: str) -> list[dict[str, Any]]:
    """The input and output items of a `previous_response_id` chain ending at `last_id`, oldest first: two
    queries whatever its length (the chain by a recursive query, then every item of it)."""
    table = ResponseRow.__table__  # type: ignore[attr-defined]
    start = select(table.c.id, table.c.previous_response_id, literal(0).label("depth")).where(
        table.c.id == last_id
    )
    chain = start.cte("chain", recursive=True)
    older = table.alias("older")
    chain = chain.union_all(
        select(older.c.id, older.c.previous_response_id, chain.c.depth + 1).where(
            older.c.id == chain.c.previous_response_id, chain.c.depth < MAX_CHAIN
        )
    )
    depth = dict(s.execute(select(chain.c.id, chain.c.depth)).all())
    rows = s.execute(
        select(
            ResponseItemRow.response_id, ResponseItemRow.output, ResponseItemRow.seq, ResponseItemRow.data
        ).where(
            ResponseItemRow.response_id.in_(list(depth))  # type: ignore[attr-defined]
        )
    ).all()
    # oldest response first; in each, its input (seq -1, -2...) then its output (0, 1...)
    rows.sort(key=lambda r: (-depth[r[0]], r[1], r[2] if r[1] else -r[2]))
    return [r[3] for r in rows]


def input_of(s: Session, response_id: str) -> list[dict[str, Any]]:
    rows = s.exec(
        select(ResponseItemRow)
        .where(ResponseItemRow.response_id == response_id, ResponseItemRow.output == False)  # noqa: E712
        .order_by(ResponseItemRow.seq.desc())  # type: ignore[attr-defined]
    )
    return [r.data for r in rows]


def page_items(items: list[dict[str, Any]], page: PageQuery) -> ListPage:
    """A page of items (input items: `order` desc by default, `after` an item id)."""
    ordered = items if page.order == "asc" else list(reversed(items))
    if page.after:
        ids = [i.get("id") for i in ordered]
        if page.after in ids:
            ordered = ordered[ids.index(page.after) + 1 :]
    if page.before:
        ids = [i.get("id") for i in ordered]
        if page.before in ids:
            ordered = ordered[: ids.index(page.before)]
    data = ordered[: page.limit]
    return ListPage(
        data=data,
        first_id=data[0].get("id") if data else None,
        last_id=data[-1].get("id") if data else None,
        has_more=len(ordered) > len(data),
    )


def _check_tool_choice(choice: Any, tools: list[dict[str, Any]]) -> None:
    """A tool_choice that names a tool (or requires one) needs it among the tools (400, as hosted)."""
    if choice is None or choice in ("auto", "none"):
        return
    if choice == "required":
        if not tools:
            raise InvalidRequest("tool_choice 'required' needs at least one tool.", param="tool_choice")
        return
    named = choice.get("tools", []) if choice["type"] == "allowed_tools" else [choice]
    for i, tool in enumerate(named):
        kind, name = tool.get("type"), tool.get("name")
        if any(t["type"] == kind and (kind != "function" or t["name"] == name) for t in tools):
            continue
        what = f"function '{name}'" if kind == "function" else f"'{kind}'"
        param = f"tool_choice.tools[{i}]" if choice["type"] == "allowed_tools" else "tool_choice"
        raise InvalidRequest(f"tool_choice names {what}, which is not among the tools.", param=param)


def _check_schemas(params: dict[str, Any]) -> None:
    """Function parameters and a json_schema text format are constrained by a grammar: a construct it
    cannot honour is a 400 naming it here, never a failed response later."""
    tools = params["tools"]
    functions = [{"type": "function", "function": t} for t in tools if t["type"] == "function"]
    positions = [i for i, t in enumerate(tools) if t["type"] == "function"]
    try:
        check_function_tools(functions, "tools")
    except InvalidRequest as exc:  # named by its place among all the tools, in the Responses API's shape
        n = int(str(exc.param).split("[")[1].split("]")[0])
        raise InvalidRequest(exc.message, param=f"tools[{positions[n]}].parameters") from None
    fmt = (params.get("text") or {}).get("format") or {}
    if fmt.get("type") == "json_schema":
        try:
            json_schema_grammar(fmt.get("schema"))
        except UnsupportedSchema as exc:
            raise InvalidRequest(
                f"Invalid schema for text.format: {exc}. assistd constrains the reply with a grammar "
                "and cannot enforce this construct.",
                param="text.format.schema",
            ) from None


def _check_outputs(items: list[dict[str, Any]], before: list[dict[str, Any]]) -> None:
    """Each function_call_output answers a function call made before it (400 naming the item otherwise)."""
    calls = {i.get("call_id") for i in before if i.get("type") == "function_call"}
    for n, item in enumerate(items):
        if item["type"] == "function_call":
            calls.add(item.get("call_id"))
        elif item["type"] == "function_call_output" and item.get("call_id") not in calls:
            raise InvalidRequest(
                f"No tool call found for function call output with call_id {item.get('call_id')}.",
                param=f"input[{n}].call_id",
            )


def echoed_tool(tool: dict[str, Any]) -> dict[str, Any]:
    """A tool as the response echoes it: every field of the SDK's tool type (null where not set)."""
    keys = {
        "function": ("name", "description", "parameters", "strict"),
        "file_search": ("vector_store_ids", "filters", "max_num_results", "ranking_options"),
    }.get(tool["type"], ())
    return {"type": tool["type"], **{k: tool.get(k) for k in keys}, **tool}


def echoed_text(text: dict[str, Any]) -> dict[str, Any]:
    """`text` as the response echoes it: a json_schema format with its description and strict flag."""
    fmt = text.get("format") or {}
    if fmt.get("type") == "json_schema":
        fmt = {"description": None, **fmt, "strict": bool(fmt.get("strict"))}
        return {**text, "format": fmt}
    return text


def _conversation_id(value: Any) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else value.id


def _dump(value: Any) -> Any:
    return (
        value.model_dump(mode="json", by_alias=True, exclude_none=True)
        if hasattr(value, "model_dump")
        else value
    )
