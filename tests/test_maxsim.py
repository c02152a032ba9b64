"""Exact MaxSim against a naive Python loop: single and batched queries (lists and padded with a
mask), tiny memory blocks, 1-token and empty documents, top-k search, and CUDA when present."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from clinrag.errors import ConfigError
from clinrag.retrieval.maxsim import exhaustive_search, maxsim_batch, maxsim_scores, segment_max

LENGTHS = [1, 5, 17, 3, 40, 1, 0, 9]  # a 0-token document scores 0
DIM = 24


def _data(seed: int = 1):
    rng = np.random.default_rng(seed)
    D = torch.as_tensor(rng.normal(size=(sum(LENGTHS), DIM)).astype(np.float32))
    off = torch.as_tensor(np.concatenate([[0], np.cumsum(LENGTHS)]))
    qs = [torch.as_tensor(rng.normal(size=(n, DIM)).astype(np.float32)) for n in (4, 9, 1, 32)]
    return D, off, qs


def _naive(q: torch.Tensor, D: torch.Tensor, off: torch.Tensor) -> list[float]:
    out = []
    for d in range(len(off) - 1):
        lo, hi = int(off[d]), int(off[d + 1])
        out.append(sum(max(float(q[i] @ D[j]) for j in range(lo, hi)) for i in range(len(q))) if hi > lo else 0.0)
    return out


def test_single_query_matches_naive_loop():
    D, off, qs = _data()
    for q in qs:
        got = maxsim_scores(q, D, off)
        assert got.dtype == torch.float32 and got.shape == (len(LENGTHS),)
        np.testing.assert_allclose(got.numpy(), _naive(q, D, off), rtol=1e-5, atol=1e-5)


def test_batches_lists_and_padded_with_mask_agree():
    D, off, qs = _data()
    want = np.array([_naive(q, D, off) for q in qs])
    np.testing.assert_allclose(maxsim_batch(qs, D, off).numpy(), want, rtol=1e-5, atol=1e-5)
    L = max(len(q) for q in qs)
    padded = torch.full((len(qs), L, DIM), 9.0)  # garbage in the padding must not count
    mask = torch.zeros(len(qs), L, dtype=torch.bool)
    for i, q in enumerate(qs):
        padded[i, :len(q)] = q
        mask[i, :len(q)] = True
    np.testing.assert_allclose(maxsim_batch(padded, D, off, query_mask=mask).numpy(), want, rtol=1e-5, atol=1e-5)


def test_small_memory_blocks_give_the_same_scores():
    D, off, qs = _data(2)
    full = maxsim_batch(qs, D, off)
    for max_elements in (1, 7, 100, 1000):
        torch.testing.assert_close(maxsim_batch(qs, D, off, max_elements=max_elements), full)


def test_float16_documents_on_cpu_are_scored_in_float32():
    D, off, qs = _data(3)
    got = maxsim_scores(qs[1], D.half(), off)
    assert got.dtype == torch.float32
    np.testing.assert_allclose(got.numpy(), _naive(qs[1], D.half().float(), off), rtol=1e-4, atol=1e-4)


def test_exhaustive_search_returns_best_first():
    D, off, qs = _data(4)
    vals, idx = exhaustive_search(qs, D, off, k=3)
    assert vals.shape == idx.shape == (len(qs), 3)
    for i, q in enumerate(qs):
        naive = np.array(_naive(q, D, off))
        assert idx[i].tolist() == list(np.argsort(-naive, kind="stable")[:3])
        np.testing.assert_allclose(vals[i].numpy(), np.sort(naive)[::-1][:3], rtol=1e-5, atol=1e-5)
    vals, idx = exhaustive_search(qs[:1], D, off, k=100)
    assert idx.shape == (1, len(LENGTHS))
    with pytest.raises(ConfigError):
        exhaustive_search(qs, D, off, k=0)


def test_edge_cases():
    D, off, qs = _data()
    assert maxsim_scores(qs[0], D[:0], torch.tensor([0])).shape == (0,)
    assert maxsim_batch([], D, off).shape == (0, len(LENGTHS))
    assert segment_max(torch.tensor([[1.0, 3.0, 2.0]]), torch.tensor([0, 2, 2, 3])).tolist() == [[3.0, 0.0, 2.0]]
    with pytest.raises(ConfigError, match="doc_offsets"):
        maxsim_scores(qs[0], D, torch.tensor([0, 5, 3]))
    with pytest.raises(ConfigError, match="dim"):
        maxsim_scores(qs[0][:, :8], D, off)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_float16_matches_cpu():
    D, off, qs = _data(5)
    D = torch.nn.functional.normalize(D, dim=1)
    qs = [torch.nn.functional.normalize(q, dim=1) for q in qs]
    cpu = maxsim_batch(qs, D, off)
    gpu = maxsim_batch([q.cuda() for q in qs], D.cuda().half(), off.cuda(), max_elements=64)
    assert gpu.is_cuda and gpu.dtype == torch.float32
    np.testing.assert_allclose(gpu.cpu().numpy(), cpu.numpy(), atol=3e-2)
