"""llama-index integration: ClinragRetriever, RetrieverQueryEngine over it, GroundedQueryEngine."""

from __future__ import annotations

import datetime as dt

import pytest

from clinrag import Document, Engine

pytest.importorskip("llama_index.core", reason="llama-index-core (clinrag[llm]) is not installed")
from _scripted_llm import ScriptedLLM  # noqa: E402
from llama_index.core.llms import MockLLM  # noqa: E402

from clinrag.generation.llamaindex import ClinragRetriever, GroundedQueryEngine, Searcher, query_engine  # noqa: E402


@pytest.fixture()
def engine(tmp_path):
    eng = Engine.create(tmp_path / "idx")
    eng.add([
        Document(id="n1", text="Metformin 500 mg was started for type 2 diabetes.", kind="note", patient_id="p1",
                 timestamp=dt.datetime(2019, 3, 1), source="clinic"),
        Document(id="n2", text="Metformin 1000 mg was started for diabetes, metformin titrated.", kind="note",
                 patient_id="p2", source="clinic"),
        Document(id="a1", text="Statins reduce cardiovascular events.", kind="abstract", source="pubmed"),
    ])
    yield eng
    eng.close()


def test_engine_is_a_searcher(engine):
    assert isinstance(engine, Searcher)


def test_retriever_returns_nodes_with_record_metadata(engine):
    nodes = ClinragRetriever(engine, k=5).retrieve("metformin diabetes")
    assert [n.node.node_id for n in nodes] == [h.chunk_id for h in engine.search("metformin diabetes", k=5)]
    assert {n.node.metadata["doc_id"] for n in nodes} == {"n1", "n2"}
    assert nodes[0].score >= nodes[-1].score
    scoped = ClinragRetriever(engine, k=5, patient="p1").retrieve("metformin diabetes")
    assert [n.node.metadata["doc_id"] for n in scoped] == ["n1"]
    assert scoped[0].node.metadata["date"] == "2019-03-01"
    assert ClinragRetriever(engine, filters={"kind": "abstract"}).retrieve("statins")[0].node.metadata["doc_id"] == "a1"


def test_llama_index_query_engine_over_clinrag(engine):
    qe = query_engine(engine, llm=MockLLM(), k=3, patient="p1")
    response = qe.query("Why was metformin started?")
    assert [n.node.metadata["doc_id"] for n in response.source_nodes] == ["n1"]
    assert "Metformin 500 mg" in str(response)  # MockLLM echoes its prompt, which carries the retrieved text


def test_grounded_query_engine_returns_checked_citations(engine):
    llm = ScriptedLLM(reply="Metformin 500 mg was started for type 2 diabetes [1].")
    qe = GroundedQueryEngine(engine, llm=llm, patient="p1")
    response = qe.query("Why was metformin started?")
    assert response.metadata["citations"] == [[1]] and not response.metadata["abstained"]
    assert [n.node.metadata["patient_id"] for n in response.source_nodes] == ["p1"]
    assert "1000 mg" not in llm.prompts[-1]
