"""Checks the ids named in `tool_resources` and turns the request form into the stored form."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlmodel import Session, select

from assistd.errors import InvalidRequest
from assistd.protocol.tools import ToolResources
from assistd.storage.files import FileRow

# Creates a vector store from an inline `vector_stores` spec and returns its id. Set by the file_search
# feature; until then inline stores are refused.
InlineStoreFactory = Callable[[Session, str, Any], str]
StoreChecker = Callable[[Session, str, str], bool]


class ToolResourceResolver:
    def __init__(self) -> None:
        self.create_inline_store: InlineStoreFactory | None = None
        self.store_exists: StoreChecker | None = None

    def resolve(
        self, session: Session, project: str, resources: ToolResources | None
    ) -> dict[str, Any] | None:
        if resources is None:
            return None
        out: dict[str, Any] = {}
        if resources.code_interpreter is not None:
            file_ids = resources.code_interpreter.file_ids
            self.check_files(session, project, file_ids, "tool_resources.code_interpreter.file_ids")
            out["code_interpreter"] = {"file_ids": list(file_ids)}
        if resources.file_search is not None:
            out["file_search"] = {"vector_store_ids": self._stores(session, project, resources)}
        return out

    def _stores(self, session: Session, project: str, resources: ToolResources) -> list[str]:
        spec = resources.file_search
        assert spec is not None
        if spec.vector_store_ids and spec.vector_stores:
            raise InvalidRequest(
                "Provide either 'vector_store_ids' or 'vector_stores', not both.",
                param="tool_resources.file_search",
            )
        ids = list(spec.vector_store_ids or [])
        for i, store_id in enumerate(ids):
            if self.store_exists is not None and not self.store_exists(session, project, store_id):
                raise InvalidRequest(
                    f"No vector store found with id '{store_id}'.",
                    param=f"tool_resources.file_search.vector_store_ids[{i}]",
                )
        for i, inline in enumerate(spec.vector_stores or []):
            param = f"tool_resources.file_search.vector_stores[{i}]"
            if self.create_inline_store is None:
                raise InvalidRequest("Inline vector stores are not available on this server.", param=param)
            self.check_files(session, project, inline.file_ids, f"{param}.file_ids")
            ids.append(self.create_inline_store(session, project, inline))
        return ids

    @staticmethod
    def known_files(session: Session, project: str, file_ids: list[str]) -> set[str]:
        """The ids among `file_ids` that name files of `project`."""
        if not file_ids:
            return set()
        query = select(FileRow.id).where(FileRow.project == project, FileRow.id.in_(file_ids))  # type: ignore[attr-defined]
        return set(session.exec(query))

    @classmethod
    def check_files(
        cls, session: Session, project: str, file_ids: list[str], param: str, suffix: str = ""
    ) -> None:
        """Raises a 400 naming `param[i]suffix` for the first id that is not a file of `project`."""
        found = cls.known_files(session, project, file_ids)
        for i, file_id in enumerate(file_ids):
            if file_id not in found:
                raise InvalidRequest(f"No file found with id '{file_id}'.", param=f"{param}[{i}]{suffix}")
