"""Sentences and their ``[n]`` citations.

Citations may be written ``[1]``, ``[1, 3]``, ``[1-2]`` or ``[1][2]``; a citation that sits
after the sentence's final period (``... diabetes. [2]``) belongs to that sentence.

>>> [(s, c) for s, c in split_cited("Metformin was started [1]. HbA1c fell [2, 3].")]
[('Metformin was started [1].', (1,)), ('HbA1c fell [2, 3].', (2, 3))]
>>> keep_valid((1, 4), {1, 2})
((1,), (4,))
"""

from __future__ import annotations

import re
from collections.abc import Collection

CITATION = re.compile(r"\[\s*(\d+(?:\s*[-–,;]\s*\d+)*)\s*\]")
# a sentence ends at . ! ? (not inside a number such as 2.5) followed by space, or at a newline
_BOUNDARY = re.compile(r"(?<=[.!?])(?<!\d\.\d)\s+(?=[\[(\"'A-Z0-9])|\n+")
_LEADING_CITES = re.compile(r"^((?:\s*\[\s*\d+(?:\s*[-–,;]\s*\d+)*\s*\])+)")
_ABBREV = re.compile(r"\b(?:e\.g|i\.e|vs|et al|approx|Dr|Fig|no)\.$", re.IGNORECASE)


def parse_citations(text: str) -> tuple[int, ...]:
    """All evidence numbers cited in ``text``, in order of first appearance (ranges expanded).

    >>> parse_citations("see [2], [1-3] and [2;5]")
    (2, 1, 3, 5)
    """
    out: list[int] = []
    for m in CITATION.finditer(text):
        for part in re.split(r"\s*[,;]\s*", m.group(1)):
            bounds = [int(x) for x in re.split(r"\s*[-–]\s*", part)]
            if len(bounds) == 2 and 0 <= bounds[1] - bounds[0] <= 20:
                bounds = list(range(bounds[0], bounds[1] + 1))
            out.extend(n for n in bounds if n not in out)
    return tuple(out)


def strip_citations(text: str) -> str:
    """``text`` without its ``[n]`` markers.

    >>> strip_citations("HbA1c fell [2, 3].")
    'HbA1c fell.'
    """
    return re.sub(r"\s+([.,;:!?])", r"\1", CITATION.sub("", text)).strip()


def split_sentences(text: str) -> list[str]:
    """Split ``text`` into sentences, keeping a trailing ``[n]`` with the sentence before it."""
    pieces = [p.strip() for p in _BOUNDARY.split(text.strip()) if p and p.strip()]
    out: list[str] = []
    for p in pieces:
        m = _LEADING_CITES.match(p)
        if m and out:
            out[-1] = out[-1] + " " + m.group(1).strip()
            p = p[m.end():].strip()
        if out and _ABBREV.search(out[-1]):
            out[-1] = out[-1] + " " + p
            continue
        if p:
            out.append(p)
    return out


def split_cited(text: str) -> list[tuple[str, tuple[int, ...]]]:
    """``(sentence, citations)`` for each sentence of ``text``."""
    return [(s, parse_citations(s)) for s in split_sentences(text)]


def keep_valid(cited: tuple[int, ...], given: Collection[int]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Split citations into those to evidence that was given and those that were not (dropped)."""
    return tuple(n for n in cited if n in given), tuple(n for n in cited if n not in given)


__all__ = ["CITATION", "keep_valid", "parse_citations", "split_cited", "split_sentences", "strip_citations"]
