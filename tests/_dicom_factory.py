"""Builds small DICOM files with pydicom for the image tests (no external data)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, JPEGLSLossless, RLELossless, generate_uid


def make_dicom(path: Path, pixels: np.ndarray, *, modality: str = "CT", photometric: str = "MONOCHROME2",
               window: tuple[float, float] | None = None, slope: float | None = None,
               intercept: float | None = None, compress: str | None = None, **tags: object) -> Path:
    """Write ``pixels`` (uint16 or int16, 2-D) as a DICOM file; ``compress``: None, 'rle' or 'jpegls-fake'."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.PatientID = "P001"
    ds.PatientName = "Test^Patient"
    ds.StudyDate = "20200314"
    ds.StudyTime = "101530"
    ds.Modality = modality
    ds.BodyPartExamined = "CHEST"
    ds.StudyDescription = "CT CHEST WITHOUT CONTRAST"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = 16
    ds.BitsStored = 12 if pixels.dtype == np.uint16 else 16
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 1 if pixels.dtype == np.int16 else 0
    if slope is not None:
        ds.RescaleSlope = slope
        ds.RescaleIntercept = intercept or 0
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = window
    for key, value in tags.items():
        setattr(ds, key, value)
    ds.PixelData = pixels.tobytes()
    ds["PixelData"].VR = "OW"
    if compress == "rle":
        ds.compress(RLELossless)
    elif compress == "jpegls-fake":
        ds.file_meta.TransferSyntaxUID = JPEGLSLossless
        ds.PixelData = encapsulate([b"\xff\xd8\xff\xf7" + b"\x00" * 64])
        ds["PixelData"].VR = "OB"
    ds.save_as(path, enforce_file_format=True)
    return path
