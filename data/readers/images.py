"""Image files on their own: JPEG, PNG and DICOM (format ``image``; ``dicom`` is the same reader).

A DICOM file gives an :class:`ImageRecord` with its patient, date, modality and UIDs (see
:mod:`clinrag.data.readers.dicom`) and, when it has a study or series description, an
``image-note`` :class:`Document` linked to it. A JPEG or PNG gives an ImageRecord with id
``image:<absolute path>`` and no patient context. Every file is fully decoded once, so a
corrupt or truncated image is reported by path (and skipped under ``--on-error skip``).

>>> import tempfile, pathlib
>>> from PIL import Image
>>> from clinrag.data.report import ErrorSink
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> Image.new("L", (8, 8)).save(d / "x.png")
>>> [r.modality for r in read_image_file(d / "x.png", ErrorSink())]
['']
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

from clinrag.data.images import file_kind, load_image
from clinrag.data.report import ErrorSink
from clinrag.data.schema import ImageRecord, Record
from clinrag.errors import InputError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".dcm", ".dicom", ".jpg", ".jpeg", ".png")


def read_image_file(path: Path, sink: ErrorSink) -> Iterator[Record]:
    """Records of one image file (or of every file of a folder, recursively, in sorted order)."""
    path = Path(path)
    if path.is_dir():
        for sub in sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith(".")):
            yield from read_image_file(sub, sink)
        return
    try:
        kind = file_kind(path)
        if kind == "dicom":
            from clinrag.data.readers.dicom import dicom_records

            image, note = dicom_records(path, source=path.parent.name or "dicom")
            yield image
            if note is not None:
                yield note
            return
        with load_image(path) as im:
            size = im.size
    except InputError as exc:
        sink.handle(exc)
        return
    yield ImageRecord(id=f"image:{path.resolve()}", path=str(path.resolve()), source=path.parent.name or "images",
                      metadata={"filename": path.name, "format": kind, "columns": size[0], "rows": size[1]})


__all__ = ["IMAGE_SUFFIXES", "read_image_file"]
