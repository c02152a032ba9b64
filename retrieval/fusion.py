"""Fusion of ranked lists (hybrid search): reciprocal-rank fusion and normalised score sums.

Two documented methods, the same as ranx's ``rrf`` and ``wsum`` with ``min-max`` norm:

- ``rrf``: ``score(d) = sum_i w_i / (k + rank_i(d))`` (Cormack et al., 2009), ``k = 60``;
- ``wsum`` (default): each list's scores are min-max normalised to [0, 1] over its own
  results, then ``score(d) = sum_i w_i * norm_i(d)``; a document absent from a list gets 0 there.

>>> a = [Scored("x", 10.0), Scored("y", 5.0)]
>>> b = [Scored("y", 0.9), Scored("z", 0.1)]
>>> [s.chunk_id for s in fuse([a, b], method="rrf")]
['y', 'x', 'z']
>>> [(s.chunk_id, round(s.score, 2)) for s in fuse([a, b], weights=[0.5, 0.5])]
[('x', 0.5), ('y', 0.5), ('z', 0.0)]
"""

from __future__ import annotations

from collections.abc import Sequence

from clinrag.errors import ConfigError
from clinrag.retrieval.base import Scored

METHODS = ("wsum", "rrf")


def scale(values: Sequence[float]) -> list[float]:
    """Scores on a 0-1 scale: divided by the best when none is negative, else min-max (all equal
    and not positive: 0).

    >>> scale([2.0, 1.0]), scale([-1.0, 1.0]), scale([0.0, 0.0])
    ([1.0, 0.5], [0.0, 1.0], [0.0, 0.0])
    """
    lo, hi = min(values, default=0.0), max(values, default=0.0)
    if lo >= 0 and hi > 0:
        return [v / hi for v in values]
    return [0.0 if hi == lo else (v - lo) / (hi - lo) for v in values]


def fuse(lists: Sequence[Sequence[Scored]], *, method: str = "wsum", weights: Sequence[float] | None = None,
         k: int | None = None, rrf_k: int = 60) -> list[Scored]:
    """Fuse ranked lists of the same query into one, best first (ties broken by first list order)."""
    if method not in METHODS:
        raise ConfigError(f"unknown fusion method {method!r}; choose one of {', '.join(METHODS)}")
    weights = list(weights) if weights is not None else [1.0] * len(lists)
    if len(weights) != len(lists):
        raise ConfigError(f"{len(weights)} fusion weights for {len(lists)} ranked lists")
    total: dict[str, float] = {}
    for lst, w in zip(lists, weights, strict=True):
        if not lst:
            continue
        if method == "rrf":
            for rank, s in enumerate(lst, 1):
                total[s.chunk_id] = total.get(s.chunk_id, 0.0) + w / (rrf_k + rank)
        else:
            hi = max(s.score for s in lst)
            lo = min(s.score for s in lst)
            span = hi - lo
            for s in lst:
                norm = (s.score - lo) / span if span > 0 else 1.0
                total[s.chunk_id] = total.get(s.chunk_id, 0.0) + w * norm
    fused = sorted(total.items(), key=lambda kv: -kv[1])  # stable: first-seen order on ties
    if k is not None:
        fused = fused[:k]
    return [Scored(cid, score) for cid, score in fused]


__all__ = ["METHODS", "fuse", "scale"]
