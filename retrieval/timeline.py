"""A patient's dated events (notes, rendered structured resources, images), in time order.

>>> import tempfile
>>> from clinrag import Document, Engine
>>> with Engine.create(tempfile.mkdtemp() + "/idx") as eng:
...     _ = eng.add([Document(id="n2", text="HbA1c 9", kind="observation", patient_id="p1",
...                           timestamp=dt.datetime(2019, 1, 1)),
...                  Document(id="n1", text="Diabetes diagnosed", kind="condition", patient_id="p1",
...                           timestamp=dt.datetime(2015, 1, 1))])
...     [e.doc_id for e in eng.timeline("p1")]
['n1', 'n2']
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from clinrag.indexing.filters import Filters, parse_time
from clinrag.indexing.store import LanceStore


@dataclass(frozen=True)
class TimelineEvent:
    """One dated record of a patient: a document (note or rendered resource) or an image."""

    doc_id: str
    kind: str
    title: str
    text: str
    timestamp: dt.datetime | None
    encounter_id: str | None = None
    source: str = ""
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "metadata", MappingProxyType(dict(self.metadata)))

    def to_dict(self) -> dict[str, Any]:
        return {"doc_id": self.doc_id, "kind": self.kind, "title": self.title, "text": self.text,
                "timestamp": self.timestamp.isoformat() if self.timestamp else None,
                "encounter_id": self.encounter_id, "source": self.source, "metadata": dict(self.metadata)}


def build_timeline(store: LanceStore, patient_id: str, since: str | dt.datetime | None = None,
                   until: str | dt.datetime | None = None, kinds: Sequence[str] | None = None,
                   *, undated: bool = False) -> list[TimelineEvent]:
    """The events of ``patient_id`` between ``since`` and ``until`` (dates or ``6m``-style durations),
    of the given ``kinds`` (e.g. ``["condition", "note", "image"]``), oldest first. Undated records
    are left out unless ``undated`` (then they come last)."""
    filters = Filters(patient_id=patient_id, since=parse_time(since, field_name="since"),
                      until=parse_time(until, field_name="until"), kind=list(kinds) if kinds else None)
    events: list[TimelineEvent] = []
    doc_cols = ["doc_id", "kind", "title", "text", "timestamp", "encounter_id", "source", "meta_json"]
    for row in store.scan("documents", doc_cols, filters.to_sql(table="documents")).to_pylist():
        events.append(TimelineEvent(row["doc_id"], row["kind"] or "", row["title"] or "", row["text"] or "",
                                    row["timestamp"], row["encounter_id"], row["source"] or "",
                                    json.loads(row["meta_json"] or "{}")))
    img_cols = ["image_id", "caption", "modality", "path", "timestamp", "encounter_id", "source", "meta_json"]
    for row in store.scan("images", img_cols, filters.to_sql(table="images")).to_pylist():
        meta = json.loads(row["meta_json"] or "{}")
        meta.setdefault("path", row["path"])
        events.append(TimelineEvent(row["image_id"], "image", row["modality"] or "image", row["caption"] or "",
                                    row["timestamp"], row["encounter_id"], row["source"] or "", meta))
    if not undated:
        events = [e for e in events if e.timestamp is not None]
    events.sort(key=lambda e: (e.timestamp is None, e.timestamp or dt.datetime.max, e.kind, e.doc_id))
    return events


__all__ = ["TimelineEvent", "build_timeline"]
