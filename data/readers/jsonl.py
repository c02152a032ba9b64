"""JSON Lines documents, including a BEIR ``corpus.jsonl``.

One JSON object a line; blank lines are ignored. Fields:

- ``_id`` or ``id`` (required), ``text`` (required; ``contents`` or ``abstract`` also accepted)
- optional ``title``, ``patient_id``, ``timestamp`` or ``date`` (ISO 8601), ``source`` (default:
  the file's stem), ``kind``, ``encounter_id``; a ``metadata`` object is merged into the metadata
- every other field goes into the metadata.

>>> import tempfile, pathlib
>>> from clinrag.data.report import ErrorSink
>>> p = pathlib.Path(tempfile.mkdtemp()) / "notes.jsonl"
>>> _ = p.write_text('{"_id": "d1", "text": "Chest pain.", "date": "2020-01-02", "ward": "A"}\\n')
>>> [(d.id, d.source, d.timestamp.year, dict(d.metadata)) for d in read_jsonl(p, ErrorSink())]
[('d1', 'notes', 2020, {'ward': 'A'})]
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from clinrag.data.readers._common import parse_iso
from clinrag.data.report import ErrorSink
from clinrag.data.schema import Document
from clinrag.errors import InputError

log = logging.getLogger(__name__)

TEXT_FIELDS = ("text", "contents", "abstract")
_RESERVED = {"_id", "id", *TEXT_FIELDS, "title", "patient_id", "timestamp", "date", "source", "kind",
             "encounter_id", "metadata"}


def _meta_value(value: Any) -> Any:
    """Keep scalars and lists of scalars; encode nested objects as JSON text."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, list) and all(v is None or isinstance(v, str | int | float | bool) for v in value):
        return value
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def _opt_str(obj: dict[str, Any], key: str, path: Path, line: int) -> str | None:
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, str | int) and not isinstance(value, bool):
        return str(value)
    raise InputError(f"expected a string, got {type(value).__name__}", path=str(path), record=line, field=key)


def document_from_object(obj: Any, path: Path, line: int, default_source: str | None = None) -> Document:
    """Build a :class:`Document` from one parsed JSONL object; raises InputError naming the field."""
    if not isinstance(obj, dict):
        raise InputError(f"expected a JSON object, got {type(obj).__name__}", path=str(path), record=line)
    id_key = "_id" if "_id" in obj else "id"
    doc_id = _opt_str(obj, id_key, path, line)
    if not doc_id:
        raise InputError("missing document id (add an '_id' or 'id' field)", path=str(path), record=line,
                         field="_id")
    text_key = next((k for k in TEXT_FIELDS if k in obj), None)
    if text_key is None:
        raise InputError("missing text (add a 'text' field)", path=str(path), record=line, field="text")
    text = obj[text_key]
    if not isinstance(text, str):
        raise InputError(f"expected a string, got {type(text).__name__}", path=str(path), record=line,
                         field=text_key)
    ts_key = "timestamp" if obj.get("timestamp") is not None else "date"
    try:
        timestamp = parse_iso(obj.get(ts_key))
    except ValueError as exc:
        raise InputError(f"{exc}; use ISO 8601, e.g. 2020-03-01 or 2020-03-01T10:00:00Z", path=str(path),
                         record=line, field="timestamp") from None
    metadata: dict[str, Any] = {}
    extra = obj.get("metadata")
    if isinstance(extra, dict):
        metadata.update((str(k), _meta_value(v)) for k, v in extra.items())
    elif extra is not None:
        metadata["metadata"] = _meta_value(extra)
    for k, v in obj.items():
        if k not in _RESERVED:
            metadata[k] = _meta_value(v)
    return Document(
        id=doc_id, text=text, title=_opt_str(obj, "title", path, line) or "",
        source=_opt_str(obj, "source", path, line) or default_source or path.stem,
        kind=_opt_str(obj, "kind", path, line) or "document",
        patient_id=_opt_str(obj, "patient_id", path, line), timestamp=timestamp,
        encounter_id=_opt_str(obj, "encounter_id", path, line), metadata=metadata,
    )


def read_jsonl(path: Path, sink: ErrorSink) -> Iterator[Document]:
    """Yield one :class:`Document` per non-blank line of ``path`` (a file or a BEIR folder)."""
    path = Path(path)
    if path.is_dir():
        path = path / "corpus.jsonl"
    if path.is_dir() or not path.exists():
        sink.handle(InputError("does not exist (a BEIR folder needs corpus.jsonl)", path=str(path)))
        return
    default_source = path.parent.name if path.name == "corpus.jsonl" else path.stem
    with open(path, "rb") as fh:
        for line_no, raw in enumerate(fh, 1):
            if not raw.strip():
                continue
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                sink.handle(InputError(f"not valid UTF-8 (byte {exc.start}: {raw[exc.start:exc.start + 1]!r}); "
                                       "save the file as UTF-8", path=str(path), record=line_no))
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                sink.handle(InputError(f"invalid JSON at column {exc.colno}: {exc.msg}", path=str(path),
                                       record=line_no))
                continue
            try:
                doc = document_from_object(obj, path, line_no, default_source)
            except InputError as exc:
                sink.handle(exc)
                continue
            yield doc
