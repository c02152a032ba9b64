"""PubMedQA files: ``{pmid: {QUESTION, CONTEXTS, LABELS, MESHES, YEAR, final_decision, LONG_ANSWER}}``.

Each PubMed id becomes one abstract :class:`Document` (id ``pubmed:<pmid>``) whose text is the
contexts joined by a blank line; each context is a :class:`Section` named by its label, lowercased
("background", "methods", ...). The question, MeSH headings and answer go into the metadata.

>>> import json, tempfile, pathlib
>>> from clinrag.data.report import ErrorSink
>>> p = pathlib.Path(tempfile.mkdtemp()) / "pqa.json"
>>> _ = p.write_text(json.dumps({"1": {"QUESTION": "Q?", "CONTEXTS": ["Bg.", "Res."],
...     "LABELS": ["BACKGROUND", "RESULTS"], "MESHES": ["Aged"], "YEAR": "2001"}}))
>>> d = next(read_pubmedqa(p, ErrorSink()))
>>> d.id, d.text, [(s.name, d.text[s.start:s.end]) for s in d.sections], d.metadata["year"]
('pubmed:1', 'Bg.\\n\\nRes.', [('background', 'Bg.'), ('results', 'Res.')], 2001)
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from clinrag.data.report import ErrorSink
from clinrag.data.schema import Document, Section
from clinrag.errors import InputError

log = logging.getLogger(__name__)

SEPARATOR = "\n\n"


def load_pubmedqa(path: str | Path) -> dict[str, dict[str, Any]]:
    """Load a PubMedQA json file as its raw ``{pmid: entry}`` dict (for the evaluation harness)."""
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except FileNotFoundError:
        raise InputError("does not exist", path=str(path)) from None
    except UnicodeDecodeError as exc:
        raise InputError(f"not valid UTF-8 ({exc.reason} at byte {exc.start})", path=str(path)) from None
    except json.JSONDecodeError as exc:
        raise InputError(f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}", path=str(path)) from None
    if not isinstance(data, dict):
        raise InputError(f"expected an object of PubMed id -> entry, got {type(data).__name__}", path=str(path))
    return data


def _str_list(entry: dict[str, Any], key: str, pmid: str, path: Path, required: bool) -> list[str]:
    value = entry.get(key)
    if value is None and not required:
        return []
    if value is None:
        raise InputError("missing", path=str(path), record=pmid, field=key)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InputError("expected a list of strings", path=str(path), record=pmid, field=key)
    return value


def _opt_str(entry: dict[str, Any], key: str, pmid: str, path: Path) -> str:
    value = entry.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InputError(f"expected a string, got {type(value).__name__}", path=str(path), record=pmid, field=key)
    return value


def document_from_entry(pmid: str, entry: Any, path: Path) -> Document:
    """Build the abstract :class:`Document` of one PubMedQA entry; raises InputError naming the field."""
    if not isinstance(entry, dict):
        raise InputError(f"expected an object, got {type(entry).__name__}", path=str(path), record=pmid)
    contexts = _str_list(entry, "CONTEXTS", pmid, path, required=True)
    labels = _str_list(entry, "LABELS", pmid, path, required=False)
    if labels and len(labels) != len(contexts):
        raise InputError(f"{len(labels)} labels for {len(contexts)} contexts", path=str(path), record=pmid,
                         field="LABELS")
    sections: list[Section] = []
    pos = 0
    for i, ctx in enumerate(contexts):
        if i:
            pos += len(SEPARATOR)
        sections.append(Section(name=labels[i].strip().lower() if labels else "", start=pos, end=pos + len(ctx)))
        pos += len(ctx)
    text = SEPARATOR.join(contexts)
    year_raw = entry.get("YEAR")
    year: int | None = None
    if isinstance(year_raw, int | str) and not isinstance(year_raw, bool) and str(year_raw).strip().isdigit():
        year = int(str(year_raw).strip())
    metadata: dict[str, Any] = {
        "pmid": pmid,
        "mesh": _str_list(entry, "MESHES", pmid, path, required=False),
        "question": _opt_str(entry, "QUESTION", pmid, path),
        "final_decision": _opt_str(entry, "final_decision", pmid, path),
        "long_answer": _opt_str(entry, "LONG_ANSWER", pmid, path),
    }
    if year is not None:
        metadata["year"] = year
    timestamp = dt.datetime(year, 1, 1) if year is not None and 1 <= year <= 9999 else None
    return Document(id=f"pubmed:{pmid}", text=text, title="", source="pubmedqa", kind="abstract",
                    timestamp=timestamp, sections=tuple(sections), metadata=metadata)


def read_pubmedqa(path: Path, sink: ErrorSink, include: set[str] | None = None) -> Iterator[Document]:
    """Yield one abstract per PubMed id in ``path`` (only the ids in ``include`` when given)."""
    path = Path(path)
    try:
        data = load_pubmedqa(path)
    except InputError as exc:
        sink.handle(exc)
        return
    for pmid, entry in data.items():
        if include is not None and pmid not in include:
            continue
        try:
            yield document_from_entry(str(pmid), entry, path)
        except InputError as exc:
            sink.handle(exc)
