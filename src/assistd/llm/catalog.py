"""The models the server serves, by name (from settings). Loading them is the registry's job."""

from __future__ import annotations

from collections.abc import Callable

from assistd.config import ModelEntry
from assistd.errors import InvalidRequest, NotFound
from assistd.protocol.models import ModelObject


class ModelCatalog:
    def __init__(self, entries: list[ModelEntry], default: str, created: int) -> None:
        self.entries = {entry.name: entry for entry in entries}
        self.default = default
        self.created = created

    def require(self, name: str, param: str = "model") -> ModelEntry:
        entry = self.entries.get(name)
        if entry is None:
            known = ", ".join(sorted(self.entries)) or "none"
            raise InvalidRequest(
                f"The model '{name}' does not exist or you do not have access to it. "
                f"Available models: {known}.",
                param=param,
                code="model_not_found",
            )
        return entry

    def objects(self, sees: Callable[[str], bool | None] | None = None) -> list[ModelObject]:
        return [self.object(name, sees) for name in self.entries]

    def object(self, name: str, sees: Callable[[str], bool | None] | None = None) -> ModelObject:
        """The model; `sees(name)` tells whether it sees images (where that is known)."""
        if name not in self.entries:
            raise NotFound(f"The model '{name}' does not exist.", code="model_not_found")
        vision = sees(name) if sees is not None else None
        capabilities = {"vision": True} if vision else None
        return ModelObject(id=name, created=self.created, owned_by="assistd", capabilities=capabilities)
