"""Rerankers: the fast feature reranker and the QR-head attention reranker (on tiny random-init LMs
saved to disk and loaded back through the real loader); the generated longitudinal benchmark."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from clinrag import Engine, IndexConfig  # noqa: E402
from clinrag.errors import IndexFormatError  # noqa: E402
from clinrag.eval.longitudinal import generate_questions, read_fhir_folder, run_longitudinal  # noqa: E402
from clinrag.retrieval.base import Hit  # noqa: E402
from clinrag.retrieval.qr import (  # noqa: E402
    HEADS_FILE,
    NULL_QUERY,
    WEIGHT_GRID,
    HeadSelection,
    Prompt,
    QRReranker,
    SeedExample,
    build_prompt,
    calibrate_heads,
    choose_weight,
    combine,
    head_scores,
    load_causal_lm,
    load_heads,
    save_heads,
)
from clinrag.retrieval.rerank import FastReranker, Reranker  # noqa: E402

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "samples" / "fhir"
WORDS = ("patient summary records question relevant hemoglobin a1c glucose asthma diagnosed condition observation "
         "medication metformin date onset status active resolved most recent when was first the of is [ ] : . , "
         "1 2 3 4 5 6 7 8 9 0 - ( ) %").split()


def _tokenizer(path: Path) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<eos>": 1, "<bos>": 2, "<unk>": 3, **{w: i + 4 for i, w in enumerate(dict.fromkeys(WORDS))}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>",
                            unk_token="<unk>").save_pretrained(path)


def _tiny(tmp_path: Path, arch: str = "gemma3") -> Path:
    torch.manual_seed(0)
    common = dict(vocab_size=128, hidden_size=64, intermediate_size=128, num_attention_heads=4,
                  num_key_value_heads=2, max_position_embeddings=2048)
    if arch == "gemma3":
        cfg = transformers.Gemma3TextConfig(**common, num_hidden_layers=2, head_dim=16, sliding_window=16,
                                            layer_types=["sliding_attention", "full_attention"])
        model = transformers.Gemma3ForCausalLM(cfg)
    else:
        model = transformers.LlamaForCausalLM(transformers.LlamaConfig(**common, num_hidden_layers=2))
    path = tmp_path / arch
    model.save_pretrained(path)
    _tokenizer(path)
    return path


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory):
    return load_causal_lm(str(_tiny(tmp_path_factory.mktemp("lm"))))


@pytest.mark.parametrize("arch", ["gemma3", "llama"])
def test_head_scores_equal_the_models_own_attention(tmp_path, arch):
    lm = load_causal_lm(str(_tiny(tmp_path, arch)))
    prompt = Prompt(list(range(4, 64)), [(2, 12), (12, 30), (30, 50)], (52, 58))
    lm.model.config._attn_implementation = "eager"
    with torch.no_grad():
        att = lm.model(input_ids=torch.tensor([prompt.ids]), output_attentions=True).attentions
    lm.model.config._attn_implementation = "sdpa"
    ours = head_scores(lm, prompt)
    for layer, a in enumerate(att):
        for c, (x, y) in enumerate(prompt.spans):
            ref = a[0, :, 52:58, x:y].sum(dim=(1, 2))
            assert torch.allclose(ours[layer, :, c], ref, atol=1e-5)
    only = head_scores(lm, prompt, [(0, 1)])  # selected head only; the pass stops after layer 0
    assert torch.allclose(only[0, 1], ours[0, 1], atol=1e-6) and float(only[1].abs().sum()) == 0.0


def test_prompt_spans_hold_the_candidates(tiny_lm):
    tok = tiny_lm.tokenizer
    p = build_prompt(tok, "most recent a1c", ["hemoglobin a1c 6", "glucose 9"], memory="active asthma")
    assert tok.decode(p.ids[p.spans[0][0]:p.spans[0][1]]).split() == ["hemoglobin", "a1c", "6"]
    assert tok.decode(p.ids[p.query[0]:p.query[1]]).split() == ["most", "recent", "a1c"]
    assert p.ids[0] == tok.bos_token_id and p.spans[0][0] > 4  # memory comes first


def test_calibration_selects_stores_and_reloads_heads(tiny_lm, tmp_path):
    seed = [SeedExample("hemoglobin a1c", ("glucose 5", "hemoglobin a1c 6", "asthma"), (0, 2, 0)),
            SeedExample("asthma onset", ("asthma onset 2010", "metformin", "glucose"), (2, 0, 0)),
            SeedExample("metformin", ("glucose", "asthma", "metformin active"), (0, 0, 1))]
    sel = calibrate_heads(tiny_lm, seed, n_heads=3)
    assert sel.seed_size == 3 and len(sel.heads) == 3 and len(set(sel.heads)) == 3
    assert list(sel.head_scores) == sorted(sel.head_scores, reverse=True)
    Engine.create(tmp_path / "idx").close()
    save_heads(tmp_path / "idx", sel)
    assert load_heads(tmp_path / "idx", tiny_lm.name) == sel
    assert load_heads(tmp_path / "idx", "other-model") is None


def test_qr_rerank_is_order_symmetric_and_uses_memory(tiny_lm):
    rr = QRReranker(tiny_lm, HeadSelection(tiny_lm.name, ((0, 0), (1, 3))), orders=2)
    assert isinstance(rr, Reranker)
    texts = ["hemoglobin a1c 6", "glucose 9", "asthma onset 2010", "metformin active"]
    fwd = rr.scores("most recent a1c", texts)
    rev = rr.scores("most recent a1c", texts[::-1])
    assert fwd == pytest.approx(rev[::-1], rel=1e-4)  # the position-bias defence: order does not matter
    with_mem = rr.scores("most recent a1c", texts, memory="active asthma since 2010")
    assert with_mem != pytest.approx(fwd)
    hits = [Hit(f"c{i}", f"d{i}", 1.0 - i / 10, t) for i, t in enumerate(texts)]
    out = rr.rerank("most recent a1c", hits)
    assert sorted(h.doc_id for h in out) == [h.doc_id for h in hits]
    assert [h.rank for h in out] == [1, 2, 3, 4] and all("qr" in h.stage_scores for h in out)
    assert [h.stage_scores["qr"] for h in out] == sorted((h.stage_scores["qr"] for h in out), reverse=True)


def test_null_query_calibration_subtracts_the_content_free_attention(tiny_lm):
    texts = ["hemoglobin a1c 6", "glucose 9", "asthma onset 2010", "metformin active"]
    sel = HeadSelection(tiny_lm.name, ((0, 0), (1, 3)))
    plain = QRReranker(tiny_lm, sel, null_query=False).scores("most recent a1c", texts)
    null = QRReranker(tiny_lm, sel, null_query=True).scores("most recent a1c", texts)
    assert null != pytest.approx(plain)
    # asking the null query itself leaves no signal at all
    assert QRReranker(tiny_lm, sel, null_query=True).scores(NULL_QUERY, texts) == pytest.approx([0.0] * 4, abs=1e-6)


def _a1c_hits() -> list[Hit]:
    return [Hit(f"c{i}", f"d{i}", 1.0 - i / 10, f"Observation: Hemoglobin A1c = {6 + i} %.", kind="observation",
                title="Hemoglobin A1c", timestamp=dt.datetime(2010 + 3 * i, 1, 1), metadata={"code": "4548-4"})
            for i in range(3)] + [Hit("c9", "d9", 0.5, "Condition: asthma.", kind="condition", title="Asthma")]


def test_interpolation_ends_and_temporal_intent_after_qr():
    hits = _a1c_hits()
    fast = [h.doc_id for h in FastReranker().rerank("glucose hemoglobin", hits)]
    qr = [0.0, 0.1, 0.2, 5.0]  # attention prefers the asthma record
    assert [h.doc_id for h in combine("glucose hemoglobin", hits, qr, 0.0)] == fast  # w = 0: the base order
    assert [h.doc_id for h in combine("glucose hemoglobin", hits, qr, 1.0)][0] == "d9"  # w = 1: the QR order
    out = combine("most recent hemoglobin a1c", hits, [3.0, 0.0, 0.1, 0.0], 0.5)
    assert out[0].doc_id == "d2" and out[0].stage_scores["qr"] == pytest.approx(0.1)  # latest first despite QR


def test_weight_is_chosen_on_the_seed_set():
    hits = tuple(_a1c_hits())
    ex = SeedExample("hemoglobin a1c", tuple(h.text for h in hits), (0, 0, 0, 2), None, hits)
    w, curve = choose_weight([ex], [[0.0, 0.0, 0.0, 1.0]])  # QR finds it; the first stage ranks it last
    assert w > 0 and len(curve) == len(WEIGHT_GRID) and max(curve) == 1.0
    ex = SeedExample("hemoglobin a1c", ex.texts, (2, 1, 1, 0), None, hits)
    w, curve = choose_weight([ex], [[0.0, 0.0, 0.0, 9.0]])  # QR is wrong: trust the first stage
    assert w == 0.0 and curve[0] == max(curve)


def test_calibration_stores_the_weight_and_reads_old_files(tiny_lm, tmp_path):
    hits = tuple(_a1c_hits())
    seed = [SeedExample("hemoglobin a1c", tuple(h.text for h in hits), (2, 1, 1, 0), None, hits),
            SeedExample("asthma", tuple(h.text for h in hits), (0, 0, 0, 2), "active asthma", hits)]
    sel = calibrate_heads(tiny_lm, seed, n_heads=2)
    assert sel.null_query and sel.weight in WEIGHT_GRID and len(sel.weight_ndcg) == len(WEIGHT_GRID)
    assert sel.weight_ndcg[WEIGHT_GRID.index(sel.weight)] == max(sel.weight_ndcg)
    assert QRReranker(tiny_lm, sel).weight == sel.weight
    Engine.create(tmp_path / "idx").close()
    save_heads(tmp_path / "idx", sel)
    assert load_heads(tmp_path / "idx", tiny_lm.name) == sel
    path = tmp_path / "idx" / HEADS_FILE
    assert json.loads(path.read_text())["format_version"] == 2
    path.write_text(json.dumps({"format": "clinrag-qr-heads", "format_version": 1,
                                "models": {"m": {"model": "m", "heads": [[1, 2]], "seed_size": 4}}}))
    old = load_heads(tmp_path / "idx", "m")
    assert old is not None and old.heads == ((1, 2),) and old.weight == 1.0 and not old.null_query
    path.write_text(json.dumps({"format": "clinrag-qr-heads", "format_version": 99, "models": {}}))
    with pytest.raises(IndexFormatError, match="format version 99"):
        load_heads(tmp_path / "idx", "m")


def test_fast_reranker_features():
    hits = [Hit("c1", "d1", 1.0, "Observation: Glucose = 90 mg/dL.", kind="observation", title="Glucose",
                timestamp=dt.datetime(2019, 1, 1), metadata={"code": "2339-0"}),
            Hit("c2", "d2", 0.9, "Observation: Hemoglobin A1c = 6 %.", kind="observation", title="Hemoglobin A1c",
                timestamp=dt.datetime(2015, 1, 1), metadata={"code": "4548-4"}),
            Hit("c3", "d3", 0.85, "Observation: Hemoglobin A1c = 7 %.", kind="observation", title="Hemoglobin A1c",
                timestamp=dt.datetime(2018, 1, 1), metadata={"code": "4548-4"}),
            Hit("c4", "d4", 0.95, "No asthma.", kind="note", title="Note",
                metadata={"entities": [{"text": "asthma", "label": "DISEASE", "assertion": "negated"}]})]
    fast = FastReranker()
    assert [h.doc_id for h in fast.rerank("latest hemoglobin A1c", hits)][:2] == ["d3", "d2"]
    assert fast.features("asthma", hits[3])["negated"] == 1.0
    # entities of an index built with NER arrive on Hit.entities, with the negated flag
    from clinrag.ner.schema import Entity

    tagged = [Hit("c5", "d5", 1.0, "No asthma.", kind="note", title="Note",
                  entities=(Entity("asthma", "Disease", 3, 9, negated=True),)),
              Hit("c6", "d6", 0.9, "Asthma exacerbation.", kind="note", title="Note",
                  entities=(Entity("Asthma", "Disease", 0, 6),))]
    assert fast.features("asthma", tagged[0])["negated"] == 1.0 and fast.features("asthma", tagged[1])["entity"] == 1.0
    assert [h.doc_id for h in fast.rerank("asthma", tagged)] == ["d6", "d5"]
    assert [h.doc_id for h in fast.rerank("hemoglobin A1c in 2015", hits)][0] == "d2"


def test_generated_benchmark_and_stages_on_sample_bundles(tmp_path, tiny_lm):
    docs = read_fhir_folder(SAMPLES)
    qs = generate_questions(docs)
    assert {q.type for q in qs} >= {"first_diagnosis", "latest_lab", "last_immunization"}
    by_id = {d.id: d for d in docs}
    for q in qs:
        assert q.answer and set(q.answer_ids) <= set(q.qrels) and all(q.qrels[a] == 2 for a in q.answer_ids)
        assert all(by_id[a].patient_id == q.patient_id for a in q.answer_ids)
        if q.type == "latest_lab":
            same = [d for d in docs if d.patient_id == q.patient_id and d.kind == "observation"
                    and d.metadata.get("code") == by_id[q.answer_ids[0]].metadata.get("code")]
            assert by_id[q.answer_ids[0]].timestamp == max(d.timestamp for d in same)
    assert generate_questions(docs) == qs  # deterministic
    with Engine.create(tmp_path / "idx", IndexConfig()) as eng:
        eng.add(docs)
        res = run_longitudinal(eng, qs, {"fast_rerank": FastReranker(), "qr_rerank": QRReranker(tiny_lm, top_n=5),
                                         "qr_rerank_no_memory": QRReranker(tiny_lm, top_n=5)}, depth=5,
                               memory_for=lambda pid: eng.memory(pid).to_text(cite=False))
    assert set(res) == {"first_stage", "first_stage_temporal", "fast_rerank", "qr_rerank", "qr_rerank_no_memory"}
    for r in res.values():
        assert set(r.metrics) == {"recall@5", "ndcg@10", "answer_in_top5"}
        assert all(0.0 <= v <= 1.0 for v in r.metrics.values())
    assert res["fast_rerank"].metrics["answer_in_top5"] >= res["first_stage"].metrics["answer_in_top5"]
    back = json.loads(json.dumps(res["qr_rerank"].to_dict()))  # the --json payload round-trips
    assert back["ndcg@10"] == pytest.approx(res["qr_rerank"].metrics["ndcg@10"], abs=1e-4)


def test_cli_calibrate_and_eval_longitudinal(tmp_path):
    from typer.testing import CliRunner

    from clinrag.cli import app

    model = str(_tiny(tmp_path))
    runner = CliRunner()
    res = runner.invoke(app, ["eval", "longitudinal", "--data", str(SAMPLES), "--index", str(tmp_path / "idx"),
                              "--text-model", "none", "--qr-model", model, "--seed-size", "3", "--heads", "4",
                              "--depth", "5", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    for stage in ("first_stage", "fast_rerank", "qr_rerank", "qr_rerank_no_memory"):
        assert set(out[stage]) >= {"recall@5", "ndcg@10", "answer_in_top5"}
    assert out["seed_size"] >= 1 and len(out["heads"]) == 4 and out["n_questions"] >= 1
    assert load_heads(tmp_path / "idx", model) is not None
    seed = tmp_path / "seed.jsonl"
    doc = next(d for d in read_fhir_folder(SAMPLES) if d.kind == "condition")
    seed.write_text(json.dumps({"query": f"when was {doc.title} diagnosed", "patient_id": doc.patient_id,
                                "relevant": [doc.id]}) + "\n")
    res = runner.invoke(app, ["rerank", "calibrate", str(tmp_path / "idx"), "--seed", str(seed), "--model", model,
                              "--heads", "2", "--depth", "5", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["seed_size"] == 1 and len(load_heads(tmp_path / "idx", model).heads) == 2
    res = runner.invoke(app, ["search", str(tmp_path / "idx"), "most recent glucose", "--rerank", "fast", "--json"])
    assert res.exit_code == 0, res.output
