"""Image indexing and search end to end: the sample chest X-rays plus DICOM CTs, a tiny saved CLIP model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("open_clip")
pytest.importorskip("pydicom")
from _dicom_factory import make_dicom  # noqa: E402
from _tiny_clip import TINY_ARCH, save_tiny_open_clip  # noqa: E402
from PIL import Image  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from clinrag.config import IndexConfig  # noqa: E402
from clinrag.data.images import load_image  # noqa: E402
from clinrag.data.readers import read_records  # noqa: E402
from clinrag.engine import Engine  # noqa: E402
from clinrag.errors import ConfigError, IndexMismatchError  # noqa: E402
from clinrag.indexing.image_encoders import get_image_encoder  # noqa: E402
from clinrag.retrieval.images import ImageHit, ImageIndex  # noqa: E402

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "samples" / "cxr"
FIRST = SAMPLES / "images" / "covid-19-pneumonia-15-PA.jpg"


@pytest.fixture(scope="module")
def spec(tmp_path_factory):
    _, _, _, ckpt = save_tiny_open_clip(tmp_path_factory.mktemp("model"))
    return f"{TINY_ARCH}@{ckpt}"


@pytest.fixture(scope="module")
def dicoms(tmp_path_factory):
    folder = tmp_path_factory.mktemp("dicom")
    rng = np.random.default_rng(1)
    for i in range(2):
        make_dicom(folder / f"ct{i}.dcm", rng.integers(0, 4000, (24, 24), dtype=np.uint16), slope=1.0,
                   intercept=-1024.0, window=(40, 400), PatientID=f"D{i}", StudyDate=f"2021010{i + 1}",
                   SeriesDescription="AXIAL LUNG")
    return folder


@pytest.fixture(scope="module")
def index(tmp_path_factory, spec, dicoms):
    root = tmp_path_factory.mktemp("idx") / "index"
    seen: list[int] = []
    with Engine.create(root, IndexConfig(image_model=spec)) as eng:
        stats = eng.add(read_records([SAMPLES, dicoms]), image_progress=seen.append)
    assert stats.images_added == 8 and seen[-1] == 8
    return root


def test_build_records_model_and_embeddings(index, spec):
    with Engine.open(index) as eng:
        assert eng.manifest.counts["images"] == 8
        assert eng.manifest.models["image"] == spec and eng.config.image_model == spec
        assert eng.store.image_dim == 16 and len(eng.image_index()) == 8
        assert eng.image_index().device == "cpu"


def test_image_to_image_finds_itself_with_context(index):
    with Engine.open(index) as eng:
        hits = eng.search_images(image=FIRST, k=3)
    top = hits[0]
    assert isinstance(top, ImageHit) and top.doc_id == "cxr:covid-19-pneumonia-15-PA.jpg"
    assert top.score == pytest.approx(1.0, abs=1e-4) and [h.rank for h in hits] == [1, 2, 3]
    assert top.path == str(FIRST.resolve()) and top.patient_id == "20" and top.modality == "X-ray"
    assert top.timestamp is not None and top.timestamp.year == 2020
    assert top.linked_ids == ("cxr-note:covid-19-pneumonia-15-PA.jpg",) and "covid-19" in top.linked_text[0]
    d = top.to_dict()
    assert d["path"] == top.path and d["metadata"]["modality"] == "X-ray" and d["linked_text"]


def test_text_to_image_matches_brute_force(index, spec):
    enc = get_image_encoder(spec)
    with Engine.open(index) as eng:
        hits = eng.search_images("bilateral ground glass opacities", k=8)
        paths = eng.store.scan("images", ["image_id", "path"]).to_pylist()
    q = enc.encode_texts(["bilateral ground glass opacities"])[0]
    emb = enc.encode_images([load_image(r["path"]) for r in paths])
    expected = [paths[i]["image_id"] for i in np.argsort(-(emb @ q), kind="stable")]
    assert [h.doc_id for h in hits] == expected
    with Engine.open(index) as eng:
        assert [h.doc_id for h in eng.search_images(vector=q, k=8)] == expected
        with pytest.raises(ConfigError, match="one of"):
            eng.search_images("x", vector=q)
    np.testing.assert_allclose([h.score for h in hits], np.sort(emb @ q)[::-1], atol=1e-5)


def test_filters_modality_patient_time(index):
    with Engine.open(index) as eng:
        ct = eng.search_images(image=FIRST, k=10, filters={"modality": "CT"})
        assert {h.modality for h in ct} == {"CT"} and len(ct) == 2
        assert {h.metadata["dicom_modality"] for h in ct} == {"CT"}
        one = eng.search_images("pneumonia", k=10, filters={"patient_id": "31"})
        assert {h.patient_id for h in one} == {"31"} and len(one) == 2
        dated = eng.search_images("pneumonia", k=10, filters={"since": "2021-01-02"})
        assert [h.patient_id for h in dated] == ["D1"]
        assert eng.search_images("pneumonia", k=5, filters={"patient_id": "nobody"}) == []


def test_image_to_text_returns_notes_of_similar_images(index):
    with Engine.open(index) as eng:
        hits = eng.search_image_notes(FIRST, k=4)
        ct_notes = eng.search_image_notes(FIRST, k=4, filters={"modality": "CT"})
    assert hits[0].doc_id == "cxr-note:covid-19-pneumonia-15-PA.jpg" and hits[0].kind == "image-note"
    assert hits[0].metadata["via_image"] == "cxr:covid-19-pneumonia-15-PA.jpg"
    assert hits[0].score == pytest.approx(1.0, abs=1e-4) and len(hits) == 4
    assert {h.kind for h in ct_notes} == {"image-note"} and all(h.doc_id.startswith("dicom-note:") for h in ct_notes)


def test_multimodal_fuses_text_and_image_hits(index):
    with Engine.open(index) as eng:
        text_only = eng.search("pneumonia", k=5)
        hits = eng.search_multimodal("pneumonia", k=8)
        img_query = eng.search_multimodal(image=FIRST, k=4)
    kinds = {h.kind for h in hits}
    assert "image" in kinds and kinds - {"image"}, kinds
    assert [h.rank for h in hits] == list(range(1, len(hits) + 1))
    assert all("fused" in h.stage_scores for h in hits)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert text_only[0].chunk_id in {h.chunk_id for h in hits}
    # image query: the image itself and its own note come first (rank 1 in both lists)
    assert {img_query[0].doc_id, img_query[1].doc_id} == {"cxr:covid-19-pneumonia-15-PA.jpg",
                                                          "cxr-note:covid-19-pneumonia-15-PA.jpg"}


def test_delete_image_and_reopen(tmp_path, spec, dicoms):
    root = tmp_path / "idx"
    with Engine.create(root, IndexConfig(image_model=spec)) as eng:
        eng.add(read_records([dicoms]))
        victim = eng.search_images(image=dicoms / "ct0.dcm", k=1)[0].doc_id
        eng.delete([victim])
    with Engine.open(root) as eng:
        assert victim not in [h.doc_id for h in eng.search_images(image=dicoms / "ct0.dcm", k=5)]
    with pytest.raises(IndexMismatchError):
        Engine.open(root, expect_config=IndexConfig(image_model="ViT-B-32@random"))
    manifest = json.loads((root / "manifest.json").read_text())
    manifest["models"]["image"] = "some-other-model"
    (root / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(IndexMismatchError, match="some-other-model"):
        Engine.open(root)


def test_without_image_model_images_indexed_and_query_says_what_to_configure(tmp_path):
    with Engine.create(tmp_path / "idx") as eng:
        eng.add(read_records([SAMPLES]))
        assert eng.manifest.counts["images"] == 6
        notes = eng.search("covid-19 pneumonia", k=3, filters={"kind": "image-note", "modality": "X-ray"})
        assert notes and all(h.metadata["image_id"].startswith("cxr:") for h in notes)
        for call in (lambda: eng.search_images("pneumonia"), lambda: eng.search_images(image=FIRST),
                     lambda: eng.search_multimodal("pneumonia"), lambda: eng.search_image_notes(FIRST)):
            with pytest.raises(ConfigError, match="--image-model") as info:
                call()
            assert "without an image model" in str(info.value) and "6 images" in str(info.value)


def test_image_index_filtered_and_short():
    vecs = np.eye(4, dtype=np.float32)
    idx = ImageIndex(list("abcd"), vecs, use_gpu=False)
    q = np.array([[1.0, 0.5, 0.2, 0.0]], np.float32)
    assert [s.chunk_id for s in idx.search(q, 10)[0]] == ["a", "b", "c", "d"]
    assert [s.chunk_id for s in idx.search(q, 10, frozenset({"d", "b", "zz"}))[0]] == ["b", "d"]
    assert idx.search(q, 3, frozenset())[0] == []
    idx.device = "cuda"  # the GPU branch (faiss.knn over the admitted rows) gives the same result
    assert [s.chunk_id for s in idx.search(q, 10, frozenset({"d", "b", "zz"}))[0]] == ["b", "d"]


def test_cli_image_search_json_and_contact_sheets(index, tmp_path):
    from clinrag.cli import app

    runner = CliRunner()
    res = runner.invoke(app, ["search", str(index), "--image", str(FIRST), "-k", "3", "--json"])
    assert res.exit_code == 0, res.output
    hits = json.loads(res.stdout)
    assert hits[0]["doc_id"] == "cxr:covid-19-pneumonia-15-PA.jpg" and hits[0]["path"].endswith(".jpg")
    res = runner.invoke(app, ["search", str(index), "pneumonia", "--target", "both", "--modality", "X-ray", "--json"])
    assert res.exit_code == 0, res.output
    assert {h["metadata"]["kind"] for h in json.loads(res.stdout)} >= {"image"}
    png, page = tmp_path / "sheet.png", tmp_path / "sheet.html"
    res = runner.invoke(app, ["search", str(index), "consolidation", "--target", "images", "-k", "5",
                              "--contact-sheet", str(png)])
    assert res.exit_code == 0, res.output
    with Image.open(png) as im:
        assert im.size == (4 * (256 + 16), 28 + 2 * (256 + 9 * 14 + 16))
    res = runner.invoke(app, ["search", str(index), "--image", str(FIRST), "-k", "3", "--contact-sheet", str(page)])
    assert res.exit_code == 0, res.output
    text = page.read_text()
    assert text.count("<figure>") == 3 and "data:image/png;base64," in text and "covid-19" in text.lower()
    res = runner.invoke(app, ["search", str(index)])
    assert res.exit_code == 2 and "QUERY" in res.output
