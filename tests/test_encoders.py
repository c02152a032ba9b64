"""Token encoders on tiny random-init checkpoints written here in each format (plain Hugging Face,
colbert-ai, PyLate) and loaded back through the real loaders, checked against a hand-computed
forward pass; plus the packaged MiniLM on a few sentences."""

from __future__ import annotations

import json
import logging
import os
import string

import numpy as np
import pytest
import torch

from clinrag.errors import ConfigError, ModelLoadError
from clinrag.indexing.colbert import ColBERTEncoder, detect_format, load_token_encoder
from clinrag.indexing.encoders import HFTokenEncoder, TokenEncoder, default_encoder
from clinrag.retrieval.maxsim import maxsim_scores

os.environ["HF_HUB_OFFLINE"] = "1"  # nothing here may reach the network

HIDDEN = 32
PUNCT = list(string.punctuation)
WORDS = sorted(set("""
aspirin heart attack disease patients elderly soil bacteria farming cardiac given insulin diabetes cough
fever chest pain lung the of and in with for a an to on at by from as is was were be been are has had
have not no or but if then than that this these those it its he she they we you i his her their our
blood pressure high low dose daily twice mg kg ml iv oral tablet injection infusion acute chronic severe
mild moderate history family social smoking alcohol denies reports complains admitted discharged
emergency department ward icu hospital clinic visit follow up plan assessment exam normal abnormal
left right upper lower abdomen back head neck arm leg knee hip shoulder skin rash wound infection
sepsis pneumonia asthma copd stroke myocardial infarction failure renal liver kidney anemia cancer
tumor mass lesion scan ct mri xray ultrasound biopsy lab result glucose sodium potassium creatinine
hemoglobin white count platelet culture positive negative started stopped continued increased
decreased changed medication allergy penicillin morphine heparin warfarin metformin lisinopril
statin antibiotic surgery procedure operation repair fracture pulse rate temperature oxygen
saturation breath shortness nausea vomiting diarrhea headache dizziness fatigue weakness weight loss
""".split()))
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[unused0]", "[unused1]"]


def _tiny_bert(folder, seed=0):
    """vocab.txt + BertTokenizerFast from it + a random-init 2-layer BERT (hidden 32)."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(SPECIAL + PUNCT + WORDS) + "\n")
    tok = BertTokenizerFast.from_pretrained(str(folder))
    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=len(tok), hidden_size=HIDDEN, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=64)
    return tok, BertModel(cfg).eval(), cfg


def _ids(tok, tokens):
    return tok.convert_tokens_to_ids(tokens)


def _reference(model, ids, W=None, att=None, keep=None, bias=None):
    """BertModel forward, optional projection, L2 normalisation, then the kept rows."""
    with torch.no_grad():
        att_t = torch.tensor([att if att is not None else [1] * len(ids)])
        h = model(input_ids=torch.tensor([ids]), attention_mask=att_t).last_hidden_state[0]
        if W is not None:
            h = h @ torch.as_tensor(W).T
        if bias is not None:
            h = h + torch.as_tensor(bias)
        v = torch.nn.functional.normalize(h, dim=-1).numpy()
    return v if keep is None else v[np.asarray(keep, dtype=bool)]


def _close(got, want):
    assert got.dtype == np.float16 and got.shape == want.shape
    np.testing.assert_allclose(got.astype(np.float32), want, atol=1e-3)
    np.testing.assert_allclose(np.linalg.norm(got.astype(np.float32), axis=1), 1.0, atol=2e-3)


# -- colbert-ai -------------------------------------------------------------------------------------

def _colbert_ai(folder, *, meta=None, weights="safetensors", arch=True):
    tok, model, cfg = _tiny_bert(folder)
    if arch:
        cfg.architectures = ["HF_ColBERT"]
    cfg.save_pretrained(str(folder))
    tok.save_pretrained(str(folder))
    W = torch.randn(16, HIDDEN, generator=torch.Generator().manual_seed(1))
    state = {f"bert.{k}": v.contiguous() for k, v in model.state_dict().items()}
    state["linear.weight"] = W
    if weights == "safetensors":
        from safetensors.torch import save_file

        save_file(state, str(folder / "model.safetensors"))
    else:
        torch.save(state, folder / "pytorch_model.bin")
    if meta is not None:
        (folder / "artifact.metadata").write_text(json.dumps(meta))
    return tok, model, W.numpy()


META = {"dim": 16, "query_maxlen": 12, "doc_maxlen": 20, "query_token_id": "[unused0]",
        "doc_token_id": "[unused1]", "attend_to_mask_tokens": False, "name": "kldR2.nway64.ib"}


@pytest.fixture(scope="module")
def colbert_ai(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ckpt") / "colbert"
    return folder, *_colbert_ai(folder, meta=META)


def test_colbert_ai_documents_match_reference_forward(colbert_ai):
    folder, tok, model, W = colbert_ai
    assert detect_format(folder) == "colbert-ai"
    enc = load_token_encoder(str(folder))
    assert isinstance(enc, ColBERTEncoder) and isinstance(enc, TokenEncoder)
    assert enc.dim == 16 and enc.name == str(folder)
    text = "Aspirin, for the heart (daily)."
    tokens = ["[CLS]", "[unused1]", "aspirin", ",", "for", "the", "heart", "(", "daily", ")", ".", "[SEP]"]
    keep = [t not in PUNCT for t in tokens]  # [CLS], [D] and [SEP] are kept, as in colbert-ai
    d1, d2 = enc.encode_documents([text, "chest pain"], batch_size=2)
    _close(d1, _reference(model, _ids(tok, tokens), W, keep=keep))
    assert len(d1) == 8 and len(d2) == 5


def test_colbert_ai_queries_are_augmented_to_query_maxlen(colbert_ai):
    folder, tok, model, W = colbert_ai
    enc = ColBERTEncoder.from_pretrained(str(folder))
    q1, q2 = enc.encode_queries(["chest pain, fever", "cough"])
    assert q1.shape == q2.shape == (12, 16)
    tokens = ["[CLS]", "[unused0]", "chest", "pain", ",", "fever", "[SEP]"]
    ids = _ids(tok, tokens) + [tok.mask_token_id] * 5
    att = [1] * 7 + [0] * 5  # [MASK]s are encoded and kept, but not attended to (attend_to_mask_tokens False)
    _close(q1, _reference(model, ids, W, att=att))


def test_colbert_ai_attend_to_mask_and_no_punctuation_mask(tmp_path):
    meta = {"config": {**META, "attend_to_mask_tokens": True, "mask_punctuation": False}}  # nested, as saved
    tok, model, W = _colbert_ai(tmp_path / "c", meta=meta, weights="bin", arch=False)
    enc = load_token_encoder(str(tmp_path / "c"))
    [q] = enc.encode_queries(["cough"])
    ids = _ids(tok, ["[CLS]", "[unused0]", "cough", "[SEP]"]) + [tok.mask_token_id] * 8
    _close(q, _reference(model, ids, W))
    [d] = enc.encode_documents(["cough."])
    assert len(d) == 5  # the '.' is kept when mask_punctuation is off


def test_colbert_ai_without_metadata_is_detected_by_architecture(tmp_path):
    _colbert_ai(tmp_path / "c", meta=None)
    assert detect_format(tmp_path / "c") == "colbert-ai"
    enc = load_token_encoder(str(tmp_path / "c"))
    assert isinstance(enc, ColBERTEncoder) and enc.query_maxlen == 32 and enc.doc_maxlen == 180


def test_long_texts_are_counted_and_logged_not_silently_truncated(colbert_ai, caplog):
    enc = load_token_encoder(str(colbert_ai[0]))
    with caplog.at_level(logging.WARNING):
        [d] = enc.encode_documents([" ".join(WORDS[:40])])
        [q] = enc.encode_queries([" ".join(WORDS[:40])])
    assert enc.truncated == 2 and len(d) == 20 and len(q) == 12
    assert "truncated" in caplog.text


# -- PyLate ------------------------------------------------------------------------------------------

def _pylate(folder, *, dense_type="pylate.models.Dense.Dense", bias=False, expansion=True, prefixes=True):
    from safetensors.torch import save_file

    tok, _, cfg = _tiny_bert(folder)
    if prefixes:
        tok.add_tokens(["[Q] ", "[D] "])  # PyLate adds its prefixes (trailing space included) as tokens
    cfg.vocab_size = len(tok)
    from transformers import BertModel

    torch.manual_seed(2)
    model = BertModel(cfg).eval()
    model.save_pretrained(str(folder))
    tok.save_pretrained(str(folder))
    (folder / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 29, "do_lower_case": False}))
    (folder / "1_Dense").mkdir()
    g = torch.Generator().manual_seed(3)
    weights = {"linear.weight": torch.randn(8, HIDDEN, generator=g)}
    if bias:
        weights["linear.bias"] = torch.randn(8, generator=g)
    save_file(weights, str(folder / "1_Dense" / "model.safetensors"))
    (folder / "1_Dense" / "config.json").write_text(json.dumps({
        "in_features": HIDDEN, "out_features": 8, "bias": bias,
        "activation_function": "torch.nn.modules.linear.Identity", "use_residual": False}))
    (folder / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Dense", "type": dense_type}]))
    (folder / "config_sentence_transformers.json").write_text(json.dumps({
        "__version__": {"pylate": "1.3.0"}, "prompts": {}, "default_prompt_name": None,
        "similarity_fn_name": "MaxSim", "query_prefix": "[Q] " if prefixes else "",
        "document_prefix": "[D] " if prefixes else "", "query_length": 10, "document_length": 30,
        "attend_to_expansion_tokens": False, "skiplist_words": PUNCT, "do_query_expansion": expansion}))
    return tok, model, weights


def test_pylate_checkpoint_matches_reference(tmp_path):
    tok, model, w = _pylate(tmp_path / "p")
    assert detect_format(tmp_path / "p") == "pylate"
    enc = load_token_encoder(str(tmp_path / "p"))
    assert isinstance(enc, ColBERTEncoder) and enc.dim == 8
    W = w["linear.weight"].numpy()
    [q] = enc.encode_queries(["insulin diabetes"])
    ids = _ids(tok, ["[CLS]", "[Q] ", "insulin", "diabetes", "[SEP]"]) + [tok.mask_token_id] * 5
    _close(q, _reference(model, ids, W, att=[1] * 5 + [0] * 5))
    [d] = enc.encode_documents(["Insulin; diabetes!"])
    tokens = ["[CLS]", "[D] ", "insulin", ";", "diabetes", "!", "[SEP]"]
    _close(d, _reference(model, _ids(tok, tokens), W, keep=[t not in PUNCT for t in tokens]))


def test_sentence_transformers_dense_with_bias_and_no_expansion(tmp_path):
    tok, model, w = _pylate(tmp_path / "p", dense_type="sentence_transformers.models.Dense", bias=True,
                            expansion=False, prefixes=False)
    enc = ColBERTEncoder.from_pretrained(str(tmp_path / "p"))
    [q] = enc.encode_queries(["cough with fever"])
    ids = _ids(tok, ["[CLS]", "cough", "with", "fever", "[SEP]"])  # no prefix, no [MASK] padding
    _close(q, _reference(model, ids, w["linear.weight"].numpy(), bias=w["linear.bias"].numpy()))


# -- plain Hugging Face ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def plain_hf(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hf") / "bert"
    tok, model, _ = _tiny_bert(folder)
    model.save_pretrained(str(folder))
    tok.save_pretrained(str(folder))
    return folder, tok, model


def test_hf_encoder_skips_punctuation_keeps_markers(plain_hf):
    folder, tok, model = plain_hf
    assert detect_format(folder) == "hf"
    enc = load_token_encoder(str(folder))
    assert isinstance(enc, HFTokenEncoder) and enc.dim == HIDDEN
    tokens = ["[CLS]", "fever", ",", "cough", ".", ".", ".", "[SEP]"]
    ref = _reference(model, _ids(tok, tokens))
    [d] = enc.encode_documents(["Fever, cough..."])  # [CLS] / [SEP] kept, as in colbert-ai
    _close(d, ref[[0, 1, 3, 7]])
    _close(enc.strip_markers(d), ref[[1, 3]])  # content tokens only (answer support)
    [q] = enc.encode_queries(["Fever, cough..."])  # queries keep every token
    _close(q, ref)


def test_hf_encoder_without_special_tokens(plain_hf):
    folder, tok, model = plain_hf
    enc = HFTokenEncoder(str(folder), device="cpu", keep_special=False)
    ref = _reference(model, _ids(tok, ["[CLS]", "fever", ",", "cough", ".", ".", ".", "[SEP]"]))
    [d] = enc.encode_documents(["Fever, cough..."])
    _close(d, ref[[1, 3]])
    [q] = enc.encode_queries(["Fever, cough..."])  # punctuation kept, [CLS] / [SEP] skipped
    _close(q, ref[1:-1])


def test_hf_encoder_projection_batching_and_progress(plain_hf):
    folder, tok, model = plain_hf
    P = np.random.default_rng(0).normal(size=(HIDDEN, 8)).astype(np.float32)
    enc = HFTokenEncoder(str(folder), projection=P, dim=8, device="cpu")
    texts = ["cough", "chest pain with fever and nausea", "the patients were admitted to the ward", "rash"]
    seen = []
    batched = enc.encode_documents(texts, batch_size=3, progress=seen.append)
    single = [enc.encode_documents([t])[0] for t in texts]
    assert seen == [3, 4] and [len(b) for b in batched] == [3, 8, 9, 3]  # with [CLS] / [SEP]
    for a, b in zip(batched, single, strict=True):
        np.testing.assert_allclose(a.astype(np.float32), b.astype(np.float32), atol=2e-3)
    ids = _ids(tok, ["[CLS]", "chest", "pain", "with", "fever", "and", "nausea", "[SEP]"])
    with torch.no_grad():
        h = model(input_ids=torch.tensor([ids])).last_hidden_state[0].numpy() @ P
    want = h / np.linalg.norm(h, axis=1, keepdims=True)
    _close(batched[1], want)
    with pytest.raises(ConfigError, match="dim"):
        HFTokenEncoder(str(folder), dim=8)
    assert enc.encode_documents([]) == []


def test_load_errors_say_what_to_do(tmp_path, monkeypatch, plain_hf):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match="no loadable"):
        load_token_encoder(str(tmp_path / "empty"))
    with pytest.raises(ModelLoadError, match="local folder"):
        load_token_encoder("nobody-has/this-model-xyz")
    with pytest.raises(ModelLoadError, match="not a ColBERT checkpoint"):
        ColBERTEncoder.from_pretrained(str(plain_hf[0]))


# -- the packaged MiniLM -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def minilm():
    return default_encoder(device="cpu")


def test_default_minilm_encoder_ranks_sensibly(minilm):
    assert minilm.name == "sentence-transformers/all-MiniLM-L6-v2" and minilm.dim == 384
    assert minilm.max_length == 256
    texts = ["Cardiac patients were given aspirin.", "Soil bacteria in farming.",
             "Myocardial infarction in the elderly."]
    docs = minilm.encode_documents(texts)
    assert all(d.dtype == np.float16 and d.shape[1] == 384 for d in docs)
    # word pieces without '.', plus [CLS] and [SEP]
    assert [len(d) for d in docs] == [len(minilm.tokenizer.tokenize(t)) + 1 for t in texts]
    D = torch.as_tensor(np.concatenate(docs).astype(np.float32))
    off = torch.tensor(np.concatenate([[0], np.cumsum([len(d) for d in docs])]))
    qa, qh = (torch.as_tensor(q.astype(np.float32))
              for q in minilm.encode_queries(["aspirin for heart disease", "heart attack"]))
    s = maxsim_scores(qa, D, off)
    assert s[0] > s[2] > s[1]
    s = maxsim_scores(qh, D, off)
    assert s[2] > s[1]
