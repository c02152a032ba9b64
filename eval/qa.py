"""PubMedQA question answering: yes/no/maybe accuracy, citation precision, abstention.

Three settings per answer mode:

- ``none``: the question alone (no evidence);
- ``gold``: the question's own abstract as evidence, one piece per labelled context section;
- ``retrieved``: the ``k`` best chunks from a BM25 index of every abstract in the file
  (section-split chunks), through ``Engine.ask``.

Metrics: **accuracy** of the yes/no/maybe decision against ``final_decision``;
**citation precision**, the share of cited evidence that comes from the question's own
abstract (pooled over all citations; trivially 1 for ``gold``); **abstention rate**, the
share of answers that abstained. A decision is made for every question, abstained or not.

Decision rules:

- ``llm``: the first word ``yes``, ``no`` or ``maybe`` in the model's output; output
  with none of them counts as ``yes`` (the majority class) and lowers ``parsed``.
- ``extractive`` (no model; fixed a priori, not tuned on this data): over the extracted
  answer sentences, ``no`` if a negation cue occurs (:data:`NEGATION`: not, no significant,
  did not, failed to, unrelated...), else ``maybe`` if a hedge cue occurs (:data:`HEDGE`:
  may, might, unclear, inconclusive, further studies...), else ``yes``. With no sentence
  (abstained, or no evidence in ``none``) it answers ``yes``: in the ``none`` setting extractive
  mode is the majority baseline by construction.

Anchors (PubMedQA paper, reasoning-required): majority 55.2%, BioBERT 68.1%, human 78.0%.
"""

from __future__ import annotations

import logging
import random
import re
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clinrag.config import IndexConfig
from clinrag.data.readers.pubmedqa import document_from_entry, load_pubmedqa
from clinrag.engine import Engine
from clinrag.errors import ConfigError
from clinrag.generation.answer import AnswerConfig, answer
from clinrag.generation.types import Answer
from clinrag.retrieval.base import Hit

log = logging.getLogger(__name__)
SETTINGS = ("none", "gold", "retrieved")
LABELS = ("yes", "no", "maybe")
ANCHORS = {"majority": 0.552, "BioBERT": 0.681, "human": 0.780}
NEGATION = re.compile(r"\b(not|no (?:significant|difference|association|effect|evidence|benefit|correlation|"
                      r"improvement|change|relationship)|did not|does not|do not|was not|were not|cannot|failed to|"
                      r"fails to|unrelated|neither|nor|none|lack of|absence of)\b", re.IGNORECASE)
HEDGE = re.compile(r"\b(may|might|could|possibl[ey]|unclear|uncertain|inconclusive|controversial|"
                   r"further (?:studies|study|research|investigation)|remains? to be|not clear)\b", re.IGNORECASE)
_WORD = re.compile(r"\b(yes|no|maybe)\b", re.IGNORECASE)


def decide_extractive(ans: Answer) -> str:
    """The documented yes/no/maybe rule for extractive answers (see the module docstring).

    >>> from clinrag.generation.types import SentenceCheck
    >>> decide_extractive(Answer("q", "", sentences=(SentenceCheck("Aspirin did not reduce stroke [1]."),)))
    'no'
    >>> decide_extractive(Answer("q", "", sentences=(SentenceCheck("Aspirin may reduce stroke [1]."),)))
    'maybe'
    """
    text = " ".join(s.sentence for s in ans.sentences)
    if not text:
        return "yes"
    if NEGATION.search(text):
        return "no"
    if HEDGE.search(text):
        return "maybe"
    return "yes"


def decide_llm(text: str) -> str | None:
    """The first yes/no/maybe word of an LLM answer, or None.

    >>> decide_llm(" Maybe. The trial was small [1]."), decide_llm("Aspirin helps.")
    ('maybe', None)
    """
    m = _WORD.search(text)
    return m.group(1).lower() if m else None


@dataclass(frozen=True)
class QAResult:
    """Scores of one (mode, setting) over ``n`` questions."""

    mode: str
    setting: str
    model: str
    n: int
    accuracy: float
    citation_precision: float | None
    abstention_rate: float
    parsed: float
    seconds_per_question: float
    predictions: dict[str, int] = field(default_factory=dict)
    sample_majority: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "setting": self.setting, "model": self.model, "n": self.n,
                "accuracy": round(self.accuracy, 4),
                "citation_precision": None if self.citation_precision is None else round(self.citation_precision, 4),
                "abstention_rate": round(self.abstention_rate, 4), "parsed": round(self.parsed, 4),
                "seconds_per_question": round(self.seconds_per_question, 3), "predictions": dict(self.predictions),
                "sample_majority": round(self.sample_majority, 4)}


def sample_ids(data: dict[str, Any], limit: int | None, seed: int = 0) -> list[str]:
    """All ids sorted, or a seeded random subsample of ``limit`` of them (sorted)."""
    ids = sorted(data)
    if limit is None or limit >= len(ids):
        return ids
    return sorted(random.Random(seed).sample(ids, limit))


def gold_hits(pmid: str, entry: dict[str, Any], path: Path) -> list[Hit]:
    """The question's own abstract as hits, one per labelled context section."""
    doc = document_from_entry(pmid, entry, path)
    return [Hit(chunk_id=f"{doc.id}#{i}", doc_id=doc.id, score=1.0, text=doc.text[s.start:s.end], rank=i + 1,
                section=s.name, source=doc.source, kind=doc.kind, timestamp=doc.timestamp)
            for i, s in enumerate(doc.sections)]


def evaluate_qa(data: str | Path, *, modes: Sequence[str] = ("extractive", "llm"),
                settings: Sequence[str] = SETTINGS, limit: int | None = None, llm: Any = "llamacpp",
                k: int = 3, seed: int = 0, max_new_tokens: int = 48,
                progress: Callable[[str, int], None] | None = None) -> list[QAResult]:
    """Run PubMedQA for each mode and setting (see the module docstring). ``llm``: a spec or a llama-index LLM."""
    path = Path(data)
    raw = load_pubmedqa(path)
    ids = sample_ids(raw, limit, seed)
    bad = [m for m in modes if m not in ("extractive", "llm")] + [s for s in settings if s not in SETTINGS]
    if bad:
        raise ConfigError(f"unknown mode/setting {bad}; modes: extractive, llm; settings: {', '.join(SETTINGS)}")
    model = None
    if "llm" in modes:
        from clinrag.generation.answer import _as_loaded
        from clinrag.generation.llm import load_llm, parse_spec

        model = load_llm(parse_spec(llm, max_new_tokens=max_new_tokens)) if isinstance(llm, str) else _as_loaded(
            llm, None)
    results: list[QAResult] = []
    with tempfile.TemporaryDirectory(prefix="clinrag-qa-") as tmp:
        engine = None
        if "retrieved" in settings:
            engine = Engine.create(Path(tmp) / "index", IndexConfig())
            engine.add(document_from_entry(p, raw[p], path) for p in sorted(raw))
        for mode in modes:
            for setting in settings:
                results.append(_run(mode, setting, ids, raw, path, engine, model, k, progress))
        if engine is not None:
            engine.close()
    return results


def _run(mode: str, setting: str, ids: list[str], raw: dict[str, Any], path: Path, engine: Engine | None,
         model: Any, k: int, progress: Callable[[str, int], None] | None) -> QAResult:
    cfg = AnswerConfig(mode=mode, task="yesno", max_evidence=max(k, 12))
    correct = abstained = parsed = cited = own = 0
    counts = dict.fromkeys(LABELS, 0)
    t0 = time.perf_counter()
    for i, pmid in enumerate(ids):
        entry = raw[pmid]
        question, gold = str(entry.get("QUESTION", "")), str(entry.get("final_decision", ""))
        if setting == "none" and mode == "llm":
            ans = _no_context(question, model)
        elif setting == "none":
            ans = answer(question, [], config=cfg)
        elif setting == "gold":
            ans = answer(question, gold_hits(pmid, entry, path), llm=model, config=cfg)
        else:
            assert engine is not None
            ans = engine.ask(question, k=k, mode=mode, llm=model, config=cfg)
        if mode == "llm":
            guess = decide_llm(ans.raw)
            parsed += guess is not None
            pred = guess or "yes"
        else:
            pred = decide_extractive(ans)
            parsed += 1
        counts[pred] += 1
        correct += pred == gold
        abstained += ans.abstained
        for e in ans.cited:
            cited += 1
            own += e.doc_id == f"pubmed:{pmid}"
        if progress is not None:
            progress(f"{mode}/{setting}", i + 1)
    n = max(len(ids), 1)
    golds = [str(raw[p].get("final_decision", "")) for p in ids]
    majority = max((golds.count(x) for x in LABELS), default=0) / n
    return QAResult(mode, setting, getattr(model, "name", "") if mode == "llm" else "", len(ids), correct / n,
                    own / cited if cited else None, abstained / n, parsed / n, (time.perf_counter() - t0) / n, counts,
                    majority)


def _no_context(question: str, model: Any) -> Answer:
    from clinrag.generation.llm import generate
    from clinrag.generation.prompts import build_prompt

    gen = generate(model, build_prompt(question, [], family=model.family, task="yesno"))
    return Answer(question=question, text=gen.text, mode="llm", model=model.name, raw=gen.text,
                  timings={"first_token": gen.first_token_s, "generation": gen.total_s})


__all__ = ["ANCHORS", "HEDGE", "NEGATION", "SETTINGS", "QAResult", "decide_extractive", "decide_llm", "evaluate_qa"]
