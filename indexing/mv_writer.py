"""Streaming writer of a ``mv-<id>/`` multi-vector directory, in bounded memory.

Chunks arrive in batches (chunk ids, token counts, flat centroid codes, packed residuals);
codes and residuals are appended to their ``.npy`` files as they come (plain file writes,
so the data never has to fit in memory, nor sit in the page cache as resident memory of
this process), and the inverted lists are laid out at :meth:`MultiVectorWriter.close`
from the per-batch unique (centroid, chunk) pairs, which are spilled to disk too. Peak
memory is about one batch plus ~16 bytes per inverted-list entry at close.

>>> import tempfile, pathlib, numpy as np
>>> d = pathlib.Path(tempfile.mkdtemp()) / "mv"
>>> w = MultiVectorWriter(d, n_centroids=4, residual_bytes=2)
>>> w.add(["a", "b"], [2, 1], np.array([3, 1, 3], np.int32), np.zeros((3, 2), np.uint8))
>>> w.close()["tokens"]
3
>>> np.load(d / "ivf_indptr.npy").tolist(), np.load(d / "ivf_rows.npy").tolist()
([0, 0, 1, 1, 3], [0, 0, 1])
"""

from __future__ import annotations

import json
import logging
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

import numpy as np

from clinrag.errors import ConfigError

log = logging.getLogger(__name__)
_HEADER = 128  # bytes reserved for the .npy header (magic + version + length + dict, padded)


class NpyAppender:
    """Appends rows to a ``.npy`` file; the header is written with the final shape at :meth:`close`.

    >>> import tempfile, pathlib, numpy as np
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "x.npy"
    >>> a = NpyAppender(p, np.int32)
    >>> a.append(np.arange(3)); a.append(np.arange(2)); a.close()
    >>> np.load(p).tolist()
    [0, 1, 2, 0, 1]
    """

    def __init__(self, path: Path, dtype: np.typing.DTypeLike, row_shape: tuple[int, ...] = ()) -> None:
        self.path = path
        self.dtype = np.dtype(dtype)
        self.row_shape = tuple(row_shape)
        self.rows = 0
        self._fh: BinaryIO | None = open(path, "wb")  # noqa: SIM115 - closed in close()
        self._fh.write(b"\0" * _HEADER)

    def append(self, arr: np.ndarray) -> None:
        a = np.ascontiguousarray(arr, dtype=self.dtype)
        if a.shape[1:] != self.row_shape:
            raise ConfigError(f"{self.path.name}: rows of shape {a.shape[1:]}, expected {self.row_shape}")
        if self._fh is None:
            raise ConfigError(f"{self.path.name} is already closed")
        self._fh.write(a.tobytes())
        self.rows += len(a)

    def close(self) -> None:
        if self._fh is None:
            return
        header = repr({"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False,
                       "shape": (self.rows, *self.row_shape)}).encode("latin1")
        body = _HEADER - 10  # magic (6) + version (2) + header length (2)
        if len(header) + 1 > body:
            raise ConfigError(f"{self.path.name}: .npy header of {len(header)} bytes does not fit")
        self._fh.seek(0)
        self._fh.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", body) + header.ljust(body - 1) + b"\n")
        self._fh.close()
        self._fh = None


class MultiVectorWriter:
    """Writes ``codes``, ``residuals``, ``offsets``, ``chunk_ids`` and the inverted lists batch by batch.

    Call :meth:`add` for each batch of chunks in row order, then :meth:`close`, which
    returns the directory's statistics (also written to ``stats.json``).
    """

    def __init__(self, directory: Path, *, n_centroids: int, residual_bytes: int | None = None) -> None:
        directory.mkdir(parents=True, exist_ok=False)
        self.directory = directory
        self.n_centroids = n_centroids
        self._codes = NpyAppender(directory / "codes.npy", np.int32)
        # the residual width is taken from the first tokens when not given
        self._res = (NpyAppender(directory / "residuals.npy", np.uint8, (residual_bytes,))
                     if residual_bytes else None)
        self._lengths: list[np.ndarray] = []
        self._ids: list[str] = []
        self._pair_c = NpyAppender(directory / "_pairs_centroid.npy", np.int32)
        self._pair_r = NpyAppender(directory / "_pairs_row.npy", np.int32)

    @property
    def n_chunks(self) -> int:
        return len(self._ids)

    def add(self, chunk_ids: Sequence[str], lengths: Sequence[int] | np.ndarray, codes: np.ndarray,
            residuals: np.ndarray) -> None:
        """Append chunks: ``codes`` (int32) and ``residuals`` (uint8 rows) are their tokens, concatenated."""
        lengths = np.asarray(lengths, dtype=np.int64)
        codes = np.asarray(codes)
        residuals = np.asarray(residuals, dtype=np.uint8)
        if len(codes):
            residuals = residuals.reshape(len(codes), -1)
            if self._res is None:
                self._res = NpyAppender(self.directory / "residuals.npy", np.uint8, (residuals.shape[1],))
        if len(lengths) != len(chunk_ids) or int(lengths.sum()) != len(codes) or len(residuals) != len(codes):
            raise ConfigError(f"batch of {len(chunk_ids)} chunks: {len(lengths)} lengths summing to "
                              f"{int(lengths.sum())}, {len(codes)} codes, {len(residuals)} residual rows")
        if len(codes) and (int(codes.min()) < 0 or int(codes.max()) >= self.n_centroids):
            raise ConfigError(f"centroid ids must be in [0, {self.n_centroids}), got {codes.min()}..{codes.max()}")
        first = self.n_chunks
        self._codes.append(codes)
        if len(codes) and self._res is not None:
            self._res.append(residuals)
        self._lengths.append(lengths)
        self._ids.extend(str(c) for c in chunk_ids)
        if len(codes):  # unique (centroid, chunk) pairs of this batch: batches cover disjoint chunk rows
            local = np.repeat(np.arange(len(lengths), dtype=np.int64), lengths)
            pairs = np.unique(codes.astype(np.int64) * len(lengths) + local)
            self._pair_c.append(pairs // len(lengths))
            self._pair_r.append(pairs % len(lengths) + first)

    def close(self) -> dict[str, int]:
        """Finish the files: offsets, chunk ids and the inverted lists (CSR by centroid)."""
        if self._res is None:  # no tokens at all
            self._res = NpyAppender(self.directory / "residuals.npy", np.uint8, (1,))
        for a in (self._codes, self._res, self._pair_c, self._pair_r):
            a.close()
        d = self.directory
        lengths = np.concatenate(self._lengths) if self._lengths else np.zeros(0, np.int64)
        offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        width = max((len(c) for c in self._ids), default=1)
        np.save(d / "offsets.npy", offsets, allow_pickle=False)
        np.save(d / "chunk_ids.npy", np.asarray(self._ids, dtype=f"<U{width}"), allow_pickle=False)
        cent = np.load(d / "_pairs_centroid.npy", mmap_mode="r")
        indptr = np.zeros(self.n_centroids + 1, dtype=np.int64)
        np.cumsum(np.bincount(cent, minlength=self.n_centroids)[:self.n_centroids], out=indptr[1:])
        # stable by centroid: rows stay ascending within a list (batches come in row order, each sorted)
        order = np.argsort(cent, kind="stable")
        rows = np.load(d / "_pairs_row.npy", mmap_mode="r")
        ivf = NpyAppender(d / "ivf_rows.npy", np.int32)
        for s in range(0, len(order), 1 << 24):
            ivf.append(rows[order[s:s + (1 << 24)]])
        ivf.close()
        n_entries = len(order)
        del cent, rows, order
        np.save(d / "ivf_indptr.npy", indptr, allow_pickle=False)
        (d / "_pairs_centroid.npy").unlink()
        (d / "_pairs_row.npy").unlink()
        stats = {"chunks": len(lengths), "tokens": int(offsets[-1]), "ivf_entries": n_entries,
                 "bytes_per_token": self._res.row_shape[0] + 4}
        (d / "stats.json").write_text(json.dumps(stats))
        log.info("multi-vector index: %s", stats)
        return stats


__all__ = ["MultiVectorWriter", "NpyAppender"]
