"""BM25 retrieval over an index's chunks (bm25s), behind the :class:`Retriever` Protocol.

>>> import tempfile, pathlib
>>> from clinrag.config import IndexConfig
>>> from clinrag.indexing.lexical import build_bm25
>>> d = pathlib.Path(tempfile.mkdtemp()) / "bm25"
>>> _ = build_bm25(d, ["a", "b"], ["aspirin and heart disease", "soil bacteria"], IndexConfig())
>>> r = BM25Retriever.load(d, IndexConfig())
>>> [s.chunk_id for s in r.search(["aspirin"], k=5)[0]]
['a']
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from clinrag.config import IndexConfig
from clinrag.indexing.lexical import IDS, tokenize
from clinrag.retrieval.base import Scored

log = logging.getLogger(__name__)


class BM25Retriever:
    """Loads a bm25s index written by :func:`clinrag.indexing.lexical.build_bm25`."""

    name = "bm25"

    def __init__(self, model: object | None, chunk_ids: np.ndarray, config: IndexConfig) -> None:
        self._model = model
        self.chunk_ids = chunk_ids
        self.config = config
        self._pos: dict[str, int] | None = None

    @classmethod
    def load(cls, directory: Path, config: IndexConfig, *, mmap: bool = True) -> BM25Retriever:
        from clinrag.indexing.lexical import _bm25s

        bm25s = _bm25s()
        ids = np.load(directory / IDS, allow_pickle=False)
        model = bm25s.BM25.load(str(directory), mmap=mmap) if len(ids) else None
        return cls(model, ids, config)

    def __len__(self) -> int:
        return len(self.chunk_ids)

    def _positions(self) -> dict[str, int]:
        if self._pos is None:
            self._pos = {str(c): i for i, c in enumerate(self.chunk_ids.tolist())}
        return self._pos

    def search(self, queries: Sequence[str], k: int,
               allowed: frozenset[str] | None = None) -> list[list[Scored]]:
        n = len(self.chunk_ids)
        if self._model is None or n == 0 or k <= 0:
            return [[] for _ in queries]
        mask = None
        if allowed is not None:
            pos = self._positions()
            idx = [pos[c] for c in allowed if c in pos]
            if not idx:
                return [[] for _ in queries]
            mask = np.zeros(n, dtype=np.float32)
            mask[idx] = 1.0
        tokens = tokenize(queries, self.config)
        out: list[list[Scored]] = [[] for _ in queries]
        # bm25s cannot score an empty query; such queries get no hits.
        live = [i for i, t in enumerate(tokens) if t]
        if not live:
            return out
        kk = min(k, n)
        docs, scores = self._model.retrieve(  # type: ignore[attr-defined]
            [tokens[i] for i in live], k=kk, show_progress=False, weight_mask=mask, n_threads=0)
        for row, qi in enumerate(live):
            out[qi] = [Scored(str(self.chunk_ids[int(d)]), float(s))
                       for d, s in zip(docs[row], scores[row], strict=True) if s > 0]
        return out


__all__ = ["BM25Retriever"]
