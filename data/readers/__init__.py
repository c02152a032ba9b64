"""Input readers: detect each source's format and stream its records.

Formats: ``jsonl`` (one JSON document a line), ``beir`` (a folder with ``corpus.jsonl``),
``pubmedqa`` (a PubMedQA json file), ``fhir`` (FHIR R4 Bundles, resources or NDJSON) and
``cxr-csv`` (a folder with ``metadata.csv`` and ``images/``) and ``image`` (JPEG, PNG or DICOM files;
``dicom`` is the same reader). ``auto`` detects the format of each path; directories are expanded
(sorted, recursively; ``auto`` picks image files by suffix, and DICOM files without one by their
``DICM`` marker; ``--format image`` reads every file).

Every bad record or file goes through an :class:`~clinrag.data.report.ErrorSink`, which
raises it (the default) or records it and lets reading go on.

>>> import tempfile, pathlib
>>> p = pathlib.Path(tempfile.mkdtemp()) / "a.jsonl"
>>> _ = p.write_text('{"_id": "1", "text": "Aspirin."}\\n')
>>> detect_format(p), [d.id for d in read_records([p])]
('jsonl', ['1'])
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from clinrag.data.readers.cxr import read_cxr
from clinrag.data.readers.fhir import read_fhir
from clinrag.data.readers.images import IMAGE_SUFFIXES, read_image_file
from clinrag.data.readers.jsonl import read_jsonl
from clinrag.data.readers.pubmedqa import load_pubmedqa, read_pubmedqa
from clinrag.data.report import ErrorSink
from clinrag.data.schema import Record
from clinrag.errors import InputError, UnknownFormatError

log = logging.getLogger(__name__)

FORMATS = ("auto", "jsonl", "beir", "pubmedqa", "fhir", "cxr-csv", "image", "dicom")
PEEK_BYTES = 65536
_FILE_SUFFIXES = (".json", ".jsonl", ".ndjson", ".csv", *IMAGE_SUFFIXES)

Reader = Callable[[Path, ErrorSink], Iterator[Record]]
READERS: dict[str, Reader] = {
    "jsonl": read_jsonl, "beir": read_jsonl, "pubmedqa": read_pubmedqa, "fhir": read_fhir, "cxr-csv": read_cxr,
    "image": read_image_file, "dicom": read_image_file,
}


def _unknown(path: Path, why: str) -> UnknownFormatError:
    return UnknownFormatError(f"{why}; supported formats: {', '.join(FORMATS[1:])}. "
                              "Name the format with --format (format=...)", path=str(path))


def _peek(path: Path) -> str:
    with open(path, "rb") as fh:
        return fh.read(PEEK_BYTES).decode("utf-8", errors="replace")


def _bare_dicom(path: Path) -> bool:
    """A DICOM file named without a known suffix (``IM0001``, ``1.2.840.113619.2.55.3``)?"""
    suffix = path.suffix
    if suffix and not suffix[1:].isdigit():
        return False
    try:
        with open(path, "rb") as fh:
            return fh.read(132)[128:132] == b"DICM"
    except OSError:
        return False


def _detect_file(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in IMAGE_SUFFIXES or _bare_dicom(path):
        return "image"
    if suffix == ".csv":
        header = _peek(path).partition("\n")[0].lower()
        if "filename" in header:
            return "cxr-csv"
        raise _unknown(path, "a CSV file without a 'filename' column")
    if suffix not in (".json", ".jsonl", ".ndjson"):
        raise _unknown(path, f"unknown file type {suffix or '(no suffix)'!r}")
    head = _peek(path).lstrip("\ufeff \t\r\n")
    if suffix in (".jsonl", ".ndjson"):
        first = head.partition("\n")[0]
        return "fhir" if '"resourceType"' in first else "jsonl"
    if '"resourceType"' in head:
        return "fhir"
    if head.startswith("{") and '"CONTEXTS"' in head:
        return "pubmedqa"
    raise _unknown(path, "a JSON file that is neither a FHIR resource/Bundle nor a PubMedQA file")


def detect_format(path: str | Path) -> str:
    """The format of one file or folder (one of :data:`FORMATS` other than ``auto``).

    A folder with ``metadata.csv`` is ``cxr-csv``; with ``corpus.jsonl`` ``beir``; another folder
    takes the format of its first data file (``read_records`` detects each file of a folder on its own).
    Raises UnknownFormatError when nothing fits.
    """
    path = Path(path)
    if not path.exists():
        raise InputError("does not exist", path=str(path))
    if path.is_dir():
        if (path / "metadata.csv").is_file():
            return "cxr-csv"
        if (path / "corpus.jsonl").is_file():
            return "beir"
        first = next(iter(_data_files(path)), None)
        if first is None:
            raise _unknown(path, "a folder without .json, .jsonl, .ndjson, image files or metadata.csv")
        return _detect_file(first)
    return _detect_file(path)


def _data_files(folder: Path, suffixes: tuple[str, ...] = _FILE_SUFFIXES) -> list[Path]:
    """Data files under ``folder``, sorted; of CSV files only an image table's ``metadata.csv``."""
    files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")
                   and (p.suffix.lower() in suffixes or (suffixes == _FILE_SUFFIXES and _bare_dicom(p)))
                   and (p.suffix.lower() != ".csv" or p.name == "metadata.csv"))
    tables = {p.parent for p in files if p.name == "metadata.csv"}  # their images are read with the table
    return [p for p in files if p.suffix.lower() not in IMAGE_SUFFIXES or not tables.intersection(p.parents)]


def _expand(path: Path, fmt: str) -> Iterator[tuple[Path, str]]:
    """(file or folder, format) pairs to read for one source path."""
    if not path.is_dir():
        yield path, _detect_file(path) if fmt == "auto" else fmt
        return
    if fmt in ("cxr-csv", "beir", "image", "dicom") or (fmt == "auto" and (path / "metadata.csv").is_file()):
        yield path, "cxr-csv" if fmt == "auto" else fmt
        return
    if fmt == "auto" and (path / "corpus.jsonl").is_file():
        yield path, "beir"
        return
    suffixes = {"fhir": (".json", ".ndjson"), "jsonl": (".jsonl",), "pubmedqa": (".json",)}.get(fmt, _FILE_SUFFIXES)
    for sub in _data_files(path, suffixes):
        yield sub, fmt if fmt != "auto" else ""


def read_records(paths: Sequence[str | Path], format: str = "auto", sink: ErrorSink | None = None) -> Iterator[Record]:
    """Stream the records of every path (files or folders) in ``format`` (``auto``: detected per file)."""
    if isinstance(paths, str | Path):
        paths = [paths]
    if format not in FORMATS:
        raise _unknown(Path(str(paths[0]) if paths else "."), f"unknown format {format!r}")
    sink = sink if sink is not None else ErrorSink("raise")
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            sink.handle(InputError("does not exist", path=str(path)))
            continue
        try:
            targets = list(_expand(path, format))
        except InputError as exc:
            sink.handle(exc)
            continue
        for target, fmt in targets:
            if not fmt:
                try:
                    fmt = _detect_file(target)
                except InputError as exc:
                    sink.handle(exc)
                    continue
            log.debug("reading %s as %s", target, fmt)
            yield from READERS[fmt](target, sink)


__all__ = ["FORMATS", "READERS", "detect_format", "load_pubmedqa", "read_records"]
