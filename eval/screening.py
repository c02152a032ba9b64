"""Screening metrics of a review run: Recall@k, rank of the last relevant record, WSS@95, recall curves.

A screener reads a question's ranking top-down. Given inclusion labels:

- ``recall@k``: share of the relevant records among the first ``k``;
- ``last_relevant_rank``: where the last relevant record is (None when some were never retrieved);
- ``wss@95`` (work saved over sampling, Cohen et al. 2006): ``(N - n) / N - 0.05``, where ``N`` is
  the number of records in the collection and ``n`` how many must be screened to reach 95% recall.
  Records the run did not retrieve are taken to be screened after the ranking, in random order;
  ``n`` then uses the expected position of the needed relevant ones among them.

A ranked record counts as relevant when its id or any duplicate merged into it is labelled relevant.

>>> m = screening_metrics(["a", "x", "b", "y"], {"a", "b"}, n_total=100, ks=(1, 3))
>>> m.recall_at, m.last_relevant_rank, round(m.wss95, 3)
({1: 0.5, 3: 1.0}, 3, 0.92)
"""

from __future__ import annotations

import csv
import json
import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clinrag.errors import InputError

DEFAULT_KS = (10, 50, 100)


@dataclass(frozen=True)
class ScreeningMetrics:
    """Metrics of one question (or their mean over questions, where ``question_id`` is ``"mean"``)."""

    question_id: str
    n_relevant: int
    n_ranked: int
    n_total: int
    recall_at: Mapping[int, float]
    recall_at_depth: float
    last_relevant_rank: int | None
    wss95: float
    screened_for_95: float
    curve: tuple[float, ...] = field(default=(), repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {"question_id": self.question_id, "n_relevant": self.n_relevant, "n_ranked": self.n_ranked,
                "n_total": self.n_total, **{f"recall@{k}": v for k, v in self.recall_at.items()},
                "recall@depth": self.recall_at_depth, "last_relevant_rank": self.last_relevant_rank,
                "wss@95": self.wss95, "screened_for_95": self.screened_for_95}


def screening_metrics(ranking: Sequence[str | Sequence[str]], relevant: set[str], *, n_total: int,
                      ks: Sequence[int] = DEFAULT_KS, question_id: str = "", target: float = 0.95
                      ) -> ScreeningMetrics:
    """Metrics of one ranking. Each item is a record id, or the ids of a record and its merged duplicates."""
    n_rel = len(relevant)
    if n_rel == 0:
        raise InputError("has no relevant records; a question needs at least one to be scored",
                         record=question_id or None)
    n_total = max(n_total, len(ranking))
    found_at: list[int] = []  # 1-based rank, once per relevant id found
    seen: set[str] = set()
    for rank, item in enumerate(ranking, 1):
        ids = [item] if isinstance(item, str) else list(item)
        for i in ids:
            if i in relevant and i not in seen:
                seen.add(i)
                found_at.append(rank)
    curve = [0.0] * len(ranking)
    j = 0
    for r in range(1, len(ranking) + 1):
        while j < len(found_at) and found_at[j] <= r:
            j += 1
        curve[r - 1] = j / n_rel
    recall_at = {k: (sum(1 for f in found_at if f <= k) / n_rel) for k in ks}
    last = found_at[-1] if len(found_at) == n_rel else None
    need = math.ceil(target * n_rel - 1e-9)
    if len(found_at) >= need:
        screened = float(found_at[need - 1])
    else:  # the rest is screened in random order: expected position of the t-th of R relevant among M
        t, r_left, m = need - len(found_at), n_rel - len(found_at), n_total - len(ranking)
        screened = len(ranking) + t * (m + 1) / (r_left + 1)
    wss = (n_total - screened) / n_total - (1 - target)
    return ScreeningMetrics(question_id, n_rel, len(ranking), n_total, recall_at, len(found_at) / n_rel, last,
                            wss, screened, tuple(curve))


def mean_metrics(per_question: Sequence[ScreeningMetrics]) -> dict[str, float | None]:
    """Macro averages over questions (``last_relevant_rank``: mean over questions where all were found)."""
    n = len(per_question)
    if not n:
        return {}
    out: dict[str, float | None] = {"questions": float(n)}
    for k in per_question[0].recall_at:
        out[f"recall@{k}"] = sum(m.recall_at[k] for m in per_question) / n
    out["recall@depth"] = sum(m.recall_at_depth for m in per_question) / n
    lasts = [m.last_relevant_rank for m in per_question if m.last_relevant_rank is not None]
    out["last_relevant_rank"] = sum(lasts) / len(lasts) if lasts else None
    out["all_found_share"] = len(lasts) / n
    out["wss@95"] = sum(m.wss95 for m in per_question) / n
    return out


def read_labels(path: str | Path) -> dict[str, set[str]]:
    """Inclusion labels: CSV/TSV with ``question_id,doc_id[,included]`` or JSON ``{question: [ids] | {id: 0/1}}``."""
    p = Path(path)
    if not p.exists():
        raise InputError("does not exist", path=str(p))
    labels: dict[str, set[str]] = defaultdict(set)
    if p.suffix.lower() == ".json":
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise InputError(f"invalid JSON: {exc}", path=str(p)) from None
        if not isinstance(data, dict):
            raise InputError("expected an object of question id -> relevant ids", path=str(p))
        for q, ids in data.items():
            if isinstance(ids, dict):
                labels[str(q)] |= {str(d) for d, v in ids.items() if int(v) > 0}
            elif isinstance(ids, list):
                labels[str(q)] |= {str(d) for d in ids}
            else:
                raise InputError("expected a list of ids or an {id: label} object", path=str(p), record=str(q))
        return dict(labels)
    delim = "\t" if p.suffix.lower() in (".tsv", ".qrels") else ","
    with open(p, encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh, delimiter=delim)
        cols = set(reader.fieldnames or [])
        if not {"question_id", "doc_id"} <= cols:
            raise InputError(f"needs columns question_id and doc_id (found {sorted(cols)})", path=str(p))
        for n, row in enumerate(reader, 2):
            val = (row.get("included") or "1").strip().lower()
            if val not in ("1", "0", "true", "false", "yes", "no"):
                raise InputError(f"expected 1/0, got {val!r}", path=str(p), record=n, field="included")
            if val in ("1", "true", "yes"):
                labels[row["question_id"]].add(row["doc_id"])
    return dict(labels)


def read_run(run_dir: str | Path) -> tuple[dict[str, Any], dict[str, list[list[str]]]]:
    """A review output folder's manifest and, per question, its ranking (each record with its duplicates)."""
    import pyarrow.parquet as pq

    d = Path(run_dir)
    try:
        manifest = json.loads((d / "manifest.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError("no manifest.json: not a `clinrag review` output folder", path=str(d)) from None
    if manifest.get("format") != "clinrag-review-run":
        raise InputError("manifest.json is not a clinrag review run manifest", path=str(d))
    rankings: dict[str, list[list[str]]] = {}
    for qid in manifest.get("questions", {}):
        t = pq.read_table(d / qid / "ranked.parquet", columns=["id", "duplicates"]).to_pylist()
        rankings[qid] = [[r["id"], *(s.rsplit(" (", 1)[0] for s in r["duplicates"] or [])] for r in t]
    return manifest, rankings


def evaluate_run(run_dir: str | Path, labels: Mapping[str, set[str]], *, ks: Sequence[int] = DEFAULT_KS,
                 n_total: int | None = None) -> list[ScreeningMetrics]:
    """Score every labelled question of a run (``n_total``: the collection size; default the index's documents)."""
    manifest, rankings = read_run(run_dir)
    if n_total is None:
        n_total = int(manifest.get("index", {}).get("manifest", {}).get("counts", {}).get("documents", 0))
    missing = sorted(set(labels) - set(rankings))
    if missing:
        raise InputError(f"labelled questions {missing[:5]} are not in the run", path=str(run_dir))
    return [screening_metrics(rankings[q], labels[q], n_total=n_total, ks=ks, question_id=q)
            for q in rankings if q in labels and labels[q]]


def plot_recall(curves: Mapping[str, Sequence[ScreeningMetrics]], path: str | Path, *, title: str = "") -> Path:
    """Write a recall-vs-records-screened PNG: the mean curve of each run and the random-screening line."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover
        from clinrag.errors import MissingDependencyError

        raise MissingDependencyError("matplotlib", "review", "recall plots") from exc
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    n_total = 0
    for label, ms in curves.items():
        if not ms:
            continue
        n_total = max(n_total, max(m.n_total for m in ms))
        width = max(len(m.curve) for m in ms)
        mean = [sum((m.curve[i] if i < len(m.curve) else (m.curve[-1] if m.curve else 0.0)) for m in ms) / len(ms)
                for i in range(width)]
        ax.plot(range(1, width + 1), mean, label=f"{label} ({len(ms)} questions)")
    if n_total:
        xmax = ax.get_xlim()[1]
        ax.plot([0, xmax], [0, xmax / n_total], "k:", label=f"random order (N={n_total})")
    ax.set_xlabel("records screened (per question, in ranked order)")
    ax.set_ylabel("mean recall")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    if title:
        ax.set_title(title)
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out


__all__ = ["DEFAULT_KS", "ScreeningMetrics", "evaluate_run", "mean_metrics", "plot_recall", "read_labels",
           "read_run", "screening_metrics"]
