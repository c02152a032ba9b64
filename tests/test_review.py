"""Systematic-review runs: protocol validation, criteria, de-duplication, outputs, resume, screening metrics."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

for _extra in ("pydantic", "yaml", "rispy", "matplotlib"):
    pytest.importorskip(_extra, reason='needs the review extra: pip install "clinrag[review]"')


from clinrag import Document, Engine  # noqa: E402
from clinrag.errors import ConfigError, InputError  # noqa: E402
from clinrag.eval.screening import evaluate_run, read_labels, screening_metrics  # noqa: E402
from clinrag.review import runner as runner_mod  # noqa: E402
from clinrag.review.criteria import RecordView, check  # noqa: E402
from clinrag.review.protocol import Criterion, ReviewProtocol, load_protocol, protocol_json_schema  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PQA = next((p / "shared" / "data" / "pubmedqa" / "pqal_dev.json" for p in (ROOT.parent, ROOT.parents[1])
            if (p / "shared" / "data" / "pubmedqa" / "pqal_dev.json").exists()),
           ROOT.parent / "shared" / "data" / "pubmedqa" / "pqal_dev.json")
GROUP = {"pubmed:1", "pmc:1", "embase:9"}

DOCS = [
    Document(id="pubmed:1", title="Metformin and lactic acidosis in type 2 diabetes: a cohort study",
             text="Adults with type 2 diabetes on metformin were followed. Lactic acidosis was rare.",
             metadata={"year": 2004, "publication_type": "Cohort Study", "doi": "10.1000/met.1"}),
    Document(id="pmc:1", title="Metformin and lactic acidosis in type-2 diabetes - a cohort study.",
             text="Adults with type 2 diabetes on metformin were followed; lactic acidosis was rare (PMC copy).",
             metadata={"year": 2004, "pmid": "1"}),
    Document(id="embase:9", title="Lactic acidosis risk with biguanides",
             text="Biguanide therapy such as metformin and the risk of lactic acidosis in adults.",
             metadata={"year": 2012, "doi": "https://doi.org/10.1000/MET.1"}),
    Document(id="pubmed:2", title="Sulfonylureas and hypoglycaemia",
             text="Glibenclamide caused hypoglycaemia in older adults with diabetes.",
             metadata={"year": 2015, "publication_type": "Randomized Controlled Trial"}),
    Document(id="pubmed:3", title="Metformin in obese mice",
             text="Metformin reduced weight gain in mice fed a high fat diet.", metadata={"year": 2018}),
    Document(id="pubmed:4", title="Asthma inhalers in children",
             text="Inhaled corticosteroids prevent asthma attacks in children.", metadata={"year": 2010}),
]

PROTOCOL = """\
name: metformin safety
depth: 10
snippets: 1
criteria:
  include:
    - name: adults
      terms: [adults, adult]
    - name: 2000-2015
      years: {from: 2000, to: 2015}
  exclude:
    - name: animal study
      terms: [mice, rats]
questions:
  - id: met-safety
    pico: {population: adults with type 2 diabetes, intervention: metformin, outcome: lactic acidosis}
    formulations: ["metformin lactic acidosis", "biguanide acidosis risk"]
    include:
      - name: drug entity
        entities: [metformin]
  - id: hypo
    formulations: ["hypoglycaemia sulfonylurea", "low blood sugar glibenclamide"]
    include:
      - publication_types: [Randomized Controlled Trial]
"""


@pytest.fixture(scope="module")
def index(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("review") / "idx"
    with Engine.create(root) as eng:
        eng.add(DOCS)
    return root


def _protocol(tmp_path: Path, text: str = PROTOCOL) -> Path:
    p = tmp_path / "protocol.yaml"
    p.write_text(text)
    return p


# -- protocol ---------------------------------------------------------------------------------------
def test_protocol_loads_and_hash_ignores_formatting(tmp_path):
    p = load_protocol(_protocol(tmp_path))
    assert [q.id for q in p.questions] == ["met-safety", "hypo"]
    assert p.questions[0].pico.intervention == "metformin"
    inc, exc = p.question_criteria(p.questions[0])
    assert [c.label_text for c in inc] == ["adults", "2000-2015", "drug entity"]
    assert [c.kind for c in exc] == ["terms"]
    (tmp_path / "x").mkdir()
    reformatted = _protocol(tmp_path / "x", "# a comment\n" + PROTOCOL.replace("depth: 10", "depth:   10"))
    assert load_protocol(reformatted).sha256() == p.sha256()


@pytest.mark.parametrize("text, field, words", [
    ("questions:\n  - id: q1\n    formulations: [a]\n    depth: 0\n", "questions[0].depth", "greater than"),
    ("questions:\n  - id: q1\n", "questions[0]", "at least one formulation"),
    ("questions:\n  - id: 'bad id/x'\n    formulations: [a]\n", "questions[0].id", "letters, digits"),
    ("questions:\n  - id: q1\n    formulations: [a]\n    include:\n      - terms: [x]\n        years: {from: 2000}\n",
     "questions[0].include[0]", "exactly one of"),
    ("questions:\n  - id: q1\n    formulations: [a]\n    exclude:\n      - field: design\n",
     "questions[0].exclude[0]", "needs 'values'"),
    ("questions:\n  - id: q1\n    formulations: [a]\n    include:\n      - years: {from: 2010, to: 2001}\n",
     "questions[0].include[0].years", "after"),
    ("questions:\n  - id: q1\n    formulations: [a]\n  - id: Q1\n    formulations: [b]\n", None, "repeats"),
    ("questions:\n  - id: q1\n    formulations: [a]\n    formulation: [b]\n", "questions[0].formulation", "Extra"),
    ("fusion: borda\nquestions:\n  - id: q1\n    formulations: [a]\n", "fusion", "rrf"),
    ("questions: []\n", "questions", "at least 1"),
])
def test_protocol_errors_name_file_and_field(tmp_path, text, field, words):
    path = _protocol(tmp_path, text)
    with pytest.raises(InputError) as info:
        load_protocol(path)
    assert info.value.path == str(path)
    assert info.value.field == field
    assert words in str(info.value)


def test_protocol_bad_yaml_names_the_line(tmp_path):
    with pytest.raises(InputError, match=r"protocol.yaml: invalid YAML at line \d+ column \d+"):
        load_protocol(_protocol(tmp_path, "questions:\n  - id: [q1\n"))
    with pytest.raises(InputError, match="does not exist"):
        load_protocol(tmp_path / "missing.yaml")


def test_json_schema_in_docs_is_current():
    on_disk = json.loads((ROOT / "docs" / "review-protocol.schema.json").read_text())
    assert on_disk == protocol_json_schema(), "regenerate: python -m clinrag.review.schema > docs/..."
    assert "questions" in on_disk["required"]


# -- criteria ---------------------------------------------------------------------------------------
def test_criteria_flags_with_reasons():
    rec = RecordView("d", "Metformin trial", "Adults with type-2 diabetes took metformin.", 2012,
                     metadata={"publication_type": ["Randomized Controlled Trial", "Multicenter Study"],
                               "design": {"arms": 2}})
    assert check(Criterion(terms=["type 2 diabetes"]), rec, "include").status == "pass"  # hyphen = space
    f = check(Criterion(terms=["metformin", "insulin"], match="all"), rec, "include")
    assert (f.status, f.flagged) == ("fail", True) and "missing 'insulin'" in f.reason
    assert check(Criterion(publication_types=["randomized controlled trial"]), rec, "include").status == "pass"
    assert check(Criterion(field="design.arms", values=[2]), rec, "include").status == "pass"
    unknown = check(Criterion(field="language", values=["en"]), rec, "include")
    assert unknown.status == "unknown" and unknown.flagged and "no 'language'" in unknown.reason
    excl = check(Criterion(terms=["mice"]), rec, "exclude")
    assert (excl.status, excl.flagged) == ("fail", False)
    assert check(Criterion(years={"to": 2010}), rec, "include").reason == "2012 outside ... to 2010-12-31"


def test_entity_criteria_use_chunk_entities_when_present():
    from clinrag.review.criteria import Entity

    with_entities = RecordView("d", "", "metformin was not given; insulin was.", 2012,
                               entities=(Entity("metformin", "Chemical", negated=True), Entity("insulin", "Chemical")))
    f = check(Criterion(entities=["metformin"]), with_entities, "include")
    assert f.status == "fail" and "entity" in f.reason  # negated mention does not count
    assert check(Criterion(entities=["insulin"], label="Chemical"), with_entities, "include").status == "pass"
    assert check(Criterion(entities=["insulin"], label="Disease"), with_entities, "include").status == "fail"
    as_terms = RecordView("d", "", "metformin was given", 2012)
    assert "as a term" in check(Criterion(entities=["metformin"]), as_terms, "include").reason


# -- end to end -------------------------------------------------------------------------------------
def test_review_outputs(index, tmp_path):
    import rispy

    out = tmp_path / "out"
    with Engine.open(index) as eng:
        res = eng.review(_protocol(tmp_path), out=out, mode="lexical", batch_size=3)
        singles = [[h.doc_id for h in hs] for hs in eng.search_batch(
            ["metformin lactic acidosis", "biguanide acidosis risk"], 10, mode="lexical", unique_docs=True)]
    q = res.question("met-safety")
    ids = q.doc_ids
    # the PMC copy (same PubMed id) and the Embase record (same DOI, other case and resolver prefix)
    # are merged into pubmed:1, which keeps them as duplicates with reasons; nothing is dropped
    (top,) = [r for r in q.records if r.doc_id in GROUP]
    assert {top.doc_id, *dict(top.duplicates)} == GROUP
    reasons = sorted(dict(top.duplicates).values())
    assert len(reasons) == 2 and all(r.startswith(("same PubMed id 1", "same DOI 10.1000/met.1")) for r in reasons)
    # per-formulation ranks are those of the single searches (best of the merged group)
    for fi, single in enumerate(singles):
        best = min((single.index(d) + 1 for d in GROUP if d in single), default=None)
        assert top.formulation_ranks[fi] == best
    mice = q.records[ids.index("pubmed:3")]
    assert mice.flagged
    assert any(f.role == "exclude" and f.status == "pass" and "mice" in f.reason for f in mice.flags)
    assert any(f.criterion == "adults" and f.status == "fail" for f in mice.flags)
    assert "as a term" in next(f.reason for f in top.flags if f.criterion == "drug entity")
    assert top.matched_entities == ("metformin",)
    assert top.snippets and "acidosis" in top.snippets[0].lower()
    hypo = res.question("hypo")
    assert hypo.records[0].doc_id == "pubmed:2" and not hypo.records[0].flagged

    # files: CSV, Parquet, RIS, markers and the run manifest
    table = pq.read_table(out / "met-safety" / "ranked.parquet").to_pylist()
    assert [r["id"] for r in table] == ids
    assert {"rank_f1", "rank_f2", "matched_entities", "flag_reasons", "snippets", "duplicates"} <= set(table[0])
    csv_text = (out / "met-safety" / "ranked.csv").read_text()
    assert csv_text.splitlines()[0].startswith("rank,id,title,year,score,pmid,doi,status,rank_f1,rank_f2,")
    ris = rispy.loads((out / "met-safety" / "records.ris").read_text())
    assert [e["id"] for e in ris] == ids
    entry = ris[ids.index(top.doc_id)]
    assert entry["accession_number"] == "1" and entry["doi"] == "10.1000/met.1"
    assert sum("duplicate merged:" in n for n in entry["notes"]) == 2
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["complete"] and manifest["mode"] == "lexical"
    assert manifest["protocol"]["sha256"] == res.protocol_sha256
    assert manifest["index"]["manifest"]["counts"]["documents"] == len(DOCS)
    assert manifest["models"]["lexical"].startswith("bm25s-")
    assert set(manifest["questions"]) == {"met-safety", "hypo"}
    assert manifest["timings"]["formulations_searched"] == 4
    assert not list(out.glob(".*tmp*"))


class _Counting:
    """Wraps an engine: counts the formulations searched."""

    def __init__(self, eng: Engine) -> None:
        self.eng = eng
        self.searched: list[str] = []

    def search_batch(self, queries, k=10, filters=None, *, mode=None, unique_docs=False, temporal=True):
        self.searched += list(queries)
        return self.eng.search_batch(queries, k, filters, mode=mode, unique_docs=unique_docs, temporal=temporal)

    def documents(self, ids):
        return self.eng.documents(ids)


def test_resume_after_injected_failure(index, tmp_path, monkeypatch):
    proto = load_protocol(_protocol(tmp_path))
    out = tmp_path / "out"
    real = runner_mod.write_question
    calls = {"n": 0}

    def failing(out_dir, result, marker, abstracts):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError("disk full (injected)")
        return real(out_dir, result, marker, abstracts)

    with Engine.open(index) as eng:
        monkeypatch.setattr(runner_mod, "write_question", failing)
        with pytest.raises(OSError, match="injected"):
            runner_mod.run_review(_Counting(eng), proto, out=out, mode="lexical", batch_size=2)
        assert (out / "met-safety" / "done.json").exists() and not (out / "hypo").exists()
        assert not json.loads((out / "manifest.json").read_text())["complete"]
        done_before = (out / "met-safety" / "done.json").read_bytes()
        monkeypatch.setattr(runner_mod, "write_question", real)
        counting = _Counting(eng)
        res = runner_mod.run_review(counting, proto, out=out, mode="lexical", batch_size=2)
    assert counting.searched == proto.questions[1].formulations  # only the unfinished question
    assert res.question("met-safety").resumed and not res.question("hypo").resumed
    assert (out / "met-safety" / "done.json").read_bytes() == done_before
    assert res.question("met-safety").records[0].duplicates  # read back whole from Parquet
    assert json.loads((out / "manifest.json").read_text())["complete"]


def test_changed_question_or_mode_is_redone(index, tmp_path):
    out = tmp_path / "out"
    with Engine.open(index) as eng:
        eng.review(_protocol(tmp_path), out=out, mode="lexical")
        edited = PROTOCOL.replace('"low blood sugar glibenclamide"', '"glibenclamide hypoglycemia"')
        res = eng.review(_protocol(tmp_path, edited), out=out, mode="lexical")
        assert [q.resumed for q in res.questions] == [True, False]
        assert res.question("hypo").formulations[1] == "glibenclamide hypoglycemia"
    with pytest.raises(ConfigError, match="not empty"):
        (tmp_path / "other").mkdir()
        (tmp_path / "other" / "x.txt").write_text("mine")
        with Engine.open(index) as eng:
            eng.review(_protocol(tmp_path), out=tmp_path / "other")


_KILL_SCRIPT = """
import sys, time
from clinrag import Engine
from clinrag.review.protocol import load_protocol
from clinrag.review.runner import run_review

class Slow:
    def __init__(self, eng):
        self.eng = eng
    def search_batch(self, queries, k=10, filters=None, *, mode=None, unique_docs=False, temporal=True):
        time.sleep(1.0)
        return self.eng.search_batch(queries, k, filters, mode=mode, unique_docs=unique_docs, temporal=temporal)
    def documents(self, ids):
        return self.eng.documents(ids)

eng = Engine.open(sys.argv[1])
run_review(Slow(eng), load_protocol(sys.argv[2]), out=sys.argv[3], mode="lexical", batch_size=1)
"""


@pytest.mark.slow
def test_resume_after_real_kill(index, tmp_path):
    qs = "".join(f"  - id: q{i:02d}\n    formulations: [\"metformin {i}\", \"diabetes\"]\n" for i in range(12))
    proto = _protocol(tmp_path, "depth: 5\nquestions:\n" + qs)
    out = tmp_path / "out"
    script = tmp_path / "run.py"
    script.write_text(textwrap.dedent(_KILL_SCRIPT))
    env = {**os.environ, "PYTHONPATH": os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen([sys.executable, str(script), str(index), str(proto), str(out)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 300
    while time.time() < deadline and not (out / "q01" / "done.json").exists() and proc.poll() is None:
        time.sleep(0.1)
    assert proc.poll() is None, proc.stderr.read().decode()[-2000:] if proc.stderr else ""
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    finished = sorted(p.parent.name for p in out.glob("q*/done.json"))
    assert finished and len(finished) < 12
    with Engine.open(index) as eng:
        counting = _Counting(eng)
        res = runner_mod.run_review(counting, load_protocol(proto), out=out, mode="lexical", batch_size=1)
    assert [q.question_id for q in res.questions if q.resumed] == finished
    assert len(counting.searched) == 2 * (12 - len(finished))
    assert sorted(p.parent.name for p in out.glob("q*/done.json")) == [f"q{i:02d}" for i in range(12)]
    assert not list(out.glob(".*tmp*"))


# -- screening metrics ------------------------------------------------------------------------------
def test_screening_metrics_by_hand():
    m = screening_metrics(["r1", "n", "n2", ("n3", "r2"), "n4"], {"r1", "r2"}, n_total=10, ks=(1, 4))
    assert m.recall_at == {1: 0.5, 4: 1.0}
    assert m.last_relevant_rank == 4  # r2 was merged as a duplicate of the 4th record
    assert m.wss95 == pytest.approx((10 - 4) / 10 - 0.05)
    # one relevant never retrieved: expected position among the 5 unranked records = 5 + 1*6/2
    m2 = screening_metrics(["r1", "a", "b", "c", "d"], {"r1", "r2"}, n_total=10)
    assert m2.last_relevant_rank is None and m2.recall_at_depth == 0.5
    assert m2.screened_for_95 == pytest.approx(8.0)
    assert m2.wss95 == pytest.approx(0.2 - 0.05)
    with pytest.raises(InputError, match="no relevant"):
        screening_metrics(["a"], set(), n_total=3)


def test_eval_review_cli(index, tmp_path):
    from typer.testing import CliRunner

    from clinrag.cli import app

    out = tmp_path / "out"
    runner = CliRunner()
    r = runner.invoke(app, ["review", str(_protocol(tmp_path)), "--index", str(index), "--out", str(out),
                            "--mode", "lexical", "--json"])
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)
    assert [q["id"] for q in summary["questions"]] == ["met-safety", "hypo"]
    labels = tmp_path / "labels.csv"
    labels.write_text("question_id,doc_id,included\nmet-safety,pubmed:1,1\nmet-safety,embase:9,1\n"
                      "met-safety,pubmed:3,0\nhypo,pubmed:2,1\n")
    assert read_labels(labels) == {"met-safety": {"pubmed:1", "embase:9"}, "hypo": {"pubmed:2"}}
    r = runner.invoke(app, ["eval", "review", "--labels", str(labels), "--run", str(out), "-k", "1", "--json"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    run = data["runs"][0]
    per = {m["question_id"]: m for m in run["per_question"]}
    assert per["hypo"]["recall@1"] == 1.0 and per["hypo"]["last_relevant_rank"] == 1
    # pubmed:1 and embase:9 are one record after de-duplication: both relevant ids are found at its rank
    ranked = [m["id"] for m in pq.read_table(out / "met-safety" / "ranked.parquet").to_pylist()]
    assert per["met-safety"]["last_relevant_rank"] == next(i for i, d in enumerate(ranked, 1) if d in GROUP)
    png = Path(data["plot"])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    r = runner.invoke(app, ["review", str(_protocol(tmp_path, "questions: 3\n")), "--index", str(index),
                            "--out", str(tmp_path / "o2")])
    assert r.exit_code == 1 and "protocol.yaml" in r.output


# -- the MeSH benchmark ---------------------------------------------------------------------------
@pytest.mark.skipif(not PQA.exists(), reason="../shared/data/pubmedqa not present")
def test_mesh_benchmark_hides_mesh_and_labels_from_it(tmp_path):
    from clinrag.eval.review_bench import load_synonyms, mesh_review

    bench = mesh_review(PQA)
    assert len(bench.protocol["questions"]) == len(load_synonyms())  # a phrasing list for every topic
    assert all("mesh" not in d.metadata for d in bench.documents)
    raw = json.loads(PQA.read_text())
    q = next(q for q in bench.protocol["questions"] if q["title"] == "Arthritis, Rheumatoid")
    assert q["formulations"][:2] == ["Arthritis, Rheumatoid", "Rheumatoid Arthritis"]
    assert bench.labels[q["id"]] == {f"pubmed:{k}" for k, v in raw.items() if "Arthritis, Rheumatoid" in v["MESHES"]}
    ReviewProtocol.model_validate(bench.protocol)  # a valid protocol


@pytest.mark.slow
@pytest.mark.skipif(not PQA.exists(), reason="../shared/data/pubmedqa not present")
def test_mesh_benchmark_lexical_runs_and_scores(tmp_path):
    from clinrag.eval.review_bench import run_mesh_review

    (res,) = run_mesh_review(PQA, tmp_path / "bench", modes=["lexical"], max_questions=8)
    assert res.mean["questions"] == 8
    assert 0.0 < res.mean["recall@100"] <= 1.0
    assert (tmp_path / "bench" / "recall-vs-screened.png").exists()
    again = evaluate_run(tmp_path / "bench" / "run-lexical", read_labels(tmp_path / "bench" / "labels.csv"))
    assert [m.wss95 for m in again] == [m.wss95 for m in res.per_question]


def test_bad_batch_size(index):
    with Engine.open(index) as eng, pytest.raises(ConfigError, match="batch_size"):
        eng.review(ReviewProtocol.model_validate({"questions": [{"id": "q", "formulations": ["a"]}]}), batch_size=0)
