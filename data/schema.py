"""The records clinrag ingests, chunks and indexes.

All records are frozen dataclasses. Every record carries its patient context
(``patient_id``, ``timestamp``, ``encounter_id``) where it is known, so filters
and timelines work the same for notes, structured evidence and images.

>>> doc = Document(id="pmid:1", text="Aspirin lowers risk.", title="Aspirin", source="pubmed")
>>> doc.kind
'document'
>>> c = Chunk.make(doc, "Aspirin lowers risk.", position=0, span=(0, 20))
>>> c.id == Chunk.make(doc, "Aspirin lowers risk.", position=0, span=(0, 20)).id
True
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

MetaValue = str | int | float | bool | None | list | tuple


def _frozen(meta: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return MappingProxyType(dict(meta or {}))


def to_utc(ts: dt.datetime | dt.date | None) -> dt.datetime | None:
    """Normalise a date or datetime to a naive UTC datetime (the stored form).

    >>> to_utc(dt.datetime(2020, 1, 1, 12, tzinfo=dt.timezone(dt.timedelta(hours=2))))
    datetime.datetime(2020, 1, 1, 10, 0)
    >>> to_utc(dt.date(2020, 1, 1))
    datetime.datetime(2020, 1, 1, 0, 0)
    """
    if ts is None:
        return None
    if isinstance(ts, dt.datetime):
        if ts.tzinfo is not None:
            ts = ts.astimezone(dt.timezone.utc).replace(tzinfo=None)
        return ts
    return dt.datetime(ts.year, ts.month, ts.day)


@dataclass(frozen=True)
class Section:
    """A labelled span of a document's text (``text[start:end]``)."""

    name: str
    start: int
    end: int


@dataclass(frozen=True)
class Document:
    """A text record: an abstract, a note, or a structured resource rendered as text."""

    id: str
    text: str
    title: str = ""
    source: str = ""
    kind: str = "document"
    patient_id: str | None = None
    timestamp: dt.datetime | None = None
    encounter_id: str | None = None
    sections: tuple[Section, ...] = ()
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "metadata", _frozen(self.metadata))
        object.__setattr__(self, "timestamp", to_utc(self.timestamp))
        object.__setattr__(self, "sections", tuple(self.sections))

    @property
    def content_hash(self) -> str:
        """A hash of everything that is indexed; a changed document gets new chunks."""
        h = hashlib.sha1()
        for part in (self.id, self.title, self.text, self.source, self.kind, self.patient_id or "",
                     self.timestamp.isoformat() if self.timestamp else "", self.encounter_id or "",
                     repr(sorted((k, repr(v)) for k, v in self.metadata.items()))):
            h.update(part.encode("utf-8", "surrogatepass"))
            h.update(b"\x1f")
        return h.hexdigest()


@dataclass(frozen=True)
class Chunk:
    """A retrievable piece of a :class:`Document`, with a stable id from content and position."""

    id: str
    doc_id: str
    text: str
    position: int
    span: tuple[int, int]
    section: str = ""
    title: str = ""
    source: str = ""
    kind: str = "document"
    patient_id: str | None = None
    timestamp: dt.datetime | None = None
    encounter_id: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "metadata", _frozen(self.metadata))

    @staticmethod
    def stable_id(doc_id: str, text: str, position: int) -> str:
        """``sha1(doc_id, position, text)``, shortened: the same content gets the same id."""
        h = hashlib.sha1(f"{doc_id}\x1f{position}\x1f{text}".encode("utf-8", "surrogatepass"))
        return h.hexdigest()[:24]

    @classmethod
    def make(cls, doc: Document, text: str, *, position: int, span: tuple[int, int],
             section: str = "") -> Chunk:
        """Build a chunk of ``doc`` that inherits its patient context and metadata."""
        return cls(
            id=cls.stable_id(doc.id, text, position), doc_id=doc.id, text=text, position=position,
            span=span, section=section, title=doc.title, source=doc.source, kind=doc.kind,
            patient_id=doc.patient_id, timestamp=doc.timestamp, encounter_id=doc.encounter_id,
            metadata=doc.metadata,
        )


@dataclass(frozen=True)
class ImageRecord:
    """A medical image on disk with its caption, report or notes."""

    id: str
    path: str
    modality: str = ""
    caption: str = ""
    source: str = ""
    patient_id: str | None = None
    timestamp: dt.datetime | None = None
    encounter_id: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "metadata", _frozen(self.metadata))
        object.__setattr__(self, "timestamp", to_utc(self.timestamp))


Record = Document | ImageRecord

__all__ = ["Chunk", "Document", "ImageRecord", "MetaValue", "Record", "Section", "to_utc"]
