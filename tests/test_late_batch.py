"""Batched late-interaction search gives the same hits as one query at a time.

A PLAID-style index of clustered random token vectors is built here through the real codec
and layout code; queries are scored one by one and as a batch, approximate and exhaustive,
with and without a filter, with blocks small enough that both batched scoring paths (a whole
block for many queries; gathered tokens for a few) run.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pyarrow as pa
import pytest
import torch

from clinrag.config import LateParams
from clinrag.indexing.multivector import MultiVectorIndex, TokenCompressor, build_multivector
from clinrag.retrieval.late import LateRetriever

DIM = 32


class _NoEncoder:
    name, dim, truncated = "none", DIM, 0


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    rng = np.random.default_rng(7)
    topics = _unit(rng.normal(size=(40, DIM)))
    chunks = []
    for _ in range(400):
        t = rng.choice(40, 3, replace=False)
        n = int(rng.integers(5, 40))
        chunks.append(_unit(topics[rng.choice(t, n)] + 0.35 * rng.normal(size=(n, DIM))))
    queries = []
    for _ in range(48):
        t = rng.choice(40, 2, replace=False)
        n = int(rng.integers(2, 9))
        queries.append(_unit(topics[rng.choice(t, n)] + 0.35 * rng.normal(size=(n, DIM))))
    comp = TokenCompressor.fit(chunks, dim=None, nbits=2, n_centroids=64)
    codes, residuals = comp.compress(chunks)
    table = pa.table({"chunk_id": [f"c{i}" for i in range(len(chunks))],
                      "codes": pa.array(codes, pa.list_(pa.int32())),
                      "residuals": pa.array(residuals, pa.large_binary())})
    mv_dir = tmp_path_factory.mktemp("mv") / "mv"
    build_multivector(mv_dir, table, len(comp.codec.centroids))
    return MultiVectorIndex.load(mv_dir), comp.codec, queries


def _retriever(corpus, **params):
    mv, codec, _ = corpus
    return LateRetriever(mv, codec, _NoEncoder(), params=LateParams(**params), device="cpu")  # type: ignore[arg-type]


def _same(one, many):
    assert len(one) == len(many)
    for a, b in zip(one, many, strict=True):
        assert [s.chunk_id for s in a] == [s.chunk_id for s in b]
        assert [s.score for s in a] == pytest.approx([s.score for s in b], abs=1e-5)


@pytest.mark.parametrize("params", [
    {"nprobe": 2, "ncandidates": 20},          # pruned: queries have few, different candidates
    {"nprobe": 4, "centroid_pruning": False},  # every probed chunk
    {"exhaustive": True},                      # all chunks: one batched MaxSim per block
])
@pytest.mark.parametrize("block_tokens", [1 << 20, 500])
def test_batch_equals_one_by_one(corpus, params, block_tokens):
    _, _, queries = corpus
    r = _retriever(corpus, block_tokens=block_tokens, **params)
    one = [r.search_vectors(q, 10) for q in queries]
    many = r.search_batch_vectors(queries, 10)
    _same(one, many)
    assert all(len(h) == 10 for h in many)


def test_batch_with_filter_equals_one_by_one(corpus):
    _, _, queries = corpus
    r = _retriever(corpus, nprobe=2, ncandidates=8, block_tokens=700)
    allowed = r.allowed_rows(frozenset(f"c{i}" for i in range(0, 400, 3)))
    one = [r.search_vectors(q, 12, allowed) for q in queries]
    many = r.search_batch_vectors(queries, 12, allowed)
    _same(one, many)
    assert all(int(s.chunk_id[1:]) % 3 == 0 for h in many for s in h)


def test_batch_exhaustive_scores_are_exact_maxsim(corpus):
    mv, codec, queries = corpus
    r = _retriever(corpus, exhaustive=True, block_tokens=800)
    D = codec.decompress(np.array(mv.codes), np.array(mv.residuals))
    for q, hits in zip(queries[:8], r.search_batch_vectors(queries[:8], 5), strict=True):
        sims = torch.as_tensor(q) @ D.T
        ref = [float(sims[:, mv.offsets[i]:mv.offsets[i + 1]].max(1).values.sum()) for i in range(mv.n_chunks)]
        order = np.argsort(ref)[::-1][:5]
        assert [s.chunk_id for s in hits] == [f"c{i}" for i in order]
        assert [s.score for s in hits] == pytest.approx([ref[i] for i in order], abs=1e-4)


def test_batch_of_one_and_empty(corpus):
    _, _, queries = corpus
    r = _retriever(corpus)
    assert r.search_batch_vectors([], 10) == []
    _same([r.search_vectors(queries[0], 3)], r.search_batch_vectors(queries[:1], 3))
    r.params = replace(r.params, exhaustive=True)
    assert r.search_batch_vectors(queries[:2], 10, np.zeros(0, np.int64)) == [[], []]


def test_ivf_prefilter_scores_by_definition(corpus):
    """The inverted-list score: per query token, its best probed centroid that the chunk uses, else
    the token's lowest probed score; summed over tokens."""
    mv, codec, queries = corpus
    r = _retriever(corpus, nprobe=3)
    Q = torch.as_tensor(queries[5])
    cs = Q @ torch.as_tensor(codec.centroids).T
    top = torch.topk(cs, 3, dim=1)
    rows = np.arange(0, mv.n_chunks, 2, dtype=np.int64)  # a filter: even rows only
    best = r._ivf_prefilter(top.values, top.indices, rows, len(rows))
    expect = []
    for row in rows:
        used = set(np.asarray(mv.codes[mv.offsets[row]:mv.offsets[row + 1]]).tolist())
        total = 0.0
        for i in range(len(Q)):
            hit = [float(v) for v, c in zip(top.values[i], top.indices[i], strict=True) if int(c) in used]
            total += max(hit) if hit else float(top.values[i].min())
        expect.append(total)
    order = np.argsort(-np.asarray(expect), kind="stable")
    got = np.asarray(expect)[best]
    assert np.allclose(got, np.sort(expect)[::-1], atol=1e-5)  # same scores in the same order (ties aside)
    assert set(best[:5].tolist()) <= set(order[:8].tolist())


def test_prefilter_keeps_quality_and_batch_equality(corpus):
    _, _, queries = corpus
    exact = _retriever(corpus, exhaustive=True)
    plain = _retriever(corpus, nprobe=4, ncandidates=20, prefilter=0)
    staged = _retriever(corpus, nprobe=4, ncandidates=20, prefilter=2)  # 40 kept by the list score, then 20
    calls = []
    real = staged._ivf_prefilter
    staged._ivf_prefilter = lambda *a: calls.append(len(a[2])) or real(*a)  # type: ignore[method-assign]
    truth = [{s.chunk_id for s in exact.search_vectors(q, 10)} for q in queries]

    def recall(r):
        return np.mean([len({s.chunk_id for s in r.search_vectors(q, 10)} & t) / 10
                        for q, t in zip(queries, truth, strict=True)])

    assert recall(staged) >= recall(plain) - 0.05
    assert calls and min(calls) > 40, "the inverted-list stage ran, on more chunks than it keeps"
    _same([staged.search_vectors(q, 10) for q in queries], staged.search_batch_vectors(queries, 10))
    with pytest.raises(Exception, match="prefilter"):
        LateParams(prefilter=-1)
