"""The CLI end to end on real files: index, search --json, info --json, eval, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from clinrag.cli import app

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SAMPLES = Path(__file__).resolve().parents[1] / "data" / "samples"
runner = CliRunner()


def _run(*args: str):
    result = runner.invoke(app, [str(a) for a in args])
    return result


@pytest.fixture(scope="module")
def sample_index(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "idx"
    r = _run("index", SAMPLES / "abstracts.jsonl", SAMPLES / "fhir", SAMPLES / "cxr", "--index", path, "--json")
    assert r.exit_code == 0, r.output
    return path


def test_index_search_info_json(sample_index):
    info = json.loads(_run("info", sample_index, "--json").stdout)
    assert info["documents"] > 30 and info["images"] >= 3 and info["patients"] >= 2
    assert info["manifest"]["format_version"] == 1
    hits = json.loads(_run("search", sample_index, "chest x-ray opacities", "-k", "3", "--json").stdout)
    assert 1 <= len(hits) <= 3
    for h in hits:
        assert {"doc_id", "chunk_id", "score", "text", "metadata"} <= set(h)
        assert {"patient_id", "timestamp", "source", "section"} <= set(h["metadata"])


def test_search_filters_from_cli(sample_index):
    hits = json.loads(_run("search", sample_index, "blood pressure", "--kind", "observation", "-k", "5",
                           "--json").stdout)
    assert hits and all(h["metadata"]["kind"] == "observation" for h in hits)
    patient = hits[0]["metadata"]["patient_id"]
    only = json.loads(_run("search", sample_index, "blood pressure", "--patient", patient, "--since", "2000-01-01",
                           "-k", "20", "--json").stdout)
    assert only and all(h["metadata"]["patient_id"] == patient for h in only)
    assert all(h["metadata"]["timestamp"] >= "2000-01-01" for h in only)


def test_table_output_and_help(sample_index):
    r = _run("search", sample_index, "statins")
    assert r.exit_code == 0 and "hit(s)" in r.stdout
    assert "--where" in _run("search", "--help").stdout


def test_bad_input_stops_without_touching_index(sample_index, tmp_path):
    before = _run("info", sample_index, "--json").stdout
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"_id": "x1", "text": "fine"}\n{"_id": "x2", "text": \n')
    r = _run("index", bad, "--index", sample_index)
    assert r.exit_code == 1
    assert "bad.jsonl" in r.output and "record 2" in r.output
    assert _run("info", sample_index, "--json").stdout == before
    r = _run("index", bad, "--index", tmp_path / "new")
    assert r.exit_code == 1 and not (tmp_path / "new").exists()


def test_skip_bad_records_with_report(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"_id": "x1", "text": "aspirin"}\n{"_id": "x2", "text": \n{"text": "no id"}\n'
                   '{"_id": "x4", "text": "statin"}\n')
    report = tmp_path / "report.json"
    r = _run("index", bad, "--index", tmp_path / "i", "--on-error", "skip", "--report", report, "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["skipped"] == 2 and out["counts"]["documents"] == 2
    problems = json.loads(report.read_text())["problems"]
    assert [p["record"] for p in problems] == [2, 3]


@pytest.mark.skipif(not (SHARED / "pubmedqa" / "pqal_dev.json").exists(), reason="../shared/data not present")
def test_eval_pubmedqa_questions_json(tmp_path):
    r = _run("eval", "retrieval", "--task", "pubmedqa-questions", "--data", SHARED / "pubmedqa" / "pqal_dev.json",
             "--json", "--output", tmp_path / "r.json")
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    assert res["ndcg@10"] > 0.95 and res["recall@100"] > 0.99 and "mrr@10" in res
    assert json.loads((tmp_path / "r.json").read_text())["n_queries"] == 500


def test_missing_index_is_an_error(tmp_path):
    r = _run("search", tmp_path / "nope", "x")
    assert r.exit_code == 1 and "no index" in r.output
