"""Longitudinal records: timelines, time-aware search, patient memory (built and updated by writes)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from clinrag import Document, Engine
from clinrag.cli import app
from clinrag.data.readers import read_records
from clinrag.errors import PatientNotFoundError
from clinrag.retrieval.temporal import detect_intent

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "samples" / "fhir"
P1 = "6d23a95e-7e18-4201-90ec-9501fa89fbd2"  # Alfreda Wyman in the sample bundles


def _obs(i: int, year: int, value: float, pid: str = "p1") -> Document:
    return Document(id=f"o{i}", text=f"Observation: Hemoglobin A1c = {value} %. Date {year}-01-01.",
                    title="Hemoglobin A1c", kind="observation", patient_id=pid, timestamp=dt.datetime(year, 1, 1),
                    metadata={"code": "4548-4", "value": value, "unit": "%", "category": ["laboratory"]})


def _cond(i: int, name: str, onset: str, abatement: str | None = None, pid: str = "p1") -> Document:
    meta = {"code": f"c-{name}", "onset": onset, "status": "resolved" if abatement else "active"}
    if abatement:
        meta["abatement"] = abatement
    return Document(id=f"c{i}", text=f"Condition: {name}. Onset {onset[:10]}.", title=name, kind="condition",
                    patient_id=pid, timestamp=dt.datetime.fromisoformat(onset), metadata=meta)


@pytest.fixture()
def engine(tmp_path):
    eng = Engine.create(tmp_path / "idx")
    eng.add([_obs(1, 2015, 6.1), _obs(2, 2019, 9.0), _obs(3, 2017, 7.2),
             _cond(1, "Asthma", "2010-05-01T00:00:00"),
             _cond(2, "Acute bronchitis", "2016-02-01T00:00:00", "2016-02-20T00:00:00"),
             _cond(3, "Hypertension", "2012-01-01T00:00:00", pid="p2"),
             Document(id="n1", text="Cough started two weeks ago.", kind="note", patient_id="p1",
                      timestamp=dt.datetime(2016, 1, 20))])
    yield eng
    eng.close()


def test_timeline_orders_and_filters(engine):
    events = engine.timeline("p1")
    assert [e.doc_id for e in events] == ["c1", "o1", "n1", "c2", "o3", "o2"]
    assert [e.doc_id for e in engine.timeline("p1", since="2016-01-01", until="2017-12-31")] == ["n1", "c2", "o3"]
    assert [e.doc_id for e in engine.timeline("p1", kinds=["condition"])] == ["c1", "c2"]
    assert engine.timeline("nobody") == []


def test_latest_and_first_intent(engine):
    latest = engine.search("most recent hemoglobin A1c", k=3, filters={"patient_id": "p1"})
    assert [h.doc_id for h in latest] == ["o2", "o3", "o1"]
    first = engine.search("first hemoglobin A1c", k=3, filters={"patient_id": "p1"})
    assert first[0].doc_id == "o1"
    plain = engine.search("hemoglobin A1c", k=3, filters={"patient_id": "p1"}, temporal=False)
    assert {h.doc_id for h in plain} == {"o1", "o2", "o3"}
    ranged = engine.search("hemoglobin A1c in 2017", k=3, filters={"patient_id": "p1"})
    assert ranged[0].doc_id == "o3"


def test_search_batch_applies_each_querys_temporal_intent(engine):
    queries = ["most recent hemoglobin A1c", "first hemoglobin A1c", "hemoglobin A1c in 2017"]
    batch = engine.search_batch(queries, k=3, filters={"patient_id": "p1"})
    assert [[h.doc_id for h in hs] for hs in batch] == [
        [h.doc_id for h in engine.search(q, k=3, filters={"patient_id": "p1"})] for q in queries]
    assert [hs[0].doc_id for hs in batch] == ["o2", "o1", "o3"]
    off = engine.search_batch(queries[:1], k=3, filters={"patient_id": "p1"}, temporal=False)[0]
    assert {h.doc_id for h in off} == {"o1", "o2", "o3"}


def test_memory_is_read_once_per_committed_version(engine, monkeypatch):
    import clinrag.indexing.memory as memory

    calls = []
    real = memory.load_memory
    monkeypatch.setattr(memory, "load_memory", lambda *a: calls.append(a) or real(*a))
    monkeypatch.setattr(engine, "_memories", None)
    assert engine.manifest.memory_dir
    first = engine.memory("p1")
    assert engine.memory("p1") == first and len(calls) == 1


def test_recency_prior_prefers_newer(engine):
    hits = engine.search("hemoglobin A1c", k=3, filters={"patient_id": "p1"}, temporal=False, recency=0.5)
    assert hits[0].doc_id == "o2" and "recency" in hits[0].stage_scores


def test_detect_intent_phrasings():
    assert detect_intent("when did the cough start").order == "first"
    assert detect_intent("what is the patient currently taking").order == "latest"
    assert detect_intent("first-line therapy for asthma").order is None
    last6 = detect_intent("any imaging in the last 6 months", now=dt.datetime(2020, 7, 15))
    assert last6.order is None and last6.since == dt.datetime(2020, 1, 15)
    assert detect_intent("visits since 2018").since == dt.datetime(2018, 1, 1)
    m = detect_intent("labs in March 2019")
    assert (m.since, m.until.date()) == (dt.datetime(2019, 3, 1), dt.date(2019, 3, 31))


def test_memory_built_and_updated_incrementally(engine):
    mem = engine.memory("p1")
    assert [p.label for p in mem.problems] == ["Asthma"]
    assert mem.problems[0].start == "2010-05-01" and mem.problems[0].sources == ("c1",)
    assert [(p.label, p.end) for p in mem.resolved] == [("Acute bronchitis", "2016-02-20")]
    lab = mem.labs[0]
    assert (lab.value, lab.start, lab.sources) == ("9 %", "2019-01-01", ("o2", "o3"))
    assert lab.trend is not None and lab.trend.startswith("rising")
    p2_before = engine.memory("p2")
    first_dir = engine.manifest.memory_dir
    engine.add([_obs(4, 2021, 6.5)])
    assert engine.manifest.memory_dir != first_dir
    assert not (engine.root / first_dir).exists()
    lab = engine.memory("p1").labs[0]
    assert (lab.value, lab.sources) == ("6.5 %", ("o4", "o2"))
    assert lab.trend is not None and lab.trend.startswith("falling")
    assert engine.memory("p2") == p2_before
    engine.delete(["c3"])
    with pytest.raises(PatientNotFoundError):
        engine.memory("p2")
    stored = json.loads((engine.root / engine.manifest.memory_dir / "memory.json").read_text())
    assert set(stored["patients"]) == {"p1"} and stored["format_version"] == 1


def test_memory_from_fhir_bundles_cites_records(tmp_path):
    with Engine.create(tmp_path / "idx") as eng:
        eng.add(read_records([SAMPLES]))
        mem = eng.memory(P1)
        ids = {d.id for d in eng.documents([s for line in (*mem.problems, *mem.medications, *mem.labs)
                                             for s in line.sources])}
        assert {p.label for p in mem.problems} >= {"Hypertension", "Prediabetes"}
        assert any(m.label.startswith("Hydrochlorothiazide") for m in mem.medications)
        assert all(s in ids for line in (*mem.problems, *mem.medications, *mem.labs) for s in line.sources)
        a1c = next(line for line in mem.labs if line.label.startswith("Hemoglobin A1c"))
        latest = eng.search("most recent hemoglobin A1c", k=1, filters={"patient_id": P1})[0]
        assert latest.doc_id == a1c.sources[0]


def test_cli_timeline_and_memory(engine):
    runner = CliRunner()
    res = runner.invoke(app, ["timeline", str(engine.root), "p1", "--kind", "observation", "--json"])
    assert res.exit_code == 0, res.output
    assert [e["doc_id"] for e in json.loads(res.stdout)] == ["o1", "o3", "o2"]
    res = runner.invoke(app, ["memory", str(engine.root), "p1", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["problems"][0]["label"] == "Asthma"
    res = runner.invoke(app, ["memory", str(engine.root), "nobody"])
    assert res.exit_code == 1 and "no records of patient" in " ".join(res.output.split())
    res = runner.invoke(app, ["search", str(engine.root), "hemoglobin", "--last", "1000y", "--json"])
    assert res.exit_code == 0 and len(json.loads(res.stdout)) == 3
