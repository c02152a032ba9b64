"""Image search: FAISS over the images table's embeddings, and image hits with their linked notes.

The embeddings (L2-normalised, so inner product = cosine) are read once from LanceDB into a
FAISS flat inner-product index; on a machine with faiss-gpu and a GPU the index is moved to
the GPU, otherwise it stays on the CPU (the same code either way). A filtered search scores
only the admitted images (exactly: a FAISS ID-selector bitmap on the CPU, ``faiss.knn`` over the
admitted rows on the GPU), so it still returns up to ``k``.

>>> import numpy as np
>>> idx = ImageIndex(["a", "b", "c"], np.eye(3, dtype=np.float32))
>>> [s.chunk_id for s in idx.search(np.array([[0.1, 1.0, 0.0]], np.float32), 2)[0]]
['b', 'a']
>>> [s.chunk_id for s in idx.search(np.array([[0.1, 1.0, 0.0]], np.float32), 2, frozenset({"c"}))[0]]
['c']
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from clinrag.indexing.store import IMAGE_VECTOR, LanceStore, sql_in
from clinrag.retrieval.base import Hit, Scored

log = logging.getLogger(__name__)
IMAGE_COLUMNS = ("image_id", "path", "modality", "caption", "source", "patient_id", "encounter_id", "timestamp",
                 "meta_json")


@dataclass(frozen=True)
class ImageHit(Hit):
    """A search result that is an image: its file, modality and the notes linked to it.

    ``doc_id`` and ``chunk_id`` are the image id, ``kind`` is ``"image"``, ``text`` the caption
    (or, without one, the first linked note).
    """

    path: str = ""
    modality: str = ""
    linked_ids: tuple[str, ...] = ()
    linked_text: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        """Hit's JSON form plus ``path``, ``modality``, ``linked_ids`` and ``linked_text``."""
        d = super().to_dict()
        d.update(path=self.path, modality=self.modality, linked_ids=list(self.linked_ids),
                 linked_text=list(self.linked_text))
        d["metadata"].update(path=self.path, modality=self.modality)
        return d


def _faiss() -> Any:
    try:
        import faiss
    except ImportError as exc:  # pragma: no cover - faiss-cpu is a core dependency
        from clinrag.errors import MissingDependencyError

        raise MissingDependencyError("faiss-cpu", "images", "image search") from exc
    return faiss


class ImageIndex:
    """Exact inner-product search over image embeddings (FAISS, on the GPU when faiss-gpu finds one)."""

    def __init__(self, ids: Sequence[str], vectors: np.ndarray, *, use_gpu: bool | None = None) -> None:
        faiss = _faiss()
        self.ids = list(ids)
        self.vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self.dim = int(self.vectors.shape[1]) if self.vectors.ndim == 2 else 0
        self._pos = {i: n for n, i in enumerate(self.ids)}
        index = faiss.IndexFlatIP(self.dim)
        index.add(self.vectors)
        self.device = "cpu"
        gpus = faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0
        if (use_gpu is None and gpus > 0) or use_gpu:
            index = faiss.index_cpu_to_gpu(faiss.StandardGpuResources(), 0, index)
            self.device = "cuda"
        self.index = index

    @classmethod
    def from_store(cls, store: LanceStore, *, use_gpu: bool | None = None) -> ImageIndex:
        """Load every embedded image of the store's (pinned) images table."""
        table = store.scan("images", ["image_id", IMAGE_VECTOR], f"{IMAGE_VECTOR} IS NOT NULL")
        dim = store.image_dim or 0
        flat = table.column(IMAGE_VECTOR).combine_chunks().flatten().to_numpy(zero_copy_only=False)
        vectors = np.asarray(flat, np.float32).reshape(-1, dim) if dim else np.zeros((0, 0), np.float32)
        log.info("loaded %d image embeddings (dim %d)", len(vectors), dim)
        return cls(table.column("image_id").to_pylist(), vectors, use_gpu=use_gpu)

    def __len__(self) -> int:
        return len(self.ids)

    def search(self, queries: np.ndarray, k: int, allowed: frozenset[str] | None = None) -> list[list[Scored]]:
        """The ``k`` most similar images per query row (restricted to ``allowed`` ids when given)."""
        faiss = _faiss()
        q = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        if allowed is None:
            ids = self.ids
            kk = min(k, len(ids))
            scores, rows = self.index.search(q, kk) if kk else (np.zeros((len(q), 0)), np.zeros((len(q), 0), int))
        else:
            pos = np.array(sorted(self._pos[i] for i in allowed if i in self._pos), dtype=np.int64)
            kk = min(k, len(pos))
            if not kk:
                ids, scores, rows = [], np.zeros((len(q), 0)), np.zeros((len(q), 0), int)
            elif self.device == "cpu":  # exact search over the admitted rows only, no copy
                ids = self.ids
                mask = np.zeros(len(self.ids), dtype=bool)
                mask[pos] = True
                bits = np.packbits(mask, bitorder="little")
                params = faiss.SearchParameters(sel=faiss.IDSelectorBitmap(len(self.ids), faiss.swig_ptr(bits)))
                scores, rows = self.index.search(q, kk, params=params)
            else:  # GPU flat indexes take no ID selector: score the admitted rows exactly
                ids = [self.ids[p] for p in pos]
                scores, rows = faiss.knn(q, self.vectors[pos], kk, metric=faiss.METRIC_INNER_PRODUCT)
        return [[Scored(ids[int(r)], float(s), (("image", float(s)),)) for s, r in zip(srow, rrow, strict=True)
                 if r >= 0] for srow, rrow in zip(scores, rows, strict=True)]


def linked_notes(store: LanceStore, image_ids: Sequence[str]) -> dict[str, list[tuple[str, str]]]:
    """``{image_id: [(doc_id, text), ...]}``: the notes whose metadata names each image."""
    if not image_ids:
        return {}
    kv = ", ".join("'" + ("image_id=" + i.strip().lower()).replace("'", "''") + "'" for i in image_ids)
    rows = store.scan("documents", ["doc_id", "text", "meta_json"], f"array_has_any(meta_kv, [{kv}])").to_pylist()
    wanted = set(image_ids)
    out: dict[str, list[tuple[str, str]]] = {}
    for r in sorted(rows, key=lambda r: r["doc_id"]):
        image_id = json.loads(r["meta_json"] or "{}").get("image_id")
        if image_id in wanted:
            out.setdefault(image_id, []).append((r["doc_id"], r["text"]))
    return out


def image_hits(store: LanceStore, ranked: Sequence[Scored]) -> list[ImageHit]:
    """ImageHits (with linked notes) for ranked image ids, in order."""
    ids = [s.chunk_id for s in ranked]
    rows = store.fetch("images", ids, IMAGE_COLUMNS)
    notes = linked_notes(store, ids)
    return [_image_hit(rows[s.chunk_id], s, rank, notes.get(s.chunk_id, []))
            for rank, s in enumerate((s for s in ranked if s.chunk_id in rows), 1)]


def _image_hit(row: Mapping[str, Any], s: Scored, rank: int, notes: list[tuple[str, str]]) -> ImageHit:
    meta = json.loads(row["meta_json"] or "{}")
    caption = row["caption"] or ""
    text = caption or (notes[0][1] if notes else "")
    return ImageHit(chunk_id=row["image_id"], doc_id=row["image_id"], score=s.score, text=text, rank=rank,
                    title=" ".join(x for x in (meta.get("finding"), meta.get("view"), row["modality"]) if x),
                    source=row["source"] or "", kind="image", patient_id=row["patient_id"],
                    encounter_id=row["encounter_id"], timestamp=row["timestamp"], metadata=meta,
                    stage_scores=dict(s.stages) if s.stages else {"image": s.score},
                    path=row["path"], modality=row["modality"] or "", linked_ids=tuple(d for d, _ in notes),
                    linked_text=tuple(t for _, t in notes))


def note_ranking(store: LanceStore, ranked_images: Sequence[Scored], k: int,
                 allowed_chunks: frozenset[str] | None = None) -> tuple[list[Scored], dict[str, str]]:
    """Image -> text: the chunks of the notes linked to ranked images, each scored by its image,
    and ``{chunk_id: image_id}`` (which image brought each chunk)."""
    notes = linked_notes(store, [s.chunk_id for s in ranked_images])
    doc_ids = [d for s in ranked_images for d, _ in notes.get(s.chunk_id, [])]
    if not doc_ids:
        return [], {}
    chunks = store.scan("chunks", ["chunk_id", "doc_id", "position"], sql_in("doc_id", doc_ids)).to_pylist()
    by_doc: dict[str, list[str]] = {}
    for c in sorted(chunks, key=lambda c: (c["doc_id"], c["position"])):
        if allowed_chunks is None or c["chunk_id"] in allowed_chunks:
            by_doc.setdefault(c["doc_id"], []).append(c["chunk_id"])
    out: list[Scored] = []
    seen: dict[str, str] = {}
    for s in ranked_images:
        for d, _ in notes.get(s.chunk_id, []):
            for cid in by_doc.get(d, []):
                if cid not in seen:
                    seen[cid] = s.chunk_id
                    out.append(Scored(cid, s.score, (("image", s.score),)))
    out = out[:k]
    return out, {s.chunk_id: seen[s.chunk_id] for s in out}


__all__ = ["IMAGE_COLUMNS", "ImageHit", "ImageIndex", "image_hits", "linked_notes", "note_ranking"]
