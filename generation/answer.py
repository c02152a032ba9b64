"""Answer a question from retrieved hits: evidence boundary, extractive or LLM answer, checks.

:func:`answer` is what ``Engine.ask`` delegates to. Steps:

1. :func:`~clinrag.generation.evidence.build_evidence` numbers the hits and drops any record
   of another patient than ``patient`` (the patient-scoping guarantee);
2. abstain when there is no evidence, or when no evidence shares at least
   ``relevance_threshold`` of the question's content words (it does not address the question);
3. ``extractive``: the best-matching evidence sentences with their citations;
   ``llm``: the prompt (instructions, then delimited evidence) streamed through the LLM;
   ``auto``: the LLM, or extractive when no LLM can be loaded;
4. citations parsed per sentence, citations to evidence not given dropped, every sentence
   scored against its cited evidence (:mod:`clinrag.generation.support`); sentences below
   the threshold are flagged; with no supported sentence (or the model's own
   "Not enough evidence.") the answer abstains.

>>> from clinrag.retrieval.base import Hit
>>> hits = [Hit("c1", "d1", 1.0, "Metformin 500 mg was started for type 2 diabetes.", patient_id="p1")]
>>> a = answer("Why was metformin started?", hits, config=AnswerConfig(mode="extractive"))
>>> a.text, a.citations, a.abstained
('Metformin 500 mg was started for type 2 diabetes. [1]', [[1]], False)
>>> answer("What is the capital of France?", hits, config=AnswerConfig(mode="extractive")).reason
'the evidence does not address the question'
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from clinrag.errors import ClinragError, ConfigError
from clinrag.generation.citations import keep_valid, parse_citations, split_sentences, strip_citations
from clinrag.generation.evidence import build_evidence
from clinrag.generation.extractive import extract, question_overlap
from clinrag.generation.prompts import ABSTAIN_TEXT, build_prompt
from clinrag.generation.support import DEFAULT_THRESHOLD, SupportScorer
from clinrag.generation.types import Answer, Evidence, SentenceCheck
from clinrag.retrieval.base import Hit

if TYPE_CHECKING:
    from clinrag.generation.llm import LoadedLLM, TokenCallback
    from clinrag.indexing.encoders import TokenEncoder

log = logging.getLogger(__name__)
MODES = ("auto", "llm", "extractive")
_DECISION = re.compile(r"^\W*(yes|no|maybe)\W*$", re.IGNORECASE)


@dataclass(frozen=True)
class AnswerConfig:
    """Settings of :func:`answer` (``mode``: auto, llm or extractive; ``task``: answer or yesno)."""

    mode: str = "auto"
    task: str = "answer"
    max_evidence: int = 8
    max_evidence_chars: int = 1200
    support_threshold: float = DEFAULT_THRESHOLD
    relevance_threshold: float = 0.2
    extractive_sentences: int = 2
    family: str | None = None

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"answer mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.task not in ("answer", "yesno"):
            raise ConfigError(f"answer task must be 'answer' or 'yesno', got {self.task!r}")
        if self.max_evidence < 1:
            raise ConfigError(f"max_evidence must be positive, got {self.max_evidence}")


def answer(question: str, hits: Sequence[Hit], *, patient: str | Sequence[str] | None = None,
           llm: LoadedLLM | Any | None = None, config: AnswerConfig | None = None,
           encoder: TokenEncoder | None = None, on_token: TokenCallback | None = None,
           timings: dict[str, float] | None = None) -> Answer:
    """A checked, cited :class:`Answer` to ``question`` from ``hits`` (see the module docstring).

    ``llm`` is a :class:`~clinrag.generation.llm.LoadedLLM`, any llama-index LLM, or None (load
    the default for ``llm``/``auto`` mode). ``encoder`` adds token MaxSim to the support score.
    """
    cfg = config or AnswerConfig()
    t0 = time.perf_counter()
    times = dict(timings or {})
    evidence = build_evidence(hits, patient=patient, limit=cfg.max_evidence, max_chars=cfg.max_evidence_chars)
    scorer = SupportScorer(encoder, threshold=cfg.support_threshold)
    mode = cfg.mode
    model = None
    if mode in ("llm", "auto"):
        try:
            model = _as_loaded(llm, cfg.family)
            mode = "llm"
        except ClinragError as exc:
            if mode == "llm":
                raise
            log.warning("no LLM available (%s); answering extractively", exc)
            mode = "extractive"

    def done(text: str, sentences: Sequence[SentenceCheck] = (), abstained: bool = False, reason: str = "",
             raw: str = "") -> Answer:
        times["total"] = times.get("retrieval", 0.0) + time.perf_counter() - t0
        return Answer(question=question, text=text, evidence=tuple(evidence), sentences=tuple(sentences),
                      abstained=abstained, reason=reason, mode=mode, model=model.name if model else "", raw=raw,
                      timings=times)

    if not evidence:
        why = "no records of this patient match the question" if patient is not None else "no evidence was found"
        return done(ABSTAIN_TEXT, abstained=True, reason=why)
    relevance = max(question_overlap(question, e.text) for e in evidence)
    if relevance < cfg.relevance_threshold:
        return done(ABSTAIN_TEXT, abstained=True, reason="the evidence does not address the question")
    if mode == "extractive":
        picked = extract(question, evidence, n_sentences=cfg.extractive_sentences)
        t1 = time.perf_counter()
        checks = [_check(f"{s} [{n}]", evidence, scorer) for s, n, _ in picked]
        times["checking"] = time.perf_counter() - t1
        if not any(c.supported for c in checks):
            return done(ABSTAIN_TEXT, checks, True, "no evidence sentence matches the question")
        return done(" ".join(c.sentence for c in checks), checks)
    assert model is not None
    from clinrag.generation.llm import generate

    prompt = build_prompt(question, evidence, family=cfg.family or model.family, task=cfg.task)
    gen = generate(model, prompt, on_token=on_token)
    times["first_token"], times["generation"] = gen.first_token_s, gen.total_s
    t1 = time.perf_counter()
    raw = gen.text
    if not raw or strip_citations(raw).lower().startswith(ABSTAIN_TEXT.lower().rstrip(".")):
        times["checking"] = time.perf_counter() - t1
        return done(ABSTAIN_TEXT, abstained=True, reason="the model found the evidence insufficient", raw=raw)
    checks = [_check(s, evidence, scorer, decision_ok=cfg.task == "yesno" and i == 0)
              for i, s in enumerate(split_sentences(raw))]
    times["checking"] = time.perf_counter() - t1
    text = " ".join(c.sentence for c in checks)
    if not any(c.supported and c.citations for c in checks):
        return done(text, checks, True, "no sentence of the answer is supported by the evidence it cites", raw)
    return done(text, checks, raw=raw)


def _check(sentence: str, evidence: Sequence[Evidence], scorer: SupportScorer,
           decision_ok: bool = False) -> SentenceCheck:
    by_n = {e.n: e for e in evidence}
    cited, dropped = keep_valid(parse_citations(sentence), by_n)
    if dropped:
        sentence = _drop_markers(sentence, set(dropped))
    if decision_ok and not cited and _DECISION.match(sentence):
        return SentenceCheck(sentence, (), 1.0, True, dropped, "decision")
    value, note = scorer.score(sentence, [by_n[n].text for n in cited])
    if dropped:
        note = "; ".join(x for x in (note, f"dropped citations to evidence not given: {list(dropped)}") if x)
    return SentenceCheck(sentence, cited, value, bool(cited) and scorer.supported(value), dropped, note)


def _drop_markers(sentence: str, dropped: set[int]) -> str:
    from clinrag.generation.citations import CITATION

    def keep(m: re.Match[str]) -> str:
        nums = [n for n in parse_citations(m.group(0)) if n not in dropped]
        return f"[{', '.join(map(str, nums))}]" if nums else ""

    return re.sub(r"\s+([.,;:!?])", r"\1", CITATION.sub(keep, sentence)).strip()


def _as_loaded(llm: Any, family: str | None) -> LoadedLLM:
    from clinrag.generation.llm import DEFAULT_LLM, LoadedLLM, load_llm

    if llm is None:
        return load_llm(DEFAULT_LLM)
    if isinstance(llm, LoadedLLM):
        return llm
    if isinstance(llm, str):
        return load_llm(llm)
    return LoadedLLM.wrap(llm, family)


__all__ = ["MODES", "AnswerConfig", "answer"]
