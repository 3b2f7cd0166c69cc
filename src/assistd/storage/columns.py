"""Column helpers shared by the tables."""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, Column, ForeignKey, String
from sqlmodel import Field


def json_field(default_factory=None, nullable: bool = True) -> Any:
    """A JSON column. Assign a new value to change it; in-place mutation is not tracked."""
    kwargs = {"default_factory": default_factory} if default_factory else {"default": None}
    return Field(sa_column=Column(JSON, nullable=nullable), **kwargs)


def metadata_field() -> Any:
    """The OpenAI `metadata` map. SQLModel reserves the attribute name, so the column is named here."""
    return Field(default_factory=dict, sa_column=Column("metadata", JSON, nullable=False))


def parent_fk(target: str, index: bool = True) -> Any:
    """A foreign key whose rows go when the parent row is deleted."""
    return Field(
        sa_column=Column(String, ForeignKey(target, ondelete="CASCADE"), nullable=False, index=index)
    )
