"""The streaming multi-vector layout: same files whatever the batching, bounded memory, plain .npy."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from clinrag.errors import ConfigError
from clinrag.indexing.multivector import MultiVectorIndex, build_multivector
from clinrag.indexing.mv_writer import MultiVectorWriter, NpyAppender


def _table(n: int = 600, n_centroids: int = 40, width: int = 8) -> tuple[pa.Table, list[np.ndarray]]:
    rng = np.random.default_rng(0)
    lens = rng.integers(0, 25, n)
    codes = [rng.integers(0, n_centroids, k).astype(np.int32) for k in lens]
    res = [rng.integers(0, 255, (k, width)).astype(np.uint8) for k in lens]
    # every 50th chunk has no codes (written before a text model was configured)
    codes_col = pa.array([c if i % 50 else None for i, c in enumerate(codes)], pa.list_(pa.int32()))
    res_col = pa.array([r.tobytes() if i % 50 else None for i, r in enumerate(res)], pa.large_binary())
    table = pa.table({"chunk_id": [f"c{i}" for i in range(n)], "codes": codes_col, "residuals": res_col})
    kept = [c if i % 50 else np.zeros(0, np.int32) for i, c in enumerate(codes)]
    return table, kept


def test_streamed_layout_matches_the_inverted_lists_by_definition(tmp_path):
    table, codes = _table()
    build_multivector(tmp_path / "one", table, 40)
    one = MultiVectorIndex.load(tmp_path / "one")
    streamed = build_multivector(tmp_path / "streamed", iter(table.to_batches(max_chunksize=37)), 40)
    two = MultiVectorIndex.load(tmp_path / "streamed")
    assert streamed["chunks"] == 600
    for idx in (one, two):
        assert idx.n_chunks == 600 and idx.n_tokens == sum(len(c) for c in codes)
        assert idx.chunk_ids.tolist() == [f"c{i}" for i in range(600)]
        for c in (0, 7, 39):  # centroid c's list = the chunks that use it, ascending, once each
            expect = [i for i, cs in enumerate(codes) if c in set(cs.tolist())]
            assert idx.ivf_rows[idx.ivf_indptr[c]:idx.ivf_indptr[c + 1]].tolist() == expect
        row = 3
        assert idx.codes[idx.offsets[row]:idx.offsets[row + 1]].tolist() == codes[row].tolist()
    for name in ("codes", "residuals", "offsets", "ivf_indptr", "ivf_rows"):
        assert np.array_equal(getattr(one, name), getattr(two, name))
    assert not list((tmp_path / "streamed").glob("_pairs*")), "temporary pair files are removed"


def test_npy_appender_writes_plain_npy_that_memory_maps(tmp_path):
    a = NpyAppender(tmp_path / "r.npy", np.uint8, (4,))
    a.append(np.ones((3, 4), np.uint8))
    a.append(np.full((2, 4), 7, np.uint8))
    with pytest.raises(ConfigError, match="shape"):
        a.append(np.ones((1, 5), np.uint8))
    a.close()
    m = np.load(tmp_path / "r.npy", mmap_mode="r", allow_pickle=False)
    assert m.shape == (5, 4) and m[4].tolist() == [7, 7, 7, 7]


def test_writer_rejects_inconsistent_batches(tmp_path):
    w = MultiVectorWriter(tmp_path / "mv", n_centroids=4, residual_bytes=2)
    with pytest.raises(ConfigError, match="lengths"):
        w.add(["a"], [3], np.zeros(2, np.int32), np.zeros((2, 2), np.uint8))
    with pytest.raises(ConfigError, match="centroid ids"):
        w.add(["a"], [1], np.array([9], np.int32), np.zeros((1, 2), np.uint8))


def test_empty_index_has_no_tokens(tmp_path):
    stats = MultiVectorWriter(tmp_path / "mv", n_centroids=3).close()
    idx = MultiVectorIndex.load(tmp_path / "mv")
    assert stats["tokens"] == 0 and idx.n_chunks == 0 and idx.ivf_indptr.tolist() == [0, 0, 0, 0]
