"""The search-time multi-vector index: compressed token codes laid out for fast candidate generation.

The chunks table holds each chunk's tokens as centroid ids (``codes``) and packed residuals
(``residuals``). At commit, :func:`build_multivector` streams them out as plain ``.npy`` files
in ``mv-<id>/`` (:mod:`clinrag.indexing.mv_writer`), memory-mapped at search time:

- ``codes.npy`` (int32, one per token) and ``residuals.npy`` (uint8, packed, one row per token);
- ``offsets.npy`` (int64, ``n_chunks + 1``): chunk ``i``'s tokens are ``offsets[i]:offsets[i+1]``;
- ``chunk_ids.npy``: row order;
- ``ivf_indptr.npy`` / ``ivf_rows.npy``: inverted lists, centroid -> chunk rows that use it (CSR).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

if TYPE_CHECKING:
    from clinrag.indexing.codec import ResidualCodec

log = logging.getLogger(__name__)
FILES = ("codes", "residuals", "offsets", "chunk_ids", "ivf_indptr", "ivf_rows")


@dataclass(frozen=True)
class MultiVectorIndex:
    """Arrays of a built ``mv-<id>/`` directory (memory-mapped, read-only)."""

    codes: np.ndarray
    residuals: np.ndarray
    offsets: np.ndarray
    chunk_ids: np.ndarray
    ivf_indptr: np.ndarray
    ivf_rows: np.ndarray

    @property
    def n_chunks(self) -> int:
        return len(self.offsets) - 1

    @property
    def n_tokens(self) -> int:
        return int(self.offsets[-1])

    @classmethod
    def load(cls, directory: Path, *, mmap: bool = True) -> MultiVectorIndex:
        arrays = {name: np.load(directory / f"{name}.npy", mmap_mode="r" if mmap else None, allow_pickle=False)
                  for name in FILES}
        return cls(**arrays)

    def token_rows(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Token indices of chunk ``rows`` (concatenated) and their per-chunk offsets."""
        starts = self.offsets[rows]
        lengths = self.offsets[rows + 1] - starts
        local = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(lengths, out=local[1:])
        # token index = start of its chunk + position within the chunk
        idx = np.repeat(starts - local[:-1], lengths) + np.arange(local[-1], dtype=np.int64)
        return idx, local


def build_multivector(directory: Path, table: pa.Table | Iterable[pa.RecordBatch], n_centroids: int) -> dict[str, int]:
    """Write ``directory`` from chunk rows with ``chunk_id``, ``codes`` and ``residuals`` columns.

    ``table`` is a table or an iterable of record batches (a streamed scan): batches are
    written as they come (:class:`~clinrag.indexing.mv_writer.MultiVectorWriter`), so
    memory stays bounded by one batch plus the inverted lists. Chunks without codes
    (written before a text model was configured) get no tokens.
    """
    from clinrag.indexing.mv_writer import MultiVectorWriter

    writer = MultiVectorWriter(directory, n_centroids=n_centroids)
    batches = table.to_batches() if isinstance(table, pa.Table) else table
    for batch in batches:
        codes_arr, res_arr = batch.column("codes"), batch.column("residuals")
        lengths = np.asarray(codes_arr.value_lengths().fill_null(0), dtype=np.int64)
        codes = np.asarray(codes_arr.flatten(), dtype=np.int32)
        valid = res_arr.filter(res_arr.is_valid()).cast(pa.large_binary())
        flat = np.zeros(0, np.uint8)
        if len(valid):
            bufs = valid.buffers()
            value_offsets = np.frombuffer(bufs[1], dtype=np.int64)[valid.offset:valid.offset + len(valid) + 1]
            flat = np.frombuffer(bufs[2], dtype=np.uint8)[value_offsets[0]:value_offsets[-1]]
        writer.add(batch.column("chunk_id").to_pylist(), lengths, codes, flat)
    return writer.close()


class TokenCompressor:
    """Projection (optional PCA) + residual codec: raw encoder states -> stored codes.

    Saved as a ``codec-<id>/`` directory: the codec's own files, ``projection.npy`` when
    a dimension reduction is used, and ``compressor.json`` (training statistics used to
    measure drift: the mean cosine between a token and its centroid at training time).
    """

    def __init__(self, codec: ResidualCodec, projection: np.ndarray | None, stats: dict[str, float]) -> None:
        self.codec = codec
        self.projection = projection
        self.stats = dict(stats)

    @classmethod
    def fit(cls, vectors: list[np.ndarray], *, dim: int | None, nbits: int, n_centroids: int | None,
            expected_tokens: int | None = None, seed: int = 0, max_sample: int = 262_144,
            niter: int = 20) -> TokenCompressor:
        """Train on token vectors (a list of ``n_i x d`` arrays); ``niter`` k-means iterations."""
        from clinrag.indexing.codec import default_n_centroids, train_codec

        allv = np.concatenate([np.asarray(v, dtype=np.float32) for v in vectors if len(v)])
        rng = np.random.default_rng(seed)
        sample = allv[rng.choice(len(allv), max_sample, replace=False)] if len(allv) > max_sample else allv
        projection = None
        if dim is not None and dim < sample.shape[1]:
            centred = sample - sample.mean(0)
            _, _, vt = np.linalg.svd(centred[: min(len(centred), 65_536)], full_matrices=False)
            projection = np.ascontiguousarray(vt[:dim].T.astype(np.float32))
            sample = _normalise(sample @ projection)
        if n_centroids is None:
            total = max(expected_tokens or len(allv), len(allv))
            n_centroids = default_n_centroids(total)
        n_centroids = max(1, min(n_centroids, len(sample) // 4 if len(sample) >= 8 else 1))
        codec = train_codec(sample, n_centroids=n_centroids, nbits=nbits, seed=seed, niter=niter)
        comp = cls(codec, projection, {})
        comp.stats = {"train_tokens": float(len(sample)), "train_centroid_cos": comp.centroid_cosine(sample)}
        return comp

    def project(self, vectors: np.ndarray) -> np.ndarray:
        v = np.asarray(vectors, dtype=np.float32)
        return _normalise(v @ self.projection) if self.projection is not None else v

    def centroid_cosine(self, vectors: np.ndarray) -> float:
        """Mean cosine between (projected) tokens and their nearest centroid: falls as data drifts."""
        if len(vectors) == 0:
            return 1.0
        return float(np.mean(self.codec.nearest(np.asarray(vectors, dtype=np.float32))[1]))

    def compress(self, vectors: list[np.ndarray]) -> tuple[list[np.ndarray], list[bytes]]:
        """Codes and packed residual bytes of each chunk's tokens."""
        lengths = [len(v) for v in vectors]
        if not sum(lengths):
            return [np.zeros(0, np.int32) for _ in vectors], [b"" for _ in vectors]
        flat = self.project(np.concatenate([np.asarray(v, dtype=np.float32) for v in vectors if len(v)]))
        codes, residuals = self.codec.compress(flat)
        out_c, out_r, start = [], [], 0
        for n in lengths:
            out_c.append(np.asarray(codes[start:start + n], dtype=np.int32))
            out_r.append(np.ascontiguousarray(residuals[start:start + n]).tobytes())
            start += n
        return out_c, out_r

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=False)
        self.codec.save(directory / "codec")
        if self.projection is not None:
            np.save(directory / "projection.npy", self.projection, allow_pickle=False)
        (directory / "compressor.json").write_text(json.dumps(self.stats))

    @classmethod
    def load(cls, directory: Path) -> TokenCompressor:
        from clinrag.indexing.codec import ResidualCodec

        proj = directory / "projection.npy"
        projection = np.load(proj, allow_pickle=False) if proj.exists() else None
        stats = json.loads((directory / "compressor.json").read_text())
        return cls(ResidualCodec.load(directory / "codec"), projection, stats)


def _normalise(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)


__all__ = ["MultiVectorIndex", "TokenCompressor", "build_multivector"]
