"""Late interaction inside the engine: PLAID-style index, approximate vs exhaustive, filters,
live updates and deletes, hybrid fusion. Uses the packaged all-MiniLM-L6-v2 on CPU."""

from __future__ import annotations

from dataclasses import replace

import pytest

from clinrag import Document, Engine, IndexConfig
from clinrag.errors import ConfigError, IndexMismatchError

TEXTS = [
    "Myocardial infarction treated with percutaneous coronary intervention and aspirin.",
    "Acute heart attack in elderly women: outcomes after thrombolysis.",
    "Community-acquired pneumonia in children treated with amoxicillin.",
    "Chest radiograph shows bilateral ground glass opacities consistent with viral pneumonia.",
    "Metformin lowers HbA1c in adults with type 2 diabetes mellitus.",
    "Insulin glargine versus NPH insulin for glycaemic control.",
    "Hip fracture surgery within 48 hours reduces mortality in older patients.",
    "Total knee arthroplasty outcomes and postoperative rehabilitation.",
    "Major depressive disorder treated with cognitive behavioural therapy.",
    "Selective serotonin reuptake inhibitors and suicidal ideation in adolescents.",
    "Breast cancer screening with mammography in women over fifty.",
    "Colorectal cancer surveillance by colonoscopy after polypectomy.",
    "Asthma exacerbations reduced by inhaled corticosteroids.",
    "Chronic obstructive pulmonary disease and long-acting bronchodilators.",
    "Sepsis bundles and early antibiotics in the emergency department.",
    "Stroke thrombectomy improves functional independence at ninety days.",
    "Atrial fibrillation anticoagulation with warfarin or apixaban.",
    "HIV antiretroviral therapy adherence and viral suppression.",
    "Tuberculosis treatment completion with directly observed therapy.",
    "Preterm birth and antenatal corticosteroids for lung maturity.",
] * 3


def _docs():
    return [Document(id=f"d{i}", text=t + f" Study {i}.", patient_id=f"p{i % 4}", source="test")
            for i, t in enumerate(TEXTS)]


@pytest.fixture(scope="module")
def late_index(tmp_path_factory):
    path = tmp_path_factory.mktemp("late") / "idx"
    with Engine.create(path, IndexConfig(text_model="default", nbits=2)) as eng:
        eng.add(_docs())
    return path


def test_manifest_records_model_and_hybrid_is_default(late_index):
    with Engine.open(late_index) as eng:
        assert eng.config.mode == "hybrid"
        assert "minilm" in eng.manifest.models["text"].lower()
        assert eng.manifest.last_build["multivector"]["chunks"] == len(TEXTS)
        assert eng.manifest.last_build["truncated_chunks"] == 0
        hits = eng.search("heart attack treatment", k=3)
        mi = {f"d{i}" for i in range(0, len(TEXTS), 20)} | {f"d{i}" for i in range(1, len(TEXTS), 20)}
        assert hits[0].doc_id in mi


def test_late_finds_paraphrase_without_shared_words(late_index):
    with Engine.open(late_index) as eng:
        top = eng.search("cardiac infarct therapy", k=6, mode="late")
        assert {h.doc_id for h in top[:3]} & {"d0", "d20", "d40", "d1", "d21", "d41"}


def test_approximate_matches_exhaustive(late_index):
    queries = ["diabetes glucose control", "lung infection in kids", "depression therapy", "bone surgery elderly"]
    with Engine.open(late_index) as eng:
        approx = [[s.chunk_id for s in r] for r in eng.rank(queries, 10, mode="late")]
        eng.late_params = replace(eng.late_params, exhaustive=True)
        eng._retrievers.clear()
        exact = [[s.chunk_id for s in r] for r in eng.rank(queries, 10, mode="late")]
    overlap = sum(len(set(a) & set(e)) for a, e in zip(approx, exact, strict=True)) / sum(len(e) for e in exact)
    assert overlap >= 0.9
    assert all(a[0] == e[0] for a, e in zip(approx, exact, strict=True))


def test_filtered_late_search_returns_k_even_when_probe_misses(late_index):
    with Engine.open(late_index) as eng:
        eng.late_params = replace(eng.late_params, nprobe=1, ncandidates=4)
        hits = eng.search("diabetes", k=8, filters={"patient_id": "p3"}, mode="late")
        assert len(hits) == 8 and all(h.patient_id == "p3" for h in hits)


def test_live_add_update_delete(tmp_path):
    with Engine.create(tmp_path / "i", IndexConfig(text_model="default")) as eng:
        eng.add(_docs()[:20])
        codec = eng.manifest.codec_dir
        eng.add([Document(id="new", text="Kawasaki disease coronary aneurysm in infants given immunoglobulin.")])
        assert eng.manifest.codec_dir == codec  # new tokens reuse the existing centroids
        build = eng.manifest.last_build
        assert 0 < build["centroid_cos_new"] <= 1 and 0 < build["centroid_cos_train"] <= 1
        assert eng.search("Kawasaki immunoglobulin", k=1, mode="late")[0].doc_id == "new"
        eng.add([Document(id="new", text="Lyme disease treated with doxycycline.")])
        assert eng.search("Lyme doxycycline", k=1, mode="late")[0].doc_id == "new"
        eng.delete(["new", "d4"])
        for q in ("Lyme doxycycline", "Metformin HbA1c type 2 diabetes"):
            assert not {h.doc_id for h in eng.search(q, k=30, mode="late")} & {"new", "d4"}
        long_text = " ".join(["pneumonia treated with antibiotics"] * 60)  # 240 words > 180: chunked
        stats = eng.add([Document(id="long", text=long_text)])
        assert stats.chunks_added == 2 and eng.manifest.last_build["truncated_chunks"] == 0
        eng.delete(["long"])
        report = eng.optimize()
        assert report["chunks"] == 19
        assert eng.search("Metformin diabetes", k=1, mode="late")[0].doc_id != "d4"


def test_hybrid_fuses_both_stages(late_index):
    with Engine.open(late_index) as eng:
        hits = eng.search("antibiotics for sepsis", k=5, mode="hybrid")
        assert hits[0].doc_id in {"d14", "d34", "d54"}
        assert set(hits[0].stage_scores) == {"bm25", "late", "hybrid"}
        assert hits[0].stage_scores["hybrid"] == pytest.approx(hits[0].score)


def test_open_with_other_model_is_refused(late_index):
    class Other:
        name = "someone/else"
        dim = 384

    with pytest.raises(IndexMismatchError, match="someone/else"):
        Engine.open(late_index, encoder=Other())  # type: ignore[arg-type]


def test_lancedb_native_backend_matches_exhaustive_plaid_ranking(tmp_path, late_index):
    queries = ["diabetes glucose control", "lung infection in kids", "heart attack"]
    with Engine.create(tmp_path / "lance", IndexConfig(text_model="default", late_backend="lancedb")) as eng:
        eng.add(_docs())
        assert eng.manifest.mv_dir is None and "minilm" in eng.manifest.models["text"].lower()
        native = [[h.doc_id for h in eng.search(q, k=5, mode="late")] for q in queries]
        filtered = eng.search("diabetes", k=8, filters={"patient_id": "p3"}, mode="late")
        assert len(filtered) == 8 and all(h.patient_id == "p3" for h in filtered)
        assert eng.search("antibiotics for sepsis", k=3)[0].doc_id in {"d14", "d34", "d54"}  # hybrid default
        eng.delete(["d4", "d24", "d44"])
        assert not {h.doc_id for h in eng.search("Metformin HbA1c", k=20, mode="late")} & {"d4", "d24", "d44"}
    with Engine.open(late_index) as plaid:
        plaid.late_params = replace(plaid.late_params, exhaustive=True)
        exact = [[h.doc_id for h in plaid.search(q, k=5, mode="late")] for q in queries]
    # the same token vectors, uncompressed in LanceDB and 2-bit in clinrag: the best hits agree
    for n, e in zip(native, exact, strict=True):
        assert n[0] in e[:3] and len(set(n) & set(e)) >= 3


def test_chunks_fit_the_model_and_truncation_is_counted(tmp_path):
    long_text = " ".join(["pneumonia treated with antibiotics"] * 80)  # 320 words, > 256 tokens
    with Engine.create(tmp_path / "t", IndexConfig(text_model="default", chunk_max_words=400)) as eng:
        eng.add(_docs()[:10] + [Document(id="long", text=long_text)])
        # the chunker cuts by the model's token budget, so nothing is truncated
        assert eng.manifest.last_build["truncated_chunks"] == 0
        texts = eng.store.scan("chunks", ["doc_id", "text"], "doc_id = 'long'").column("text").to_pylist()
        tok = eng.encoder.tokenizer
        assert len(texts) >= 2 and all(len(tok(t)["input_ids"]) <= 256 for t in texts)
        # what a model still has to cut (text given to it directly) is counted
        before = eng.encoder.truncated
        eng.encoder.encode_documents([long_text])
        assert eng.encoder.truncated == before + 1


def test_search_batch_gives_the_same_hits_as_single_searches(late_index):
    queries = ["heart attack treatment", "lung infection in kids", "insulin for diabetes", "hip fracture surgery",
               "screening for cancer", "antidepressants in teenagers"]
    with Engine.open(late_index) as eng:
        for mode in ("late", "hybrid"):
            batch = eng.search_batch(queries, k=5, mode=mode)
            single = [eng.search(q, k=5, mode=mode) for q in queries]
            assert [[h.chunk_id for h in r] for r in batch] == [[h.chunk_id for h in r] for r in single]
            assert [h.score for r in batch for h in r] == pytest.approx([h.score for r in single for h in r],
                                                                        abs=1e-4)


def test_pseudo_relevance_feedback_rescores_the_top_chunks(late_index):
    from clinrag.config import LateParams

    with Engine.open(late_index) as eng:
        q = "heart attack treatment"
        plain = eng.search(q, k=8, mode="hybrid")
        pool = {h.chunk_id for h in eng.search(q, k=100, mode="hybrid")}
        eng.late_params = LateParams(feedback_docs=2, feedback_weight=1.0)
        for mode in ("late", "hybrid"):
            hits = eng.search(q, k=8, mode=mode)
            assert len(hits) == 8 and all("feedback" in h.stage_scores for h in hits)
            assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
        fb = eng.search(q, k=8, mode="hybrid")
        # candidates of the plain top 100, re-ordered by closeness to the two best
        assert {h.chunk_id for h in fb} <= pool
        assert [h.chunk_id for h in fb] != [h.chunk_id for h in plain]
        assert plain[0].chunk_id in [h.chunk_id for h in fb[:3]]
        # the mean vectors come from the compressed index and are unit length
        late = eng.retriever("late").late
        vecs = late.mean_vectors([h.chunk_id for h in fb])
        assert set(vecs) == {h.chunk_id for h in fb}
        assert all(abs(float(v.norm()) - 1) < 1e-3 for v in vecs.values())
        eng.late_params = LateParams()
        assert [h.chunk_id for h in eng.search(q, k=8, mode="hybrid")] == [h.chunk_id for h in plain]


def test_feedback_settings_are_checked():
    from clinrag.config import LateParams
    from clinrag.retrieval.feedback import PseudoFeedback

    with pytest.raises(ConfigError):
        LateParams(feedback_docs=-1)
    with pytest.raises(ConfigError):
        PseudoFeedback(docs=0)
