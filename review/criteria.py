"""Inclusion and exclusion criteria, applied to a retrieved record as flags with reasons.

Nothing is dropped: every record keeps its place in the ranking and carries one :class:`Flag`
per criterion saying whether it passed, failed or could not be decided (a missing field).

>>> from clinrag.review.protocol import Criterion
>>> rec = RecordView(doc_id="d1", title="Metformin in adults", text="An RCT of metformin.",
...                  year=2012, metadata={"publication_type": "Randomized Controlled Trial"})
>>> f = check(Criterion(terms=["metformin"]), rec, "include")
>>> f.status, f.reason
('pass', "found 'metformin'")
>>> check(Criterion(years={"from": 2015}), rec, "include").status
'fail'
>>> check(Criterion(entities=["metformin"]), rec, "include").reason
"found 'metformin' (as a term: the index has no entities)"
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Literal

from clinrag.review.protocol import Criterion

Status = Literal["pass", "fail", "unknown"]


@dataclass(frozen=True)
class Entity:
    """A recognised entity of a record (as carried by chunks once NER has run)."""

    text: str
    label: str = ""
    negated: bool = False


@dataclass(frozen=True)
class RecordView:
    """What criteria look at: a record's text (its best retrieved chunks), title, date and metadata.

    ``entities`` is None when the index carries no entities (entity criteria then match as terms).
    """

    doc_id: str
    title: str
    text: str
    year: int | None = None
    date: dt.date | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    entities: tuple[Entity, ...] | None = None


@dataclass(frozen=True)
class Flag:
    """The outcome of one criterion on one record. ``role`` is ``include`` or ``exclude``.

    ``flagged`` is true when the record should get a screener's attention: an inclusion
    criterion it fails (or cannot be checked) or an exclusion criterion it meets.
    """

    criterion: str
    role: Literal["include", "exclude"]
    status: Status
    reason: str

    @property
    def flagged(self) -> bool:
        if self.role == "include":
            return self.status != "pass"
        return self.status == "pass"

    def describe(self) -> str:
        verdict = {("include", "pass"): "meets", ("include", "fail"): "FAILS",
                   ("include", "unknown"): "UNKNOWN", ("exclude", "pass"): "EXCLUDE",
                   ("exclude", "fail"): "not excluded", ("exclude", "unknown"): "UNKNOWN"}[(self.role, self.status)]
        return f"{self.role} {self.criterion!r}: {verdict} ({self.reason})"


@lru_cache(maxsize=4096)
def _pattern(term: str) -> re.Pattern[str]:
    words = [re.escape(w) for w in term.split()]
    return re.compile(r"(?<!\w)" + r"[\s\-]+".join(words) + r"(?!\w)", re.IGNORECASE)


def find_terms(terms: Sequence[str], text: str) -> list[str]:
    """The ``terms`` that occur in ``text`` (case-insensitive whole words; spaces match hyphens).

    >>> find_terms(["type 2 diabetes", "insulin"], "Type-2 diabetes was treated.")
    ['type 2 diabetes']
    """
    return [t for t in terms if t.strip() and _pattern(t.strip()).search(text)]


def check(criterion: Criterion, rec: RecordView, role: Literal["include", "exclude"]) -> Flag:
    """Evaluate one criterion on one record."""
    name = criterion.label_text
    kind = criterion.kind
    if kind == "terms":
        return _matches(name, role, criterion.terms or [], find_terms(criterion.terms or [],
                                                                      f"{rec.title}\n{rec.text}"),
                        criterion.match, "")
    if kind == "entities":
        wanted = criterion.entities or []
        if rec.entities is None:
            found = find_terms(wanted, f"{rec.title}\n{rec.text}")
            return _matches(name, role, wanted, found, criterion.match, " (as a term: the index has no entities)")
        have = {e.text.lower() for e in rec.entities
                if not e.negated and (criterion.label is None or e.label.lower() == criterion.label.lower())}
        found = [w for w in wanted if w.lower() in have]
        label = f" {criterion.label}" if criterion.label else ""
        return _matches(name, role, wanted, found, criterion.match, f" (as a{label} entity)")
    if kind == "years" and criterion.years is not None:
        when = rec.date or (dt.date(rec.year, 7, 1) if rec.year else None)
        if when is None:
            return Flag(name, role, "unknown", "the record has no date or year")
        lo, hi = criterion.years.bounds()
        ok = (lo is None or when >= lo) and (hi is None or when <= hi)
        shown = rec.year if rec.date is None else rec.date.isoformat()
        span = f"{lo.isoformat() if lo else '...'} to {hi.isoformat() if hi else '...'}"
        return Flag(name, role, "pass" if ok else "fail", f"{shown} {'within' if ok else 'outside'} {span}")
    key = "publication_type" if kind == "publication_types" else str(criterion.field)
    wanted_values = list(criterion.publication_types or criterion.values or [])
    value = _lookup(rec, key)
    if value is None:
        return Flag(name, role, "unknown", f"the record has no {key!r} field")
    have_values = {str(v).strip().lower() for v in (value if isinstance(value, list | tuple) else [value])}
    found = [str(w) for w in wanted_values if str(w).strip().lower() in have_values]
    return _matches(name, role, [str(w) for w in wanted_values], found, criterion.match, f" in {key!r}")


def _lookup(rec: RecordView, key: str) -> Any:
    if key == "title":
        return rec.title or None
    if key == "year":
        return rec.year
    value = rec.metadata.get(key)
    if value is None:  # dotted keys reach into nested metadata
        cur: Any = rec.metadata
        for part in key.split("."):
            cur = cur.get(part) if isinstance(cur, Mapping) else None
        value = cur
    return value


def _matches(name: str, role: Literal["include", "exclude"], wanted: Sequence[str], found: Sequence[str],
             match: str, how: str) -> Flag:
    ok = bool(found) if match == "any" else len(set(found)) == len(set(wanted))
    if found:
        missing = [w for w in wanted if w not in found]
        reason = "found " + ", ".join(repr(f) for f in found[:5])
        if not ok:
            reason += "; missing " + ", ".join(repr(m) for m in missing[:5])
    else:
        reason = "none of " + ", ".join(repr(w) for w in wanted[:5]) + (" ..." if len(wanted) > 5 else "")
    return Flag(name, role, "pass" if ok else "fail", reason + how)


def apply_criteria(include: Sequence[Criterion], exclude: Sequence[Criterion], rec: RecordView) -> tuple[Flag, ...]:
    """Every criterion's flag for ``rec``: inclusion criteria first, then exclusion criteria."""
    return tuple([check(c, rec, "include") for c in include] + [check(c, rec, "exclude") for c in exclude])


def matched_entities(rec: RecordView, wanted: Sequence[str]) -> list[str]:
    """The record's entities (distinct, in order) or, without entities, the wanted entity terms found."""
    if rec.entities is None:
        return find_terms(wanted, f"{rec.title}\n{rec.text}") if wanted else []
    seen: dict[str, None] = {}
    for e in rec.entities:
        if not e.negated:
            seen.setdefault(f"{e.text} [{e.label}]" if e.label else e.text)
    return list(seen)


def entities_of(obj: Any) -> tuple[Entity, ...] | None:
    """Entities carried by a hit (an ``entities`` attribute, or ``metadata['entities']``), or None.

    Accepts objects with ``text``/``label`` attributes or dicts with those keys (``negated`` or an
    ``assertion`` of ``negated`` marks negated mentions), or plain strings.
    """
    raw = getattr(obj, "entities", None)
    if raw is None:
        meta = getattr(obj, "metadata", None) or {}
        raw = meta.get("entities") if isinstance(meta, Mapping) else None
    if raw is None:
        return None
    out = []
    for e in raw:
        if isinstance(e, str):
            out.append(Entity(e))
            continue
        get = e.get if isinstance(e, Mapping) else (lambda k, d=None, _e=e: getattr(_e, k, d))
        text = get("text") or get("normalized") or ""
        negated = bool(get("negated", False)) or str(get("assertion", "") or "").lower() == "negated"
        if text:
            out.append(Entity(str(text), str(get("label", "") or ""), negated))
    return tuple(out)


__all__ = ["Entity", "Flag", "RecordView", "apply_criteria", "check", "entities_of", "find_terms",
           "matched_entities"]
