"""Running a review protocol: batched search of every formulation, fusion, de-duplication, criteria.

The runner needs only a :class:`ReviewSearcher` (``Engine`` is one): ``search_batch`` for
batched retrieval (one call scores many formulations; late interaction batches MaxSim on the
GPU when there is one) and ``documents`` for the full records. With ``out``, each question is
written atomically as soon as it is done and a run that was killed resumes with the questions
it had not finished (a question is redone when its part of the protocol, the mode or the index
changed).

>>> import tempfile
>>> from clinrag import Document, Engine
>>> from clinrag.review.protocol import ReviewProtocol
>>> eng = Engine.create(tempfile.mkdtemp() + "/idx")
>>> _ = eng.add([Document(id="pubmed:1", text="Metformin lowers HbA1c in type 2 diabetes.", metadata={"year": 2010}),
...              Document(id="pubmed:2", text="Insulin pumps in type 1 diabetes.", metadata={"year": 2019})])
>>> p = ReviewProtocol.model_validate({"questions": [{"id": "q1", "formulations": ["metformin", "type 2 diabetes"],
...     "include": [{"name": "recent", "years": {"from": 2015}}]}]})
>>> res = run_review(eng, p)
>>> [(r.doc_id, r.formulation_ranks, r.status) for r in res.question("q1").records]
[('pubmed:1', (1, 2), 'flagged'), ('pubmed:2', (None, 1), 'ok')]
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from clinrag.data.schema import Document
from clinrag.errors import ConfigError
from clinrag.retrieval.base import Hit
from clinrag.review.criteria import Entity, RecordView, apply_criteria, entities_of, matched_entities
from clinrag.review.dedupe import group_duplicates, key_of
from clinrag.review.fusion import best_snippet, fuse_rankings, warm_up
from clinrag.review.protocol import Question, ReviewProtocol
from clinrag.review.result import QuestionResult, ReviewRecord, ReviewResult
from clinrag.review.writers import clean_temp, read_marker, read_parquet, write_question, write_run_manifest

log = logging.getLogger(__name__)
RUN_FORMAT_VERSION = 1
DEFAULT_BATCH = 64


@runtime_checkable
class ReviewSearcher(Protocol):
    """What a review needs from an index (:class:`clinrag.Engine` implements it)."""

    def search_batch(self, queries: Sequence[str], k: int = 10, filters: Any = None, *, mode: str | None = None,
                     unique_docs: bool = False, temporal: bool = True) -> list[list[Hit]]: ...

    def documents(self, ids: Sequence[str]) -> list[Document]: ...


@dataclass(frozen=True)
class Progress:
    """Reported after each question: ``done`` of ``total`` questions finished."""

    question_id: str
    done: int
    total: int
    n_records: int
    resumed: bool


def run_review(searcher: ReviewSearcher, protocol: ReviewProtocol, *, out: str | os.PathLike[str] | None = None,
               mode: str | None = None, batch_size: int = DEFAULT_BATCH, index_info: Mapping[str, Any] | None = None,
               protocol_path: str | None = None, progress: Callable[[Progress], None] | None = None) -> ReviewResult:
    """Run every question of ``protocol`` against ``searcher``; write ``out`` when given (resuming it).

    ``mode`` (lexical, late, hybrid; default the protocol's, else the index's) is passed to
    ``search_batch``; ``batch_size`` formulations are searched per call; ``index_info`` (the
    index path and manifest) goes into the run manifest and decides when a resumed question
    must be redone.
    """
    if batch_size < 1:
        raise ConfigError(f"batch_size must be positive, got {batch_size}")
    mode = mode or protocol.mode
    info = dict(index_info or {})
    index_fp = _hash(info.get("manifest", {}))
    out_dir = Path(out) if out is not None else None
    if out_dir is not None:
        _prepare_out(out_dir)
    started = _now()
    t0 = time.perf_counter()
    results: dict[str, QuestionResult] = {}
    keys = {q.id: _hash({"q": protocol.question_sha256(q), "mode": mode, "index": index_fp})
            for q in protocol.questions}
    pending: list[Question] = []
    for q in protocol.questions:
        marker = read_marker(out_dir, q.id) if out_dir is not None else None
        if out_dir is not None and marker is not None and marker.get("key") == keys[q.id]:
            results[q.id] = _resumed(out_dir, q, marker)
        else:
            pending.append(q)
    total = len(protocol.questions)
    if progress is not None:
        for i, qid in enumerate(results, 1):
            progress(Progress(qid, i, total, len(results[qid].records), True))
    if results:
        log.info("resuming: %d of %d questions already done", len(results), total)

    warmup: dict[str, float] = {}

    def manifest(complete: bool) -> dict[str, Any]:
        return _run_manifest(protocol, protocol_path, info, mode, batch_size, started, t0, results, complete,
                             warmup)

    if out_dir is not None:
        write_run_manifest(out_dir, manifest(False))
    if pending:
        warmup["fusion_warmup"] = warm_up(protocol.fusion)
    for group in _batches(pending, batch_size):
        queries = [f for q in group for f in q.queries()]
        depth = max(protocol.question_depth(q) for q in group)
        ts = time.perf_counter()
        # literature search: words like "initial" or "recent" in a formulation are not a wish for dates
        hits = searcher.search_batch(queries, depth, mode=mode, unique_docs=True, temporal=False)
        search_s = time.perf_counter() - ts
        pos = 0
        for q in group:
            n = len(q.queries())
            qhits = [h[: protocol.question_depth(q)] for h in hits[pos:pos + n]]
            pos += n
            res, docs = _question(searcher, protocol, q, qhits, search_s * n / max(1, len(queries)))
            if out_dir is not None:
                tw = time.perf_counter()
                marker = {"format": "clinrag-review-question", "format_version": RUN_FORMAT_VERSION,
                          "question_id": q.id, "key": keys[q.id], "question_sha256": protocol.question_sha256(q),
                          "mode": mode, "index_fingerprint": index_fp, "formulations": list(res.formulations),
                          "n_records": len(res.records), "n_retrieved": res.n_retrieved,
                          "seconds": dict(res.seconds), "finished": _now()}
                abstracts = {d: docs[d].text for d in res.doc_ids if d in docs}  # fetched once, in _question
                files = write_question(out_dir, res, marker, abstracts)
                secs = {**res.seconds, "write": time.perf_counter() - tw}
                res = QuestionResult(res.question_id, res.formulations, res.records, res.n_retrieved, secs,
                                     False, files)
            results[q.id] = res
            if progress is not None:
                progress(Progress(q.id, len(results), total, len(res.records), False))
        if out_dir is not None:
            write_run_manifest(out_dir, manifest(False))
    final = manifest(True)
    if out_dir is not None:
        write_run_manifest(out_dir, final)
    ordered = tuple(results[q.id] for q in protocol.questions)
    return ReviewResult(protocol.name, protocol.sha256(), mode or "", ordered, final,
                        str(out_dir) if out_dir is not None else None)


def _batches(questions: Sequence[Question], batch_size: int) -> list[list[Question]]:
    """Consecutive groups of whole questions holding at most ``batch_size`` formulations (at least one question)."""
    groups: list[list[Question]] = []
    cur: list[Question] = []
    n = 0
    for q in questions:
        k = len(q.queries())
        if cur and n + k > batch_size:
            groups.append(cur)
            cur, n = [], 0
        cur.append(q)
        n += k
    if cur:
        groups.append(cur)
    return groups


def _question(searcher: ReviewSearcher, protocol: ReviewProtocol, q: Question, hits: Sequence[Sequence[Hit]],
              search_s: float) -> tuple[QuestionResult, dict[str, Document]]:
    """One question: fuse, de-duplicate and flag its records; also the documents fetched for them."""
    formulations = tuple(q.queries())
    t0 = time.perf_counter()
    fused = fuse_rankings([[(h.doc_id, h.score) for h in lst] for lst in hits], protocol.fusion)
    ranks: dict[str, list[int | None]] = {d: [None] * len(formulations) for d, _ in fused}
    doc_hits: dict[str, list[tuple[int, int, Hit]]] = {}
    for fi, lst in enumerate(hits):
        for rank, h in enumerate(lst, 1):
            ranks[h.doc_id][fi] = rank
            doc_hits.setdefault(h.doc_id, []).append((rank, fi, h))
    fuse_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    docs = {d.id: d for d in searcher.documents([d for d, _ in fused])}
    fetch_s = time.perf_counter() - t1
    t2 = time.perf_counter()
    # entity criteria read entities only when the index was built with NER; otherwise they match as terms
    with_entities = bool(getattr(getattr(searcher, "config", None), "ner_model", None))
    views = {d: _view(d, docs.get(d), doc_hits.get(d, []), with_entities) for d, _ in fused}
    keys = {d: key_of(d, views[d].title, views[d].metadata) for d, _ in fused}
    groups = group_duplicates([keys[d] for d, _ in fused])
    score = dict(fused)
    include, exclude = protocol.question_criteria(q)
    wanted_entities = [e for c in (*include, *exclude) for e in (c.entities or [])]
    records = []
    for rank, g in enumerate(groups, 1):
        members = [g.keep, *(m for m, _ in g.merged)]
        fr = tuple(min((r for m in members if (r := ranks[m][i]) is not None), default=None)
                   for i in range(len(formulations)))
        v = views[g.keep]
        snippets: list[str] = []
        seen_chunks: set[str] = set()
        for _, fi, h in sorted(doc_hits.get(g.keep, []), key=lambda t: t[0]):
            if len(snippets) >= protocol.snippets:
                break
            if h.chunk_id in seen_chunks:
                continue
            seen_chunks.add(h.chunk_id)
            s = best_snippet(h.text, [formulations[fi]])
            if s and s not in snippets:
                snippets.append(s)
        # identifiers come from the kept record, else from a duplicate merged into it
        pmid = next((keys[m].pmid for m in members if keys[m].pmid), None)
        doi = next((keys[m].doi for m in members if keys[m].doi), None)
        records.append(ReviewRecord(
            rank=rank, doc_id=g.keep, title=v.title, year=v.year, score=score[g.keep], formulation_ranks=fr,
            pmid=pmid, doi=doi, matched_entities=tuple(matched_entities(v, wanted_entities)),
            flags=apply_criteria(include, exclude, v), snippets=tuple(snippets), duplicates=g.merged))
    post_s = time.perf_counter() - t2
    return QuestionResult(q.id, formulations, tuple(records), len(fused),
                          {"search": search_s, "fuse": fuse_s + post_s, "fetch": fetch_s}), docs


def _view(doc_id: str, doc: Document | None, hits: Sequence[tuple[int, int, Hit]],
          with_entities: bool = True) -> RecordView:
    """What criteria see: the full document when the index has it, else its retrieved chunks."""
    first = hits[0][2] if hits else None
    meta: Mapping[str, Any] = doc.metadata if doc is not None else (first.metadata if first else {})
    ents: list[Entity] | None = None
    for _, _, h in hits if with_entities else ():
        e = entities_of(h)
        if e is not None:
            ents = (ents or []) + list(e)
    if doc is not None:
        text, title, ts = doc.text, doc.title, doc.timestamp
    else:
        text = "\n".join(dict.fromkeys(h.text for _, _, h in hits))
        title, ts = (first.title, first.timestamp) if first else ("", None)
    title = title or str(meta.get("title") or "")
    year_raw = meta.get("year")
    year = int(year_raw) if isinstance(year_raw, int | str) and str(year_raw).strip().isdigit() else (
        ts.year if ts is not None else None)
    date = ts.date() if ts is not None and not (ts.month == 1 and ts.day == 1 and year_raw is not None) else None
    return RecordView(doc_id, title, text, year, date, meta, tuple(ents) if ents is not None else None)


def _resumed(out: Path, q: Question, marker: Mapping[str, Any]) -> QuestionResult:
    forms = tuple(marker.get("formulations") or q.queries())
    records = tuple(read_parquet(out / q.id / "ranked.parquet", len(forms)))
    files = {"csv": f"{q.id}/ranked.csv", "parquet": f"{q.id}/ranked.parquet", "ris": f"{q.id}/records.ris"}
    return QuestionResult(q.id, forms, records, int(marker.get("n_retrieved", len(records))),
                          dict(marker.get("seconds") or {}), True, files)


def _prepare_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file; give a folder")
    if out.exists() and any(out.iterdir()) and not (out / "manifest.json").exists():
        raise ConfigError(f"{out} is not empty and holds no review run (no manifest.json); choose another --out")
    if (out / "manifest.json").exists():
        try:
            fmt = json.loads((out / "manifest.json").read_text(encoding="utf-8")).get("format")
        except (OSError, ValueError, AttributeError):
            fmt = None
        if fmt != "clinrag-review-run":
            raise ConfigError(f"{out}/manifest.json is not a clinrag review run manifest; choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    if clean_temp(out):
        log.info("removed temporary folders of an interrupted run in %s", out)


def _run_manifest(protocol: ReviewProtocol, protocol_path: str | None, info: Mapping[str, Any], mode: str | None,
                  batch_size: int, started: str, t0: float, results: Mapping[str, QuestionResult],
                  complete: bool, warmup: Mapping[str, float]) -> dict[str, Any]:
    from clinrag.indexing.manifest import clinrag_version

    idx_manifest = info.get("manifest", {}) or {}
    totals: dict[str, float] = {}
    for r in results.values():
        if not r.resumed:
            for k, v in r.seconds.items():
                totals[k] = totals.get(k, 0.0) + v
    n_forms = sum(len(r.formulations) for r in results.values() if not r.resumed)
    return {
        "format": "clinrag-review-run", "format_version": RUN_FORMAT_VERSION, "clinrag_version": clinrag_version(),
        "complete": complete, "started": started, "finished": _now() if complete else None,
        "protocol": {"name": protocol.name, "path": protocol_path, "sha256": protocol.sha256(),
                     "questions": len(protocol.questions), "document": protocol.canonical()},
        "index": {"path": info.get("path"), "manifest": idx_manifest},
        "models": dict(idx_manifest.get("models", {})), "mode": mode, "fusion": protocol.fusion,
        "depth": protocol.depth, "batch_size": batch_size,
        "timings": {"wall_seconds": round(time.perf_counter() - t0, 3),
                    **{f"{k}_seconds": round(v, 3) for k, v in warmup.items()},
                    **{f"{k}_seconds": round(v, 3) for k, v in totals.items()},
                    "formulations_searched": n_forms},
        "questions": {qid: {"records": len(r.records), "retrieved": r.n_retrieved, "resumed": r.resumed,
                            "formulations": len(r.formulations), "files": dict(r.files),
                            "seconds": {k: round(v, 4) for k, v in r.seconds.items()}}
                      for qid, r in results.items()},
    }


def _hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


__all__ = ["DEFAULT_BATCH", "Progress", "ReviewSearcher", "run_review"]
