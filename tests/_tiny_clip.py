"""Tiny random-init CLIP models saved to disk, for loading back through clinrag's real loaders."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

TINY_ARCH = "clinrag-tiny-clip"
TINY_CFG = {"embed_dim": 16,
            "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "patch_size": 8, "head_width": 16},
            "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2}}


def fixed_image(seed: int = 0, size: tuple[int, int] = (40, 48)):
    """A deterministic RGB test image (no randomness from the global RNG)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def save_tiny_open_clip(folder: Path, seed: int = 0):
    """Register the tiny architecture, random-init it with ``seed``, save ``folder/tiny.pt``.

    Returns ``(model, preprocess, tokenizer, checkpoint_path)`` of the in-memory model.
    """
    import open_clip
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    cfg_file = folder / f"{TINY_ARCH}.json"
    cfg_file.write_text(json.dumps(TINY_CFG))
    open_clip.add_model_config(cfg_file)
    torch.manual_seed(seed)
    model, _, preprocess = open_clip.create_model_and_transforms(TINY_ARCH, pretrained=None)
    ckpt = folder / "tiny.pt"
    torch.save(model.state_dict(), ckpt)
    return model.eval(), preprocess, open_clip.get_tokenizer(TINY_ARCH), ckpt


def save_tiny_open_clip_dir(folder: Path, seed: int = 0) -> Path:
    """The same tiny model saved as an open_clip local folder (open_clip_config.json + weights)."""
    import torch

    model, _, _, ckpt = save_tiny_open_clip(folder / "arch", seed)
    out = folder / "tiny-local"
    out.mkdir(parents=True, exist_ok=True)
    (out / "open_clip_config.json").write_text(json.dumps({"model_cfg": TINY_CFG, "preprocess_cfg": {}}))
    torch.save(model.state_dict(), out / "open_clip_pytorch_model.bin")
    return out


def save_tiny_transformers_clip(folder: Path, seed: int = 0):
    """A tiny transformers CLIPModel + processor (byte-level vocab, no merges) saved with save_pretrained."""
    import torch
    from open_clip.tokenizer import bytes_to_unicode
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    chars = list(bytes_to_unicode().values())
    vocab = {c: i for i, c in enumerate(chars)}
    for c in chars:
        vocab[c + "</w>"] = len(vocab)
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    tok = CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"))
    proc = CLIPProcessor(image_processor=CLIPImageProcessor(size={"shortest_edge": 32},
                                                            crop_size={"height": 32, "width": 32}), tokenizer=tok)
    eos = vocab["<|endoftext|>"]
    cfg = CLIPConfig(text_config={"vocab_size": len(vocab), "hidden_size": 32, "intermediate_size": 64,
                                  "num_hidden_layers": 2, "num_attention_heads": 2, "max_position_embeddings": 32,
                                  "bos_token_id": vocab["<|startoftext|>"], "eos_token_id": eos, "pad_token_id": eos},
                     vision_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                                    "num_attention_heads": 2, "image_size": 32, "patch_size": 8},
                     projection_dim=16)
    torch.manual_seed(seed)
    model = CLIPModel(cfg).eval()
    out = folder / "tiny-hf-clip"
    model.save_pretrained(out)
    proc.save_pretrained(out)
    return model, proc, out
