"""PLAID-style residual codec: quality per nbits on real MiniLM token vectors, bit packing against
a hand-written decoder, persistence, determinism and errors."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from clinrag.errors import ConfigError, IndexFormatError
from clinrag.indexing.codec import ResidualCodec, default_n_centroids, train_codec

os.environ["HF_HUB_OFFLINE"] = "1"

SUBJECTS = ["The patient", "An elderly woman", "A 54-year-old man", "The child", "Our patient", "She", "He"]
EVENTS = ["was admitted with chest pain", "reported shortness of breath", "developed a fever after surgery",
          "was given aspirin for suspected myocardial infarction", "had poorly controlled type 2 diabetes",
          "presented with a productive cough", "was started on intravenous antibiotics for pneumonia",
          "complained of severe headache and dizziness", "had an ankle fracture repaired",
          "was discharged on metformin and lisinopril"]
TAILS = ["yesterday.", "and was monitored overnight.", "; blood cultures are pending.",
         "with a history of hypertension.", "after a fall at home.", "in the emergency department."]


@pytest.fixture(scope="module")
def minilm_tokens() -> np.ndarray:
    """Token vectors of 420 short clinical sentences from the packaged MiniLM (~4k x 384)."""
    from clinrag.indexing.encoders import default_encoder

    texts = [f"{s} {e} {t}" for s in SUBJECTS for e in EVENTS for t in TAILS]
    vecs = default_encoder(device="cpu").encode_documents(texts, batch_size=64)
    return np.concatenate(vecs).astype(np.float32)


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    return float((a * b).sum(1).mean())


def test_reconstruction_improves_with_bits(minilm_tokens):
    x = minilm_tokens
    cos = {}
    for nbits in (1, 2, 4):
        codec = train_codec(x, n_centroids=128, nbits=nbits, seed=0)
        codes, packed = codec.compress(x)
        assert codes.dtype == np.int32 and codes.shape == (len(x),)
        assert packed.dtype == np.uint8 and packed.shape == (len(x), 384 * nbits // 8)
        assert codec.bytes_per_token == 4 + 384 * nbits // 8
        y = codec.decompress(codes, packed)
        assert y.dtype == torch.float32 and y.shape == x.shape
        np.testing.assert_allclose(y.norm(dim=1).numpy(), 1.0, atol=1e-5)
        cos[nbits] = _cos(x, y.numpy())
    centroid_only = _cos(x, codec.centroids[codec.assign(x)])
    assert centroid_only < cos[1] < cos[2] < cos[4]
    assert cos[2] > 0.9 and cos[4] > 0.97


def test_decompress_matches_a_hand_written_decoder():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(600, 16)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    for nbits in (1, 2, 4):
        codec = train_codec(x, n_centroids=8, nbits=nbits)
        codes, packed = codec.compress(x)
        buckets = np.searchsorted(codec.bucket_cutoffs, x - codec.centroids[codes])
        per_byte = 8 // nbits
        unpacked = np.stack([(packed >> (nbits * (per_byte - 1 - j))) & ((1 << nbits) - 1)
                             for j in range(per_byte)], axis=-1).reshape(len(x), -1)
        np.testing.assert_array_equal(unpacked, buckets)  # first dimension in the highest bits
        want = codec.centroids[codes] + codec.bucket_weights[buckets]
        want /= np.linalg.norm(want, axis=1, keepdims=True)
        np.testing.assert_allclose(codec.decompress(codes, packed).numpy(), want, atol=1e-6)
        assert len(codec.bucket_cutoffs) == (1 << nbits) - 1 and len(codec.bucket_weights) == 1 << nbits
        assert np.all(np.diff(codec.bucket_cutoffs) >= 0) and np.all(np.diff(codec.bucket_weights) >= 0)


def test_save_load_round_trip(tmp_path):
    x = _clustered(1500, 32)
    codec = train_codec(x, n_centroids=32, nbits=2)
    codec.save(tmp_path / "codec")
    names = sorted(p.name for p in (tmp_path / "codec").iterdir())
    assert names == ["avg_residual.npy", "bucket_cutoffs.npy", "bucket_weights.npy", "centroids.npy", "codec.json"]
    assert json.loads((tmp_path / "codec" / "codec.json").read_text())["nbits"] == 2
    again = ResidualCodec.load(str(tmp_path / "codec"))
    for name in ("centroids", "bucket_cutoffs", "bucket_weights", "avg_residual"):
        np.testing.assert_array_equal(getattr(again, name), getattr(codec, name))
    assert again.nbits == 2 and again.dim == 32
    codes, packed = codec.compress(x)
    a2, p2 = again.compress(x)
    np.testing.assert_array_equal(codes, a2)
    np.testing.assert_array_equal(packed, p2)
    assert torch.equal(codec.decompress(codes, packed), again.decompress(a2, p2))
    with pytest.raises(IndexFormatError, match="rebuild"):
        ResidualCodec.load(tmp_path / "missing")


def test_training_is_deterministic_per_seed():
    x = _clustered(2000, 32)
    a, b = (train_codec(x, n_centroids=32, nbits=2, seed=3) for _ in range(2))
    np.testing.assert_array_equal(a.centroids, b.centroids)
    np.testing.assert_array_equal(a.bucket_cutoffs, b.bucket_cutoffs)
    c = train_codec(x, n_centroids=32, nbits=2, seed=4)
    assert not np.array_equal(a.centroids, c.centroids)


def test_assign_and_default_centroid_count():
    x = _clustered(300, 16)
    codec = train_codec(x, nbits=1)  # default: 2**floor(log2(16 * sqrt(300))) = 256, clipped to the sample
    assert len(codec.centroids) <= len(x)
    assert default_n_centroids(300) == 256 and default_n_centroids(10_000) == 1024
    np.testing.assert_allclose(np.linalg.norm(codec.centroids, axis=1), 1.0, atol=1e-5)
    best = np.argmax(x @ codec.centroids.T, axis=1)
    np.testing.assert_array_equal(codec.assign(x), best)
    top3 = codec.assign(x, k=3)
    assert top3.shape == (300, 3) and np.array_equal(top3[:, 0], best)


def test_bad_settings_are_config_errors():
    x = _clustered(200, 16)
    with pytest.raises(ConfigError, match="nbits"):
        train_codec(x, nbits=3)
    with pytest.raises(ConfigError, match="at least 2"):
        train_codec(x[:1])
    codec = train_codec(x, n_centroids=4, nbits=2)
    with pytest.raises(ConfigError, match="dim 16"):
        codec.compress(np.zeros((3, 8), np.float32))
    with pytest.raises(ConfigError, match="multiple of 8"):
        ResidualCodec(np.ones((2, 6), np.float32), np.zeros(1, np.float32), np.zeros(2, np.float32), nbits=1)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_decompress_matches_cpu():
    x = _clustered(500, 32)
    codec = train_codec(x, n_centroids=16, nbits=2)
    codes, packed = codec.compress(x)
    gpu = codec.decompress(torch.as_tensor(codes).cuda(), torch.as_tensor(packed).cuda(), device="cuda")
    assert gpu.dtype == torch.float16 and gpu.is_cuda
    np.testing.assert_allclose(gpu.float().cpu().numpy(), codec.decompress(codes, packed).numpy(), atol=2e-3)


def _clustered(n: int, dim: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(40, dim))
    x = centres[rng.integers(0, 40, n)] + 0.35 * rng.normal(size=(n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_approximate_centroid_assignment_agrees_with_exact():
    rng = np.random.default_rng(3)
    cents = rng.normal(size=(8192, 32)).astype(np.float32)
    cents /= np.linalg.norm(cents, axis=1, keepdims=True)
    codec = ResidualCodec(cents, np.zeros(3, np.float32), np.zeros(4, np.float32), 2)
    x = cents[rng.integers(0, 8192, 5000)] + 0.1 * rng.normal(size=(5000, 32)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    exact, approx = codec.assign(x), codec.assign_approx(x)
    assert (exact == approx).mean() >= 0.95
    cos_exact = (x * cents[exact]).sum(1)
    cos_approx = (x * cents[approx]).sum(1)
    assert np.all(cos_approx <= cos_exact + 1e-5) and cos_approx.mean() >= cos_exact.mean() - 0.01
    codes, _ = codec.compress(x[:10])  # 8192 centroids: compress goes through the IVF
    assert np.array_equal(codes, approx[:10])
    assert np.array_equal(codec.compress(x[:10], exact=True)[0], exact[:10])
