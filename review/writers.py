"""Writing a question's output folder atomically: ranked CSV + Parquet, RIS, completion marker.

A question's files are written into a temporary folder beside ``OUT/<question id>/`` and
renamed into place, so a question folder is either complete (with ``done.json``, written
last) or absent; a killed run leaves at most a stray temporary folder, removed on resume.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from clinrag.errors import MissingDependencyError
from clinrag.indexing.manifest import atomic_write_text, fsync_dir
from clinrag.review.result import LEAD_COLUMNS, TAIL_COLUMNS, QuestionResult, ReviewRecord

DONE = "done.json"
CSV_NAME, PARQUET_NAME, RIS_NAME = "ranked.csv", "ranked.parquet", "records.ris"
LIST_SEP = " | "


def columns(n_formulations: int) -> list[str]:
    return [*LEAD_COLUMNS, *(f"rank_f{i + 1}" for i in range(n_formulations)), *TAIL_COLUMNS]


def write_csv(path: Path, rows: Sequence[Mapping[str, Any]], cols: Sequence[str]) -> None:
    with open(path, "w", encoding="utf-8", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(cols))
        w.writeheader()
        for row in rows:
            w.writerow({k: (LIST_SEP.join(v) if isinstance(v, list) else "" if v is None else v)
                        for k, v in row.items()})


def write_parquet(path: Path, rows: Sequence[Mapping[str, Any]], n_formulations: int) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([
        ("rank", pa.int32()), ("id", pa.string()), ("title", pa.string()), ("year", pa.int32()),
        ("score", pa.float64()), ("pmid", pa.string()), ("doi", pa.string()), ("status", pa.string()),
        *((f"rank_f{i + 1}", pa.int32()) for i in range(n_formulations)),
        ("matched_entities", pa.list_(pa.string())), ("flag_reasons", pa.list_(pa.string())),
        ("snippets", pa.list_(pa.string())), ("duplicates", pa.list_(pa.string())), ("criteria_json", pa.string()),
    ])
    table = pa.Table.from_pylist([dict(r) for r in rows], schema=schema)
    pq.write_table(table, path)


def read_parquet(path: Path, n_formulations: int) -> list[ReviewRecord]:
    import pyarrow.parquet as pq

    return [ReviewRecord.from_row(r, n_formulations) for r in pq.read_table(path).to_pylist()]


def ris_entries(records: Sequence[ReviewRecord], question_id: str, abstracts: Mapping[str, str]) -> list[dict]:
    """RIS entries (rispy field names) for screening tools: one JOUR reference per record."""
    out = []
    for r in records:
        e: dict[str, Any] = {"type_of_reference": "JOUR", "id": r.doc_id,
                             "title": r.title or _first_words(abstracts.get(r.doc_id, "")),
                             "notes": [f"clinrag review {question_id}: rank {r.rank}, score {r.score:.6g}, {r.status}",
                                       *(f.describe() for f in r.flags),
                                       *(f"duplicate merged: {i} ({why})" for i, why in r.duplicates)]}
        if r.year is not None:
            e["year"] = str(r.year)
        if r.pmid:
            e["accession_number"] = r.pmid
            e["urls"] = [f"https://pubmed.ncbi.nlm.nih.gov/{r.pmid}/"]
        if r.doi:
            e["doi"] = r.doi
        if abstracts.get(r.doc_id):
            e["abstract"] = " ".join(abstracts[r.doc_id].split())
        if r.matched_entities:
            e["keywords"] = list(r.matched_entities)
        out.append(e)
    return out


def _first_words(text: str, n: int = 20) -> str:
    words = text.split()
    return " ".join(words[:n]) + (" ..." if len(words) > n else "")


def write_ris(path: Path, entries: Sequence[Mapping[str, Any]]) -> None:
    try:
        import rispy
    except ImportError as exc:  # pragma: no cover
        raise MissingDependencyError("rispy", "review", "RIS export") from exc
    with open(path, "w", encoding="utf-8") as fh:
        rispy.dump(list(entries), fh)


def write_question(out: Path, result: QuestionResult, marker: Mapping[str, Any],
                   abstracts: Mapping[str, str]) -> dict[str, str]:
    """Write ``OUT/<question id>/`` atomically; returns the files' paths relative to ``out``."""
    qid = result.question_id
    final = out / qid
    tmp = out / f".{qid}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir(parents=True)
    try:
        n = len(result.formulations)
        rows = [r.to_row(result.formulations) for r in result.records]
        write_csv(tmp / CSV_NAME, rows, columns(n))
        write_parquet(tmp / PARQUET_NAME, rows, n)
        write_ris(tmp / RIS_NAME, ris_entries(result.records, qid, abstracts))
        (tmp / DONE).write_text(json.dumps(dict(marker), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        for p in tmp.iterdir():
            with open(p, "rb") as fh:
                os.fsync(fh.fileno())
        replace_dir(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {k: f"{qid}/{name}" for k, name in (("csv", CSV_NAME), ("parquet", PARQUET_NAME), ("ris", RIS_NAME))}


def replace_dir(new: Path, target: Path) -> None:
    """Put folder ``new`` at ``target`` with renames only (an old ``target`` is moved aside, then removed)."""
    trash = None
    if target.exists():
        trash = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
        os.rename(target, trash)
    os.rename(new, target)
    fsync_dir(target.parent)
    if trash is not None:
        shutil.rmtree(trash, ignore_errors=True)


def read_marker(out: Path, qid: str) -> dict[str, Any] | None:
    """The completion marker of a finished question, or None (absent or unreadable: redo it)."""
    path = out / qid / DONE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def clean_temp(out: Path) -> int:
    """Remove temporary folders left by a killed run; returns how many."""
    n = 0
    for p in out.glob(".*.tmp-*"):
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
            n += 1
    for p in out.glob(".*.old-*"):
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
    return n


def write_run_manifest(out: Path, manifest: Mapping[str, Any]) -> None:
    atomic_write_text(out / "manifest.json", json.dumps(dict(manifest), indent=2, ensure_ascii=False) + "\n")


__all__ = ["CSV_NAME", "DONE", "PARQUET_NAME", "RIS_NAME", "clean_temp", "columns", "read_marker", "read_parquet",
           "replace_dir", "ris_entries", "write_question", "write_run_manifest"]
