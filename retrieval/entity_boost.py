"""Entity-aware re-scoring: candidates sharing the query's entities move up, but only when the
assertion is compatible, so a query about pneumonia is not boosted by "no evidence of pneumonia".

>>> from clinrag.ner.schema import Entity
>>> q = [Entity("pneumonia", "Disease", 0, 9)]
>>> cands = [Scored("neg", 2.0), Scored("pos", 1.5)]
>>> ents = {"neg": [Entity("pneumonia", "Disease", 15, 24, negated=True)],
...         "pos": [Entity("Pneumonia", "Disease", 0, 9)]}
>>> [s.chunk_id for s in entity_boost(cands, q, ents, weight=1.5)]
['pos', 'neg']
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from clinrag.ner.schema import Entity, term_keys
from clinrag.retrieval.base import Scored


def compatible(query: Entity, chunk: Entity) -> bool:
    """Same concept (one's normalised form is the other's or one of its words) and the same
    negation and family-history status."""
    if query.negated != chunk.negated or query.family != chunk.family:
        return False
    q, c = query.normalized, chunk.normalized
    return bool(q and c) and (q == c or q in term_keys(c) or c in term_keys(q))


def entity_match(query: Sequence[Entity], chunk: Sequence[Entity]) -> float:
    """Share of the query's entities that some chunk entity matches compatibly (0..1)."""
    if not query:
        return 0.0
    return sum(any(compatible(q, c) for c in chunk) for q in query) / len(query)


def entity_boost(candidates: Sequence[Scored], query: Sequence[Entity],
                 chunk_entities: Mapping[str, Sequence[Entity]], weight: float = 0.3) -> list[Scored]:
    """Re-rank: score divided by the best score (min-max normalised if any score is negative)
    plus ``weight`` x :func:`entity_match`, best first.

    Candidates keep their stage scores and gain an ``entity`` stage (the match share).
    Without query entities the order is unchanged.
    """
    if not query or not candidates or weight <= 0:
        return list(candidates)
    scores = [c.score for c in candidates]
    lo, hi = min(scores), max(scores)
    if lo >= 0:
        lo = 0.0
    out = []
    for c in candidates:
        base = (c.score - lo) / (hi - lo) if hi > lo else 1.0
        m = entity_match(query, chunk_entities.get(c.chunk_id, ()))
        stages = c.stages or ((("score", c.score)),)
        out.append(Scored(c.chunk_id, base + weight * m, (*stages, ("entity", m))))
    return sorted(out, key=lambda s: -s.score)


__all__ = ["compatible", "entity_boost", "entity_match"]
