"""What a review run returns: frozen records per question, and the run as a whole.

>>> r = ReviewRecord(rank=1, doc_id="pubmed:1", title="T", year=2001, score=0.03, formulation_ranks=(1, None))
>>> r.to_row(("f1", "f2"))["rank_f2"] is None, r.flagged
(True, False)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from clinrag.review.criteria import Flag

#: Columns of the ranked tables, before the per-formulation ``rank_f<i>`` columns.
LEAD_COLUMNS = ("rank", "id", "title", "year", "score", "pmid", "doi", "status")
TAIL_COLUMNS = ("matched_entities", "flag_reasons", "snippets", "duplicates", "criteria_json")


@dataclass(frozen=True)
class ReviewRecord:
    """One de-duplicated record of a question's ranking.

    ``formulation_ranks[i]`` is the record's rank under formulation ``i`` (None: not retrieved);
    ``flags`` holds every criterion's outcome; ``duplicates`` the ``(id, reason)`` merged into it.
    """

    rank: int
    doc_id: str
    title: str
    year: int | None
    score: float
    formulation_ranks: tuple[int | None, ...]
    pmid: str | None = None
    doi: str | None = None
    matched_entities: tuple[str, ...] = ()
    flags: tuple[Flag, ...] = ()
    snippets: tuple[str, ...] = ()
    duplicates: tuple[tuple[str, str], ...] = ()

    @property
    def flagged(self) -> bool:
        """True when any criterion asks for a screener's attention (see :attr:`Flag.flagged`)."""
        return any(f.flagged for f in self.flags)

    @property
    def status(self) -> str:
        return "flagged" if self.flagged else "ok"

    def to_row(self, formulations: Sequence[str]) -> dict[str, Any]:
        """The table row (CSV and Parquet): lists stay lists here; the CSV writer joins them."""
        import json

        row: dict[str, Any] = {"rank": self.rank, "id": self.doc_id, "title": self.title, "year": self.year,
                               "score": self.score, "pmid": self.pmid, "doi": self.doi, "status": self.status}
        for i in range(len(formulations)):
            row[f"rank_f{i + 1}"] = self.formulation_ranks[i] if i < len(self.formulation_ranks) else None
        row["matched_entities"] = list(self.matched_entities)
        row["flag_reasons"] = [f.describe() for f in self.flags if f.flagged]
        row["snippets"] = list(self.snippets)
        row["duplicates"] = [f"{i} ({why})" for i, why in self.duplicates]
        row["criteria_json"] = json.dumps([{"criterion": f.criterion, "role": f.role, "status": f.status,
                                            "reason": f.reason} for f in self.flags], ensure_ascii=False)
        return row

    @classmethod
    def from_row(cls, row: Mapping[str, Any], n_formulations: int) -> ReviewRecord:
        """Rebuild a record from a Parquet row written by :meth:`to_row` (resuming a run)."""
        import json
        import re

        flags = tuple(Flag(f["criterion"], f["role"], f["status"], f["reason"])
                      for f in json.loads(row["criteria_json"] or "[]"))
        dups = []
        for d in row["duplicates"] or []:
            m = re.match(r"^(.*) \((.*)\)$", d)
            dups.append((m.group(1), m.group(2)) if m else (d, "duplicate"))
        ranks = tuple(None if row[f"rank_f{i + 1}"] is None else int(row[f"rank_f{i + 1}"])
                      for i in range(n_formulations))
        year = row["year"]
        return cls(rank=int(row["rank"]), doc_id=row["id"], title=row["title"] or "",
                   year=None if year is None else int(year), score=float(row["score"]), formulation_ranks=ranks,
                   pmid=row["pmid"], doi=row["doi"], matched_entities=tuple(row["matched_entities"] or ()),
                   flags=flags, snippets=tuple(row["snippets"] or ()), duplicates=tuple(dups))


@dataclass(frozen=True)
class QuestionResult:
    """The ranked, de-duplicated, flagged records of one question and how they were made.

    ``n_retrieved`` counts distinct records before de-duplication; ``seconds`` holds the
    ``search``, ``fuse``, ``fetch`` and ``write`` times; ``resumed`` is true when the result was
    read back from a previous (interrupted) run instead of being searched again.
    """

    question_id: str
    formulations: tuple[str, ...]
    records: tuple[ReviewRecord, ...]
    n_retrieved: int
    seconds: Mapping[str, float] = field(default_factory=dict)
    resumed: bool = False
    files: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "seconds", MappingProxyType(dict(self.seconds)))
        object.__setattr__(self, "files", MappingProxyType(dict(self.files)))

    @property
    def doc_ids(self) -> list[str]:
        return [r.doc_id for r in self.records]


@dataclass(frozen=True)
class ReviewResult:
    """A whole review run: every question's result and the run manifest (also ``OUT/manifest.json``)."""

    protocol_name: str
    protocol_sha256: str
    mode: str
    questions: tuple[QuestionResult, ...]
    manifest: Mapping[str, Any] = field(default_factory=dict)
    out: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "manifest", MappingProxyType(dict(self.manifest)))

    def question(self, question_id: str) -> QuestionResult:
        for q in self.questions:
            if q.question_id == question_id:
                return q
        raise KeyError(f"no question {question_id!r} in this review; it has {[q.question_id for q in self.questions]}")


__all__ = ["LEAD_COLUMNS", "TAIL_COLUMNS", "QuestionResult", "ReviewRecord", "ReviewResult"]
