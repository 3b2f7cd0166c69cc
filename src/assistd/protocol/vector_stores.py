"""Vector stores, their files, file batches, search: requests and responses (API_SURFACE.md §1-2)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    ValidationInfo,
    field_validator,
    model_validator,
)

from assistd.protocol.base import (
    METADATA_MAX_KEY,
    METADATA_MAX_KEYS,
    METADATA_MAX_VALUE,
    Metadata,
    RequestModel,
    WireModel,
)
from assistd.tools.file_search.chunking import ChunkingSpec, check_static

# ------------------------------------------------------------------------------------------ request parts


class AutoChunking(WireModel):
    type: Literal["auto"]


class StaticChunkingNumbers(WireModel):
    max_chunk_size_tokens: StrictInt
    chunk_overlap_tokens: StrictInt

    @field_validator("max_chunk_size_tokens")
    @classmethod
    def _size(cls, value: int) -> int:
        check_static(value, 0)
        return value

    @field_validator("chunk_overlap_tokens")
    @classmethod
    def _overlap(cls, value: int, info: ValidationInfo) -> int:
        size = info.data.get("max_chunk_size_tokens")
        if size is not None:
            check_static(size, value)
        elif value < 0:
            raise ValueError(f"chunk_overlap_tokens must not be negative, got {value}")
        return value


class StaticChunking(WireModel):
    type: Literal["static"]
    static: StaticChunkingNumbers


ChunkingStrategy = Annotated[AutoChunking | StaticChunking, Field(discriminator="type")]


def chunking_spec(strategy: AutoChunking | StaticChunking | None) -> ChunkingSpec:
    if isinstance(strategy, StaticChunking):
        return ChunkingSpec(
            strategy.static.max_chunk_size_tokens, strategy.static.chunk_overlap_tokens, False
        )
    return ChunkingSpec()


def _check_attributes(value: dict[str, Any] | None) -> dict[str, Any] | None:
    if value is None:
        return None
    if len(value) > METADATA_MAX_KEYS:
        raise ValueError(f"attributes may hold at most {METADATA_MAX_KEYS} keys, got {len(value)}")
    for key, item in value.items():
        if len(key) > METADATA_MAX_KEY:
            raise ValueError(f"attribute keys are at most {METADATA_MAX_KEY} characters ('{key[:20]}…')")
        if isinstance(item, str) and len(item) > METADATA_MAX_VALUE:
            raise ValueError(f"attribute values are at most {METADATA_MAX_VALUE} characters (key '{key}')")
    return value


AttributeValue = StrictBool | StrictInt | StrictFloat | str
Attributes = Annotated[dict[str, AttributeValue] | None, AfterValidator(_check_attributes)]


class ExpiresAfter(WireModel):
    anchor: Literal["last_active_at"]
    days: StrictInt = Field(ge=1, le=365)


class ComparisonFilter(WireModel):
    key: str
    type: Literal["eq", "ne", "gt", "gte", "lt", "lte", "in", "nin"]
    value: AttributeValue | list[StrictInt | StrictFloat | str]

    @field_validator("value")
    @classmethod
    def _lists(cls, value: Any, info: ValidationInfo) -> Any:
        kind = info.data.get("type")
        if kind in ("in", "nin") and not isinstance(value, list):
            raise ValueError(f"'{kind}' filters take a list of values")
        if kind not in ("in", "nin") and isinstance(value, list):
            raise ValueError(f"'{kind}' filters take a single value, not a list")
        return value


class CompoundFilter(WireModel):
    type: Literal["and", "or"]
    filters: list[ComparisonFilter | CompoundFilter] = Field(min_length=1)


Filter = Annotated[ComparisonFilter | CompoundFilter, Field(union_mode="left_to_right")]


class SearchRankingOptions(WireModel):
    ranker: Literal["none", "auto", "default-2024-11-15"] = "auto"
    score_threshold: float = Field(0.0, ge=0, le=1)


# --------------------------------------------------------------------------------------------- requests


class VectorStoreCreate(RequestModel):
    name: str | None = None
    description: str | None = None
    file_ids: list[str] | None = Field(None, max_length=500)
    chunking_strategy: ChunkingStrategy | None = None
    expires_after: ExpiresAfter | None = None
    metadata: Metadata = None


class VectorStoreUpdate(RequestModel):
    name: str | None = None
    expires_after: ExpiresAfter | None = None
    metadata: Metadata = None


class VectorStoreFileCreate(RequestModel):
    file_id: str
    attributes: Attributes = None
    chunking_strategy: ChunkingStrategy | None = None


class VectorStoreFileUpdate(RequestModel):
    attributes: Attributes


class BatchFileSpec(WireModel):
    file_id: str
    attributes: Attributes = None
    chunking_strategy: ChunkingStrategy | None = None


class FileBatchCreate(RequestModel):
    file_ids: list[str] | None = Field(None, min_length=1, max_length=2000)
    files: list[BatchFileSpec] | None = Field(None, min_length=1, max_length=2000)
    attributes: Attributes = None
    chunking_strategy: ChunkingStrategy | None = None

    @model_validator(mode="after")
    def _one_form(self) -> FileBatchCreate:
        if (self.file_ids is None) == (self.files is None):
            raise ValueError("provide exactly one of 'file_ids' and 'files'")
        return self

    def specs(self) -> list[BatchFileSpec]:
        if self.files is not None:
            return self.files
        return [
            BatchFileSpec(file_id=f, attributes=self.attributes, chunking_strategy=self.chunking_strategy)
            for f in self.file_ids or []
        ]


class VectorStoreSearch(RequestModel):
    query: str | Annotated[list[str], Field(min_length=1)]
    filters: Filter | None = None
    max_num_results: StrictInt = Field(10, ge=1, le=50)
    ranking_options: SearchRankingOptions | None = None
    rewrite_query: bool = False

    def queries(self) -> list[str]:
        return [self.query] if isinstance(self.query, str) else list(self.query)


# -------------------------------------------------------------------------------------------- responses


class FileCounts(BaseModel):
    in_progress: int = 0
    completed: int = 0
    failed: int = 0
    cancelled: int = 0
    total: int = 0


class VectorStoreObject(BaseModel):
    id: str
    object: Literal["vector_store"] = "vector_store"
    created_at: int
    name: str
    usage_bytes: int
    file_counts: FileCounts
    status: Literal["expired", "in_progress", "completed"]
    expires_after: dict[str, Any] | None
    expires_at: int | None
    last_active_at: int | None
    metadata: dict[str, str]


class VectorStoreFileObject(BaseModel):
    id: str
    object: Literal["vector_store.file"] = "vector_store.file"
    created_at: int
    vector_store_id: str
    status: Literal["in_progress", "completed", "cancelled", "failed"]
    usage_bytes: int
    last_error: dict[str, str] | None
    chunking_strategy: dict[str, Any] | None
    attributes: dict[str, Any] | None


class VectorStoreFileBatchObject(BaseModel):
    id: str
    object: Literal["vector_store.files_batch"] = "vector_store.files_batch"
    created_at: int
    vector_store_id: str
    status: Literal["in_progress", "completed", "cancelled", "failed"]
    file_counts: FileCounts


class TextContent(BaseModel):
    type: Literal["text"] = "text"
    text: str


class SearchResult(BaseModel):
    file_id: str
    filename: str
    score: float
    attributes: dict[str, Any] | None
    content: list[TextContent]


class SearchPage(BaseModel):
    object: Literal["vector_store.search_results.page"] = "vector_store.search_results.page"
    search_query: list[str]
    data: list[SearchResult]
    has_more: bool = False
    next_page: str | None = None


class FileContentPage(BaseModel):
    object: Literal["vector_store.file_content.page"] = "vector_store.file_content.page"
    data: list[TextContent]
    has_more: bool = False
    next_page: str | None = None
