"""Entity-level evaluation of a NER pipeline on IOB files (seqeval, exact span match).

>>> from clinrag.ner.iob import IOBSentence
>>> gold = [IOBSentence(("a", "b"), ("B-Disease", "O"))]
>>> r = score_tags(gold, [["B-Disease", "O"]])
>>> r.micro.f1, r.per_label["Disease"].support
(1.0, 1)
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clinrag.errors import MissingDependencyError
from clinrag.ner.iob import IOBSentence, read_iob


@dataclass(frozen=True)
class PRF:
    """Precision, recall, F1 and the number of gold entities."""

    precision: float
    recall: float
    f1: float
    support: int

    def to_dict(self) -> dict[str, float | int]:
        return {"precision": self.precision, "recall": self.recall, "f1": self.f1, "support": self.support}


@dataclass(frozen=True)
class NEREvalResult:
    """Per-label and micro-averaged scores of one evaluation."""

    per_label: Mapping[str, PRF]
    micro: PRF
    n_sentences: int
    n_tokens: int
    seconds: float = 0.0
    model: str = ""
    data: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "data": self.data, "n_sentences": self.n_sentences, "n_tokens": self.n_tokens,
                "seconds": round(self.seconds, 2), "micro": self.micro.to_dict(),
                "per_label": {k: v.to_dict() for k, v in self.per_label.items()}, **dict(self.extra)}


def score_tags(gold: Sequence[IOBSentence], pred: Sequence[Sequence[str]],
               labels: Sequence[str] | None = None) -> NEREvalResult:
    """Score predicted IOB tags against gold sentences. ``labels`` restricts both sides to those
    entity types (e.g. ``["Disease"]`` to score a Chemical/Disease model on NCBI-disease)."""
    try:
        from seqeval.metrics import classification_report
    except ImportError as exc:
        raise MissingDependencyError("seqeval", "ner", "NER evaluation") from exc

    def keep(tags: Sequence[str]) -> list[str]:
        if labels is None:
            return list(tags)
        return [t if t == "O" or t[2:] in labels else "O" for t in tags]

    y_true = [keep(s.tags) for s in gold]
    y_pred = [keep(p) for p in pred]
    rep = classification_report(y_true, y_pred, output_dict=True, zero_division=0)
    per = {k: PRF(float(v["precision"]), float(v["recall"]), float(v["f1-score"]), int(v["support"]))
           for k, v in rep.items() if "avg" not in k}
    m = rep["micro avg"]
    micro = PRF(float(m["precision"]), float(m["recall"]), float(m["f1-score"]), int(m["support"]))
    return NEREvalResult(per, micro, len(gold), sum(len(s.tokens) for s in gold))


def evaluate_ner(data: str | Path, model: str = "default", *, labels: Sequence[str] | None = None,
                 context: int = 0) -> NEREvalResult:
    """Run the pipeline's statistical NER over the gold tokens of ``data`` (an IOB file or folder).

    ``context`` > 0: consecutive sentences are tagged together in pieces of at most that many
    words (cross-sentence context, as in an indexed chunk); 0 tags each sentence alone.
    """
    from clinrag.ner.pipeline import load_pipeline, tag_words

    gold = read_iob(data)
    pipe = load_pipeline(model, rules=False, context=False, sections=False)
    t0 = time.perf_counter()
    pred = tag_words(pipe, [s.tokens for s in gold], context)
    secs = time.perf_counter() - t0
    r = score_tags(gold, pred, labels)
    return NEREvalResult(r.per_label, r.micro, r.n_sentences, r.n_tokens, secs, pipe.model_id, str(data),
                         {"tokens_per_second": round(r.n_tokens / secs, 1) if secs else None,
                          "context_words": context, **({"labels": list(labels)} if labels else {})})


@dataclass(frozen=True)
class NegationResult:
    """Precision/recall of the ``negated`` flag on hand-labelled targets."""

    precision: float
    recall: float
    f1: float
    accuracy: float
    n: int
    errors: tuple[tuple[str, str, bool], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"precision": self.precision, "recall": self.recall, "f1": self.f1, "accuracy": self.accuracy,
                "n": self.n, "errors": [list(e) for e in self.errors]}


def evaluate_negation(path: str | Path, model: str = "default") -> NegationResult:
    """Score the ``negated`` flag on a JSONL of ``{"text", "target", "negated"}`` records (the
    first occurrence of ``target`` is the span; assertion runs on that gold span)."""
    import json

    from clinrag.errors import InputError
    from clinrag.ner.pipeline import load_pipeline

    pipe = load_pipeline(model)
    tp = fp = fn = correct = 0
    errors = []
    rows = [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    for i, r in enumerate(rows, 1):
        start = r["text"].find(r["target"])
        if start < 0:
            raise InputError(f"target {r['target']!r} not in text", path=str(path), record=i, field="target")
        ents = pipe.assert_spans(r["text"], [(start, start + len(r["target"]), "Target")])
        pred = bool(ents and ents[0].negated)
        gold = bool(r["negated"])
        tp += pred and gold
        fp += pred and not gold
        fn += gold and not pred
        correct += pred == gold
        if pred != gold:
            errors.append((r["text"], r["target"], gold))
    p = tp / (tp + fp) if tp + fp else 0.0
    rc = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * p * rc / (p + rc) if p + rc else 0.0
    return NegationResult(p, rc, f1, correct / len(rows) if rows else 0.0, len(rows), tuple(errors))


__all__ = ["PRF", "NEREvalResult", "NegationResult", "evaluate_ner", "evaluate_negation", "score_tags"]
