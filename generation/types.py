"""The frozen results of answering: numbered evidence, per-sentence citations, the answer.

>>> ev = Evidence(n=1, chunk_id="c1", doc_id="d1", text="Metformin was started.")
>>> s = SentenceCheck("Metformin was started [1].", citations=(1,), support=1.0, supported=True)
>>> a = Answer(question="q", text=s.sentence, evidence=(ev,), sentences=(s,))
>>> a.citations, a.to_dict()["abstained"]
([[1]], False)
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any


@dataclass(frozen=True)
class Evidence:
    """One numbered piece of evidence given to the answerer (``[n]`` in the prompt and answer)."""

    n: int
    chunk_id: str
    doc_id: str
    text: str
    score: float = 0.0
    title: str = ""
    section: str = ""
    source: str = ""
    kind: str = ""
    patient_id: str | None = None
    timestamp: dt.datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.n, "doc_id": self.doc_id, "chunk_id": self.chunk_id, "text": self.text,
                "score": float(self.score), "title": self.title, "section": self.section, "source": self.source,
                "kind": self.kind, "patient_id": self.patient_id,
                "date": self.timestamp.date().isoformat() if self.timestamp else None}


@dataclass(frozen=True)
class SentenceCheck:
    """One answer sentence, the evidence it cites, and how well that evidence supports it.

    ``dropped`` lists citations to evidence numbers that were not given (removed from
    ``citations``); ``support`` is the score of :mod:`clinrag.generation.support`.
    """

    sentence: str
    citations: tuple[int, ...] = ()
    support: float = 0.0
    supported: bool = False
    dropped: tuple[int, ...] = ()
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"sentence": self.sentence, "citations": list(self.citations), "support": round(self.support, 4),
                "supported": self.supported, "dropped": list(self.dropped), "note": self.note}


@dataclass(frozen=True)
class Answer:
    """A grounded answer. ``abstained`` answers carry the ``reason`` instead of a claim.

    ``text`` is the answer shown to the user (with ``[n]`` markers); ``raw`` is the model's
    output before checking; ``timings`` holds seconds (``retrieval``, ``first_token``,
    ``generation``, ``checking``, ``total``).
    """

    question: str
    text: str
    evidence: tuple[Evidence, ...] = ()
    sentences: tuple[SentenceCheck, ...] = ()
    abstained: bool = False
    reason: str = ""
    mode: str = "extractive"
    model: str = ""
    raw: str = ""
    timings: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "timings", MappingProxyType(dict(self.timings)))

    @property
    def citations(self) -> list[list[int]]:
        """Evidence numbers cited by each sentence, in order."""
        return [list(s.citations) for s in self.sentences]

    @property
    def cited(self) -> tuple[Evidence, ...]:
        """The evidence cited anywhere in the answer, in evidence order."""
        used = {n for s in self.sentences for n in s.citations}
        return tuple(e for e in self.evidence if e.n in used)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form printed by ``clinrag ask --json``."""
        return {"question": self.question, "answer": self.text, "citations": self.citations,
                "evidence": [e.to_dict() for e in self.evidence], "abstained": self.abstained,
                "reason": self.reason, "timings": {k: round(v, 4) for k, v in self.timings.items()},
                "sentences": [s.to_dict() for s in self.sentences], "mode": self.mode, "model": self.model}


__all__ = ["Answer", "Evidence", "SentenceCheck"]
