"""clinrag eval qa: PubMedQA settings, decision rules, citation precision, abstention, CLI."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

pytest.importorskip("llama_index.core", reason="llama-index-core (clinrag[llm]) is not installed")
from _scripted_llm import ScriptedLLM  # noqa: E402

from clinrag.eval.qa import decide_extractive, decide_llm, evaluate_qa  # noqa: E402
from clinrag.generation.types import Answer, SentenceCheck  # noqa: E402

ENTRIES = {
    "1": {"QUESTION": "Does aspirin reduce recurrent stroke in adults?",
          "CONTEXTS": ["Stroke recurs often.", "Daily aspirin reduced recurrent stroke in adults from 9% to 5%."],
          "LABELS": ["BACKGROUND", "RESULTS"], "final_decision": "yes", "YEAR": "2001"},
    "2": {"QUESTION": "Is vitamin C associated with fewer colds in athletes?",
          "CONTEXTS": ["Colds are common in athletes.", "Vitamin C did not reduce colds in athletes."],
          "LABELS": ["BACKGROUND", "RESULTS"], "final_decision": "no", "YEAR": "2005"},
    "3": {"QUESTION": "Does coffee intake lower liver fibrosis?",
          "CONTEXTS": ["Coffee intake may lower liver fibrosis, but the evidence is inconclusive."],
          "LABELS": ["RESULTS"], "final_decision": "maybe", "YEAR": "2010"},
}


@pytest.fixture()
def data(tmp_path) -> Path:
    p = tmp_path / "pqa.json"
    p.write_text(json.dumps(ENTRIES))
    return p


def test_decision_rules():
    assert decide_llm("Yes. Aspirin works [1].") == "yes" and decide_llm("no [2]") == "no"
    assert decide_llm("It depends.") is None
    mk = lambda s: Answer("q", s, sentences=(SentenceCheck(s),))  # noqa: E731
    assert [decide_extractive(mk(s)) for s in ("X reduced Y [1].", "X did not reduce Y [1].", "X may help [1].")] \
        == ["yes", "no", "maybe"]
    assert decide_extractive(Answer("q", "Not enough evidence.", abstained=True)) == "yes"


def test_extractive_settings(data):
    res = {r.setting: r for r in evaluate_qa(data, modes=["extractive"])}
    assert res["none"].accuracy == pytest.approx(1 / 3) and res["none"].abstention_rate == 1.0
    assert res["gold"].accuracy == 1.0 and res["gold"].citation_precision == 1.0
    # retrieval may also bring sentences of other abstracts: they would count against citation precision
    assert res["retrieved"].accuracy >= 2 / 3 and 0.5 <= res["retrieved"].citation_precision <= 1.0
    assert res["gold"].n == 3 and res["gold"].sample_majority == pytest.approx(1 / 3)


def test_llm_settings_with_a_scripted_model(data):
    llm = ScriptedLLM(reply="Yes. Daily aspirin reduced recurrent stroke in adults [1].")
    res = {r.setting: r for r in evaluate_qa(data, modes=["llm"], llm=llm, limit=2, seed=1)}
    assert {r.n for r in res.values()} == {2}
    assert all(r.parsed == 1.0 and r.predictions["yes"] == 2 for r in res.values())
    # the prompt for the no-context setting carries no evidence; the gold one carries the abstract
    assert any("(no evidence)" in p for p in llm.prompts)
    assert any("Daily aspirin reduced" in p and "Does aspirin" in p for p in llm.prompts)


def test_cli_eval_qa_json(data):
    from typer.testing import CliRunner

    from clinrag.cli import app

    res = CliRunner().invoke(app, ["eval", "qa", "--data", str(data), "--mode", "extractive", "--json"])
    assert res.exit_code == 0, res.output
    payload = json.loads(res.stdout)
    assert {(r["mode"], r["setting"]) for r in payload["runs"]} == {("extractive", s) for s in ("none", "gold",
                                                                                                   "retrieved")}
    assert {"accuracy", "citation_precision", "abstention_rate"} <= set(payload["runs"][0])


_ROOT = Path(__file__).resolve().parents[1]
PQAL = next((p / "data" / "pubmedqa" / "pqal_dev.json" for p in (
    Path(os.environ.get("CLINRAG_SHARED", _ROOT.parent / "shared")), _ROOT.parent / "shared", Path("/work/shared"))
    if (p / "data" / "pubmedqa" / "pqal_dev.json").exists()), _ROOT.parent / "shared" / "data" / "pubmedqa" / "x")


@pytest.mark.skipif(not PQAL.exists(), reason=f"shared PubMedQA data not found at {PQAL}")
def test_extractive_on_real_pubmedqa_subsample():
    res = {r.setting: r for r in evaluate_qa(PQAL, modes=["extractive"], limit=40)}
    assert res["retrieved"].citation_precision is not None and res["retrieved"].citation_precision > 0.5
    assert res["gold"].citation_precision == 1.0
