"""Readers on the real shared data (synthea-fhir, synthea-r4, PubMedQA, covid-cxr) and on broken inputs."""

from __future__ import annotations

import base64
import csv
import datetime as dt
import json
import shutil
from pathlib import Path

import pytest

from clinrag.data.readers import FORMATS, detect_format, load_pubmedqa, read_records
from clinrag.data.readers.cxr import read_cxr
from clinrag.data.readers.fhir import read_fhir
from clinrag.data.readers.jsonl import read_jsonl
from clinrag.data.report import ErrorSink
from clinrag.data.schema import Document, ImageRecord
from clinrag.errors import InputError, UnknownFormatError

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
SAMPLES = ROOT / "data" / "samples"
FHIR_FILE = SHARED / "synthea-fhir" / "Alva958_Dickinson688_742fc10a-c565-f636-3c05-5dcd28672194.json"
R4_DIR = SHARED / "synthea-r4"
PQA = SHARED / "pubmedqa" / "pqal_dev.json"
CXR = SHARED / "covid-cxr"

needs_shared = pytest.mark.skipif(not FHIR_FILE.exists() or not PQA.exists() or not CXR.exists(),
                                  reason=f"shared data not present at {SHARED} (see shared/README.md)")


def _bundle_excerpt(n_docrefs: int = 1) -> dict:
    """The Patient, first Encounter, first 3 Observations and DocumentReference(s) of a real Synthea bundle."""
    bundle = json.loads(FHIR_FILE.read_text())
    wanted = {"Patient": 1, "Encounter": 1, "Observation": 3, "DocumentReference": n_docrefs}
    keep = []
    for e in bundle["entry"]:
        rt = e["resource"]["resourceType"]
        if wanted.get(rt, 0) > 0:
            keep.append(e)
            wanted[rt] -= 1
    return {"resourceType": "Bundle", "type": "transaction", "entry": keep}


# ---------------------------------------------------------------- real data


@needs_shared
def test_synthea_fhir_notes_observations_and_patient_links():
    docs = list(read_fhir(FHIR_FILE, ErrorSink()))
    by_kind: dict[str, list[Document]] = {}
    for d in docs:
        by_kind.setdefault(d.kind, []).append(d)
    patient_id = "742fc10a-c565-f636-3c05-5dcd28672194"
    assert [d.id for d in by_kind["patient"]] == [f"fhir:Patient/{patient_id}"]
    assert {d.patient_id for d in docs} == {patient_id}
    notes = by_kind["note"]
    assert len(notes) > 20
    first = notes[0]
    assert "# Chief Complaint" in first.text and "immunizations" in first.text and "Alva958" in first.text
    assert first.timestamp == dt.datetime(1998, 4, 29, 6, 53, 25, 410000)
    encounter_ids = {d.metadata["fhir_id"] for d in by_kind["encounter"]}
    assert all(n.encounter_id in encounter_ids for n in notes)
    quantities = [d for d in by_kind["observation"] if "unit" in d.metadata]
    assert quantities
    for obs in quantities:
        assert isinstance(obs.metadata["value"], int | float) and obs.metadata["unit"] in obs.text
        assert obs.timestamp is not None and obs.encounter_id in encounter_ids
    weight = next(d for d in quantities if d.title == "Weight")
    assert weight.text.startswith("Observation: Weight = ") and weight.text.endswith("Category: survey.")
    assert not any(d.metadata["resource_type"] in ("Claim", "ExplanationOfBenefit", "Provenance") for d in docs)


@needs_shared
def test_synthea_r4_conditions_medications_and_vitals():
    docs = [d for d in read_records([R4_DIR]) if isinstance(d, Document)]
    conditions = [d for d in docs if d.kind == "condition"]
    assert len(conditions) > 50
    assert all(d.timestamp is not None and "Onset " in d.text for d in conditions)
    resolved = [d for d in conditions if "abatement" in d.metadata]
    assert resolved
    for d in resolved:
        onset, abatement = dt.datetime.fromisoformat(d.metadata["onset"]), d.metadata["abatement"]
        assert d.timestamp == onset and f"Resolved {abatement[:10]}" in d.text
    sinusitis = next(d for d in conditions if d.id == "fhir:Condition/905ae485-e20a-439d-a9d6-022e685d0bd1")
    assert sinusitis.text == ("Condition: Sinusitis (disorder) (SNOMED 36971009). Onset 2017-08-14. "
                              "Resolved 2017-09-11. Status: resolved.")
    meds = [d for d in docs if d.kind == "medicationrequest"]
    assert meds and all(d.text.startswith("Medication: ") and d.metadata["system"] == "RxNorm" for d in meds)
    bp = next(d for d in docs if d.kind == "observation" and d.title == "Blood Pressure")
    assert "Systolic Blood Pressure = " in bp.text and "mm[Hg]" in bp.text
    panels = [d for d in docs if d.kind == "diagnosticreport" and "Results: " in d.text]
    assert panels and any("Glucose = " in d.text for d in panels)
    patients = {d.patient_id for d in docs if d.kind == "patient"}
    assert len(patients) == 20 and {d.patient_id for d in docs} == patients


@needs_shared
def test_pubmedqa_sections_index_the_text_exactly():
    raw = load_pubmedqa(PQA)
    docs = list(read_records([PQA]))
    assert len(docs) == len(raw) == 500
    for d in docs:
        entry = raw[d.metadata["pmid"]]
        assert d.id == f"pubmed:{d.metadata['pmid']}" and d.kind == "abstract" and d.title == ""
        assert [d.text[s.start:s.end] for s in d.sections] == entry["CONTEXTS"]
        assert [s.name for s in d.sections] == [lab.lower() for lab in entry["LABELS"]]
        assert d.metadata["mesh"] == entry["MESHES"] and d.metadata["question"] == entry["QUESTION"]
        if entry["YEAR"]:
            assert d.timestamp == dt.datetime(int(entry["YEAR"]), 1, 1) and d.metadata["year"] == int(entry["YEAR"])
    subset = list(read_records([PQA], "pubmedqa"))[:1]
    assert subset[0].metadata["final_decision"] in ("yes", "no", "maybe")


@needs_shared
def test_cxr_rows_images_and_notes():
    records = list(read_records([CXR]))
    images = [r for r in records if isinstance(r, ImageRecord)]
    notes = [r for r in records if isinstance(r, Document)]
    with open(CXR / "metadata.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert len(images) == len(rows) == 71
    assert all(Path(im.path).is_absolute() and Path(im.path).exists() for im in images)
    first = images[0]
    assert first.id == f"cxr:{rows[0]['filename']}" and first.patient_id == "2" and first.modality == "X-ray"
    assert first.timestamp == dt.datetime(2020, 1, 22) and first.metadata["finding"] == "COVID-19"
    assert first.metadata["age"] == 65 and first.caption == "infiltrate in the upper lobe of the left lung"
    assert {im.modality for im in images} == {"X-ray", "CT"}
    assert notes and all(n.kind == "image-note" and n.metadata["image_id"].startswith("cxr:") for n in notes)
    assert {n.metadata["image_id"] for n in notes} <= {im.id for im in images}
    no_year = next(im for im in images if im.metadata.get("date_text") == "January 12")
    assert no_year.timestamp is None


@needs_shared
def test_detect_format_on_each_shared_format(tmp_path):
    assert detect_format(SHARED / "synthea-fhir") == "fhir"
    assert detect_format(FHIR_FILE) == "fhir"
    assert detect_format(R4_DIR) == "fhir"
    assert detect_format(PQA) == "pubmedqa"
    assert detect_format(CXR) == "cxr-csv"
    assert detect_format(SAMPLES / "abstracts.jsonl") == "jsonl"
    beir = tmp_path / "beir"
    beir.mkdir()
    (beir / "corpus.jsonl").write_text('{"_id": "d1", "title": "T", "text": "Aspirin.", "metadata": {"a": 1}}\n')
    assert detect_format(beir) == "beir"
    [doc] = read_records([beir])
    assert (doc.id, doc.title, doc.source, dict(doc.metadata)) == ("d1", "T", "beir", {"a": 1})
    (tmp_path / "x.json").write_text('{"hello": 1}')
    with pytest.raises(UnknownFormatError, match="--format"):
        detect_format(tmp_path / "x.json")
    with pytest.raises(InputError, match="does not exist"):
        list(read_records([tmp_path / "missing.jsonl"]))
    assert FORMATS[0] == "auto"


def test_samples_read_cleanly():
    sink = ErrorSink("raise")
    records = list(read_records([SAMPLES / "abstracts.jsonl", SAMPLES / "fhir", SAMPLES / "cxr"], sink=sink))
    kinds = {getattr(r, "kind", "image") for r in records}
    assert {"abstract", "note", "observation", "condition", "image", "image-note", "patient"} <= kinds
    assert sum(1 for r in records if getattr(r, "kind", "") == "abstract") == 30
    assert all(p.stat().st_size < 300_000 for p in (SAMPLES / "fhir").glob("*.json"))
    # The whole folder, detected file by file, gives the same records.
    assert sorted(r.id for r in read_records([SAMPLES])) == sorted(r.id for r in records)


# ---------------------------------------------------------------- bad inputs


def test_jsonl_malformed_line_names_file_and_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"_id": "x1", "text": "fine"}\n\n{"_id": "x2", "text": \n')
    with pytest.raises(InputError) as err:
        list(read_jsonl(bad, ErrorSink()))
    assert err.value.path == str(bad) and err.value.record == 3
    assert "bad.jsonl" in str(err.value) and "record 3" in str(err.value)


def test_jsonl_missing_id_text_and_bad_date(tmp_path):
    bad = tmp_path / "b.jsonl"
    bad.write_text('{"text": "no id"}\n{"_id": "a"}\n{"_id": "b", "text": "t", "date": "yesterday"}\n'
                   '{"id": 7, "contents": "ok", "patient_id": "p1", "timestamp": "2020-01-02T03:04:05Z"}\n')
    with pytest.raises(InputError) as err:
        list(read_jsonl(bad, ErrorSink()))
    assert (err.value.record, err.value.field) == (1, "_id")
    sink = ErrorSink("skip")
    docs = list(read_jsonl(bad, sink))
    assert [(p.record, p.field) for p in sink.problems] == [(1, "_id"), (2, "text"), (3, "timestamp")]
    expected = [("7", "ok", "p1", dt.datetime(2020, 1, 2, 3, 4, 5))]
    assert [(d.id, d.text, d.patient_id, d.timestamp) for d in docs] == expected
    report = json.loads(json.dumps(sink.to_dict()))
    assert report["skipped"] == 3 and report["problems"][0]["path"] == str(bad)


def test_jsonl_non_utf8_bytes_name_the_line(tmp_path):
    bad = tmp_path / "latin1.jsonl"
    bad.write_bytes(b'{"_id": "a", "text": "ok"}\n{"_id": "b", "text": "caf\xe9"}\n')
    with pytest.raises(InputError, match="UTF-8") as err:
        list(read_records([bad]))
    assert err.value.record == 2
    sink = ErrorSink("skip")
    assert [d.id for d in read_records([bad], sink=sink)] == ["a"] and sink.skipped == 1


@needs_shared
def test_fhir_bad_base64_names_the_field(tmp_path):
    bundle = _bundle_excerpt()
    docref = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "DocumentReference")
    docref["content"][0]["attachment"]["data"] = "!!not*base64!!"
    path = tmp_path / "bundle.json"
    path.write_text(json.dumps(bundle))
    with pytest.raises(InputError) as err:
        list(read_fhir(path, ErrorSink()))
    assert err.value.field == "content[0].attachment.data"
    assert err.value.record == f"resource DocumentReference/{docref['id']}" and "base64" in str(err.value)
    sink = ErrorSink("skip")
    kinds = [d.kind for d in read_fhir(path, sink)]
    assert "patient" in kinds and "note" not in kinds and sink.skipped == 1
    # Valid base64 of bytes that are not UTF-8.
    docref["content"][0]["attachment"]["data"] = base64.b64encode(b"caf\xe9 \xff").decode()
    path.write_text(json.dumps(bundle))
    with pytest.raises(InputError, match="not valid utf-8"):
        list(read_fhir(path, ErrorSink()))


@needs_shared
def test_fhir_resource_missing_required_field_skips_only_that_resource(tmp_path):
    bundle = _bundle_excerpt()
    obs = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Observation")
    del obs["code"]
    path = tmp_path / "b.json"
    path.write_text(json.dumps(bundle))
    with pytest.raises(InputError) as err:
        list(read_fhir(path, ErrorSink()))
    assert (err.value.record, err.value.field) == (f"resource Observation/{obs['id']}", "code")
    sink = ErrorSink("skip")
    docs = list(read_fhir(path, sink))
    assert len(docs) == len(bundle["entry"]) - 1 and sink.problems[0].field == "code"


@needs_shared
def test_truncated_bundle_raises_or_is_skipped_and_reported(tmp_path):
    folder = tmp_path / "fhir"
    folder.mkdir()
    raw = FHIR_FILE.read_bytes()
    (folder / "a_truncated.json").write_bytes(raw[: len(raw) // 2])
    shutil.copy(SAMPLES / "fhir" / "Alfreda_Wyman_3287b938-4670-47eb-91e5-e0ce3df71405.json", folder / "b_good.json")
    with pytest.raises(InputError, match="invalid JSON at line") as err:
        list(read_records([folder]))
    assert err.value.path == str(folder / "a_truncated.json") and "truncated" in str(err.value)
    sink = ErrorSink("skip")
    docs = list(read_records([folder], "fhir", sink))
    [patient] = [d for d in docs if d.kind == "patient"]
    assert patient.title == "Alfreda Wyman" and {d.patient_id for d in docs} == {patient.patient_id}
    assert [p.path for p in sink.problems] == [str(folder / "a_truncated.json")]


@needs_shared
def test_unreadable_or_missing_image(tmp_path):
    folder = tmp_path / "cxr"
    (folder / "images").mkdir(parents=True)
    with open(CXR / "metadata.csv", newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        rows, fields = [next(reader) for _ in range(3)], reader.fieldnames
    shutil.copy(CXR / "images" / rows[0]["filename"], folder / "images" / rows[0]["filename"])
    (folder / "images" / rows[1]["filename"]).write_bytes(b"this is not a JPEG")
    with open(folder / "metadata.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)
    with pytest.raises(InputError) as err:
        list(read_cxr(folder, ErrorSink()))
    assert (err.value.record, err.value.field) == (2, "filename") and "metadata.csv" in str(err.value)
    sink = ErrorSink("skip")
    images = [r for r in read_records([folder], sink=sink) if isinstance(r, ImageRecord)]
    assert [im.id for im in images] == [f"cxr:{rows[0]['filename']}"]
    assert [(p.record, p.field) for p in sink.problems] == [(2, "filename"), (3, "filename")]
    assert "not found" in sink.problems[1].message
    (folder / "metadata.csv").write_text("patientid,notes\n1,x\n")
    with pytest.raises(InputError) as err:
        list(read_cxr(folder, ErrorSink()))
    assert err.value.field == "filename"


def test_error_sink_policy():
    with pytest.raises(ValueError):
        ErrorSink("ignore")  # type: ignore[arg-type]
    sink = ErrorSink("skip")
    sink.handle(InputError("boom", path="f.json", record="resource Observation/1", field="code"))
    assert sink.to_dict() == {"skipped": 1, "problems": [
        {"path": "f.json", "record": "resource Observation/1", "field": "code", "message": "boom"}]}
