"""Cross-modal retrieval evaluation on an image-caption table (the covid-cxr layout).

Each image with notes is paired with its note text (identical note texts are merged into one
text item, relevant to all their images). Images and texts are embedded with the image model
(image and text towers) and every text is ranked for every image (image -> text) and every
image for every text (text -> image). Metrics (ranx): Recall@1/5/10 of the paired item(s),
and finding-level Precision@1/5/10, where any item whose image has the same ``finding`` and
``modality`` counts as relevant. Each metric comes with its chance level: the expected value
under a random ranking (Recall@k: k/N per relevant item; Precision@k: the share of relevant
items). A model with random weights must score near chance; the numbers mean something only
for trained weights (e.g. ``hf-hub:microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from clinrag.data.readers.cxr import read_cxr
from clinrag.data.report import ErrorSink
from clinrag.data.schema import Document, ImageRecord
from clinrag.errors import InputError
from clinrag.eval.metrics import evaluate

log = logging.getLogger(__name__)
KS = (1, 5, 10)


@dataclass(frozen=True)
class ImageEvalResult:
    """Cross-modal retrieval scores of one image model on one image-caption table, with chance levels."""

    model: str
    data: str
    n_images: int
    n_texts: int
    metrics: Mapping[str, float]
    chance: Mapping[str, float]
    seconds: float
    random_weights: bool
    skipped: int = 0
    notes: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        return {"task": "images", "model": self.model, "data": self.data, "n_images": self.n_images,
                "n_texts": self.n_texts, **self.metrics, "metrics": dict(self.metrics), "chance": dict(self.chance),
                "seconds": round(self.seconds, 2), "random_weights": self.random_weights, "skipped": self.skipped,
                "notes": list(self.notes)}


@dataclass(frozen=True)
class Pairs:
    """Images, unique note texts, which text belongs to which image, and each image's finding label."""

    images: list[ImageRecord]
    texts: list[str]
    text_of: list[int]  # per image: index into texts
    label: list[tuple[str, str]]  # per image: (finding, modality), lower-cased


def load_pairs(data: Path, sink: ErrorSink | None = None) -> Pairs:
    """Image-note pairs of a covid-cxr style folder (images without notes are left out)."""
    records = list(read_cxr(Path(data), sink or ErrorSink("skip")))
    notes = {r.metadata.get("image_id"): r.text for r in records if isinstance(r, Document)}
    images = [r for r in records if isinstance(r, ImageRecord) and notes.get(r.id, "").strip()]
    if not images:
        raise InputError("no images with notes (an image-caption table needs metadata.csv with "
                         "'clinical notes' or 'other notes')", path=str(data))
    texts: list[str] = []
    index: dict[str, int] = {}
    text_of = []
    for im in images:
        t = " ".join(notes[im.id].split())
        text_of.append(index.setdefault(t, len(index)))
        if len(texts) < len(index):
            texts.append(t)
    label = [(str(im.metadata.get("finding", "")).strip().lower(), im.modality.strip().lower()) for im in images]
    return Pairs(images, texts, text_of, label)


def _run(scores: np.ndarray, qids: Sequence[str], dids: Sequence[str]) -> dict[str, dict[str, float]]:
    return {q: {d: float(s) for d, s in zip(dids, row, strict=True)} for q, row in zip(qids, scores, strict=True)}


def score_pairs(pairs: Pairs, img: np.ndarray, txt: np.ndarray, ks: Sequence[int] = KS
                ) -> tuple[dict[str, float], dict[str, float]]:
    """``(metrics, chance)`` from image and text embeddings (rows aligned with ``pairs``)."""
    sim = img @ txt.T
    iids = [f"i{n}" for n in range(len(pairs.images))]
    tids = [f"t{n}" for n in range(len(pairs.texts))]
    text_labels: list[set[tuple[str, str]]] = [set() for _ in pairs.texts]
    for n, t in enumerate(pairs.text_of):
        text_labels[t].add(pairs.label[n])
    i2t_pair = {iids[n]: {tids[t]: 1} for n, t in enumerate(pairs.text_of)}
    t2i_pair: dict[str, dict[str, int]] = {q: {} for q in tids}
    for n, t in enumerate(pairs.text_of):
        t2i_pair[tids[t]][iids[n]] = 1
    i2t_find = {iids[n]: {tids[t]: 1 for t in range(len(tids)) if pairs.label[n] in text_labels[t]}
                for n in range(len(iids))}
    t2i_find = {tids[t]: {iids[n]: 1 for n in range(len(iids)) if pairs.label[n] in text_labels[t]}
                for t in range(len(tids))}
    i2t_run, t2i_run = _run(sim, iids, tids), _run(sim.T, tids, iids)
    metrics: dict[str, float] = {}
    chance: dict[str, float] = {}
    n_i, n_t = len(iids), len(tids)
    for prefix, qrels, run, n_docs, metric in (
            ("i2t", i2t_pair, i2t_run, n_t, "recall"), ("t2i", t2i_pair, t2i_run, n_i, "recall"),
            ("i2t_finding", i2t_find, i2t_run, n_t, "precision"), ("t2i_finding", t2i_find, t2i_run, n_i, "precision")):
        names = [f"{metric}@{k}" for k in ks]
        got = evaluate(qrels, run, names)
        for k, name in zip(ks, names, strict=True):
            metrics[f"{prefix}_{name}"] = got[name]
            if metric == "recall":
                chance[f"{prefix}_{name}"] = min(k, n_docs) / n_docs
            else:  # expected share of relevant items in a random top k
                chance[f"{prefix}_{name}"] = float(np.mean([len(r) / n_docs for r in qrels.values()]))
    return metrics, chance


def evaluate_images(data: str | Path, image_model: str, *, batch_size: int = 32) -> ImageEvalResult:
    """Embed the pairs of ``data`` with ``image_model`` and score cross-modal retrieval."""
    from clinrag.indexing.image_embed import embed_image_files
    from clinrag.indexing.image_encoders import get_image_encoder

    t0 = time.perf_counter()
    sink = ErrorSink("skip")
    pairs = load_pairs(Path(data), sink)
    encoder = get_image_encoder(image_model)
    img = embed_image_files([im.path for im in pairs.images], encoder, batch_size=batch_size)
    txt = encoder.encode_texts(pairs.texts)
    metrics, chance = score_pairs(pairs, img, txt)
    random_weights = image_model.endswith("@random")
    notes = ["random weights: every metric is expected at its chance level"] if random_weights else []
    return ImageEvalResult(model=image_model, data=str(data), n_images=len(pairs.images), n_texts=len(pairs.texts),
                           metrics=metrics, chance=chance, seconds=time.perf_counter() - t0,
                           random_weights=random_weights, skipped=sink.skipped, notes=tuple(notes))


__all__ = ["ImageEvalResult", "Pairs", "evaluate_images", "load_pairs", "score_pairs"]
