"""Token encoders (HF, colbert-ai, PyLate on tiny random-init checkpoints written here and loaded
back through the real loaders), the residual codec and exact MaxSim."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from clinrag.errors import ModelLoadError
from clinrag.indexing.colbert import ColBERTEncoder, load_token_encoder
from clinrag.indexing.encoders import HFTokenEncoder
from clinrag.retrieval.maxsim import maxsim_scores

WORDS = ("aspirin heart attack disease patients elderly soil bacteria farming cardiac given insulin "
         "diabetes cough fever chest pain lung the of and in with for").split()
PUNCT = list(".,;:!?()-")


def _tiny_bert(folder, extra_tokens=()):
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[unused0]", "[unused1]", *PUNCT, *WORDS]
    tok = BertTokenizerFast(vocab={w: i for i, w in enumerate(vocab)}, do_lower_case=True)
    if extra_tokens:
        tok.add_tokens(list(extra_tokens), special_tokens=False)
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=64)
    model = BertModel(cfg).eval()
    tok.save_pretrained(str(folder))
    return tok, model, cfg


def _reference(model, ids, W, keep_mask=None, att=None):
    with torch.no_grad():
        ids_t = torch.tensor([ids])
        att_t = torch.tensor([att if att is not None else [1] * len(ids)])
        h = model(input_ids=ids_t, attention_mask=att_t).last_hidden_state[0]
        v = torch.nn.functional.normalize(h @ torch.as_tensor(W).T, dim=-1)
    return v.numpy() if keep_mask is None else v.numpy()[keep_mask]


@pytest.fixture()
def colbert_ai_ckpt(tmp_path):
    from safetensors.torch import save_file

    folder = tmp_path / "colbert"
    tok, model, cfg = _tiny_bert(folder)
    cfg.save_pretrained(str(folder))
    W = torch.randn(16, 32)
    state = {f"bert.{k}": v.contiguous() for k, v in model.state_dict().items()}
    state["linear.weight"] = W
    save_file(state, str(folder / "model.safetensors"))
    (folder / "artifact.metadata").write_text(json.dumps({"dim": 16, "query_maxlen": 12, "doc_maxlen": 20,
                                                         "query_token_id": "[unused0]",
                                                         "doc_token_id": "[unused1]"}))
    return folder, tok, model, W.numpy()


def test_colbert_ai_checkpoint_matches_reference_forward(colbert_ai_ckpt):
    folder, tok, model, W = colbert_ai_ckpt
    enc = load_token_encoder(str(folder))
    assert isinstance(enc, ColBERTEncoder) and enc.dim == 16
    text = "aspirin, heart attack."
    [d] = enc.encode_documents([text])
    body = tok.encode(text, add_special_tokens=False)
    ids = [tok.cls_token_id, tok.convert_tokens_to_ids("[unused1]"), *body, tok.sep_token_id]
    punct = {tok.convert_tokens_to_ids(p) for p in PUNCT}
    keep = np.array([i not in punct for i in ids])
    ref = _reference(model, ids, W, keep)
    assert d.dtype == np.float16 and d.shape == ref.shape == (len(ids) - 2, 16)  # ',' and '.' skipped
    np.testing.assert_allclose(d.astype(np.float32), ref, atol=2e-3)
    np.testing.assert_allclose(np.linalg.norm(d.astype(np.float32), axis=1), 1.0, atol=2e-3)
    # queries: [CLS] [Q] text [SEP] padded with [MASK] to query_maxlen, all positions kept
    [q] = enc.encode_queries(["chest pain"])
    assert q.shape == (12, 16)
    qids = [tok.cls_token_id, tok.convert_tokens_to_ids("[unused0]"), *tok.encode("chest pain",
            add_special_tokens=False), tok.sep_token_id]
    att = [1] * len(qids) + [0] * (12 - len(qids))
    qids = qids + [tok.mask_token_id] * (12 - len(qids))
    np.testing.assert_allclose(q.astype(np.float32), _reference(model, qids, W, att=att), atol=2e-3)


def test_long_documents_are_counted_not_silently_truncated(colbert_ai_ckpt):
    enc = load_token_encoder(str(colbert_ai_ckpt[0]))
    [d] = enc.encode_documents([" ".join(WORDS * 3)])
    assert enc.truncated == 1 and len(d) == 20  # doc_maxlen, [CLS] [D] ... [SEP] included as in colbert-ai


def test_pylate_checkpoint_loads_and_matches(tmp_path):
    from safetensors.torch import save_file

    folder = tmp_path / "pylate"
    tok, model, _ = _tiny_bert(folder, extra_tokens=("[Q]", "[D]"))
    model.save_pretrained(str(folder))
    (folder / "1_Dense").mkdir()
    W = torch.randn(8, 32)
    save_file({"linear.weight": W}, str(folder / "1_Dense" / "model.safetensors"))
    (folder / "1_Dense" / "config.json").write_text(json.dumps({"in_features": 32, "out_features": 8,
                                                                "bias": False}))
    (folder / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Dense", "type": "pylate.models.Dense.Dense"}]))
    (folder / "config_sentence_transformers.json").write_text(json.dumps({
        "query_prefix": "[Q] ", "document_prefix": "[D] ", "query_length": 10, "document_length": 30,
        "do_query_expansion": True, "attend_to_expansion_tokens": False, "skiplist_words": PUNCT}))
    enc = load_token_encoder(str(folder))
    assert enc.dim == 8
    [q] = enc.encode_queries(["insulin diabetes"])
    assert q.shape == (10, 8)
    [d] = enc.encode_documents(["insulin; diabetes!"])
    ids = [tok.cls_token_id, tok.convert_tokens_to_ids("[D]"), *tok.encode("insulin; diabetes!",
           add_special_tokens=False), tok.sep_token_id]
    keep = np.array([i not in {tok.convert_tokens_to_ids(p) for p in PUNCT} for i in ids])
    np.testing.assert_allclose(d.astype(np.float32), _reference(model, ids, W.numpy(), keep), atol=2e-3)


def test_bad_model_path_is_a_clear_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match="no loadable"):
        load_token_encoder(str(tmp_path / "empty"))


def test_default_minilm_encoder_ranks_sensibly():
    enc = HFTokenEncoder()
    docs = enc.encode_documents(["Cardiac patients were given aspirin.", "Soil bacteria in farming."])
    [q] = enc.encode_queries(["aspirin for heart disease"])
    D = torch.as_tensor(np.concatenate(docs).astype(np.float32))
    off = torch.tensor([0, len(docs[0]), len(docs[0]) + len(docs[1])])
    s = maxsim_scores(torch.as_tensor(q.astype(np.float32)), D, off)
    assert s[0] > s[1]
    assert all(t.shape[1] == 384 for t in docs)


def test_lancedb_native_multivector_gives_exact_maxsim(tmp_path):
    from clinrag.retrieval.lance_mv import LanceMultiVectorRetriever

    rng = np.random.default_rng(2)
    docs = []
    for n in (3, 7, 1, 12, 5):
        v = rng.normal(size=(n, 16)).astype(np.float32)
        docs.append((v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float16))
    q = rng.normal(size=(4, 16)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    r = LanceMultiVectorRetriever.build(tmp_path, [f"d{i}" for i in range(5)], docs)
    got = {s.chunk_id: s.score for s in r.search_vectors(q, k=5)}
    D = torch.as_tensor(np.concatenate(docs).astype(np.float32))
    off = torch.as_tensor(np.concatenate([[0], np.cumsum([len(d) for d in docs])]))
    want = maxsim_scores(torch.as_tensor(q), D, off).numpy()
    np.testing.assert_allclose([got[f"d{i}"] for i in range(5)], want, atol=5e-3)
    assert [s.chunk_id for s in r.search_vectors(q, k=5, where="chunk_id IN ('d1', 'd3')")] == sorted(
        ["d1", "d3"], key=lambda c: -got[c])
