"""Late-interaction (ColBERT-style) retrieval over a PLAID-style compressed index.

Search, per query:

1. encode the query into token vectors ``Q`` (``Lq x dim``);
2. score ``Q`` against all centroids (FAISS inner product; GPU FAISS when installed) and take
   the ``nprobe`` best centroids of each query token;
3. candidates = the chunks in those centroids' inverted lists, restricted to ``allowed``
   (filters). If fewer than ``k`` remain and the filter admits more, every admitted chunk
   becomes a candidate, so a filtered search never returns fewer than ``k`` hits when ``k``
   chunks match;
4. centroid interaction (optional pruning): an approximate MaxSim from centroid scores alone
   keeps the best ``ncandidates`` chunks;
5. exact MaxSim on the decompressed token vectors of those chunks (torch, CPU or CUDA).

``exhaustive=True`` skips 2-4 and scores every (admitted) chunk exactly: the reference for
measuring what the approximate path loses.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import numpy as np
import torch

from clinrag.config import LateParams
from clinrag.indexing.codec import ResidualCodec
from clinrag.indexing.encoders import TokenEncoder
from clinrag.indexing.multivector import MultiVectorIndex
from clinrag.retrieval.base import Scored
from clinrag.retrieval.maxsim import maxsim_scores, segment_max

log = logging.getLogger(__name__)


class LateRetriever:
    """Multi-vector retriever: FAISS over centroids + inverted lists + exact MaxSim."""

    name = "late"

    def __init__(self, mv: MultiVectorIndex, codec: ResidualCodec, encoder: TokenEncoder, *,
                 params: LateParams | None = None, device: str | None = None,
                 query_transform: Callable[[np.ndarray], np.ndarray] | None = None) -> None:
        self.mv = mv
        self.query_transform = query_transform
        self.codec = codec
        self.encoder = encoder
        self.params = params or LateParams()
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self._pos: dict[str, int] | None = None
        self._centroids = torch.as_tensor(np.asarray(codec.centroids, dtype=np.float32), device=self.device)

    def _positions(self) -> dict[str, int]:
        if self._pos is None:
            self._pos = {str(c): i for i, c in enumerate(self.mv.chunk_ids.tolist())}
        return self._pos

    def allowed_rows(self, allowed: frozenset[str] | None) -> np.ndarray | None:
        if allowed is None:
            return None
        pos = self._positions()
        return np.fromiter(sorted(pos[c] for c in allowed if c in pos), dtype=np.int64)

    def search(self, queries: Sequence[str], k: int, allowed: frozenset[str] | None = None) -> list[list[Scored]]:
        if self.mv.n_chunks == 0 or k <= 0:
            return [[] for _ in queries]
        rows_allowed = self.allowed_rows(allowed)
        if rows_allowed is not None and len(rows_allowed) == 0:
            return [[] for _ in queries]
        qvecs = self.encoder.encode_queries(list(queries))
        if self.query_transform is not None:
            qvecs = [self.query_transform(q) for q in qvecs]
        return [self.search_vectors(q, k, rows_allowed) for q in qvecs]

    def search_vectors(self, q: np.ndarray, k: int, rows_allowed: np.ndarray | None = None) -> list[Scored]:
        """Search with an encoded query (``Lq x dim``)."""
        Q = torch.as_tensor(np.asarray(q, dtype=np.float32), device=self.device)
        p = self.params
        if p.exhaustive:
            rows = rows_allowed if rows_allowed is not None else np.arange(self.mv.n_chunks, dtype=np.int64)
        else:
            rows = self._candidates(Q, rows_allowed, k)
        if len(rows) == 0:
            return []
        scores = self._exact(Q, rows)
        top = torch.topk(scores, min(k, len(rows)))
        ids = self.mv.chunk_ids
        return [Scored(str(ids[rows[i]]), float(s)) for s, i in zip(top.values.tolist(), top.indices.tolist(),
                                                                     strict=True)]

    # -- candidate generation -----------------------------------------------------------------------
    def _candidates(self, Q: torch.Tensor, rows_allowed: np.ndarray | None, k: int) -> np.ndarray:
        p = self.params
        cscores = Q @ self._centroids.T  # (Lq, C)
        nprobe = min(p.nprobe, cscores.shape[1])
        probe = torch.topk(cscores, nprobe, dim=1).indices.unique().cpu().numpy()
        indptr, ivf = self.mv.ivf_indptr, self.mv.ivf_rows
        parts = [ivf[indptr[c]:indptr[c + 1]] for c in probe]
        rows = np.unique(np.concatenate(parts)).astype(np.int64) if parts else np.zeros(0, np.int64)
        if rows_allowed is not None:
            rows = np.intersect1d(rows, rows_allowed, assume_unique=True)
            if len(rows) < k:  # the filter admits few of the probed chunks: score all admitted
                rows = rows_allowed
        keep_n = p.candidates(k)
        if p.centroid_pruning and len(rows) > keep_n:
            approx = self._centroid_interaction(cscores, rows)
            keep = torch.topk(approx, keep_n).indices.cpu().numpy()
            rows = rows[np.sort(keep)]
        return rows

    def _centroid_interaction(self, cscores: torch.Tensor, rows: np.ndarray) -> torch.Tensor:
        """Approximate MaxSim with each token replaced by its centroid (PLAID's stage 2-3)."""
        tok, local = self.mv.token_rows(rows)
        codes = torch.as_tensor(np.asarray(self.mv.codes[tok], dtype=np.int64), device=self.device)
        sims = cscores[:, codes]  # (Lq, T)
        return segment_max(sims, torch.as_tensor(local, device=self.device)).sum(0)

    # -- exact scoring ------------------------------------------------------------------------------
    def _exact(self, Q: torch.Tensor, rows: np.ndarray) -> torch.Tensor:
        out = []
        lengths = self.mv.offsets[rows + 1] - self.mv.offsets[rows]
        start = 0
        while start < len(rows):
            # a block of chunks holding at most block_tokens tokens (at least one chunk)
            csum = np.cumsum(lengths[start:])
            stop = start + max(1, int(np.searchsorted(csum, self.params.block_tokens, side="right")))
            block = rows[start:stop]
            tok, local = self.mv.token_rows(block)
            D = self.codec.decompress(np.asarray(self.mv.codes[tok]), np.asarray(self.mv.residuals[tok]),
                                      device=self.device)
            out.append(maxsim_scores(Q.to(D.dtype), D, torch.as_tensor(local, device=self.device)).float())
            start = stop
        return torch.cat(out)


__all__ = ["LateRetriever"]
