"""Extractive answers: the evidence sentences that best match the question, with their ``[n]``.

A candidate sentence's score is the share of the question's content words it contains
(:func:`clinrag.generation.support.content_words`), ties broken by evidence rank. The best
``n_sentences`` sentences scoring at least ``min_score`` form the answer, in evidence order,
each followed by its citation. No LLM is involved; this is also the fallback when none loads.

>>> from clinrag.generation.types import Evidence
>>> ev = [Evidence(1, "c1", "d1", "Chest film clear. Metformin 500 mg was started for type 2 diabetes.")]
>>> extract("Why was metformin started?", ev)
[('Metformin 500 mg was started for type 2 diabetes.', 1, 1.0)]
"""

from __future__ import annotations

from collections.abc import Sequence

from clinrag.generation.citations import split_sentences
from clinrag.generation.support import content_words
from clinrag.generation.types import Evidence


def question_overlap(question: str, text: str) -> float:
    """Share of the question's content words found in ``text`` (0 when the question has none)."""
    q = set(content_words(question))
    if not q:
        return 0.0
    return len(q & set(content_words(text))) / len(q)


def extract(question: str, evidence: Sequence[Evidence], *, n_sentences: int = 2,
            min_score: float = 0.0) -> list[tuple[str, int, float]]:
    """``(sentence, evidence number, score)`` of the best sentences, in evidence order."""
    cands: list[tuple[float, int, int, str]] = []
    for rank, e in enumerate(evidence):
        for pos, sent in enumerate(split_sentences(e.text)):
            if len(content_words(sent)) < 2:
                continue
            cands.append((question_overlap(question, sent), rank, pos, sent))
    best = sorted(cands, key=lambda c: (-c[0], c[1], c[2]))[:n_sentences]
    best = [c for c in best if c[0] > 0 and c[0] >= min_score]
    return [(s, evidence[r].n, score) for score, r, _, s in sorted(best, key=lambda c: (c[1], c[2]))]


__all__ = ["extract", "question_overlap"]
