"""Time in queries: "first"/"most recent" intents, date ranges named in the text, a recency prior.

A clinician asks "latest HbA1c", "when was the asthma first diagnosed", "procedures in 2015".
:func:`detect_intent` reads that from the query; :func:`apply_intent` re-orders a ranked list so
that, among the hits that are about the same thing as the best hit (a relevance band, plus hits
sharing its code), the latest (or earliest) comes first.

>>> detect_intent("most recent hemoglobin A1c").order
'latest'
>>> detect_intent("when was asthma first diagnosed").order
'first'
>>> i = detect_intent("procedures between 2014 and 2016")
>>> (i.since.year, i.until.year, i.until.month)
(2014, 2016, 12)
>>> detect_intent("medications in the last 6 months", now=dt.datetime(2020, 7, 1)).since
datetime.datetime(2020, 1, 1, 0, 0)
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace

from clinrag.indexing.filters import parse_time
from clinrag.retrieval.base import Hit
from clinrag.retrieval.fusion import scale

_LATEST = re.compile(r"\b(most\s+recent(ly)?|latest|newest|last(?!\s+\d)(?!\s+(few|several)\b)|current(ly)?|"
                     r"now|recent(ly)?|today)\b(?!-)", re.I)
_FIRST = re.compile(r"\b(first|earliest|initial(ly)?|oldest|original(ly)?|onset|start(ed)?|began|begin)\b(?!-)",
                    re.I)
_YEAR = r"((?:19|20)\d\d)"
_MONTHS = {m: i for i, m in enumerate(["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct",
                                       "nov", "dec"], 1)}
_RELATIVE = re.compile(r"\b(?:in\s+|over\s+|during\s+|within\s+)?(?:the\s+)?(?:last|past|previous)\s+(\d+)\s*"
                       r"(day|week|month|year)s?\b", re.I)
_BETWEEN = re.compile(rf"\b(?:between|from)\s+{_YEAR}\s+(?:and|to|-|until)\s+{_YEAR}\b", re.I)
_SINCE = re.compile(rf"\b(?:since|after)\s+{_YEAR}\b", re.I)
_BEFORE = re.compile(rf"\b(?:before|prior\s+to|until)\s+{_YEAR}\b", re.I)
_ISO = re.compile(r"\b((?:19|20)\d\d-\d\d-\d\d)\b")
_IN_YEAR = re.compile(rf"\b(?:in|during)\s+(?:([a-z]{{3,9}})\s+)?{_YEAR}\b", re.I)


@dataclass(frozen=True)
class TemporalIntent:
    """What a query says about time: an ordering wish and a date range (each may be None)."""

    order: str | None = None  # "latest", "first" or None
    since: dt.datetime | None = None
    until: dt.datetime | None = None

    @property
    def empty(self) -> bool:
        return self.order is None and self.since is None and self.until is None


def _year_end(year: int) -> dt.datetime:
    return dt.datetime(year, 12, 31, 23, 59, 59)


def detect_intent(query: str, now: dt.datetime | None = None) -> TemporalIntent:
    """Read the ordering intent and any date range from ``query`` (English, rule-based)."""
    since = until = None
    if m := _RELATIVE.search(query):
        since = parse_time(f"{m.group(1)}{m.group(2)[0].lower()}", now=now)
    elif m := _BETWEEN.search(query):
        since, until = dt.datetime(int(m.group(1)), 1, 1), _year_end(int(m.group(2)))
    else:
        if m := _SINCE.search(query):
            since = dt.datetime(int(m.group(1)), 1, 1)
        if m := _BEFORE.search(query):
            until = dt.datetime(int(m.group(1)), 1, 1) - dt.timedelta(seconds=1)
        if since is None and until is None and (m := _IN_YEAR.search(query)):
            year, month = int(m.group(2)), _MONTHS.get((m.group(1) or "")[:3].lower())
            if month:
                since = dt.datetime(year, month, 1)
                nxt = dt.datetime(year + month // 12, month % 12 + 1, 1)
                until = nxt - dt.timedelta(seconds=1)
            else:
                since, until = dt.datetime(year, 1, 1), _year_end(year)
        isos = _ISO.findall(query)
        if since is None and until is None and len(isos) >= 2:
            since, until = parse_time(isos[0]), parse_time(isos[1])
    stripped = _RELATIVE.sub(" ", query)
    latest, first = _LATEST.search(stripped), _FIRST.search(stripped)
    order = None
    if latest and first:  # "the latest ... since it first ..." -> whichever comes first in the text
        order = "latest" if latest.start() < first.start() else "first"
    elif latest:
        order = "latest"
    elif first:
        order = "first"
    return TemporalIntent(order, since, until)


def _norm(hits: Sequence[Hit]) -> list[float]:
    """The hits' scores on a 0-1 scale (:func:`clinrag.retrieval.fusion.scale`)."""
    return scale([h.score for h in hits])


def in_range(ts: dt.datetime | None, intent: TemporalIntent) -> bool:
    """Whether ``ts`` lies in the intent's date range (undated records never do when one is set)."""
    if intent.since is None and intent.until is None:
        return True
    if ts is None:
        return False
    return (intent.since is None or ts >= intent.since) and (intent.until is None or ts <= intent.until)


def apply_intent(hits: Sequence[Hit], intent: TemporalIntent, *, band: float = 0.15) -> list[Hit]:
    """Re-rank ``hits`` for ``intent``: hits in a named date range first; then, for a first/latest
    intent, the hits about the same thing as the best hit (normalised score within ``band`` of it,
    or sharing its code) ordered by date, newest (or oldest) first. Ranks are renumbered.

    >>> a = Hit("c1", "d1", 2.0, "HbA1c 7", timestamp=dt.datetime(2015, 1, 1))
    >>> b = Hit("c2", "d2", 1.95, "HbA1c 9", timestamp=dt.datetime(2019, 1, 1))
    >>> [h.doc_id for h in apply_intent([a, b], TemporalIntent("latest"))]
    ['d2', 'd1']
    """
    hits = list(hits)
    if not hits or intent.empty:
        return _renumber(hits)
    if intent.since is not None or intent.until is not None:
        inside = [h for h in hits if in_range(h.timestamp, intent)]
        hits = inside + [h for h in hits if not in_range(h.timestamp, intent)]
    if intent.order is not None:
        norm = _norm(hits)
        top = hits[0]
        code = top.metadata.get("code")
        group = [i for i, (h, s) in enumerate(zip(hits, norm, strict=True))
                 if s >= 1.0 - band or (code is not None and h.metadata.get("code") == code)]
        if intent.since is not None or intent.until is not None:
            group = [i for i in group if in_range(hits[i].timestamp, intent)] or group
        sign = -1 if intent.order == "latest" else 1
        far = dt.datetime.max if sign > 0 else dt.datetime.min
        ordered = sorted(group, key=lambda i: (hits[i].timestamp is None,
                                               sign * _ordinal(hits[i].timestamp or far), -hits[i].score))
        chosen = set(group)
        hits = [hits[i] for i in ordered] + [h for i, h in enumerate(hits) if i not in chosen]
    return _renumber(hits, "temporal")


def _ordinal(ts: dt.datetime) -> float:
    return ts.toordinal() + (ts.hour * 3600 + ts.minute * 60 + ts.second) / 86400


def recency_prior(hits: Sequence[Hit], *, weight: float = 0.1, half_life_days: float = 365.0,
                  now: dt.datetime | None = None) -> list[Hit]:
    """Add ``weight * 0.5 ** (age / half_life)`` to each normalised score (see :func:`_norm`) and re-sort.

    ``now`` defaults to the newest hit's date (so an old record set is not all "ancient").

    >>> a = Hit("c1", "d1", 1.0, "x", timestamp=dt.datetime(2010, 1, 1))
    >>> b = Hit("c2", "d2", 0.98, "y", timestamp=dt.datetime(2020, 1, 1))
    >>> [h.doc_id for h in recency_prior([a, b], weight=0.5)]
    ['d2', 'd1']
    """
    hits = list(hits)
    if not hits or weight <= 0:
        return hits
    dated = [h.timestamp for h in hits if h.timestamp is not None]
    ref = now or (max(dated) if dated else None)
    norm = _norm(hits)
    out = []
    for h, s in zip(hits, norm, strict=True):
        prior = 0.0
        if ref is not None and h.timestamp is not None:
            age = max(0.0, (ref - h.timestamp).total_seconds() / 86400)
            prior = weight * math.pow(0.5, age / half_life_days)
        out.append(replace(h, score=s + prior, stage_scores={**h.stage_scores, "recency": prior}))
    out.sort(key=lambda h: -h.score)
    return _renumber(out)


def _renumber(hits: list[Hit], stage: str | None = None) -> list[Hit]:
    out = []
    n = len(hits)
    for rank, h in enumerate(hits, 1):
        scores = dict(h.stage_scores)
        if stage:
            scores[stage] = float(n - rank + 1) / n
        out.append(replace(h, rank=rank, stage_scores=scores))
    return out


__all__ = ["TemporalIntent", "apply_intent", "detect_intent", "in_range", "recency_prior"]
