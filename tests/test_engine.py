"""Engine: create/open/add/delete/search, filters pushed down, manifest checks."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from clinrag import Document, Engine, Filters, ImageRecord, IndexConfig
from clinrag.errors import ConfigError, FilterError, IndexExistsError, IndexFormatError, IndexNotFoundError


def _docs() -> list[Document]:
    return [
        Document(id="n1", text="Patient started metformin 500 mg for type 2 diabetes.", kind="note",
                 patient_id="p1", timestamp=dt.datetime(2015, 3, 1), source="synthea",
                 metadata={"department": "endocrinology"}),
        Document(id="n2", text="Metformin dose increased after HbA1c of 9 percent.", kind="note",
                 patient_id="p1", timestamp=dt.datetime(2018, 6, 1), source="synthea",
                 metadata={"department": "primary care"}),
        Document(id="n3", text="Metformin held before contrast CT; pneumonia on chest film.", kind="note",
                 patient_id="p2", timestamp=dt.datetime(2019, 1, 5), source="synthea",
                 metadata={"department": "radiology", "tags": ["imaging", "urgent"]}),
        Document(id="a1", text="Aspirin and statins reduce cardiovascular events in elderly patients.",
                 kind="abstract", source="pubmed", metadata={"year": 2011, "mesh": ["Aspirin", "Aged"]}),
    ]


@pytest.fixture()
def engine(tmp_path):
    eng = Engine.create(tmp_path / "idx")
    eng.add(_docs())
    yield eng
    eng.close()


def test_create_add_search_and_reopen(engine, tmp_path):
    hits = engine.search("metformin dose", k=5)
    assert hits[0].doc_id == "n2"
    assert {h.doc_id for h in hits} == {"n1", "n2", "n3"}
    assert [h.rank for h in hits] == [1, 2, 3]
    assert hits[0].stage_scores["bm25"] == pytest.approx(hits[0].score)
    with Engine.open(tmp_path / "idx") as again:
        assert [h.chunk_id for h in again.search("metformin dose", k=5)] == [h.chunk_id for h in hits]
        assert again.info().counts == {"documents": 4, "chunks": 4, "images": 0, "patients": 2}


def test_filters_are_pushed_down_and_return_k(engine):
    # Only p1's records, although p2's note also matches.
    assert {h.doc_id for h in engine.search("metformin", k=10, filters={"patient_id": "p1"})} == {"n1", "n2"}
    f = Filters(since=dt.datetime(2016, 1, 1), until=dt.datetime(2018, 12, 31))
    assert [h.doc_id for h in engine.search("metformin", filters=f)] == ["n2"]
    assert [h.doc_id for h in engine.search("metformin", filters={"department": "Radiology"})] == ["n3"]
    assert [h.doc_id for h in engine.search("metformin", filters={"tags": ["urgent", "nope"]})] == ["n3"]
    assert [h.doc_id for h in engine.search("aspirin", filters={"mesh": "aged", "year": 2011})] == ["a1"]
    assert engine.search("aspirin", filters={"source": "synthea"}) == []
    assert [h.doc_id for h in engine.search("metformin", filters={"kind": ["note"], "doc_ids": ["n1"]})] == ["n1"]


def test_hit_json_contract(engine):
    d = engine.search("pneumonia", k=1)[0].to_dict()
    assert {"doc_id", "chunk_id", "score", "text", "metadata"} <= set(d)
    assert d["metadata"]["patient_id"] == "p2"
    assert d["metadata"]["timestamp"].startswith("2019-01-05")
    assert d["metadata"]["source"] == "synthea"
    assert d["metadata"]["department"] == "radiology"
    json.dumps(d)


def test_update_replaces_and_delete_removes(engine):
    stats = engine.add([Document(id="n1", text="Insulin glargine started; metformin stopped.", kind="note",
                                 patient_id="p1", timestamp=dt.datetime(2015, 3, 1))] + _docs()[1:])
    assert (stats.documents_updated, stats.documents_unchanged, stats.documents_added) == (1, 3, 0)
    assert engine.search("glargine")[0].doc_id == "n1"
    assert engine.manifest.counts["chunks"] == 4
    assert engine.delete(["n1", "missing"]) == 1
    assert engine.search("glargine") == []
    assert engine.manifest.counts["documents"] == 3


def test_images_are_stored_and_filterable(tmp_path):
    img = ImageRecord(id="img1", path="/x.jpg", modality="X-ray", caption="bilateral opacities", patient_id="p9")
    with Engine.create(tmp_path / "i") as eng:
        eng.add([img, Document(id="t1", text="bilateral opacities on x-ray", patient_id="p9")])
        assert eng.manifest.counts["images"] == 1 and eng.manifest.counts["patients"] == 1
        rows = eng.store.scan("images", ["image_id"], Filters(modality="x-ray").to_sql(table="images"))
        assert rows.column("image_id").to_pylist() == ["img1"]
        assert eng.add([img]).images_unchanged == 1


def test_unique_docs_groups_chunks(tmp_path):
    long = " ".join(f"word{i}" for i in range(400)) + " metformin"
    with Engine.create(tmp_path / "u", IndexConfig(chunk_max_words=50, chunk_overlap_words=10)) as eng:
        eng.add([Document(id="long", text="metformin " + long), Document(id="short", text="metformin once")])
        assert eng.manifest.counts["chunks"] > 5
        hits = eng.search("metformin", k=5, unique_docs=True)
        assert sorted(h.doc_id for h in hits) == ["long", "short"]


def test_errors_are_clear(tmp_path, engine):
    with pytest.raises(IndexNotFoundError, match="clinrag index"):
        Engine.open(tmp_path / "nope")
    with pytest.raises(IndexExistsError, match="overwrite"):
        Engine.create(tmp_path / "idx")
    with pytest.raises(ConfigError, match="multi-vector"):
        engine.search("x", mode="late")
    with pytest.raises(ConfigError, match="unknown search mode"):
        engine.search("x", mode="dense")
    with pytest.raises(FilterError, match="YYYY-MM-DD"):
        Filters.coerce({"since": "last tuesday"})
    manifest = tmp_path / "idx" / "manifest.json"
    data = json.loads(manifest.read_text())
    data["format_version"] = 99
    manifest.write_text(json.dumps(data))
    with pytest.raises(IndexFormatError, match="version 99"):
        Engine.open(tmp_path / "idx")
    manifest.write_text("{not json")
    with pytest.raises(IndexFormatError, match="damaged"):
        Engine.open(tmp_path / "idx")


def test_overwrite_replaces_index(tmp_path, engine):
    with Engine.create(tmp_path / "idx", overwrite=True) as fresh:
        assert fresh.manifest.counts["documents"] == 0
        assert fresh.search("metformin") == []


def test_repeated_id_in_one_add_keeps_the_last_version(tmp_path):
    with Engine.create(tmp_path / "r") as eng:
        stats = eng.add([Document(id="x", text="first aspirin"), Document(id="x", text="second metformin")])
        assert eng.manifest.counts == {"documents": 1, "chunks": 1, "images": 0, "patients": 0}
        assert stats.chunks_added == 1
        assert [h.text for h in eng.search("metformin aspirin")] == ["second metformin"]
