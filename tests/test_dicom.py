"""DICOM and image-file ingestion on files built with pydicom/Pillow in tmp_path."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pytest

pytest.importorskip("pydicom")
from _dicom_factory import make_dicom  # noqa: E402
from PIL import Image  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from clinrag.data.images import load_image  # noqa: E402
from clinrag.data.readers import detect_format, read_records  # noqa: E402
from clinrag.data.readers.dicom import dicom_pixels, read_dataset  # noqa: E402
from clinrag.data.report import ErrorSink  # noqa: E402
from clinrag.data.schema import Document, ImageRecord  # noqa: E402
from clinrag.errors import InputError  # noqa: E402


def _ct(tmp_path, name="ct.dcm", **kw):
    # stored values 24, 1064, 2024 -> HU -1000 (air), 40 (soft tissue), 1000 (bone) with intercept -1024
    px = np.array([[24, 1064], [2024, 1064]], dtype=np.uint16)
    return make_dicom(tmp_path / name, px, slope=1.0, intercept=-1024.0, window=(40, 400), **kw)


def test_ct_rescale_and_window(tmp_path):
    path = _ct(tmp_path)
    out = dicom_pixels(read_dataset(path), path)
    assert out.dtype == np.uint8 and out.shape == (2, 2)
    # window 40/400 spans HU -160..240: air clips to black, bone to white, 40 HU is mid-grey
    assert out[0, 0] == 0 and out[1, 0] == 255
    assert abs(int(out[0, 1]) - 128) <= 1


def test_monochrome1_is_inverted(tmp_path):
    px = np.array([[0, 4095], [2048, 0]], dtype=np.uint16)
    m2 = make_dicom(tmp_path / "m2.dcm", px, modality="CR")
    m1 = make_dicom(tmp_path / "m1.dcm", px, modality="CR", photometric="MONOCHROME1")
    a, b = dicom_pixels(read_dataset(m2), m2), dicom_pixels(read_dataset(m1), m1)
    assert a[0, 0] == 0 and a[0, 1] == 255  # no window: min-max
    assert (b.astype(int) == 255 - a.astype(int)).all()


def test_signed_pixels_without_window(tmp_path):
    px = np.array([[-1000, 0], [500, 1000]], dtype=np.int16)
    path = make_dicom(tmp_path / "s.dcm", px, modality="CT", slope=1.0, intercept=0.0)
    out = dicom_pixels(read_dataset(path), path)
    assert out[0, 0] == 0 and out[1, 1] == 255 and out[0, 0] < out[0, 1] < out[1, 0] < out[1, 1]


def test_metadata_mapped_to_patient_time_fields(tmp_path):
    path = _ct(tmp_path, AccessionNumber="ACC9", SeriesDescription="AXIAL 5mm", ViewPosition="")
    records = list(read_records([path]))
    image = next(r for r in records if isinstance(r, ImageRecord))
    note = next(r for r in records if isinstance(r, Document))
    assert detect_format(path) == "image"
    assert image.patient_id == "P001" and image.timestamp == dt.datetime(2020, 3, 14, 10, 15, 30)
    assert image.modality == "CT" and image.metadata["dicom_modality"] == "CT"
    assert image.metadata["body_part"] == "CHEST" and image.metadata["accession"] == "ACC9"
    assert image.metadata["study_uid"] and image.metadata["series_uid"]
    assert image.id == "dicom:" + image.metadata["sop_uid"]
    assert "CHEST" in image.caption and "AXIAL 5mm" in image.caption
    assert note.kind == "image-note" and note.metadata["image_id"] == image.id and note.patient_id == "P001"
    assert "view" not in image.metadata  # empty tags are dropped


def test_rle_compressed_is_decoded(tmp_path):
    plain = _ct(tmp_path, "plain.dcm")
    rle = _ct(tmp_path, "rle.dcm", compress="rle")
    assert read_dataset(rle).file_meta.TransferSyntaxUID.is_compressed
    assert (dicom_pixels(read_dataset(rle), rle) == dicom_pixels(read_dataset(plain), plain)).all()


def test_undecodable_syntax_rejected_naming_the_file(tmp_path):
    path = _ct(tmp_path, "jls.dcm", compress="jpegls-fake")
    with pytest.raises(InputError) as info:
        list(read_records([path]))
    msg = str(info.value)
    assert str(path) in msg and "JPEG-LS" in msg and "no decoder" in msg and info.value.path == str(path)


def test_truncated_and_corrupt_files_skipped_by_path(tmp_path):
    folder = tmp_path / "dicoms"
    folder.mkdir()
    good = _ct(folder, "a_good.dcm")
    bad = _ct(folder, "b_trunc.dcm")
    data = bad.read_bytes()
    bad.write_bytes(data[: len(data) - 5])  # pixel data cut short
    junk = folder / "c_junk.dcm"
    junk.write_bytes(b"\x00" * 128 + b"DICM" + b"\x01\x02garbage")
    jpg = folder / "d_trunc.jpg"
    Image.fromarray(np.arange(64 * 64, dtype=np.uint8).reshape(64, 64)).save(folder / "full.jpg")
    jpg.write_bytes((folder / "full.jpg").read_bytes()[:300])
    (folder / "full.jpg").unlink()
    with pytest.raises(InputError, match="b_trunc.dcm"):
        list(read_records([folder]))
    sink = ErrorSink("skip")
    records = list(read_records([folder], sink=sink))
    assert [r.path for r in records if isinstance(r, ImageRecord)] == [str(good.resolve())]
    assert sorted(p.path.rsplit("/", 1)[-1] for p in sink.problems) == ["b_trunc.dcm", "c_junk.dcm", "d_trunc.jpg"]
    why = {p.path.rsplit("/", 1)[-1]: p.message for p in sink.problems}
    assert "truncated" in why["b_trunc.dcm"] and "no pixel data" in why["c_junk.dcm"]
    assert "truncated" in why["d_trunc.jpg"].lower()


def test_png_jpeg_files_and_load_image(tmp_path):
    Image.new("RGB", (10, 6), (200, 10, 10)).save(tmp_path / "a.png")
    Image.new("L", (7, 5), 30).save(tmp_path / "b.jpg")
    _ct(tmp_path, "c.dcm")
    records = [r for r in read_records([tmp_path]) if isinstance(r, ImageRecord)]
    assert [r.metadata["filename"] for r in records] == ["a.png", "b.jpg", "c.dcm"]
    assert records[0].id == f"image:{(tmp_path / 'a.png').resolve()}" and records[0].metadata["columns"] == 10
    im = load_image(tmp_path / "c.dcm")
    assert im.mode == "RGB" and im.size == (2, 2) and im.getpixel((1, 1))[0] == im.getpixel((1, 0))[0]


def test_cli_index_on_error_skip_reports_bad_dicom(tmp_path):
    from clinrag.cli import app

    folder = tmp_path / "dicoms"
    folder.mkdir()
    _ct(folder, "good.dcm")
    bad = _ct(folder, "bad.dcm")
    bad.write_bytes(bad.read_bytes()[:-7])
    report = tmp_path / "skipped.json"
    res = CliRunner().invoke(app, ["index", str(folder), "--index", str(tmp_path / "idx"), "--on-error", "skip",
                                   "--report", str(report), "--json"])
    assert res.exit_code == 0, res.output
    problems = json.loads(report.read_text())["problems"]
    assert [p["path"] for p in problems] == [str(bad)]
    assert json.loads(res.stdout.strip().splitlines()[-1])["counts"]["images"] == 1


def test_dicom_without_suffix_found_by_auto(tmp_path):
    folder = tmp_path / "study"
    folder.mkdir()
    _ct(folder, "IM0001")
    _ct(folder, "1.2.840.10008.5")
    (folder / "README").write_text("not an image")
    records = [r for r in read_records([folder]) if isinstance(r, ImageRecord)]
    assert sorted(r.metadata["filename"] for r in records) == ["1.2.840.10008.5", "IM0001"]
    assert detect_format(folder / "IM0001") == "image"
