"""QR-head reranking: a causal LM reads the candidates and the question in one prompt; a candidate's
QR score is the attention paid from the question's tokens to the candidate's tokens, summed over a
few selected "query-focused retrieval heads" (QRHead, arXiv 2506.09944; QRRanker, arXiv 2602.12192).
The attention computation itself is in :mod:`clinrag.retrieval.qr_attention`.

Prompt: ``[patient memory] Records: [1] ... [2] ... Question: <query> Relevant records:``; the
memory (a summary of the wider record) is prepended when given.

The score of a candidate, in four steps:

1. Attention mass: per selected head, the attention probability from the question's tokens to the
   candidate's tokens, averaged over the question's tokens, summed over the heads.
2. Null-query calibration (QRHead's calibration; ``null_query``): the same mass with the
   content-free question ``"N/A"`` in the same prompt is subtracted, which removes the attention a
   candidate draws whatever is asked (long, early or salient records). One more forward pass.
3. Position-bias defence: attention favours the start and the end of a prompt. Each list is scored
   in its given order and in reverse (``orders=2``, the default) and the two scores are averaged
   (each divided by its list's mean mass); ``orders=1`` halves the cost.
4. Interpolation with the first stage: the final score is ``(1 - w) * base + w * qr``, both scaled
   to the list (divided by the best, or min-max when negative); ``base`` is the
   :class:`~clinrag.retrieval.rerank.FastReranker` score (``base=None``: the first-stage score).
   The query's time intent ("latest", "first", "in 2016") is then applied to that order exactly as
   the fast path does (:func:`~clinrag.retrieval.temporal.apply_intent`), so an attention score
   never overrides "most recent". With ``w = 0`` the result is the base reranker's order.

:func:`calibrate_heads` chooses, from a small labelled seed set (questions of held-out patients):
the heads (every head of every layer is scored; the ``n_heads`` whose own ranking has the best mean
nDCG@10 are kept) and then ``w`` (the grid 0, 0.1, ..., 1 by mean nDCG@10 of the final ranking on the
same seed set; ties go to the smaller ``w``). Both are stored as a :class:`HeadSelection` with the
index (``qr_heads.json``, format version 2; version-1 files still load, as pure QR without the null
query, i.e. ``w = 1``: what they meant). ``clinrag rerank calibrate`` writes it.

>>> sel = HeadSelection("m", ((3, 1),), seed_size=8, weight=0.3, null_query=True)
>>> HeadSelection.from_dict(sel.to_dict()) == sel, HeadSelection.from_dict({"model": "m", "heads": []}).weight
(True, 1.0)
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from clinrag.errors import ConfigError, IndexFormatError
from clinrag.retrieval.base import Hit
from clinrag.retrieval.fusion import scale
from clinrag.retrieval.qr_attention import (
    PACKAGED,
    CausalLM,
    Prompt,
    build_prompt,
    get_causal_lm,
    head_scores,
    load_causal_lm,
    packaged_model_dir,
)
from clinrag.retrieval.rerank import FastReranker, Reranker
from clinrag.retrieval.temporal import apply_intent, detect_intent

log = logging.getLogger(__name__)
HEADS_FILE = "qr_heads.json"
HEADS_FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
QRRANKER_ID = "MindscapeRAG/QRRanker"
NULL_QUERY = "N/A"
WEIGHT_GRID = tuple(i / 10 for i in range(11))


@dataclass(frozen=True)
class HeadSelection:
    """The heads a model scores with, as ``(layer, head)`` pairs, how they were chosen, the QR share
    ``weight`` of the final score, whether the null query is subtracted, and the seed-set nDCG@10
    of each weight of :data:`WEIGHT_GRID` (``weight_ndcg``, for inspection)."""

    model: str
    heads: tuple[tuple[int, int], ...]
    seed_size: int = 0
    head_scores: tuple[float, ...] = ()
    weight: float = 1.0
    null_query: bool = False
    weight_ndcg: tuple[float, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "heads": [list(h) for h in self.heads], "seed_size": self.seed_size,
                "head_scores": list(self.head_scores), "weight": self.weight, "null_query": self.null_query,
                "weight_ndcg": list(self.weight_ndcg)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> HeadSelection:
        """Read an entry; a version-1 entry (no weight, no null query) reads as pure QR."""
        return cls(str(data["model"]), tuple((int(a), int(b)) for a, b in data["heads"]),
                   int(data.get("seed_size", 0)), tuple(float(x) for x in data.get("head_scores", ())),
                   float(data.get("weight", 1.0)), bool(data.get("null_query", False)),
                   tuple(float(x) for x in data.get("weight_ndcg", ())))


def save_heads(index_dir: str | Path, selection: HeadSelection) -> Path:
    """Store ``selection`` with the index (``qr_heads.json``, one entry per model; atomic replace)."""
    from clinrag.indexing.manifest import atomic_write_text
    from clinrag.indexing.writer import IndexLock

    root = Path(index_dir)
    path = root / HEADS_FILE
    with IndexLock(root):
        data = _read_heads(path)
        data["models"][selection.model] = selection.to_dict()
        data["format_version"] = HEADS_FORMAT_VERSION  # version-1 entries are valid version-2 entries
        atomic_write_text(path, json.dumps(data, indent=2))
    return path


def _read_heads(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {"format": "clinrag-qr-heads", "format_version": HEADS_FORMAT_VERSION, "models": {}}
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise IndexFormatError(f"{path} cannot be read ({exc}); run `clinrag rerank calibrate` again") from exc
    if data.get("format_version") not in READABLE_VERSIONS:
        raise IndexFormatError(f"{path} has format version {data.get('format_version')} (this clinrag reads "
                               f"{', '.join(map(str, READABLE_VERSIONS))}); run `clinrag rerank calibrate` again")
    return dict(data)


def load_heads(index_dir: str | Path, model: str) -> HeadSelection | None:
    """The heads calibrated for ``model`` on this index, or None."""
    entry = _read_heads(Path(index_dir) / HEADS_FILE)["models"].get(model)
    return HeadSelection.from_dict(entry) if entry else None


def ndcg_at(scores: Sequence[float], relevance: Sequence[int], k: int = 10) -> float:
    """nDCG@k of ranking by ``scores`` (ties broken by list position) for graded ``relevance``.

    >>> ndcg_at([0.9, 0.1], [1, 0]), ndcg_at([0.1, 0.9], [1, 0]) < 1
    (1.0, True)
    """
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))[:k]
    dcg = sum((2 ** relevance[i] - 1) / math.log2(r + 2) for r, i in enumerate(order))
    ideal = sorted(relevance, reverse=True)[:k]
    idcg = sum((2 ** g - 1) / math.log2(r + 2) for r, g in enumerate(ideal))
    return dcg / idcg if idcg > 0 else 0.0


def question_mass(lm: CausalLM, prompt: Prompt, heads: Sequence[tuple[int, int]] | None = None) -> Any:
    """:func:`head_scores` divided by the question's token count (mass per question token)."""
    return head_scores(lm, prompt, heads) / max(1, prompt.query[1] - prompt.query[0])


@dataclass(frozen=True)
class SeedExample:
    """One labelled example for calibration: a query, its candidates' texts and their relevance;
    ``hits`` (the first-stage hits the texts come from) are needed to choose the interpolation weight."""

    query: str
    texts: tuple[str, ...]
    relevance: tuple[int, ...]
    memory: str | None = None
    hits: tuple[Hit, ...] = ()


def calibrate_heads(lm: CausalLM, seed: Sequence[SeedExample], n_heads: int = 16,
                    max_candidate_tokens: int = 150, *, null_query: bool = True,
                    base: Reranker | None = FastReranker(), grid: Sequence[float] = WEIGHT_GRID) -> HeadSelection:
    """Keep the ``n_heads`` heads with the best mean nDCG@10 on the seed examples, then choose the
    interpolation weight on the same examples (when they carry their hits; else ``w = 1``)."""
    usable = [ex for ex in seed if any(ex.relevance) and len(ex.texts) > 1]
    if not usable:
        raise ConfigError("the calibration seed set has no example with a relevant and an irrelevant candidate")
    per_example = []
    for ex in usable:
        s = question_mass(lm, build_prompt(lm.tokenizer, ex.query, ex.texts, ex.memory, max_candidate_tokens))
        if null_query:
            s = s - question_mass(lm, build_prompt(lm.tokenizer, NULL_QUERY, ex.texts, ex.memory,
                                                   max_candidate_tokens))
        per_example.append(s)
    flat = []
    for i in range(lm.n_layers):
        for j in range(lm.n_heads):
            mean = sum(ndcg_at(s[i, j].tolist(), ex.relevance) for s, ex in zip(per_example, usable, strict=True))
            flat.append((mean / len(usable), i, j))
    best = sorted(flat, reverse=True)[:n_heads]
    heads = tuple((i, j) for _, i, j in best)
    weight = 1.0
    curve: tuple[float, ...] = ()
    if all(len(ex.hits) == len(ex.texts) for ex in usable):
        qr = [[float(sum(s[i, j, c] for i, j in heads)) for c in range(len(ex.texts))]
              for s, ex in zip(per_example, usable, strict=True)]
        weight, curve = choose_weight(usable, qr, base, grid)
    else:
        log.warning("the seed examples carry no hits: the QR weight is not calibrated (w = 1, pure QR)")
    return HeadSelection(lm.name, heads, len(usable), tuple(round(s, 4) for s, _, _ in best), weight, null_query,
                         curve)


def choose_weight(seed: Sequence[SeedExample], qr: Sequence[Sequence[float]], base: Reranker | None = FastReranker(),
                  grid: Sequence[float] = WEIGHT_GRID) -> tuple[float, tuple[float, ...]]:
    """The weight of ``grid`` whose final ranking (:func:`combine`) has the best mean nDCG@10 on
    ``seed`` (``qr``: each example's QR scores); ties go to the smaller weight. Also returns the curve."""
    curve = []
    for w in grid:
        total = 0.0
        for ex, scores in zip(seed, qr, strict=True):
            ranked = combine(ex.query, ex.hits, scores, w, base)
            pos = {h.chunk_id: r for r, h in enumerate(ranked)}
            total += ndcg_at([-pos[h.chunk_id] for h in ex.hits], ex.relevance)
        curve.append(round(total / max(1, len(seed)), 4))
    best = max(range(len(grid)), key=lambda i: (curve[i], -grid[i]))
    return float(grid[best]), tuple(curve)


def combine(query: str, hits: Sequence[Hit], qr: Sequence[float], weight: float,
            base: Reranker | None = FastReranker(), *, temporal: bool = True, name: str = "qr") -> list[Hit]:
    """``hits`` ranked by ``(1 - weight) * base + weight * qr`` (both :func:`scale`-d), then the query's
    time intent applied; ``stage_scores[name]`` holds the QR score."""
    hits = list(hits)
    if base is not None:
        by_id = {h.chunk_id: h for h in base.rerank(query, hits)}
        base_scores = [by_id[h.chunk_id].stage_scores.get(base.name, by_id[h.chunk_id].score) for h in hits]
    else:
        base_scores = [h.stage_scores.get("late", h.score) for h in hits]
    b, q = scale(base_scores), scale(qr)
    scored = [replace(h, score=(1 - weight) * bs + weight * qs, stage_scores={**h.stage_scores, name: raw})
              for h, bs, qs, raw in zip(hits, b, q, qr, strict=True)]
    scored.sort(key=lambda h: -h.score)
    intent = detect_intent(query) if temporal else None
    if intent is not None and not intent.empty:
        scored = apply_intent(scored, intent)
    return [replace(h, rank=i) for i, h in enumerate(scored, 1)]


# -- the reranker --------------------------------------------------------------------------------------
@dataclass
class QRReranker:
    """Listwise attention reranker over the top ``top_n`` hits (the rest keep their order below).

    ``heads``: the calibrated :class:`HeadSelection`, which also gives the weight and the null-query
    switch unless ``weight`` / ``null_query`` are given (without a selection: the heads of the upper
    half of the layers, ``w = 0.5``, null query on; calibrate instead). ``use_memory=False`` ignores
    a given memory. ``base``: the reranker interpolated with (None: the first-stage score).
    """

    lm: CausalLM
    heads: HeadSelection | None = None
    top_n: int = 20
    orders: int = 2
    max_candidate_tokens: int = 150
    use_memory: bool = True
    weight: float | None = None
    null_query: bool | None = None
    base: Reranker | None = FastReranker()
    temporal: bool = True
    name: str = "qr"

    def __post_init__(self) -> None:
        if self.orders not in (1, 2):
            raise ConfigError(f"orders must be 1 or 2, got {self.orders}")
        if self.weight is None:
            self.weight = self.heads.weight if self.heads is not None else 0.5
        if self.null_query is None:
            self.null_query = self.heads.null_query if self.heads is not None else True
        if not 0.0 <= self.weight <= 1.0:
            raise ConfigError(f"the QR weight must lie in [0, 1], got {self.weight}")

    @property
    def selected(self) -> list[tuple[int, int]]:
        if self.heads is not None:
            return list(self.heads.heads)
        n = self.lm.n_layers
        return [(i, j) for i in range(n // 2, n) for j in range(self.lm.n_heads)]

    def scores(self, query: str, texts: Sequence[str], memory: str | None = None) -> list[float]:
        """The QR score of each text (higher: more relevant), averaged over the given and the reversed order."""
        heads = self.selected
        mem = memory if self.use_memory else None
        n = len(texts)
        total = [0.0] * n
        orders = [list(range(n))] + ([list(reversed(range(n)))] if self.orders == 2 and n > 1 else [])
        for order in orders:
            listed = [texts[i] for i in order]
            s = question_mass(self.lm, build_prompt(self.lm.tokenizer, query, listed, mem, self.max_candidate_tokens),
                              heads)
            per = [float(sum(s[layer, head, c] for layer, head in heads)) for c in range(n)]
            mean = sum(per) / n or 1.0
            if self.null_query:
                s0 = question_mass(self.lm, build_prompt(self.lm.tokenizer, NULL_QUERY, listed, mem,
                                                         self.max_candidate_tokens), heads)
                per = [p - float(sum(s0[layer, head, c] for layer, head in heads)) for c, p in enumerate(per)]
            for c, i in enumerate(order):
                total[i] += per[c] / mean / len(orders)
        return total

    def rerank(self, query: str, hits: Sequence[Hit], k: int | None = None, *,
               memory: str | None = None) -> list[Hit]:
        hits = list(hits)
        if len(hits) < 2:
            return [replace(h, rank=i) for i, h in enumerate(hits, 1)]
        head, tail = hits[: self.top_n], hits[self.top_n:]
        qr = self.scores(query, [_candidate_text(h) for h in head], memory)
        out = combine(query, head, qr, float(self.weight or 0.0), self.base, temporal=self.temporal, name=self.name)
        out = [replace(h, rank=i) for i, h in enumerate(out + tail, 1)]
        return out[:k] if k else out


def _candidate_text(h: Hit) -> str:
    date = h.timestamp.date().isoformat() if h.timestamp else ""
    return (f"({date}) " if date and date not in h.text else "") + h.text


__all__ = ["HEADS_FILE", "NULL_QUERY", "PACKAGED", "WEIGHT_GRID", "CausalLM", "HeadSelection", "Prompt",
           "QRReranker", "SeedExample", "build_prompt", "calibrate_heads", "choose_weight", "combine",
           "get_causal_lm", "head_scores", "load_causal_lm", "load_heads", "ndcg_at", "packaged_model_dir",
           "question_mass", "save_heads", "scale"]
