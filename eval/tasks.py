"""Retrieval benchmark tasks: BEIR folders and two tasks built from a PubMedQA file.

- ``beir``: ``corpus.jsonl``, ``queries.jsonl`` and ``qrels/test.tsv`` (or ``qrels.tsv``).
- ``pubmedqa-questions``: each question against all abstracts; its own abstract is relevant.
  Saturated (BM25 nDCG@10 ~0.98): a sanity check.
- ``pubmedqa-mesh``: a query is a MeSH heading shared by 5 to 50 abstracts, phrased as the
  heading text; the abstracts indexed with it are relevant. The MeSH field is removed from
  the indexed documents, so only the text can match. The discriminating task.
"""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from dataclasses import dataclass, replace
from pathlib import Path

from clinrag.data.readers import read_records
from clinrag.data.schema import Document
from clinrag.errors import ConfigError, InputError

TASKS = ("beir", "pubmedqa-questions", "pubmedqa-mesh")
MESH_MIN, MESH_MAX = 5, 50


@dataclass(frozen=True)
class RetrievalTask:
    """A corpus, its queries and relevance judgements (``qrels[qid][doc_id] = grade``)."""

    name: str
    documents: tuple[Document, ...]
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]


def load_task(task: str, data: str | Path) -> RetrievalTask:
    """Load one of :data:`TASKS` from ``data`` (a BEIR folder or a PubMedQA json file)."""
    path = Path(data)
    if not path.exists():
        raise InputError("does not exist", path=str(path))
    if task == "beir":
        return load_beir(path)
    if task in ("pubmedqa-questions", "pubmedqa-mesh"):
        docs = [d for d in read_records([path], "pubmedqa") if isinstance(d, Document)]
        return pubmedqa_questions(docs) if task == "pubmedqa-questions" else pubmedqa_mesh(docs)
    raise ConfigError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")


def pubmedqa_questions(docs: list[Document]) -> RetrievalTask:
    queries = {d.id: str(d.metadata["question"]) for d in docs if d.metadata.get("question")}
    qrels = {qid: {qid: 1} for qid in queries}
    return RetrievalTask("pubmedqa-questions", tuple(docs), queries, qrels)


def pubmedqa_mesh(docs: list[Document], lo: int = MESH_MIN, hi: int = MESH_MAX) -> RetrievalTask:
    by_heading: dict[str, set[str]] = defaultdict(set)
    for d in docs:
        for heading in d.metadata.get("mesh", []) or []:
            by_heading[str(heading)].add(d.id)
    topics = sorted(h for h, ids in by_heading.items() if lo <= len(ids) <= hi)
    queries = {f"mesh:{i:03d}": h for i, h in enumerate(topics)}
    qrels = {f"mesh:{i:03d}": dict.fromkeys(sorted(by_heading[h]), 1) for i, h in enumerate(topics)}
    hidden = tuple(replace(d, metadata={k: v for k, v in d.metadata.items() if k != "mesh"}) for d in docs)
    return RetrievalTask("pubmedqa-mesh", hidden, queries, qrels)


def load_beir(folder: Path) -> RetrievalTask:
    corpus = folder / "corpus.jsonl"
    queries_path = folder / "queries.jsonl"
    qrels_path = next((p for p in (folder / "qrels" / "test.tsv", folder / "qrels.tsv") if p.exists()), None)
    for p in (corpus, queries_path):
        if not p.exists():
            raise InputError("missing: a BEIR folder needs corpus.jsonl, queries.jsonl and qrels/test.tsv",
                             path=str(p))
    if qrels_path is None:
        raise InputError("missing qrels/test.tsv (or qrels.tsv)", path=str(folder))
    docs = [d for d in read_records([corpus], "jsonl") if isinstance(d, Document)]
    queries: dict[str, str] = {}
    with open(queries_path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
                queries[str(obj["_id"])] = str(obj["text"])
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise InputError(f"bad query line ({exc})", path=str(queries_path), record=n) from None
    qrels: dict[str, dict[str, int]] = defaultdict(dict)
    with open(qrels_path, encoding="utf-8", newline="") as fh:
        for n, row in enumerate(csv.reader(fh, delimiter="\t"), 1):
            if n == 1 and row and not row[-1].lstrip("-").isdigit():
                continue  # header
            if len(row) < 3:
                raise InputError("expected query-id, corpus-id, score", path=str(qrels_path), record=n)
            if int(row[2]) > 0:
                qrels[row[0]][row[1]] = int(row[2])
    queries = {q: t for q, t in queries.items() if q in qrels}
    return RetrievalTask("beir", tuple(docs), queries, dict(qrels))


__all__ = ["TASKS", "RetrievalTask", "load_beir", "load_task", "pubmedqa_mesh", "pubmedqa_questions"]
