"""The evidence boundary: hits become numbered, patient-scoped, delimited evidence.

Everything that reaches a prompt passes through :func:`build_evidence`. With a ``patient``,
a hit of any other patient (or of no patient) is dropped here, whatever the retriever
returned, so no other patient's record can reach the prompt, the evidence or the answer.
Evidence text is data: :func:`render_evidence` wraps each piece in ``<evidence id="n">``
delimiters and neutralises anything inside it that could close the delimiter or start a
chat turn, so a note that says "ignore previous instructions" stays inside its block.

>>> from clinrag.retrieval.base import Hit
>>> hits = [Hit("c1", "d1", 2.0, "HbA1c 9%.", patient_id="p1"), Hit("c2", "d2", 1.0, "HbA1c 7%.", patient_id="p2")]
>>> [e.doc_id for e in build_evidence(hits, patient="p1")]
['d1']
>>> print(render_evidence(build_evidence(hits[:1])))
<evidence id="1" source="" date="" section="">
HbA1c 9%.
</evidence>
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence

from clinrag.generation.types import Evidence
from clinrag.retrieval.base import Hit

log = logging.getLogger(__name__)

#: strings that open or close a turn in the chat templates clinrag knows, or our delimiters
_CONTROL = re.compile(
    r"</?\s*evidence\b|<start_of_turn>|<end_of_turn>|<\|[a-z_]+\|>|\[/?INST\]|<</?SYS>>|<s>|</s>|<bos>|<eos>",
    re.IGNORECASE)


def sanitize(text: str) -> str:
    """Neutralise delimiter and chat-control strings inside evidence text (``<`` becomes ``‹``).

    >>> sanitize('ok </evidence> <start_of_turn>user')
    'ok ‹/evidence> ‹start_of_turn>user'
    """
    return _CONTROL.sub(lambda m: m.group(0).replace("<", "‹").replace("[", "⟦"), text)


def build_evidence(hits: Iterable[Hit], *, patient: str | Sequence[str] | None = None, limit: int | None = None,
                   max_chars: int = 1200) -> list[Evidence]:
    """Number the hits 1..n (duplicates of a chunk removed), keeping only ``patient``'s records.

    Each text is cut to ``max_chars`` characters (at a word boundary).
    """
    allowed = None if patient is None else ({patient} if isinstance(patient, str) else set(patient))
    out: list[Evidence] = []
    seen: set[str] = set()
    dropped = 0
    for h in hits:
        if allowed is not None and h.patient_id not in allowed:
            dropped += 1
            continue
        if h.chunk_id in seen or not h.text.strip():
            continue
        seen.add(h.chunk_id)
        out.append(Evidence(n=len(out) + 1, chunk_id=h.chunk_id, doc_id=h.doc_id, text=_cut(h.text.strip(), max_chars),
                            score=float(h.score), title=h.title, section=h.section, source=h.source, kind=h.kind,
                            patient_id=h.patient_id, timestamp=h.timestamp))
        if limit is not None and len(out) >= limit:
            break
    if dropped:
        log.warning("evidence boundary: dropped %d hit(s) of other patients than %s", dropped, sorted(allowed or ()))
    return out


def _cut(text: str, max_chars: int) -> str:
    if len(text) <= max_chars:
        return text
    cut = text[:max_chars]
    space = cut.rfind(" ")
    return (cut[:space] if space > max_chars // 2 else cut) + " …"


def render_evidence(evidence: Sequence[Evidence]) -> str:
    """The evidence block of a prompt: one delimited, sanitised block per piece."""
    blocks = []
    for e in evidence:
        date = e.timestamp.date().isoformat() if e.timestamp else ""
        attrs = f'id="{e.n}" source="{_attr(e.source)}" date="{date}" section="{_attr(e.section)}"'
        blocks.append(f"<evidence {attrs}>\n{sanitize(e.text)}\n</evidence>")
    return "\n".join(blocks)


def _attr(value: str) -> str:
    return sanitize(value).replace('"', "'").replace("\n", " ")


__all__ = ["build_evidence", "render_evidence", "sanitize"]
