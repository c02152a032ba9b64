"""A longitudinal retrieval benchmark generated from any folder of FHIR bundles.

For each patient, questions are built from the structured resources, phrased as a clinician
would ask them, with the supporting records as graded relevance judgments (2: the record that
bears the answer, 1: other records about the same thing) and the expected answer value:

- ``first_diagnosis``: "When was asthma first diagnosed?" -> the earliest Condition of that code;
- ``latest_lab``: "Most recent A1c?" -> the latest Observation of a code measured at least 3 times;
- ``current_meds``: "What meds is the pt currently on?" -> the last request of each active medication;
- ``procedures_period``: "Procedures done in 2016?" -> the Procedures of that year;
- ``last_immunization``: "When was the last flu shot?" -> the latest Immunization of that vaccine;
- ``allergies``: "Any known allergies?" -> the AllergyIntolerance records;
- ``prior_imaging``: "Any prior imaging?" -> the ImagingStudy records.

Each patient yields at most one question per type (chosen with a seeded RNG), so the benchmark
grows with the folder. :func:`run_longitudinal` scores first-stage retrieval, the fast reranker and
the QR-head reranker (with and without patient memory) with Recall@5, nDCG@10 and the fraction of
questions whose top 5 holds an answer-bearing record.

>>> from clinrag.data.schema import Document
>>> import datetime as dt
>>> docs = [Document(id=f"o{i}", text="x", title="Hemoglobin A1c/Hemoglobin.total in Blood", kind="observation",
...                  patient_id="p", timestamp=dt.datetime(2015 + i, 1, 1),
...                  metadata={"code": "4548-4", "value": 6.0 + i, "unit": "%"}) for i in range(3)]
>>> q = generate_questions(docs)[0]
>>> (q.type, q.answer, q.answer_ids, q.query.lower().count("a1c") > 0)
('latest_lab', '8 %', ('o2',), True)
"""

from __future__ import annotations

import logging
import random
import re
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clinrag.data.schema import Document
from clinrag.eval.metrics import evaluate

log = logging.getLogger(__name__)
METRICS = ("recall@5", "ndcg@10")
#: short names clinicians use for common lab and vital titles (lower-case prefix -> name)
ALIASES = {"hemoglobin a1c": "A1c", "body mass index": "BMI", "body weight": "weight", "body height": "height",
           "systolic blood pressure": "systolic BP", "diastolic blood pressure": "diastolic BP",
           "low density lipoprotein": "LDL", "high density lipoprotein": "HDL", "total cholesterol": "cholesterol",
           "estimated glomerular filtration rate": "eGFR", "glucose": "glucose", "heart rate": "heart rate",
           "respiratory rate": "resp rate", "hiv viral load": "HIV viral load",
           "cd4 t cell": "CD4 count", "creatinine": "creatinine", "influenza": "flu"}
TEMPLATES: Mapping[str, tuple[str, ...]] = {
    "first_diagnosis": ("When was {x} first diagnosed?", "Onset date of {x}?", "When did the {x} start?",
                        "First documented {x} - when?"),
    "latest_lab": ("Most recent {x}?", "What was the latest {x} value?", "Last {x} result?",
                   "Current {x} level?"),
    "current_meds": ("What meds is the pt currently on?", "Current medication list?",
                     "Which medications is the patient taking now?"),
    "procedures_period": ("Procedures done in {x}?", "What procedures did the patient undergo in {x}?",
                          "Any procedures performed during {x}?"),
    "last_immunization": ("When was the last {x} vaccine given?", "Date of most recent {x} immunization?",
                          "Last {x} shot?"),
    "allergies": ("Any known allergies?", "What is the pt allergic to?", "Documented drug or food allergies?"),
    "prior_imaging": ("Any prior imaging?", "Previous imaging studies on file?", "Has the pt had any scans?"),
}
_ACTIVE = {"active", "on-hold", "draft", ""}


def spoken(title: str) -> str:
    """A clinician's name for a record title: bracketed parts and qualifiers dropped, common short forms.

    >>> spoken("Hemoglobin A1c/Hemoglobin.total in Blood"), spoken("Acute bronchitis (disorder)")
    ('A1c', 'acute bronchitis')
    """
    t = re.sub(r"\[[^\]]*\]|\([^)]*\)", " ", title)
    t = re.split(r"/| in (?:blood|serum|plasma|urine)| by ", t, flags=re.I)[0]
    t = " ".join(t.split()).strip(" ,.-")
    low = t.lower()
    for prefix, alias in ALIASES.items():
        if low.startswith(prefix):
            return alias
    return low


@dataclass(frozen=True)
class LongQuestion:
    """One generated question: its text, the patient, graded qrels, the answer and the records bearing it."""

    qid: str
    type: str
    patient_id: str
    query: str
    answer: str
    answer_ids: tuple[str, ...]
    qrels: Mapping[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"qid": self.qid, "type": self.type, "patient_id": self.patient_id, "query": self.query,
                "answer": self.answer, "answer_ids": list(self.answer_ids), "qrels": dict(self.qrels)}


def _day(doc: Document) -> str:
    return doc.timestamp.date().isoformat() if doc.timestamp else ""


def _code(doc: Document) -> str:
    return str(doc.metadata.get("code") or doc.title).lower()


def _groups(docs: Iterable[Document]) -> dict[str, list[Document]]:
    out: dict[str, list[Document]] = defaultdict(list)
    for d in docs:
        if d.timestamp is not None:
            out[_code(d)].append(d)
    return {k: sorted(v, key=lambda d: (d.timestamp, d.id)) for k, v in out.items()}


def _fmt_value(v: Any, unit: str) -> str:
    if isinstance(v, float):
        v = int(v) if v.is_integer() else round(v, 2)
    return f"{v} {unit}".strip()


def _patient_questions(pid: str, docs: list[Document], rng: random.Random) -> list[dict[str, Any]]:
    by_kind: dict[str, list[Document]] = defaultdict(list)
    for d in docs:
        by_kind[d.kind].append(d)
    qs: list[dict[str, Any]] = []

    def ask(qtype: str, x: str, answer: str, answer_docs: Sequence[Document], related: Sequence[Document]) -> None:
        qrels = {d.id: 1 for d in related}
        qrels.update({d.id: 2 for d in answer_docs})
        qs.append({"type": qtype, "query": rng.choice(TEMPLATES[qtype]).format(x=x), "answer": answer,
                   "answer_ids": tuple(d.id for d in answer_docs), "qrels": qrels})

    conds = _groups(by_kind["condition"])
    if conds:
        items = conds[rng.choice(sorted(conds))]
        ask("first_diagnosis", spoken(items[0].title), str(items[0].metadata.get("onset") or _day(items[0]))[:10],
            items[:1], items[1:])
    labs = {k: v for k, v in _groups(d for d in by_kind["observation"]
                                     if isinstance(d.metadata.get("value"), int | float)).items() if len(v) >= 3}
    if labs:
        items = labs[rng.choice(sorted(labs))]
        last = items[-1]
        same_day = [d for d in items if d.timestamp == last.timestamp]
        ask("latest_lab", spoken(last.title), _fmt_value(last.metadata["value"], str(last.metadata.get("unit") or "")),
            same_day, [])
    meds = _groups(by_kind["medicationrequest"])
    active = [v[-1] for v in meds.values() if str(v[-1].metadata.get("status", "")).lower() in _ACTIVE]
    if active:
        ask("current_meds", "", "; ".join(sorted(d.title for d in active)), active, [])
    procs = [d for d in by_kind["procedure"] if d.timestamp is not None]
    if procs:
        year = rng.choice(sorted({d.timestamp.year for d in procs if d.timestamp}))
        inside = [d for d in procs if d.timestamp and d.timestamp.year == year]
        ask("procedures_period", str(year), "; ".join(sorted({d.title for d in inside})), inside, [])
    imms = _groups(by_kind["immunization"])
    if imms:
        items = imms[rng.choice(sorted(imms))]
        ask("last_immunization", spoken(items[-1].title), _day(items[-1]), items[-1:], items[:-1])
    if by_kind["allergyintolerance"]:
        allergies = by_kind["allergyintolerance"]
        ask("allergies", "", "; ".join(sorted(d.title for d in allergies)), allergies, [])
    if by_kind["imagingstudy"]:
        studies = sorted(by_kind["imagingstudy"], key=lambda d: (d.timestamp is None, d.timestamp or 0, d.id))
        ask("prior_imaging", "", "; ".join(f"{d.title} {_day(d)}" for d in studies), studies, [])
    return qs


def generate_questions(docs: Iterable[Document], *, seed: int = 0,
                       types: Sequence[str] | None = None) -> list[LongQuestion]:
    """Questions for every patient in ``docs`` (FHIR-rendered documents), deterministic for ``seed``."""
    by_patient: dict[str, list[Document]] = defaultdict(list)
    for d in docs:
        if d.patient_id:
            by_patient[d.patient_id].append(d)
    out = []
    for pid in sorted(by_patient):
        rng = random.Random(f"{seed}:{pid}")
        for i, q in enumerate(_patient_questions(pid, by_patient[pid], rng)):
            if types and q["type"] not in types:
                continue
            out.append(LongQuestion(qid=f"{pid}:{i}", patient_id=pid, **q))
    return out


@dataclass(frozen=True)
class StageResult:
    """Metrics of one stage: Recall@5, nDCG@10 and the fraction with an answer-bearing record in the top 5."""

    metrics: Mapping[str, float]
    seconds: float

    def to_dict(self) -> dict[str, float]:
        return {**{k: round(v, 4) for k, v in self.metrics.items()}, "seconds": round(self.seconds, 2)}


def score_stage(questions: Sequence[LongQuestion], ranked: Mapping[str, Sequence[str]],
                seconds: float = 0.0) -> StageResult:
    """Score ranked doc-id lists (``{qid: [doc_id, ...]}``) against the questions' qrels."""
    run = {q.qid: {d: float(len(ranked.get(q.qid, [])) - i) for i, d in enumerate(ranked.get(q.qid, []))}
           for q in questions}
    metrics = evaluate({q.qid: dict(q.qrels) for q in questions}, run, METRICS)
    hit5 = [bool(set(q.answer_ids) & set(list(ranked.get(q.qid, []))[:5])) for q in questions]
    metrics["answer_in_top5"] = sum(hit5) / len(hit5) if hit5 else 0.0
    return StageResult(metrics, seconds)


def _docs_of(hits: Sequence[Any]) -> list[str]:
    return list(dict.fromkeys(h.doc_id for h in hits))


def run_longitudinal(engine: Any, questions: Sequence[LongQuestion], rerankers: Mapping[str, Any], *,
                     depth: int = 20, memory_for: Callable[[str], str] | None = None,
                     progress: Callable[[str, int], None] | None = None) -> dict[str, StageResult]:
    """First-stage hybrid retrieval (patient filter, no temporal logic) of ``depth`` hits per question,
    then each reranker (``{stage_name: reranker}``) over the same hits. A stage name ending in
    ``_no_memory`` gets no memory; other rerankers get ``memory_for(patient_id)`` when given.
    Also scores ``first_stage_temporal`` (the engine's own time-aware search)."""
    results: dict[str, StageResult] = {}
    first: dict[str, list[Any]] = {}
    t0 = time.perf_counter()
    for i, q in enumerate(questions):
        first[q.qid] = engine.search(q.query, k=depth, filters={"patient_id": q.patient_id}, unique_docs=True,
                                     temporal=False)
        if progress:
            progress("first_stage", i)
    results["first_stage"] = score_stage(questions, {k: _docs_of(v) for k, v in first.items()},
                                         time.perf_counter() - t0)
    t0 = time.perf_counter()
    temporal = {q.qid: _docs_of(engine.search(q.query, k=depth, filters={"patient_id": q.patient_id},
                                              unique_docs=True)) for q in questions}
    results["first_stage_temporal"] = score_stage(questions, temporal, time.perf_counter() - t0)
    memories: dict[str, str] = {}
    for name, reranker in rerankers.items():
        t0 = time.perf_counter()
        ranked = {}
        for i, q in enumerate(questions):
            mem = None
            if memory_for is not None and not name.endswith("_no_memory"):
                if q.patient_id not in memories:
                    memories[q.patient_id] = memory_for(q.patient_id)
                mem = memories[q.patient_id]
            ranked[q.qid] = _docs_of(reranker.rerank(q.query, first[q.qid], memory=mem))
            if progress:
                progress(name, i)
        results[name] = score_stage(questions, ranked, time.perf_counter() - t0)
        log.info("%s: %s", name, results[name].to_dict())
    return results


def subsample(questions: Sequence[LongQuestion], n: int | None, seed: int = 0) -> list[LongQuestion]:
    """At most ``n`` questions, stratified round-robin over question types (deterministic)."""
    if n is None or n >= len(questions):
        return list(questions)
    rng = random.Random(seed)
    by_type: dict[str, list[LongQuestion]] = defaultdict(list)
    for q in questions:
        by_type[q.type].append(q)
    for v in by_type.values():
        rng.shuffle(v)
    out: list[LongQuestion] = []
    while len(out) < n:
        for t in sorted(by_type):
            if by_type[t] and len(out) < n:
                out.append(by_type[t].pop())
    return sorted(out, key=lambda q: q.qid)


def read_fhir_folder(data: str | Path) -> list[Document]:
    """Every Document of the FHIR files under ``data`` (bad records are skipped and logged)."""
    from clinrag.data.readers import read_records
    from clinrag.data.report import ErrorSink

    sink = ErrorSink("skip")
    docs = [r for r in read_records([Path(data)], "fhir", sink) if isinstance(r, Document)]
    if sink.skipped:
        log.warning("%s: skipped %d bad records", data, sink.skipped)
    return docs


__all__ = ["LongQuestion", "StageResult", "generate_questions", "read_fhir_folder", "run_longitudinal",
           "score_stage", "spoken", "subsample"]
