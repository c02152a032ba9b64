"""``clinrag eval longitudinal``: build (or reuse) an index of a FHIR folder, generate the benchmark,
calibrate the QR heads on a seed set from held-out patients, and score every stage."""

from __future__ import annotations

import logging
import random
import tempfile
import time
from pathlib import Path
from typing import Any

from clinrag.config import IndexConfig
from clinrag.engine import Engine
from clinrag.errors import ConfigError, IndexNotFoundError
from clinrag.eval.longitudinal import (
    LongQuestion,
    generate_questions,
    read_fhir_folder,
    run_longitudinal,
    subsample,
)
from clinrag.retrieval.rerank import FastReranker

log = logging.getLogger(__name__)


def open_or_build(data: Path, index_dir: Path | None, docs: list[Any], text_model: str | None = "default") -> Engine:
    """Open ``index_dir`` if it holds an index, else build a hybrid index of ``docs`` there (or in a temp dir)."""
    if index_dir is not None:
        try:
            return Engine.open(index_dir)
        except IndexNotFoundError:
            pass
    target = index_dir or Path(tempfile.mkdtemp(prefix="clinrag-long-")) / "index"
    engine = Engine.create(target, IndexConfig(text_model=text_model))
    t0 = time.perf_counter()
    engine.add(docs)
    log.info("indexed %d documents of %s in %.0fs", len(docs), data, time.perf_counter() - t0)
    return engine


def seed_examples(engine: Engine, questions: list[LongQuestion], depth: int, with_memory: bool) -> list[Any]:
    """Labelled QR calibration examples: each seed question's first-stage hits (kept, to choose the
    interpolation weight) and their qrels."""
    from clinrag.retrieval.qr import SeedExample, _candidate_text

    out = []
    for q in questions:
        filters = {"patient_id": q.patient_id} if q.patient_id else None
        hits = engine.search(q.query, k=depth, filters=filters, unique_docs=True, temporal=False)
        if not hits:
            continue
        mem = engine.memory(q.patient_id).to_text(cite=False) if with_memory and q.patient_id else None
        out.append(SeedExample(q.query, tuple(_candidate_text(h) for h in hits),
                               tuple(int(q.qrels.get(h.doc_id, 0)) for h in hits), mem, tuple(hits)))
    return out


def split_seed(questions: list[LongQuestion], seed_size: int, seed: int = 0) -> tuple[list[LongQuestion],
                                                                                        list[LongQuestion]]:
    """Seed questions from whole held-out patients (never evaluated), and the evaluation questions."""
    patients = sorted({q.patient_id for q in questions})
    random.Random(seed).shuffle(patients)
    held: set[str] = set()
    n = 0
    for pid in patients:
        if n >= seed_size or len(held) >= max(1, len(patients) // 3) or len(held) + 1 >= len(patients):
            break
        held.add(pid)
        n += sum(q.patient_id == pid for q in questions)
    seed_qs = [q for q in questions if q.patient_id in held][:seed_size]
    return seed_qs, [q for q in questions if q.patient_id not in held]


def evaluate_longitudinal(data: str | Path, *, index_dir: Path | None = None, n_questions: int | None = None,
                          depth: int = 20, qr_model: str | None = "gemma", seed_size: int = 16,
                          n_heads: int = 16, seed: int = 0, orders: int = 2,
                          text_model: str | None = "default", null_query: bool = True) -> dict[str, Any]:
    """Run the whole benchmark on ``data``; the payload of ``clinrag eval longitudinal --json``."""
    data = Path(data)
    if not data.exists():
        raise ConfigError(f"--data {data} does not exist; point it at a folder of FHIR bundles")
    docs = read_fhir_folder(data)
    questions = generate_questions(docs, seed=seed)
    if not questions:
        raise ConfigError(f"{data}: no questions could be generated (no FHIR patients with conditions, labs, "
                          "medications, procedures or immunisations)")
    seed_qs, eval_qs = split_seed(questions, seed_size if qr_model else 0, seed)
    eval_qs = subsample(eval_qs, n_questions, seed)
    engine = open_or_build(data, index_dir, docs, text_model)
    rerankers: dict[str, Any] = {"fast_rerank": FastReranker()}
    payload: dict[str, Any] = {"data": str(data), "n_documents": len(docs), "n_questions": len(eval_qs),
                               "n_generated": len(questions), "n_patients": len({q.patient_id for q in eval_qs}),
                               "depth": depth, "question_types": sorted({q.type for q in eval_qs})}
    if qr_model:
        from clinrag.retrieval.qr import QRReranker, calibrate_heads, get_causal_lm, save_heads

        lm = get_causal_lm(qr_model)
        t0 = time.perf_counter()
        selection = calibrate_heads(lm, seed_examples(engine, seed_qs, depth, with_memory=True), n_heads,
                                    null_query=null_query)
        save_heads(engine.root, selection)
        payload.update(seed_size=selection.seed_size, heads=[list(h) for h in selection.heads],
                       qr_weight=selection.weight, qr_weight_seed_ndcg=list(selection.weight_ndcg),
                       null_query=selection.null_query, calibration_seconds=round(time.perf_counter() - t0, 1),
                       qr_model=qr_model, orders=orders)
        rerankers["qr_rerank"] = QRReranker(lm, selection, top_n=depth, orders=orders)
        rerankers["qr_rerank_no_memory"] = QRReranker(lm, selection, top_n=depth, orders=orders, use_memory=False)
    results = run_longitudinal(engine, eval_qs, rerankers, depth=depth,
                               memory_for=lambda pid: engine.memory(pid).to_text(cite=False))
    stages = {k: v.to_dict() for k, v in results.items()}
    payload["stages"] = stages
    payload.update(stages)
    if "qr_rerank" in stages:
        base = stages["first_stage"]["ndcg@10"]
        fast = stages["fast_rerank"]["ndcg@10"]
        payload["qr_gain_ndcg@10"] = {"with_memory": round(stages["qr_rerank"]["ndcg@10"] - base, 4),
                                      "without_memory": round(stages["qr_rerank_no_memory"]["ndcg@10"] - base, 4)}
        payload["qr_gain_over_fast_ndcg@10"] = {
            "with_memory": round(stages["qr_rerank"]["ndcg@10"] - fast, 4),
            "without_memory": round(stages["qr_rerank_no_memory"]["ndcg@10"] - fast, 4)}
    payload["index"] = str(engine.root)
    engine.close()
    return payload


__all__ = ["evaluate_longitudinal", "open_or_build", "seed_examples", "split_seed"]
