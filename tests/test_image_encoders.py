"""Image encoders loaded through clinrag's real loaders from tiny random-init models saved in tmp_path.

Golden outputs: the first 6 dimensions of each embedding of a fixed image/text from a model
random-initialised with ``torch.manual_seed(0)`` (torch 2.14.1, open_clip 3.3, transformers 5),
compared with an absolute tolerance of 1e-4; the loaded model must also reproduce the in-memory
model it was saved from within 1e-5.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("open_clip")
import torch  # noqa: E402
from _tiny_clip import (  # noqa: E402
    TINY_ARCH,
    fixed_image,
    save_tiny_open_clip,
    save_tiny_open_clip_dir,
    save_tiny_transformers_clip,
)

from clinrag.errors import ConfigError, ModelLoadError  # noqa: E402
from clinrag.indexing import cache  # noqa: E402
from clinrag.indexing.image_encoders import (  # noqa: E402
    ImageEncoder,
    get_image_encoder,
    load_image_encoder,
    parse_spec,
)

TOL = 1e-4
TEXT = "right lower lobe consolidation"
GOLD_OC_IMAGE = [-0.30027, -0.17351, -0.08968, 0.08881, 0.15699, -0.28505]
GOLD_OC_TEXT = [0.07807, 0.45027, 0.15170, 0.05780, 0.05494, -0.28972]
GOLD_HF_IMAGE = [-0.06502, -0.03574, -0.29016, 0.15469, 0.69745, 0.08989]
GOLD_HF_TEXT = [-0.19319, 0.08437, 0.28577, 0.02841, -0.41047, 0.31910]


def _unit(x: torch.Tensor) -> np.ndarray:
    x = x.detach().float().numpy()
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_open_clip_checkpoint_roundtrip_golden(tmp_path):
    model, preprocess, tokenizer, ckpt = save_tiny_open_clip(tmp_path)
    enc = load_image_encoder(f"{TINY_ARCH}@{ckpt}", device="cpu")
    assert isinstance(enc, ImageEncoder) and enc.dim == 16 and enc.device == "cpu"
    im = fixed_image()
    got_img, got_txt = enc.encode_images([im]), enc.encode_texts([TEXT])
    with torch.no_grad():
        ref_img = _unit(model.encode_image(preprocess(im).unsqueeze(0)))
        ref_txt = _unit(model.encode_text(tokenizer([TEXT])))
    np.testing.assert_allclose(got_img, ref_img, atol=1e-5)
    np.testing.assert_allclose(got_txt, ref_txt, atol=1e-5)
    np.testing.assert_allclose(got_img[0, :6], GOLD_OC_IMAGE, atol=TOL)
    np.testing.assert_allclose(got_txt[0, :6], GOLD_OC_TEXT, atol=TOL)
    assert got_img.dtype == np.float32 and abs(np.linalg.norm(got_img) - 1) < 1e-5


def test_open_clip_batches_and_progress(tmp_path):
    _, _, _, ckpt = save_tiny_open_clip(tmp_path)
    enc = load_image_encoder(f"{TINY_ARCH}@{ckpt}", device="cpu")
    images = [fixed_image(s) for s in range(5)]
    seen: list[int] = []
    batched = enc.encode_images(images, batch_size=2, progress=seen.append)
    assert seen == [2, 4, 5] and batched.shape == (5, 16)
    np.testing.assert_allclose(batched, np.concatenate([enc.encode_images([im]) for im in images]), atol=1e-5)
    assert enc.encode_images([]).shape == (0, 16)
    assert not np.allclose(batched[0], batched[1])


def test_open_clip_local_dir(tmp_path):
    folder = save_tiny_open_clip_dir(tmp_path)
    assert parse_spec(str(folder)) == ("open_clip", f"local-dir:{folder.resolve()}", None)
    enc = load_image_encoder(str(folder), device="cpu")
    np.testing.assert_allclose(enc.encode_images([fixed_image()])[0, :6], GOLD_OC_IMAGE, atol=TOL)


def test_transformers_clip_save_pretrained_golden(tmp_path):
    model, proc, folder = save_tiny_transformers_clip(tmp_path)
    enc = load_image_encoder(str(folder), device="cpu")
    assert type(enc).__name__ == "TransformersClipEncoder" and enc.dim == 16
    im = fixed_image()
    got_img, got_txt = enc.encode_images([im]), enc.encode_texts([TEXT, "a"])
    with torch.no_grad():
        out = model.get_image_features(pixel_values=proc(images=[im], return_tensors="pt")["pixel_values"])
        ref = _unit(out if isinstance(out, torch.Tensor) else out.pooler_output)
    np.testing.assert_allclose(got_img, ref, atol=1e-5)
    np.testing.assert_allclose(got_img[0, :6], GOLD_HF_IMAGE, atol=TOL)
    np.testing.assert_allclose(got_txt[0, :6], GOLD_HF_TEXT, atol=TOL)


def test_loaded_once_through_the_cache(tmp_path):
    _, _, _, ckpt = save_tiny_open_clip(tmp_path)
    spec = f"{TINY_ARCH}@{ckpt}"
    assert get_image_encoder(spec) is get_image_encoder(spec)
    cache.clear()


def test_bad_specs_say_what_to_do(tmp_path):
    with pytest.raises(ConfigError, match="ARCH@random"):
        parse_spec("ViT-B-32")
    with pytest.raises(ModelLoadError, match="not found"):
        parse_spec(f"ViT-B-32@{tmp_path}/missing.pt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="open_clip_config.json"):
        parse_spec(str(tmp_path / "empty"))
    with pytest.raises(ModelLoadError, match="cannot load open_clip"):
        load_image_encoder("no-such-arch@random")
    assert parse_spec("hf-hub:microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224")[0] == "open_clip"
    assert parse_spec("hf:openai/clip-vit-base-patch32") == ("transformers", "openai/clip-vit-base-patch32", None)
