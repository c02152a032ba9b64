"""DICOM files: pixels for display/encoding and metadata mapped onto clinrag's patient/time fields.

Pixels go through the modality LUT (or Rescale Slope/Intercept), then the VOI LUT or the first
Window Center/Width (min-max when the file has neither), MONOCHROME1 is inverted so that
bright means dense as in MONOCHROME2, and the result is scaled to 8 bits. A multi-frame
file gives its middle frame. Compressed transfer syntaxes are decoded when pydicom has a
decoder for them (RLE and, through Pillow, JPEG baseline and JPEG 2000); otherwise they are
rejected with an :class:`~clinrag.errors.InputError` naming the file and the codec to install.

Metadata: ``PatientID`` -> ``patient_id``; ``StudyDate``/``StudyTime`` (else series,
acquisition or content date) -> ``timestamp``; ``Modality`` -> ``modality`` (CR/DX -> X-ray,
CT, MR -> MRI, US, ...; the code itself is kept as ``dicom_modality``); ``BodyPartExamined``,
``StudyInstanceUID``, ``SeriesInstanceUID``, ``SOPInstanceUID``, ``AccessionNumber``,
``ViewPosition``, study/series descriptions -> ``metadata``. The id is ``dicom:<SOPInstanceUID>``.

>>> normalise_modality("DX"), normalise_modality("MR"), normalise_modality("OT")
('X-ray', 'MRI', 'OT')
"""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path
from typing import Any

import numpy as np

from clinrag.data.schema import Document, ImageRecord
from clinrag.errors import InputError, MissingDependencyError

log = logging.getLogger(__name__)

MODALITY_NAMES = {"CR": "X-ray", "DX": "X-ray", "DR": "X-ray", "RG": "X-ray", "MG": "Mammography", "CT": "CT",
                  "MR": "MRI", "US": "US", "PT": "PET", "NM": "NM", "XA": "Angiography"}


def normalise_modality(code: str) -> str:
    """The human name clinrag uses for a DICOM modality code (the covid-cxr names where they exist)."""
    code = (code or "").strip().upper()
    return MODALITY_NAMES.get(code, code)


def _pydicom() -> Any:
    try:
        import pydicom
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise MissingDependencyError("pydicom", "images", "reading DICOM files") from exc
    return pydicom


def read_dataset(path: Path, *, pixels: bool = True) -> Any:
    """Read a DICOM file with pydicom; InputError (naming the file) when it is not one or is damaged."""
    pydicom = _pydicom()
    from pydicom.errors import InvalidDicomError

    try:
        return pydicom.dcmread(str(path), stop_before_pixels=not pixels)
    except InvalidDicomError as exc:
        raise InputError(f"not a DICOM file ({exc})", path=str(path)) from None
    except (OSError, EOFError, ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:
        raise InputError(f"corrupt or truncated DICOM file: {type(exc).__name__}: {exc}", path=str(path)) from None


def dicom_pixels(ds: Any, path: Path | str = "") -> np.ndarray:
    """The displayable 8-bit pixels of a dataset: ``(H, W)`` grayscale or ``(H, W, 3)`` RGB."""
    from pydicom.pixels import apply_modality_lut, apply_voi_lut, get_decoder

    if "PixelData" not in ds:
        raise InputError("DICOM file has no pixel data (not an image)", path=str(path), field="PixelData")
    tsyntax = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
    if tsyntax is not None and tsyntax.is_compressed:
        decoder = get_decoder(tsyntax)
        if decoder is None or not decoder.is_available:
            raise InputError(
                f"compressed transfer syntax {tsyntax.name} ({tsyntax}) cannot be decoded: no decoder is "
                "installed. Install one (e.g. `pip install pylibjpeg pylibjpeg-libjpeg pylibjpeg-openjpeg` "
                "or `python-gdcm`) or convert the file to an uncompressed syntax",
                path=str(path), field="TransferSyntaxUID")
    try:
        arr = ds.pixel_array
    except Exception as exc:  # pydicom raises many types for short or malformed pixel data
        raise InputError(f"cannot decode pixel data (corrupt or truncated?): {type(exc).__name__}: {exc}",
                         path=str(path), field="PixelData") from None
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    if frames > 1:
        arr = arr[frames // 2]
    if samples == 3:  # colour (pydicom converts YBR to RGB): already display values
        return _to_uint8(arr.astype(np.float64), None) if arr.dtype != np.uint8 else arr
    if photometric == "PALETTE COLOR":
        from pydicom.pixels import apply_color_lut

        return _to_uint8(apply_color_lut(arr, ds).astype(np.float64), None)
    values = apply_modality_lut(arr, ds)
    windowed = "VOILUTSequence" in ds or "WindowCenter" in ds
    if windowed:
        values = apply_voi_lut(values, ds, index=0, prefer_lut=True)
    out = _to_uint8(np.asarray(values, dtype=np.float64), _voi_range(ds) if windowed else None)
    if photometric == "MONOCHROME1":
        out = 255 - out
    return out


def _voi_range(ds: Any) -> tuple[float, float] | None:
    """The output range of pydicom's windowing (as in ``apply_windowing``); None for a VOI LUT."""
    if "VOILUTSequence" in ds:
        return None
    if ds.get("ModalityLUTSequence"):
        bits = int(ds.ModalityLUTSequence[0].LUTDescriptor[2])
        lo, hi = 0.0, 2.0 ** bits - 1
    elif int(ds.get("PixelRepresentation", 0)) == 0:
        bits = int(ds.get("BitsStored", 8))
        lo, hi = 0.0, 2.0 ** bits - 1
    else:
        bits = int(ds.get("BitsStored", 16))
        lo, hi = -(2.0 ** (bits - 1)), 2.0 ** (bits - 1) - 1
    if ds.get("RescaleSlope") is not None and ds.get("RescaleIntercept") is not None:
        slope, intercept = float(ds.RescaleSlope), float(ds.RescaleIntercept)
        lo, hi = sorted((lo * slope + intercept, hi * slope + intercept))
    return lo, hi


def _to_uint8(values: np.ndarray, value_range: tuple[float, float] | None) -> np.ndarray:
    lo, hi = value_range if value_range else (float(np.nanmin(values)), float(np.nanmax(values)))
    if hi <= lo:
        return np.zeros(values.shape, dtype=np.uint8)
    scaled = (values - lo) * (255.0 / (hi - lo))
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def _text(ds: Any, keyword: str) -> str:
    value = ds.get(keyword)
    if value is None:
        return ""
    return str(value).strip().replace("^", " ").strip()


def _dicom_datetime(date: str, time: str) -> dt.datetime | None:
    date = date.strip()
    if len(date) != 8 or not date.isdigit():
        return None
    try:
        day = dt.datetime.strptime(date, "%Y%m%d")
    except ValueError:
        return None
    digits = time.strip().split(".")[0]
    if len(digits) >= 2 and digits.isdigit():
        digits = (digits + "0000")[:6]
        try:
            return day.replace(hour=int(digits[:2]), minute=int(digits[2:4]), second=int(digits[4:6]))
        except ValueError:
            return day
    return day


def dicom_timestamp(ds: Any) -> dt.datetime | None:
    """Study date and time, else series, acquisition or content date (naive, as stored)."""
    for prefix in ("Study", "Series", "Acquisition", "Content"):
        ts = _dicom_datetime(_text(ds, f"{prefix}Date"), _text(ds, f"{prefix}Time"))
        if ts is not None:
            return ts
    return None


def dicom_records(path: Path, source: str = "dicom") -> tuple[ImageRecord, Document | None]:
    """The ImageRecord of one DICOM file (pixels decoded to check them) and its description note."""
    ds = read_dataset(path)
    pixels = dicom_pixels(ds, path)
    code = _text(ds, "Modality")
    modality = normalise_modality(code)
    sop = _text(ds, "SOPInstanceUID")
    meta: dict[str, Any] = {
        "dicom_modality": code, "body_part": _text(ds, "BodyPartExamined"),
        "study_uid": _text(ds, "StudyInstanceUID"), "series_uid": _text(ds, "SeriesInstanceUID"),
        "sop_uid": sop, "accession": _text(ds, "AccessionNumber"), "view": _text(ds, "ViewPosition"),
        "study_description": _text(ds, "StudyDescription"), "series_description": _text(ds, "SeriesDescription"),
        "sex": _text(ds, "PatientSex"), "age": _text(ds, "PatientAge"),
        "rows": int(pixels.shape[0]), "columns": int(pixels.shape[1]),
        "photometric": _text(ds, "PhotometricInterpretation"),
        "transfer_syntax": str(ds.file_meta.get("TransferSyntaxUID", "")) if hasattr(ds, "file_meta") else "",
        "filename": path.name,
    }
    meta = {k: v for k, v in meta.items() if v not in ("", None)}
    patient = _text(ds, "PatientID") or None
    timestamp = dicom_timestamp(ds)
    parts = [modality, meta.get("body_part", ""), meta.get("view", ""), meta.get("study_description", ""),
             meta.get("series_description", "")]
    caption = " ".join(p for p in parts if p)
    image_id = f"dicom:{sop}" if sop else f"dicom:{path.resolve()}"
    image_path = str(path.resolve())
    image = ImageRecord(id=image_id, path=image_path, modality=modality, caption=caption, source=source,
                        patient_id=patient, timestamp=timestamp, metadata=meta)
    note = None
    if meta.get("study_description") or meta.get("series_description"):
        note = Document(id=f"dicom-note:{image_id[len('dicom:'):]}", text=caption, title=caption, source=source,
                        kind="image-note", patient_id=patient, timestamp=timestamp,
                        metadata={**meta, "modality": modality, "image_id": image_id, "image_path": image_path})
    return image, note


__all__ = ["MODALITY_NAMES", "dicom_pixels", "dicom_records", "dicom_timestamp", "normalise_modality",
           "read_dataset"]
