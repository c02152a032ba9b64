"""What every retriever returns and the Protocol it implements.

>>> h = Hit(chunk_id="c1", doc_id="d1", score=1.5, text="aspirin", rank=1)
>>> h.to_dict()["doc_id"]
'd1'
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Protocol, runtime_checkable

from clinrag.ner.schema import Entity


@dataclass(frozen=True)
class Hit:
    """One search result: a chunk of a document, with its score and where it came from;
    ``entities`` are the chunk's entities when the index was built with NER."""

    chunk_id: str
    doc_id: str
    score: float
    text: str
    rank: int = 0
    title: str = ""
    section: str = ""
    source: str = ""
    kind: str = ""
    patient_id: str | None = None
    encounter_id: str | None = None
    timestamp: dt.datetime | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    stage_scores: Mapping[str, float] = field(default_factory=dict)
    entities: tuple[Entity, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "metadata", MappingProxyType(dict(self.metadata)))
        object.__setattr__(self, "stage_scores", MappingProxyType(dict(self.stage_scores)))

    def to_dict(self) -> dict[str, Any]:
        """The stable JSON form printed by ``clinrag search --json``."""
        meta = dict(self.metadata)
        meta.update({
            "patient_id": self.patient_id,
            "encounter_id": self.encounter_id,
            "timestamp": self.timestamp.isoformat() if self.timestamp else None,
            "source": self.source,
            "section": self.section,
            "kind": self.kind,
            "title": self.title,
        })
        return {
            "rank": self.rank,
            "doc_id": self.doc_id,
            "chunk_id": self.chunk_id,
            "score": float(self.score),
            "text": self.text,
            "metadata": meta,
            "stage_scores": {k: float(v) for k, v in self.stage_scores.items()},
            **({"entities": [e.to_dict() for e in self.entities]} if self.entities else {}),
        }


@dataclass(frozen=True)
class Scored:
    """A retriever's raw result: a chunk id and its score (higher is better).

    ``stages`` holds the scores of the stages that produced it (e.g. ``bm25`` and ``late``
    under hybrid fusion), as ``(name, score)`` pairs.
    """

    chunk_id: str
    score: float
    stages: tuple[tuple[str, float], ...] = ()


@runtime_checkable
class Retriever(Protocol):
    """A first-stage retriever over an index's chunks.

    ``allowed`` restricts the result to those chunk ids (filters are resolved by the
    store before the retriever runs, so a filtered search still returns up to ``k``).
    """

    name: str

    def search(self, queries: Sequence[str], k: int,
               allowed: frozenset[str] | None = None) -> list[list[Scored]]: ...


__all__ = ["Hit", "Retriever", "Scored"]
