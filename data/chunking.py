"""Split documents into retrievable chunks at section boundaries and word windows.

Sections come from ``Document.sections`` when the reader found them (PubMedQA labels); otherwise
they are detected: markdown headers (``# Chief Complaint``, ``## Plan``), common clinical headers
on a line of their own or followed by a colon (``HPI:``, ``Assessment and Plan``, ...) and
upper-case headers followed by a colon (``DISCHARGE DIAGNOSIS:``). Section names are normalised
to lowercase words separated by single spaces: ``"history of present illness"``. Text before the
first header belongs to section ``""``; a header with no text of its own is merged into the next
section. A word is a run of non-whitespace characters.

Chunk spans are character offsets into ``doc.text`` (``doc.text[start:end] == chunk.text``,
without surrounding whitespace), and together they cover every non-whitespace character.

>>> from clinrag.data.schema import Document
>>> doc = Document(id="n1", text="HPI: cough for 3 days.\\nPlan: rest, fluids.")
>>> [(c.section, c.text, c.span) for c in chunk_document(doc)]
[('hpi', 'HPI: cough for 3 days.', (0, 22)), ('plan', 'Plan: rest, fluids.', (23, 42))]
>>> [c.text for c in chunk_document(Document(id="x", text="a b c d e f"), max_words=4, overlap_words=1)]
['a b c d', 'd e f']

A token budget keeps every chunk within what the text model reads: with ``max_tokens`` and a
``count_tokens`` function (e.g. the model's tokenizer), a window that has too many tokens is
cut shorter (biomedical words often take several word pieces, so 180 words can exceed 256):

>>> n = lambda t: 2 * len(t.split())  # every word two tokens
>>> [c.text for c in chunk_document(Document(id="x", text="a b c d e f"), max_words=4, overlap_words=1,
...                                 max_tokens=6, count_tokens=n)]
['a b c', 'c d e', 'e f']
"""

from __future__ import annotations

import re
from bisect import bisect_left
from collections.abc import Callable

from clinrag.data.schema import Chunk, Document
from clinrag.errors import ConfigError

CLINICAL_HEADERS = (
    "chief complaint", "reason for visit", "history of present illness", "hpi", "past medical history", "pmh",
    "past surgical history", "medications", "current medications", "medications on admission",
    "discharge medications", "allergies", "social history", "family history", "review of systems", "ros",
    "physical exam", "physical examination", "exam", "vital signs", "vitals", "assessment and plan",
    "assessment", "plan", "impression", "findings", "labs", "laboratory", "laboratory data", "lab results",
    "pertinent results", "results", "diagnosis", "diagnoses", "discharge diagnosis", "hospital course",
    "brief hospital course", "procedures", "imaging", "recommendations", "conclusion", "conclusions",
    "indication", "technique", "comparison", "subjective", "objective", "disposition", "follow up",
    "discharge instructions", "history",
)
_CLIN_ALT = "|".join(re.escape(h).replace(r"\ ", r"[ \t]+") for h in sorted(CLINICAL_HEADERS, key=len, reverse=True))
_HEADER = re.compile(
    r"^[ \t]*(?:"
    r"#{1,6}[ \t]+(?P<md>[^\n]*?)[ \t#]*$"
    rf"|(?P<clin>(?i:{_CLIN_ALT}))[ \t]*(?::|$)"
    r"|(?P<caps>[A-Z][A-Z0-9 /&,()'-]{2,60}?)[ \t]*:"
    r")",
    re.MULTILINE,
)
_WORD = re.compile(r"\S+")
_NON_ALNUM = re.compile(r"[^0-9a-z]+")


def section_name(header: str) -> str:
    """Normalise a header to lowercase words: ``"## History of Present Illness:"`` -> ``"history of present illness"``.

    >>> section_name("ASSESSMENT AND PLAN")
    'assessment and plan'
    """
    return _NON_ALNUM.sub(" ", header.lower()).strip()


def detect_sections(text: str) -> list[tuple[str, int, int]]:
    """(name, start, body_start) of every header found in ``text``, in order."""
    out = []
    for m in _HEADER.finditer(text):
        name = section_name(m.group("md") or m.group("clin") or m.group("caps") or "")
        if name:
            out.append((name, m.start(), m.end()))
    return out


def _segments(doc: Document) -> list[tuple[str, int, int, int]]:
    """(name, start, end, body_start) segments that cover ``doc.text`` from 0 to its end, in order."""
    text, n = doc.text, len(doc.text)
    if doc.sections:
        heads = [(s.name, s.start, s.start, s.end) for s in sorted(doc.sections, key=lambda s: (s.start, s.end))]
    else:
        found = detect_sections(text)
        heads = [(name, start, body, found[i + 1][1] if i + 1 < len(found) else n)
                 for i, (name, start, body) in enumerate(found)]
    segs: list[tuple[str, int, int, int]] = []
    pos = 0
    for i, (name, start, body, end) in enumerate(heads):
        start = max(start, pos)
        nxt = heads[i + 1][1] if i + 1 < len(heads) else n
        end = min(end, max(nxt, start), n)
        if end <= start:
            continue
        if start > pos:
            segs.append(("", pos, start, pos))
        segs.append((name, start, end, max(body, start)))
        pos = end
    if pos < n:
        segs.append(("", pos, n, pos))
    return segs


def _windows(a: int, b: int, max_words: int, overlap: int,
             fits: Callable[[int, int], bool] | None = None) -> list[tuple[int, int]]:
    """Word windows ``[s, e)`` covering ``[a, b)``: at most ``max_words`` words with ``overlap``
    words shared by neighbours; ``fits(s, e)`` false shrinks a window (never below one word)."""
    out: list[tuple[int, int]] = []
    s = a
    while s < b:
        e = min(s + max_words, b)
        if fits is not None:
            while e - s > 1 and not fits(s, e):
                e = s + max(1, (e - s) * 9 // 10)
        out.append((s, e))
        if e >= b:
            break
        # a window the token budget shrank keeps at most half of itself as overlap
        s = e - overlap if e - s == max_words else max(e - min(overlap, (e - s) // 2), s + 1)
    return out


def chunk_document(doc: Document, *, max_words: int = 180, overlap_words: int = 30,
                   split_sections: bool = True, max_tokens: int | None = None,
                   count_tokens: Callable[[str], int] | None = None) -> list[Chunk]:
    """Split ``doc`` into chunks of at most ``max_words`` words, and of at most ``max_tokens``
    tokens by ``count_tokens`` when both are given (see the module docstring)."""
    if max_words < 1 or not 0 <= overlap_words < max_words:
        raise ConfigError(f"need max_words >= 1 and 0 <= overlap_words < max_words, got {max_words}, {overlap_words}")
    text = doc.text
    if not text or text.isspace():
        return []
    spans = [m.span() for m in _WORD.finditer(text)]
    starts = [s for s, _ in spans]
    # Word ranges per section; a header with no words after it is merged into the next section.
    pieces: list[list] = []  # [name, first word, end word]
    carry: tuple[str, int] | None = None
    for name, start, end, body in _segments(doc):
        a, b = bisect_left(starts, start), bisect_left(starts, end)
        if a == b:
            continue
        if carry is not None:
            name, a = carry
            carry = None
        if body > start and bisect_left(starts, body) >= b:
            carry = (name, a)
            continue
        pieces.append([name, a, b])
    if carry is not None:
        if pieces and pieces[-1][2] == carry[1]:
            pieces[-1][2] = len(spans)
        else:
            pieces.append([carry[0], carry[1], len(spans)])
    if not split_sections:
        packed: list[list] = []
        for piece in pieces:
            last = packed[-1] if packed else None
            if last is not None and (last[2] - last[1]) + (piece[2] - piece[1]) <= max_words:
                last[2] = piece[2]
            else:
                packed.append(list(piece))
        pieces = packed
    fits = None
    if max_tokens is not None and count_tokens is not None:
        def fits(s: int, e: int) -> bool:
            return count_tokens(text[spans[s][0]:spans[e - 1][1]]) <= max_tokens
    chunks: list[Chunk] = []
    for name, a, b in pieces:
        for s, e in _windows(a, b, max_words, overlap_words, fits):
            lo, hi = spans[s][0], spans[e - 1][1]
            chunks.append(Chunk.make(doc, text[lo:hi], position=len(chunks), span=(lo, hi), section=name))
    return chunks


__all__ = ["CLINICAL_HEADERS", "chunk_document", "detect_sections", "section_name"]
