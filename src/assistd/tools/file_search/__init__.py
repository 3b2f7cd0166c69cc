"""file_search: text extraction, chunking, embeddings, Chroma storage and hybrid retrieval.

The vector store resources (tables, API, ingestion worker) live in services/vector_stores*.py and use
these pieces; `container.extras["file_search"]` is services.vector_stores.VectorStoreService."""

from assistd.tools.file_search.retrieval import SearchHit

__all__ = ["SearchHit"]
