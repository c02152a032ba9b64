"""Hybrid retrieval: lexical (BM25) and late-interaction results fused per query.

Each retriever returns its top ``depth`` (at least ``k``) for the query under the same
filter; the lists are fused with :func:`clinrag.retrieval.fusion.fuse` (normalised score
sum by default, or reciprocal-rank fusion) and cut to ``k``. A chunk found by only one
retriever keeps its share of the fused score.
"""

from __future__ import annotations

from collections.abc import Sequence

from clinrag.retrieval.base import Retriever, Scored
from clinrag.retrieval.fusion import fuse


class HybridRetriever:
    """Fuses the rankings of several retrievers (by default BM25 + late interaction)."""

    name = "hybrid"

    def __init__(self, retrievers: Sequence[Retriever], *, weights: Sequence[float] | None = None,
                 method: str = "wsum", depth: int = 100) -> None:
        self.retrievers = list(retrievers)
        self.weights = list(weights) if weights is not None else [1.0] * len(self.retrievers)
        self.method = method
        self.depth = depth

    def search(self, queries: Sequence[str], k: int, allowed: frozenset[str] | None = None) -> list[list[Scored]]:
        depth = max(k, self.depth)
        per = [r.search(queries, depth, allowed) for r in self.retrievers]
        out = []
        for i in range(len(queries)):
            lists = [p[i] for p in per]
            by_stage = [(r.name, {s.chunk_id: s.score for s in lst}) for r, lst in zip(self.retrievers, lists,
                                                                                      strict=True)]
            fused = fuse(lists, method=self.method, weights=self.weights, k=k)
            out.append([Scored(f.chunk_id, f.score, tuple((name, sc[f.chunk_id]) for name, sc in by_stage
                                                         if f.chunk_id in sc) + ((self.name, f.score),))
                        for f in fused])
        return out


__all__ = ["HybridRetriever"]
