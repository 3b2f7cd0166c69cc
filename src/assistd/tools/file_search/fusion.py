"""Hybrid ranking: vector similarity and BM25 fused into one 0-1 score.

score = VECTOR_WEIGHT * cosine + (1 - VECTOR_WEIGHT) * bm25 / max_bm25, over the union of both candidate
lists. A weighted sum of normalised scores (rather than reciprocal-rank fusion) keeps the absolute meaning
of the cosine similarity, so `score_threshold` filters weak matches instead of merely low ranks; the BM25
part lifts chunks that contain the query's exact rare words (names, codes, numbers).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping

VECTOR_WEIGHT = 0.7


def fuse(
    vector: Mapping[Hashable, float], keyword: Mapping[Hashable, float], vector_weight: float = VECTOR_WEIGHT
) -> dict[Hashable, float]:
    """Fused 0-1 scores for every candidate in either map (a missing score counts as 0)."""
    top_keyword = max(keyword.values(), default=0.0)
    fused: dict[Hashable, float] = {}
    for key in {*vector, *keyword}:
        similarity = min(1.0, max(0.0, vector.get(key, 0.0)))
        lexical = keyword.get(key, 0.0) / top_keyword if top_keyword > 0 else 0.0
        fused[key] = vector_weight * similarity + (1 - vector_weight) * lexical
    return fused


def ranked(scores: Mapping[Hashable, float], threshold: float, limit: int) -> list[tuple[Hashable, float]]:
    """The best `limit` (key, score) pairs at or above `threshold`, best first."""
    kept = [(key, score) for key, score in scores.items() if score >= threshold]
    kept.sort(key=lambda item: (-item[1], str(item[0])))
    return kept[:limit]
