"""LanceDB's own multivector column as an alternative late-interaction backend.

Each chunk's token vectors are stored uncompressed in a ``list<fixed_size_list<float16, dim>>``
column, and LanceDB scores a multi-vector query by MaxSim (flat search). LanceDB reports a
distance, ``sum_i min_j |q_i - d_j|^2 = sum_i (2 - 2 max_j cos(q_i, d_j))`` for unit vectors,
turned back into MaxSim here as ``Lq - distance / 2``. It serves to compare clinrag's
PLAID-style index with LanceDB's native search on the same vectors
(``bench/bench_late.py --engines lancedb``).

>>> import numpy as np, tempfile
>>> v = [np.eye(4, dtype=np.float16)[:2], np.eye(4, dtype=np.float16)[2:]]
>>> r = LanceMultiVectorRetriever.build(tempfile.mkdtemp(), ["a", "b"], v)
>>> [(s.chunk_id, round(s.score, 3)) for s in r.search_vectors(np.eye(4, dtype=np.float32)[:1], k=2)]
[('a', 1.0), ('b', 0.0)]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import lancedb
import numpy as np
import pyarrow as pa

from clinrag.indexing.store import sql_in
from clinrag.retrieval.base import Scored

TABLE = "multivector"


def multivector_array(vectors: Sequence[np.ndarray], dim: int) -> pa.Array:
    """``list<fixed_size_list<float16, dim>>`` of each chunk's token vectors, built without Python loops."""
    parts = [np.asarray(v, dtype=np.float16).reshape(-1, dim) for v in vectors]
    flat = np.concatenate(parts).reshape(-1) if parts else np.zeros(0, np.float16)
    inner = pa.FixedSizeListArray.from_arrays(pa.array(flat, pa.float16()), dim)
    offsets = np.zeros(len(parts) + 1, dtype=np.int32)
    np.cumsum([len(v) for v in parts], out=offsets[1:])
    return pa.ListArray.from_arrays(pa.array(offsets), inner)


def multivector_table(chunk_ids: Sequence[str], vectors: Sequence[np.ndarray]) -> pa.Table:
    """Arrow table ``chunk_id``, ``vector`` for :meth:`LanceMultiVectorRetriever.build`."""
    return pa.table({"chunk_id": pa.array(list(chunk_ids), pa.string()),
                     "vector": multivector_array(vectors, int(vectors[0].shape[1]))})


class LanceMultiVectorRetriever:
    """MaxSim search through LanceDB's native multivector support (flat, exact)."""

    name = "late-lancedb"

    def __init__(self, table: object, encoder: object | None = None,
                 query_transform: Callable[[np.ndarray], np.ndarray] | None = None,
                 vector_column: str = "vector") -> None:
        self.table = table
        self.vector_column = vector_column
        self.encoder = encoder
        self.query_transform = query_transform

    @classmethod
    def build(cls, path: str | Path, chunk_ids: Sequence[str], vectors: Sequence[np.ndarray],
              encoder: object | None = None) -> LanceMultiVectorRetriever:
        db = lancedb.connect(str(path))
        table = db.create_table(TABLE, data=multivector_table(chunk_ids, vectors), mode="overwrite")
        return cls(table, encoder)

    def search_vectors(self, q: np.ndarray, k: int, where: str | None = None) -> list[Scored]:
        query = self.table.search(np.asarray(q, dtype=np.float32).tolist(),  # type: ignore[attr-defined]
                                  vector_column_name=self.vector_column)
        if where:
            query = query.where(where, prefilter=True)
        res = query.select(["chunk_id"]).limit(k).to_arrow()
        lq = len(q)
        return [Scored(c, float(lq - d / 2)) for c, d in zip(res.column("chunk_id").to_pylist(),
                                                        res.column("_distance").to_pylist(), strict=True)]

    def search(self, queries: Sequence[str], k: int, allowed: frozenset[str] | None = None) -> list[list[Scored]]:
        if self.encoder is None:
            raise ValueError("this LanceDB multivector retriever was built without an encoder")
        qvecs = self.encoder.encode_queries(list(queries))  # type: ignore[attr-defined]
        if self.query_transform is not None:
            qvecs = [self.query_transform(q) for q in qvecs]
        where = sql_in("chunk_id", sorted(allowed)) if allowed is not None else None
        return [self.search_vectors(q, k, where) for q in qvecs]


__all__ = ["LanceMultiVectorRetriever", "multivector_table"]
