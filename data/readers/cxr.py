"""Image tables: a folder with ``metadata.csv`` and ``images/`` (the covid-chestxray layout).

Columns: ``patientid, offset, sex, age, finding, survival, view, modality, date, location,
filename, doi, url, license, clinical notes, other notes``; ``filename`` is required. Each row
gives an :class:`ImageRecord` (id ``cxr:<filename>``) and, when the row has notes, a text
:class:`Document` of kind ``image-note`` (id ``cxr-note:<filename>``) linked to the image.
Dates are parsed leniently ("March 3, 2020", "2020", "3/3/2020"); an unparseable date is None.

>>> sniff_image(b"\\xff\\xd8\\xff\\xe0rest"), sniff_image(b"GIF89a"), sniff_image(b"<html>")
('jpeg', 'gif', None)
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from clinrag.data.readers._common import parse_lenient
from clinrag.data.report import ErrorSink
from clinrag.data.schema import Document, ImageRecord, Record
from clinrag.errors import InputError

log = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("filename",)
META_COLUMNS = ("finding", "view", "sex", "age", "survival", "offset", "location", "doi", "url", "license")
NOTE_COLUMNS = ("clinical notes", "other notes")
_MAGIC = ((b"\xff\xd8\xff", "jpeg"), (b"\x89PNG\r\n\x1a\n", "png"), (b"GIF87a", "gif"), (b"GIF89a", "gif"),
          (b"II*\x00", "tiff"), (b"MM\x00*", "tiff"), (b"BM", "bmp"))

try:  # Pillow decodes the image to check it; without it, the magic number is checked.
    from PIL import Image, UnidentifiedImageError
except ImportError:  # pragma: no cover - depends on the environment
    Image = None  # type: ignore[assignment]


def sniff_image(head: bytes) -> str | None:
    """The image format named by a file's first bytes, or None."""
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if len(head) > 132 and head[128:132] == b"DICM":
        return "dicom"
    return next((name for magic, name in _MAGIC if head.startswith(magic)), None)


def check_image(path: Path) -> str | None:
    """None when ``path`` is a readable image; otherwise why it is not."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(256)
    except FileNotFoundError:
        return f"image file not found: {path}"
    except OSError as exc:
        return f"cannot read image {path}: {exc.strerror or exc}"
    kind = sniff_image(head)
    if kind is None:
        return f"not an image (unknown file signature): {path}"
    if Image is not None and kind != "dicom":
        try:
            with Image.open(path) as im:
                im.load()  # a full decode: verify() does not notice a truncated JPEG
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
            return f"corrupt or unreadable image {path}: {exc}"
    return None


def _number(value: str) -> Any:
    v = value.strip()
    try:
        return int(v)
    except ValueError:
        try:
            return float(v)
        except ValueError:
            return v or None


def read_cxr(path: Path, sink: ErrorSink) -> Iterator[Record]:
    """Yield an ImageRecord (and an image-note Document) per row of ``metadata.csv``."""
    path = Path(path)
    csv_path = path / "metadata.csv" if path.is_dir() else path
    folder = csv_path.parent
    source = folder.name or "images"
    if not csv_path.is_file():
        sink.handle(InputError("does not exist (an image table needs metadata.csv)", path=str(csv_path)))
        return
    with open(csv_path, encoding="utf-8-sig", newline="") as fh:
        yield from _rows(csv.DictReader(fh), csv_path, folder, source, sink)


def _rows(reader: csv.DictReader, csv_path: Path, folder: Path, source: str, sink: ErrorSink) -> Iterator[Record]:
    try:
        header = [h.strip().lower() for h in (reader.fieldnames or [])]
    except UnicodeDecodeError as exc:
        sink.handle(InputError(f"not valid UTF-8 (byte {exc.start})", path=str(csv_path), record=1))
        return
    for col in REQUIRED_COLUMNS:
        if col not in header:
            sink.handle(InputError(f"missing column (found: {', '.join(header) or 'none'})", path=str(csv_path),
                                   field=col))
            return
    row_no = 0
    while True:
        try:
            raw = next(reader)
        except StopIteration:
            break
        except (UnicodeDecodeError, csv.Error) as exc:
            sink.handle(InputError(f"unreadable row ({exc})", path=str(csv_path), record=row_no + 1))
            return
        row_no += 1
        row = {(k or "").strip().lower(): (v or "").strip() for k, v in raw.items() if isinstance(v, str | None)}
        yield from _row_records(row, row_no, csv_path, folder, source, sink)


def _row_records(row: dict[str, str], row_no: int, csv_path: Path, folder: Path, source: str,
                 sink: ErrorSink) -> Iterator[Record]:
    filename = row.get("filename", "")
    if not filename:
        sink.handle(InputError("empty filename", path=str(csv_path), record=row_no, field="filename"))
        return
    image = folder / "images" / filename
    if not image.exists() and (folder / filename).exists():
        image = folder / filename
    problem = check_image(image)
    if problem:
        sink.handle(InputError(problem, path=str(csv_path), record=row_no, field="filename"))
        return
    image_path = str(image.resolve())
    meta: dict[str, Any] = {k: row.get(k) or None for k in META_COLUMNS}
    for k in ("age", "offset"):
        if meta[k]:
            meta[k] = _number(meta[k])
    meta = {k: v for k, v in meta.items() if v is not None}
    if row.get("date"):
        meta["date_text"] = row["date"]
    notes = " ".join(row[c] for c in NOTE_COLUMNS if row.get(c))
    patient = row.get("patientid") or None
    timestamp = parse_lenient(row.get("date"))
    modality = row.get("modality", "")
    image_id = f"cxr:{filename}"
    yield ImageRecord(id=image_id, path=image_path, modality=modality, caption=notes, source=source,
                      patient_id=patient, timestamp=timestamp, metadata={**meta, "filename": filename})
    if notes:
        title = " ".join(x for x in (row.get("finding"), row.get("view"), modality) if x)
        yield Document(id=f"cxr-note:{filename}", text=notes, title=title, source=source, kind="image-note",
                       patient_id=patient, timestamp=timestamp,
                       metadata={**meta, "modality": modality, "image_id": image_id, "image_path": image_path})
