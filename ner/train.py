"""Reproducible training of clinrag's Chemical/Disease NER (``clinrag ner train``).

IOB files are converted to spaCy ``DocBin`` files and trained with a config kept in
``clinrag/ner/configs/`` (``cnn.cfg`` by default). The best model on the dev set is kept in
``OUTPUT/model-best``; :func:`package_model` copies it, stripped of training state, into the
folder the default pipeline loads.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from clinrag.errors import MissingDependencyError
from clinrag.ner.iob import IOBSentence, iob_to_spans, read_iob

log = logging.getLogger(__name__)
CONFIG_DIR = Path(__file__).parent / "configs"


@dataclass(frozen=True)
class TrainResult:
    """Where the trained model is and its dev scores (spaCy scorer, exact spans)."""

    model_dir: Path
    dev_f1: float
    dev_precision: float
    dev_recall: float


def _spacy():  # noqa: ANN202
    try:
        import spacy
    except ImportError as exc:
        raise MissingDependencyError("spacy", "ner", "training the NER model") from exc
    return spacy


def sentences_to_docbin(sentences: list[IOBSentence], path: Path, per_doc: int = 1) -> int:
    """Write sentences as a spaCy DocBin (``per_doc`` sentences per Doc); returns the Doc count."""
    spacy = _spacy()
    from spacy.tokens import Doc, DocBin, Span

    vocab = spacy.blank("en").vocab
    db = DocBin(store_user_data=False)
    n = 0
    for i in range(0, len(sentences), per_doc):
        group = sentences[i : i + per_doc]
        words: list[str] = []
        spans: list[tuple[int, int, str]] = []
        sent_starts: list[bool | int | None] = []
        for s in group:
            off = len(words)
            spans += [(a + off, b + off, lab) for a, b, lab in iob_to_spans(s.tags)]
            words += s.tokens
            sent_starts += [True] + [False] * (len(s.tokens) - 1)
        doc = Doc(vocab, words=words, sent_starts=sent_starts)
        doc.ents = [Span(doc, a, b, label=lab) for a, b, lab in spans]
        db.add(doc)
        n += 1
    db.to_disk(path)
    return n


def train(
    train_data: str | Path,
    dev_data: str | Path,
    output: str | Path,
    *,
    config: str | Path | None = None,
    overrides: dict[str, object] | None = None,
    seed: int = 0,
) -> TrainResult:
    """Train a spaCy NER pipeline on IOB ``train_data``, selecting on ``dev_data``.

    ``config`` defaults to ``configs/cnn.cfg``; ``overrides`` are spaCy dotted config keys
    (e.g. ``{"training.max_steps": 2000}``). Deterministic for a given seed and machine.
    """
    _spacy()
    from spacy.cli.train import train as spacy_train

    cfg = Path(config) if config else CONFIG_DIR / "cnn.cfg"
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="clinrag-ner-") as tmp:
        tr, dv = Path(tmp) / "train.spacy", Path(tmp) / "dev.spacy"
        n_tr = sentences_to_docbin(read_iob(train_data), tr)
        n_dv = sentences_to_docbin(read_iob(dev_data), dv)
        log.info("training on %d sentences, selecting on %d", n_tr, n_dv)
        ov: dict[str, object] = {"paths.train": str(tr), "paths.dev": str(dv), "system.seed": seed}
        ov.update(overrides or {})
        spacy_train(cfg, out, overrides=ov, use_gpu=-1)
    best = out / "model-best"
    import json

    meta = json.loads((best / "meta.json").read_text())
    perf = meta.get("performance", {})
    return TrainResult(best, float(perf.get("ents_f", 0.0)), float(perf.get("ents_p", 0.0)),
                       float(perf.get("ents_r", 0.0)))


def package_model(model_dir: str | Path, target: str | Path, *, name: str, notes: str = "") -> Path:
    """Copy a trained spaCy pipeline to ``target`` (replacing it atomically), with a clinrag id."""
    import json

    src, dst = Path(model_dir), Path(target)
    tmp = dst.with_name(dst.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src, tmp)
    meta_path = tmp / "meta.json"
    if meta_path.exists():  # spaCy pipelines; transformer folders carry clinrag_training.json
        meta = json.loads(meta_path.read_text())
        meta["name"] = name
        meta["description"] = notes or meta.get("description", "")
        meta_path.write_text(json.dumps(meta, indent=2))
    if dst.exists():
        shutil.rmtree(dst)
    tmp.rename(dst)
    return dst
