from __future__ import annotations

from collections.abc import Callable
from typing import Any

from assistd.errors import NotFound
from assistd.ids import created_at_of, new_id
from assistd.llm.catalog import ModelCatalog
from assistd.protocol.assistants import AssistantCreate, AssistantObject, AssistantUpdate
from assistd.protocol.common import Deleted, ListPage, PageQuery
from assistd.protocol.tools import dump_response_format, dump_tools
from assistd.services.pagination import paginate
from assistd.services.tool_resources import ToolResourceResolver
from assistd.storage.assistants import AssistantRow
from assistd.storage.db import Database

PREFIX = "asst_"

# Checks a list of stored tools and raises InvalidRequest naming the bad one (function schemas that
# cannot be turned into a grammar, for example).
ToolsCheck = Callable[[list[dict[str, Any]], str], None]


def to_object(row: AssistantRow) -> AssistantObject:
    return AssistantObject(
        id=row.id,
        created_at=row.created_at,
        name=row.name,
        description=row.description,
        model=row.model,
        instructions=row.instructions,
        tools=row.tools,
        tool_resources=row.tool_resources if row.tool_resources is not None else {},
        metadata=row.meta,
        temperature=row.temperature,
        top_p=row.top_p,
        response_format=row.response_format if row.response_format is not None else "auto",
    )


class AssistantService:
    def __init__(self, db: Database, catalog: ModelCatalog, resources: ToolResourceResolver) -> None:
        self.db = db
        self.catalog = catalog
        self.resources = resources
        self.tools_checks: list[ToolsCheck] = []

    def check_tools(self, tools: list[dict[str, Any]], param: str = "tools") -> None:
        for check in self.tools_checks:
            check(tools, param)

    @staticmethod
    def check_response_format(value: Any, param: str = "response_format") -> Any:
        """The stored form of a response_format; a json_schema the grammar cannot enforce is a 400."""
        stored = dump_response_format(value)
        if isinstance(stored, dict) and stored.get("type") == "json_schema":
            from assistd.tools.calls import check_json_schema

            check_json_schema(stored["json_schema"].get("schema"), f"{param}.json_schema.schema")
        return stored

    def create(self, project: str, req: AssistantCreate) -> AssistantObject:
        self.catalog.require(req.model)
        tools = dump_tools(req.tools or [])
        self.check_tools(tools)
        oid = new_id(PREFIX)
        with self.db.session() as s:
            row = AssistantRow(
                id=oid,
                project=project,
                created_at=created_at_of(oid, PREFIX),
                name=req.name,
                description=req.description,
                model=req.model,
                instructions=req.instructions,
                tools=tools,
                tool_resources=self.resources.resolve(s, project, req.tool_resources),
                meta=req.metadata or {},
                temperature=req.temperature,
                top_p=req.top_p,
                response_format=self.check_response_format(req.response_format),
                reasoning_effort=req.reasoning_effort,
            )
            s.add(row)
            return to_object(row)

    def _row(self, s, project: str, assistant_id: str) -> AssistantRow:
        row = s.get(AssistantRow, assistant_id)
        if row is None or row.project != project:
            raise NotFound.of("assistant", assistant_id)
        return row

    def get(self, project: str, assistant_id: str) -> AssistantObject:
        with self.db.session() as s:
            return to_object(self._row(s, project, assistant_id))

    def list(self, project: str, page: PageQuery) -> ListPage[AssistantObject]:
        with self.db.session() as s:
            return paginate(s, AssistantRow, [AssistantRow.project == project], page, to_object, PREFIX)

    def update(self, project: str, assistant_id: str, req: AssistantUpdate) -> AssistantObject:
        given = req.provided()
        with self.db.session() as s:
            row = self._row(s, project, assistant_id)
            if "model" in given and req.model is not None:
                self.catalog.require(req.model)
                row.model = req.model
            for field in ("name", "description", "instructions", "temperature", "top_p", "reasoning_effort"):
                if field in given:
                    setattr(row, field, getattr(req, field))
            if "tools" in given:
                tools = dump_tools(req.tools or [])
                self.check_tools(tools)
                row.tools = tools
            if "tool_resources" in given:
                row.tool_resources = self.resources.resolve(s, project, req.tool_resources)
            if "metadata" in given:
                row.meta = req.metadata or {}
            if "response_format" in given:
                row.response_format = self.check_response_format(req.response_format)
            s.add(row)
            return to_object(row)

    def delete(self, project: str, assistant_id: str) -> Deleted:
        with self.db.session() as s:
            s.delete(self._row(s, project, assistant_id))
        return Deleted(id=assistant_id, object="assistant.deleted")
