"""Column helpers shared by the tables.

Two column types differ by database, and only there: on PostgreSQL integers that can outgrow 2^31 (times,
bytes, token counts, counters) are BIGINT and ids compare bytewise (`COLLATE "C"`), so that pages order the
same on any database locale. On SQLite both are what they always were (INTEGER is 64-bit there and text
compares bytewise): its DDL does not change.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, BigInteger, Column, ForeignKey, Integer, String, bindparam
from sqlmodel import Field, select

BIG_INT = BigInteger().with_variant(Integer(), "sqlite")
"""An integer that may exceed 2^31: BIGINT on PostgreSQL, INTEGER (64-bit) on SQLite."""

ID = String().with_variant(String(collation="C"), "postgresql")
"""An object id: compared and ordered bytewise on every database (ids sort by creation time)."""


def id_field() -> Any:
    """The primary key id."""
    return Field(primary_key=True, sa_type=ID)


def ref_field(index: bool = False) -> Any:
    """An optional id of another object (`assistant_id`, `run_id`, `worker_id`...)."""
    return Field(default=None, index=index, sa_type=ID)


def required_ref_field(index: bool = False) -> Any:
    """A required id of another object, without a foreign key."""
    return Field(index=index, sa_type=ID)


def big_int_field(default: Any = ...) -> Any:
    """An integer that may exceed 2^31 (a Unix time, a byte count, a counter). Nullable when annotated so."""
    return Field(default=default, sa_type=BIG_INT) if default is not ... else Field(sa_type=BIG_INT)


def json_field(default_factory=None, nullable: bool = True) -> Any:
    """A JSON column. Assign a new value to change it; in-place mutation is not tracked."""
    kwargs = {"default_factory": default_factory} if default_factory else {"default": None}
    return Field(sa_column=Column(JSON, nullable=nullable), **kwargs)


def metadata_field() -> Any:
    """The OpenAI `metadata` map. SQLModel reserves the attribute name, so the column is named here."""
    return Field(default_factory=dict, sa_column=Column("metadata", JSON, nullable=False))


def parent_fk(target: str, index: bool = True, primary_key: bool = False) -> Any:
    """A foreign key (an id) whose rows go when the parent row is deleted."""
    return Field(
        sa_column=Column(
            ID,
            ForeignKey(target, ondelete="CASCADE"),
            nullable=False,
            index=index and not primary_key,
            primary_key=primary_key,
        )
    )


_BY_ID: dict[type, Any] = {}


def by_id(model: type) -> Any:
    """`select(model)` of the row whose id is the parameter `id`, built once per model: for hot paths, where
    `Session.get` builds its query at each call (~0.2 ms more a row)."""
    stmt = _BY_ID.get(model)
    if stmt is None:  # (a race builds it twice, harmlessly)
        stmt = _BY_ID[model] = select(model).where(model.id == bindparam("id"))  # type: ignore[attr-defined]
    return stmt
