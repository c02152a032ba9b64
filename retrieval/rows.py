"""Hits and documents from stored LanceDB rows (the ``chunks`` and ``documents`` tables).

>>> from clinrag.retrieval.base import Scored
>>> row = {"chunk_id": "d1#0", "doc_id": "d1", "text": "Metformin.", "title": None, "section": "plan",
...        "source": None, "kind": "note", "patient_id": "p1", "encounter_id": None, "timestamp": None,
...        "meta_json": '{"ward": "4B"}'}
>>> h = hit_from_row(row, Scored("d1#0", 2.5), 1, "lexical")
>>> (h.doc_id, h.section, dict(h.metadata), dict(h.stage_scores))
('d1', 'plan', {'ward': '4B'}, {'lexical': 2.5})
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from clinrag.data.schema import Document
from clinrag.indexing.store import ENTITIES_JSON
from clinrag.ner.schema import Entity
from clinrag.retrieval.base import Hit, Scored

HIT_COLUMNS = ("chunk_id", "doc_id", "text", "title", "section", "source", "kind", "patient_id", "encounter_id",
               "timestamp", "meta_json")


def hit_from_row(row: Mapping[str, Any], s: Scored, rank: int, stage: str) -> Hit:
    """The :class:`Hit` of a ``chunks`` row scored ``s``; ``stage`` names the score when ``s`` has no stages."""
    return Hit(
        chunk_id=row["chunk_id"], doc_id=row["doc_id"], score=s.score, text=row["text"], rank=rank,
        title=row["title"] or "", section=row["section"] or "", source=row["source"] or "",
        kind=row["kind"] or "", patient_id=row["patient_id"], encounter_id=row["encounter_id"],
        timestamp=row["timestamp"], metadata=json.loads(row["meta_json"] or "{}"),
        stage_scores=dict(s.stages) if s.stages else {stage: s.score}, entities=tuple(row_entities(row)),
    )


def row_entities(row: Mapping[str, Any]) -> list[Entity]:
    """The entities stored with a ``chunks`` row (none when the index was built without NER)."""
    raw = row.get(ENTITIES_JSON)
    return [Entity.from_dict(d) for d in json.loads(raw)] if raw else []


def document_from_row(row: Mapping[str, Any]) -> Document:
    """The :class:`Document` of a ``documents`` row."""
    return Document(id=row["doc_id"], text=row["text"], title=row["title"] or "", source=row["source"] or "",
                    kind=row["kind"] or "document", patient_id=row["patient_id"], timestamp=row["timestamp"],
                    encounter_id=row["encounter_id"], metadata=json.loads(row["meta_json"] or "{}"))


__all__ = ["HIT_COLUMNS", "document_from_row", "hit_from_row", "row_entities"]
