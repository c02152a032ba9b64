"""Second-stage rerankers over a first-stage hit list, behind one small Protocol.

:class:`FastReranker` needs no language model: it combines the first-stage late-interaction
score with query-term and entity matches on each hit's title and entities (negated entities are
penalised), the record kind a question asks for ("meds" -> medication requests, "diagnosed" ->
conditions...), the record status ("currently" -> active), and the query's time intent ("most
recent", "first", "in 2015"; see :mod:`clinrag.retrieval.temporal`). The QR-head reranker (an
attention-based causal-LM reranker) is in :mod:`clinrag.retrieval.qr`.

>>> import datetime as dt
>>> hits = [Hit("c1", "d1", 0.9, "Encounter for asthma", kind="encounter", title="Encounter"),
...         Hit("c2", "d2", 0.8, "Condition: Asthma. Onset 2010-01-01.", kind="condition", title="Asthma",
...             timestamp=dt.datetime(2010, 1, 1))]
>>> [h.doc_id for h in FastReranker().rerank("when was asthma first diagnosed", hits)]
['d2', 'd1']
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Protocol, runtime_checkable

from clinrag.retrieval.base import Hit
from clinrag.retrieval.fusion import scale
from clinrag.retrieval.temporal import apply_intent, detect_intent, in_range

_STOP = frozenset("""a an and any are as at be been by did do does for from had has have he her his how in is it
its last latest most of on or patient patients pt pts recent the their there this to was were what when which who
why with current currently first earliest ever value values level levels result results""".split())
#: words of a question -> the record kinds it asks for
KIND_CUES: Mapping[str, tuple[str, ...]] = {
    r"diagnos|condition|problem|disease|disorder|onset": ("condition",),
    r"\bmeds?\b|medication|prescri|taking|drug|dose|tablet": ("medicationrequest",),
    r"\blabs?\b|value|level|result|measure|reading|test\b": ("observation", "diagnosticreport"),
    r"vaccin|immuni[sz]|shot\b|booster|jab\b": ("immunization",),
    r"procedure|surgery|operation|performed|underwent|biopsy": ("procedure",),
    r"allerg": ("allergyintolerance",),
    r"imaging|x-?ray|\bct\b|\bmri\b|scan|radiograph|ultrasound": ("imagingstudy", "image"),
    r"visit|encounter|admission|admitted|seen\b": ("encounter",),
    r"care ?plan": ("careplan",),
    r"\bnote|said|complain|symptom": ("note",),
}
_ACTIVE = re.compile(r"\b(current(ly)?|active|still|ongoing|now)\b", re.I)
_WORD = re.compile(r"[a-z0-9]+")


@runtime_checkable
class Reranker(Protocol):
    """Re-orders a first-stage hit list for a query; returns new hits (ranks renumbered, the
    reranker's score in ``stage_scores[name]``). ``memory`` is optional context (a patient summary)."""

    @property
    def name(self) -> str: ...

    def rerank(self, query: str, hits: Sequence[Hit], k: int | None = None, *,
               memory: str | None = None) -> list[Hit]: ...


def terms(text: str) -> set[str]:
    """Content words of ``text`` (lower-cased, stop words and 1-2 letter tokens dropped, crude plural strip).

    >>> sorted(terms("Latest Hemoglobin A1c levels"))
    ['a1c', 'hemoglobin']
    """
    out = set()
    for w in _WORD.findall(text.lower()):
        if w in _STOP or len(w) < 3:
            continue
        out.add(w[:-1] if len(w) > 4 and w.endswith("s") and not w.endswith("ss") else w)
    return out


def wanted_kinds(query: str) -> set[str]:
    """Record kinds a question asks for, from cue words (empty: no preference).

    >>> sorted(wanted_kinds("current meds"))
    ['medicationrequest']
    """
    q = query.lower()
    return {k for pattern, kinds in KIND_CUES.items() if re.search(pattern, q) for k in kinds}


def _entities(hit: Hit) -> list[tuple[str, bool]]:
    """``(text, negated)`` of the hit's entities: ``Hit.entities`` (an index built with NER), else
    entity dicts in ``metadata['entities']`` (``negated`` or an ``assertion`` of negated/absent)."""
    if hit.entities:
        return [(e.text, e.negated) for e in hit.entities]
    ents = hit.metadata.get("entities")
    if not isinstance(ents, list | tuple):
        return []
    return [(str(e.get("text", "")), bool(e.get("negated"))
             or str(e.get("assertion", "")).lower() in ("negated", "absent", "negative"))
            for e in ents if isinstance(e, Mapping)]


@dataclass(frozen=True)
class FastReranker:
    """Late-interaction score + title/entity match + kind and status cues + temporal intent.

    ``w_*`` weight each feature; the first-stage score (the ``late`` stage score when present,
    else the fused score) is put on a 0-1 scale (:func:`clinrag.retrieval.fusion.scale`) like every feature.
    """

    w_first: float = 1.0
    w_title: float = 1.0
    w_entity: float = 0.5
    w_negated: float = 0.7
    w_kind: float = 0.6
    w_status: float = 0.3
    w_range: float = 0.8
    temporal: bool = True
    name: str = "fast"

    def features(self, query: str, hit: Hit) -> dict[str, float]:
        """The feature values of one hit (before weighting), for inspection and tests."""
        q = terms(query)
        title = terms(hit.title) or terms(hit.text[:120])
        f = {"title": len(q & title) / len(q) if q else 0.0, "entity": 0.0, "negated": 0.0}
        for text, neg in _entities(hit):
            et = terms(text)
            if et and et <= q | title and et & q:
                f["negated" if neg else "entity"] = 1.0
        kinds = wanted_kinds(query)
        f["kind"] = 1.0 if kinds and hit.kind in kinds else 0.0
        status = str(hit.metadata.get("status", "")).lower()
        f["status"] = 1.0 if _ACTIVE.search(query) and status == "active" and not hit.metadata.get("abatement") \
            else 0.0
        return f

    def rerank(self, query: str, hits: Sequence[Hit], k: int | None = None, *,
               memory: str | None = None) -> list[Hit]:
        if not hits:
            return []
        first = scale([h.stage_scores.get("late", h.score) for h in hits])
        intent = detect_intent(query) if self.temporal else None
        scored = []
        for h, s in zip(hits, first, strict=True):
            f = self.features(query, h)
            score = (self.w_first * s + self.w_title * f["title"] + self.w_entity * f["entity"]
                     - self.w_negated * f["negated"] + self.w_kind * f["kind"] + self.w_status * f["status"])
            if intent is not None and (intent.since or intent.until) and in_range(h.timestamp, intent):
                score += self.w_range
            scored.append(replace(h, score=score, stage_scores={**h.stage_scores, self.name: score}))
        scored.sort(key=lambda h: -h.score)
        if intent is not None and intent.order is not None:
            scored = apply_intent(scored, intent)
        out = [replace(h, rank=i) for i, h in enumerate(scored, 1)]
        return out[:k] if k else out


__all__ = ["KIND_CUES", "FastReranker", "Reranker", "terms", "wanted_kinds"]
