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
   keeps the best ``ncandidates`` chunks. When the candidates are many more than that (large
   indexes: ``prefilter`` times ``ncandidates``), a cheaper approximation read off the probed
   inverted lists alone first keeps ``prefilter * ncandidates`` of them (PLAID's staged pruning),
   so the cost follows the probed lists, not every candidate's tokens;
5. exact MaxSim on the decompressed token vectors of those chunks (torch, CPU or CUDA).

Many queries at once (:meth:`LateRetriever.search_batch_vectors`, used by ``search`` and so
by ``Engine.search_batch``): the queries are encoded in one batch, and step 5 decompresses
each chunk of the union of the candidates once and scores it for every query that has it as a
candidate; the hits are the same as one query at a time.

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
from clinrag.retrieval.maxsim import maxsim_batch, maxsim_scores, segment_max

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
        """Top ``k`` chunks of each query: queries encoded in one batch, scored by :meth:`search_batch_vectors`."""
        if self.mv.n_chunks == 0 or k <= 0:
            return [[] for _ in queries]
        rows_allowed = self.allowed_rows(allowed)
        if rows_allowed is not None and len(rows_allowed) == 0:
            return [[] for _ in queries]
        qvecs = self.encoder.encode_queries(list(queries))
        if self.query_transform is not None:
            qvecs = [self.query_transform(q) for q in qvecs]
        return self.search_batch_vectors(qvecs, k, rows_allowed)

    def search_vectors(self, q: np.ndarray, k: int, rows_allowed: np.ndarray | None = None) -> list[Scored]:
        """Search with one encoded query (``Lq x dim``)."""
        return self.search_batch_vectors([q], k, rows_allowed)[0]

    def search_batch_vectors(self, queries: Sequence[np.ndarray], k: int,
                             rows_allowed: np.ndarray | None = None) -> list[list[Scored]]:
        """Search with many encoded queries at once; same hits as :meth:`search_vectors` on each.

        Each query picks its own candidates (its centroid scores computed exactly as in a single
        search). Every chunk in the union of the candidates is decompressed
        once, block by block, and scored for all the queries that have it as a candidate.
        """
        if not len(queries) or self.mv.n_chunks == 0 or k <= 0:
            return [[] for _ in queries]
        Qs = [torch.as_tensor(np.asarray(q, dtype=np.float32), device=self.device) for q in queries]
        if self.params.exhaustive:
            every = rows_allowed if rows_allowed is not None else np.arange(self.mv.n_chunks, dtype=np.int64)
            cands = [every] * len(Qs)
        else:
            # one product per query, not one for all: a product's rounding depends on its shape, and
            # near-ties between centroids or chunks must break the same way as in a single search
            cands = [self._candidates(q @ self._centroids.T, rows_allowed, k) for q in Qs]
        scores = self._exact_batch(Qs, cands)
        ids = self.mv.chunk_ids
        out: list[list[Scored]] = []
        for rows, sc in zip(cands, scores, strict=True):
            if len(rows) == 0:
                out.append([])
                continue
            top = torch.topk(sc, min(k, len(rows)))
            out.append([Scored(str(ids[rows[i]]), float(s))
                        for s, i in zip(top.values.tolist(), top.indices.tolist(), strict=True)])
        return out

    def mean_vectors(self, chunk_ids: Sequence[str]) -> dict[str, torch.Tensor]:
        """The normalised mean of each chunk's (decompressed) token vectors, for feedback."""
        pos = self._positions()
        rows = np.asarray(sorted({pos[c] for c in chunk_ids if c in pos}), dtype=np.int64)
        if not len(rows):
            return {}
        tok, local = self.mv.token_rows(rows)
        D = self.codec.decompress(np.asarray(self.mv.codes[tok]), np.asarray(self.mv.residuals[tok]),
                                  device=self.device).float()
        seg = torch.repeat_interleave(torch.arange(len(rows), device=self.device),
                                      torch.as_tensor(np.diff(local), device=self.device))
        sums = torch.zeros(len(rows), D.shape[1], device=self.device).index_add_(0, seg, D)
        means = torch.nn.functional.normalize(sums, dim=-1).cpu()
        ids = self.mv.chunk_ids
        return {str(ids[r]): means[i] for i, r in enumerate(rows.tolist())}

    # -- candidate generation -----------------------------------------------------------------------
    def _candidates(self, cscores: torch.Tensor, rows_allowed: np.ndarray | None, k: int) -> np.ndarray:
        """Sorted candidate rows of one query from its tokens' centroid scores ``cscores`` (``Lq x C``)."""
        p = self.params
        nprobe = min(p.nprobe, cscores.shape[1])
        top = torch.topk(cscores, nprobe, dim=1)
        probe = top.indices.unique().cpu().numpy()
        indptr, ivf = self.mv.ivf_indptr, self.mv.ivf_rows
        parts = [ivf[indptr[c]:indptr[c + 1]] for c in probe]
        rows = np.unique(np.concatenate(parts)).astype(np.int64) if parts else np.zeros(0, np.int64)
        everything = False
        if rows_allowed is not None:
            rows = np.intersect1d(rows, rows_allowed, assume_unique=True)
            if len(rows) < k:  # the filter admits few of the probed chunks: score all admitted
                rows, everything = rows_allowed, True
        keep_n = p.candidates(k)
        if not p.centroid_pruning or len(rows) <= keep_n:
            return rows
        if p.prefilter and not everything and len(rows) > p.prefilter * keep_n:
            rows = rows[np.sort(self._ivf_prefilter(top.values, top.indices, rows, p.prefilter * keep_n))]
        approx = self._centroid_interaction(cscores, rows)
        keep = torch.topk(approx, keep_n).indices.cpu().numpy()
        return rows[np.sort(keep)]

    def _ivf_prefilter(self, values: torch.Tensor, cents: torch.Tensor, rows: np.ndarray, n: int) -> np.ndarray:
        """Positions in ``rows`` of the ``n`` best chunks by an approximate MaxSim read off the inverted lists.

        Token ``i`` of the query scores a chunk by its best probed centroid that the chunk uses
        (``values[i, j]`` for centroid ``cents[i, j]``); a token none of whose probed centroids the
        chunk uses gets the token's lowest probed score (an upper bound, as XTR imputes missing
        similarities). The cost is the length of the probed lists, not the chunks' token count,
        so it stays cheap when millions of chunks are candidates.
        """
        indptr, ivf = self.mv.ivf_indptr, self.mv.ivf_rows
        lq, npr = cents.shape
        c = cents.cpu().numpy().ravel()
        lens = (indptr[c + 1] - indptr[c]).astype(np.int64)
        entries = np.concatenate([ivf[indptr[x]:indptr[x + 1]] for x in c])
        pos = np.searchsorted(rows, entries)  # entries outside ``rows`` (filtered out) are dropped
        pos_ok = pos < len(rows)
        pos_ok[pos_ok] = rows[pos[pos_ok]] == entries[pos_ok]
        token = np.repeat(np.arange(lq, dtype=np.int64).repeat(npr), lens)
        flat = torch.as_tensor(token[pos_ok] * len(rows) + pos[pos_ok], device=self.device)
        v = values.float().reshape(-1).repeat_interleave(torch.as_tensor(lens, device=self.device))
        fill = values.float().min(dim=1).values  # (Lq,)
        S = fill[:, None].repeat(1, len(rows)).reshape(-1)
        S.scatter_reduce_(0, flat, v[torch.as_tensor(pos_ok, device=self.device)], reduce="amax")
        approx = S.reshape(lq, len(rows)).sum(0)
        return torch.topk(approx, min(n, len(rows))).indices.cpu().numpy()

    def _centroid_interaction(self, cscores: torch.Tensor, rows: np.ndarray) -> torch.Tensor:
        """Approximate MaxSim with each token replaced by its centroid (PLAID's stage 2-3)."""
        tok, local = self.mv.token_rows(rows)
        codes = torch.as_tensor(np.asarray(self.mv.codes[tok], dtype=np.int64), device=self.device)
        sims = cscores[:, codes]  # (Lq, T)
        return segment_max(sims, torch.as_tensor(local, device=self.device)).sum(0)

    # -- exact scoring ------------------------------------------------------------------------------
    def _exact_batch(self, Qs: Sequence[torch.Tensor], cands: Sequence[np.ndarray]) -> list[torch.Tensor]:
        """Exact MaxSim of each query against its own candidate rows (each sorted, unique).

        The union of the candidates is decompressed in blocks of at most ``block_tokens``
        tokens, each chunk once. In a block, the queries whose candidates cover at least half
        of the block's chunks are scored together by one batched MaxSim over the whole block;
        the others against their own chunks' tokens only (gathered from the block).
        """
        out = [torch.zeros(len(c), dtype=torch.float32, device=self.device) for c in cands]
        nonempty = [c for c in cands if len(c)]
        if not nonempty:
            return out
        union = nonempty[0] if all(c is nonempty[0] for c in nonempty) else np.unique(np.concatenate(nonempty))
        lengths = self.mv.offsets[union + 1] - self.mv.offsets[union]
        start = 0
        while start < len(union):
            # a block of chunks holding at most block_tokens tokens (at least one chunk)
            csum = np.cumsum(lengths[start:])
            stop = start + max(1, int(np.searchsorted(csum, self.params.block_tokens, side="right")))
            block = union[start:stop]
            tok, local = self.mv.token_rows(block)
            D = self.codec.decompress(np.asarray(self.mv.codes[tok]), np.asarray(self.mv.residuals[tok]),
                                      device=self.device)
            dense: list[tuple[int, int, int, np.ndarray]] = []
            for qi, rows in enumerate(cands):
                a = int(np.searchsorted(rows, block[0], side="left"))
                b = int(np.searchsorted(rows, block[-1], side="right"))
                if a == b:
                    continue
                where = np.searchsorted(block, rows[a:b])  # positions of this query's chunks in the block
                if 2 * (b - a) >= len(block):
                    dense.append((qi, a, b, where))
                    continue
                idx, sub = _ranges(local[where], local[where + 1] - local[where])
                Dq = D[torch.as_tensor(idx, device=self.device)]
                out[qi][a:b] = maxsim_scores(Qs[qi].to(D.dtype), Dq, torch.as_tensor(sub, device=self.device))
            if dense:
                S = maxsim_batch([Qs[qi].to(D.dtype) for qi, *_ in dense], D,
                                 torch.as_tensor(local, device=self.device))
                for j, (qi, a, b, where) in enumerate(dense):
                    out[qi][a:b] = S[j, torch.as_tensor(where, device=self.device)]
            start = stop
        return out


def _ranges(starts: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``starts[i] + 0..lengths[i]`` concatenated, and the offsets of each range in them."""
    local = np.zeros(len(starts) + 1, dtype=np.int64)
    np.cumsum(lengths, out=local[1:])
    idx = np.repeat(np.asarray(starts, dtype=np.int64) - local[:-1], lengths) + np.arange(local[-1], dtype=np.int64)
    return idx, local


__all__ = ["LateRetriever"]
