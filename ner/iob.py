"""Read IOB ``token<TAB>tag`` files (BC5CDR, NCBI-disease) into sentences.

One token a line, a blank line between sentences. ``--data`` may name a file or a
folder of ``.tsv`` files.

>>> import tempfile, pathlib
>>> p = pathlib.Path(tempfile.mkdtemp()) / "x.tsv"
>>> _ = p.write_text("Aspirin\\tB-Chemical\\ncauses\\tO\\nulcers\\tB-Disease\\n\\n")
>>> s = read_iob(p)[0]
>>> s.tokens, s.tags
(('Aspirin', 'causes', 'ulcers'), ('B-Chemical', 'O', 'B-Disease'))
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from clinrag.errors import InputError


@dataclass(frozen=True)
class IOBSentence:
    """One sentence: its tokens and their IOB2 tags."""

    tokens: tuple[str, ...]
    tags: tuple[str, ...]


def iob_files(path: str | Path) -> list[Path]:
    """The ``.tsv`` files named by ``path`` (a file, or a folder searched non-recursively)."""
    p = Path(path)
    if p.is_dir():
        files = sorted(x for x in p.iterdir() if x.suffix in {".tsv", ".iob", ".txt"})
        if not files:
            raise InputError("no .tsv IOB files in this folder", path=str(p))
        return files
    if not p.exists():
        raise InputError("file not found", path=str(p))
    return [p]


def read_iob(path: str | Path) -> list[IOBSentence]:
    """All sentences of an IOB file or folder of files; bad lines raise :class:`InputError`."""
    out: list[IOBSentence] = []
    for f in iob_files(path):
        toks: list[str] = []
        tags: list[str] = []
        with open(f, encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, 1):
                line = line.rstrip("\n").rstrip("\r")
                if not line.strip():
                    if toks:
                        out.append(IOBSentence(tuple(toks), tuple(tags)))
                        toks, tags = [], []
                    continue
                parts = line.split("\t")
                if len(parts) < 2:
                    raise InputError("expected 'token<TAB>tag'", path=str(f), record=lineno, field="tag")
                tag = parts[-1].strip()
                if tag != "O" and not (tag[:2] in {"B-", "I-"} and len(tag) > 2):
                    raise InputError(f"bad IOB tag {tag!r}", path=str(f), record=lineno, field="tag")
                toks.append(parts[0])
                tags.append(tag)
        if toks:
            out.append(IOBSentence(tuple(toks), tuple(tags)))
    return out


def iob_to_spans(tags: tuple[str, ...] | list[str]) -> list[tuple[int, int, str]]:
    """Token spans ``(start, end, label)`` of IOB2 tags (a stray ``I-`` starts an entity).

    >>> iob_to_spans(["B-Disease", "I-Disease", "O", "I-Chemical"])
    [(0, 2, 'Disease'), (3, 4, 'Chemical')]
    """
    spans: list[tuple[int, int, str]] = []
    start, label = -1, ""
    for i, tag in enumerate([*tags, "O"]):
        kind, _, lab = tag.partition("-")
        if start >= 0 and (kind != "I" or lab != label):
            spans.append((start, i, label))
            start = -1
        if kind == "B" or (kind == "I" and start < 0):
            start, label = i, lab
    return spans


def spans_to_iob(n: int, spans: list[tuple[int, int, str]]) -> list[str]:
    """IOB2 tags for ``n`` tokens from token spans.

    >>> spans_to_iob(4, [(0, 2, "Disease")])
    ['B-Disease', 'I-Disease', 'O', 'O']
    """
    tags = ["O"] * n
    for s, e, lab in spans:
        tags[s] = f"B-{lab}"
        for i in range(s + 1, e):
            tags[i] = f"I-{lab}"
    return tags


def pack_sentences(lengths: list[int], limit: int) -> list[tuple[int, int]]:
    """Ranges of consecutive sentences whose summed ``lengths`` fit in ``limit`` (a longer
    sentence stays alone): cross-sentence context for a tagger that reads a window at a time.

    >>> pack_sentences([5, 4, 3, 9], 10)
    [(0, 2), (2, 3), (3, 4)]
    """
    out: list[tuple[int, int]] = []
    start, used = 0, 0
    for i, n in enumerate(lengths):
        if used + n > limit and i > start:
            out.append((start, i))
            start, used = i, 0
        used += n
    if start < len(lengths):
        out.append((start, len(lengths)))
    return out
