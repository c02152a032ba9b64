"""Run a retrieval task end to end: build a temporary index, search, score with ranx."""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clinrag.config import IndexConfig, LateParams
from clinrag.engine import Engine
from clinrag.eval.metrics import DEFAULT_METRICS, evaluate
from clinrag.eval.tasks import RetrievalTask, load_task

log = logging.getLogger(__name__)

#: Documents are ranked by their best chunk; sections are packed together (abstracts are short).
TASK_CONFIG = IndexConfig(split_sections=False)


@dataclass(frozen=True)
class RetrievalResult:
    """Scores of one mode on one task."""

    task: str
    mode: str
    metrics: dict[str, float]
    n_queries: int
    n_documents: int
    seconds: float
    index_seconds: float
    config: dict[str, Any] = field(default_factory=dict)
    label: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"task": self.task, "mode": self.mode, "label": self.label,
                **self.metrics, "metrics": dict(self.metrics),
                "n_queries": self.n_queries, "n_documents": self.n_documents,
                "search_seconds": round(self.seconds, 3), "index_seconds": round(self.index_seconds, 3),
                "config": self.config}


def run_task(task: RetrievalTask, *, mode: str = "lexical", depth: int = 100,
             metrics: Sequence[str] = DEFAULT_METRICS, config: IndexConfig | None = None,
             engine: Engine | None = None, label: str = "", index_seconds: float = 0.0,
             late_params: LateParams | None = None) -> RetrievalResult:
    """Index ``task.documents`` (unless an ``engine`` is given) and score ``mode`` on its queries
    (``late_params``: search settings of late/hybrid, e.g. pseudo-relevance feedback)."""
    with tempfile.TemporaryDirectory(prefix="clinrag-eval-") as tmp:
        t0 = time.perf_counter()
        own = engine is None
        if engine is None:
            engine = Engine.create(Path(tmp) / "index", config or TASK_CONFIG)
            engine.add(task.documents)
        if own:
            index_seconds = time.perf_counter() - t0
        qids = list(task.queries)
        saved = engine.late_params
        if late_params is not None:
            engine.late_params = late_params
        t1 = time.perf_counter()
        try:
            if mode in BASELINES:
                from clinrag.eval.baselines import run_baseline

                ranked = run_baseline(mode, engine, [task.queries[q] for q in qids], depth)
            else:
                ranked = engine.rank([task.queries[q] for q in qids], depth, mode=mode, unique_docs=True)
        finally:
            engine.late_params = saved
        seconds = time.perf_counter() - t1
        doc_of = engine.chunk_doc_map()
        run = {q: {doc_of[s.chunk_id]: s.score for s in res} for q, res in zip(qids, ranked, strict=True)}
        scores = evaluate(task.qrels, run, metrics)
        cfg = engine.config
        if own:
            engine.close()
    log.info("%s / %s: %s", task.name, mode, scores)
    return RetrievalResult(task.name, mode, scores, len(qids), len(task.documents), seconds, index_seconds,
                           cfg.to_dict(), label)


BASELINES = ("late-exact", "dense")


def evaluate_modes(task_name: str, data: str | Path, *, modes: Sequence[str], text_model: str = "default",
                   dim: int | None = None, nbits: Sequence[int] = (2,), chunk_words: int | None = None,
                   depth: int = 100, metrics: Sequence[str] = DEFAULT_METRICS,
                   feedback: Sequence[tuple[int, float]] = ()) -> list[RetrievalResult]:
    """Evaluate several modes on one task, building each index once.

    ``lexical`` runs on a BM25-only index; ``late`` and ``hybrid`` once per ``nbits`` on an
    index with ``text_model``; the baselines ``late-exact`` and ``dense`` encode the same
    chunks without compression. Each ``(docs, weight)`` of ``feedback`` adds a run of ``late`` and
    ``hybrid`` with pseudo-relevance feedback (:mod:`clinrag.retrieval.feedback`).
    """
    task = load_task(task_name, data)
    base = TASK_CONFIG if chunk_words is None else TASK_CONFIG.with_(chunk_max_words=chunk_words)
    results: list[RetrievalResult] = []
    with tempfile.TemporaryDirectory(prefix="clinrag-eval-") as tmp:
        if "lexical" in modes:
            results.append(run_task(task, mode="lexical", depth=depth, metrics=metrics, config=base, label="bm25s"))
        neural = [m for m in modes if m != "lexical"]
        if not neural:
            return results
        for i, bits in enumerate(nbits):
            cfg = base.with_(text_model=text_model, dim=dim, nbits=bits)
            t0 = time.perf_counter()
            engine = Engine.create(Path(tmp) / f"index-{bits}", cfg)
            engine.add(task.documents)
            build = time.perf_counter() - t0
            model = engine.manifest.models.get("text", text_model)
            for mode in neural:
                if mode in BASELINES and i > 0:
                    continue
                label = f"{model}" + ("" if mode in BASELINES else f", {bits}-bit") + (f", dim {dim}" if dim else "")
                results.append(run_task(task, mode=mode, depth=depth, metrics=metrics, engine=engine, label=label,
                                        index_seconds=build))
                if mode in ("late", "hybrid"):
                    for docs, weight in feedback:
                        results.append(run_task(
                            task, mode=mode, depth=depth, metrics=metrics, engine=engine, index_seconds=build,
                            label=f"{label}, feedback {docs} x {weight:g}",
                            late_params=LateParams(feedback_docs=docs, feedback_weight=weight)))
            engine.close()
    return results


def evaluate_retrieval(task: str, data: str | Path, *, mode: str = "lexical", depth: int = 100,
                       metrics: Sequence[str] = DEFAULT_METRICS, config: IndexConfig | None = None
                       ) -> RetrievalResult:
    """Load ``task`` from ``data`` and run it. See :mod:`clinrag.eval.tasks` for the tasks."""
    return run_task(load_task(task, data), mode=mode, depth=depth, metrics=metrics, config=config)


__all__ = ["BASELINES", "TASK_CONFIG", "RetrievalResult", "evaluate_modes", "evaluate_retrieval", "run_task"]
