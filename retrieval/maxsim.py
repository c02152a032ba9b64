"""Exact late-interaction (MaxSim) scoring in torch, on CPU or CUDA.

``score(q, d) = sum_i max_j q_i . d_j`` over the query's token vectors ``q_i`` and the
document's ``d_j``. Documents are given packed: all their token vectors in one
``(T, dim)`` tensor and ``doc_offsets`` (``n_docs + 1``) marking where each one starts.
Similarities are computed in float16 on CUDA and float32 on CPU, over blocks of documents
so that at most ``max_elements`` similarities exist at once; scores are float32.

>>> import torch
>>> Q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
>>> D = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]])
>>> [round(x, 4) for x in maxsim_scores(Q, D, torch.tensor([0, 2, 3])).tolist()]
[1.8, 1.0]
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from clinrag.errors import ConfigError

DEFAULT_MAX_ELEMENTS = 1 << 25  # similarities held at once (128 MB in float32)
Queries = Sequence[torch.Tensor] | torch.Tensor


def compute_dtype(device: torch.device | str) -> torch.dtype:
    """float16 on CUDA (tensor cores), float32 elsewhere (CPU float16 matmuls are slow)."""
    return torch.float16 if torch.device(device).type == "cuda" else torch.float32


def maxsim_scores(Q: torch.Tensor, D: torch.Tensor, doc_offsets: torch.Tensor, *,
                  max_elements: int = DEFAULT_MAX_ELEMENTS) -> torch.Tensor:
    """MaxSim of one query (``Lq x dim``) against packed documents: float32 ``(n_docs,)``.

    A document with no token scores 0.
    """
    return maxsim_batch([Q], D, doc_offsets, max_elements=max_elements)[0]


def maxsim_batch(queries: Queries, D: torch.Tensor, doc_offsets: torch.Tensor, *,
                 query_mask: torch.Tensor | None = None,
                 max_elements: int = DEFAULT_MAX_ELEMENTS) -> torch.Tensor:
    """MaxSim of several queries against packed documents: float32 ``(n_queries, n_docs)``.

    ``queries`` is a list of ``(Lq_i, dim)`` tensors, or a padded ``(B, Lq, dim)`` tensor with
    ``query_mask`` (``(B, Lq)``, true for real tokens; all true when omitted). Only real query
    tokens are scored; the documents are processed in blocks of at most ``max_elements``
    similarities.

    >>> import torch
    >>> D = torch.eye(3)
    >>> Qp = torch.stack([torch.eye(3)[:2], torch.eye(3)[1:]])
    >>> maxsim_batch(Qp, D, torch.tensor([0, 1, 3]), query_mask=torch.tensor([[1, 1], [1, 0]])).tolist()
    [[1.0, 1.0], [0.0, 1.0]]
    """
    device = D.device
    dtype = compute_dtype(device)
    flat, owner, n_queries = _flatten_queries(queries, query_mask, D.shape[1], device, dtype)
    offs = _host_offsets(doc_offsets, D.shape[0])
    n_docs = len(offs) - 1
    out = torch.zeros(n_queries, n_docs, device=device, dtype=torch.float32)
    if n_docs == 0 or flat.shape[0] == 0:
        return out
    budget = max(1, int(max_elements) // flat.shape[0])  # document tokens per block
    start = 0
    while start < n_docs:
        stop = int(np.searchsorted(offs, offs[start] + budget, side="right")) - 1
        stop = min(max(stop, start + 1), n_docs)
        t0, t1 = int(offs[start]), int(offs[stop])
        local = torch.as_tensor(offs[start:stop + 1] - t0, device=device)
        sims = flat @ D[t0:t1].to(dtype).T
        per_token = segment_max(sims, local)  # (R, stop - start)
        out[:, start:stop].index_add_(0, owner, per_token)
        start = stop
    return out


def exhaustive_search(queries: Queries, D: torch.Tensor, doc_offsets: torch.Tensor, k: int, *,
                      query_mask: torch.Tensor | None = None,
                      max_elements: int = DEFAULT_MAX_ELEMENTS) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-``k`` documents of each query by exact MaxSim: ``(scores, indices)``, each ``(n_queries, k')``.

    ``k' = min(k, n_docs)``; rows are sorted best first.
    """
    if k <= 0:
        raise ConfigError(f"k must be positive, got {k}")
    scores = maxsim_batch(queries, D, doc_offsets, query_mask=query_mask, max_elements=max_elements)
    top = torch.topk(scores, min(k, scores.shape[1]), dim=1)
    return top.values, top.indices


def segment_max(sims: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """Row-wise max of ``sims`` (``rows x T``) within each segment of columns: float32 ``(rows, n_segments)``.

    ``offsets`` (``n_segments + 1``) bounds the segments; empty segments give 0.

    >>> import torch
    >>> segment_max(torch.tensor([[1.0, 3.0, 2.0]]), torch.tensor([0, 2, 2, 3])).tolist()
    [[3.0, 0.0, 2.0]]
    """
    n = int(offsets.numel()) - 1
    offsets = offsets.to(sims.device, torch.long)
    lengths = offsets[1:] - offsets[:-1]
    seg = torch.repeat_interleave(torch.arange(n, device=sims.device), lengths)
    out = torch.full((sims.shape[0], n), float("-inf"), device=sims.device, dtype=sims.dtype)
    out.scatter_reduce_(1, seg.unsqueeze(0).expand(sims.shape[0], -1), sims, reduce="amax", include_self=True)
    out = out.float()
    return out.masked_fill_(torch.isneginf(out), 0.0)


def _flatten_queries(queries: Queries, mask: torch.Tensor | None, dim: int, device: torch.device,
                     dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor, int]:
    """All real query tokens ``(R, dim)`` and the query each belongs to ``(R,)``."""
    if isinstance(queries, torch.Tensor):
        if queries.ndim != 3:
            raise ConfigError(f"padded queries must be (B, Lq, dim), got shape {tuple(queries.shape)}")
        B, L = queries.shape[:2]
        m = (torch.ones(B, L, dtype=torch.bool) if mask is None else mask.to(torch.bool)).to(queries.device)
        if m.shape != (B, L):
            raise ConfigError(f"query_mask must be {(B, L)}, got {tuple(m.shape)}")
        flat = queries[m]
        owner = torch.arange(B, device=queries.device).repeat_interleave(m.sum(1))
        n = B
    else:
        if mask is not None:
            raise ConfigError("query_mask is only for a padded (B, Lq, dim) tensor of queries")
        parts = [q.reshape(1, -1) if q.ndim == 1 else q for q in queries]
        if any(p.ndim != 2 or p.shape[1] != dim for p in parts):
            raise ConfigError(f"each query must be (Lq, dim={dim}), got {[tuple(p.shape) for p in parts][:3]}")
        n = len(parts)
        flat = torch.cat([p.to(device) for p in parts]) if parts else torch.zeros(0, dim)
        owner = torch.repeat_interleave(torch.arange(n), torch.tensor([len(p) for p in parts], dtype=torch.long))
    if flat.shape[-1] != dim:
        raise ConfigError(f"query vectors have dim {flat.shape[-1]}, documents {dim}")
    return flat.to(device, dtype), owner.to(device), n


def _host_offsets(doc_offsets: torch.Tensor | np.ndarray, n_tokens: int) -> np.ndarray:
    offs = (doc_offsets.detach().cpu().numpy() if isinstance(doc_offsets, torch.Tensor)
            else np.asarray(doc_offsets)).astype(np.int64)
    if offs.size == 0:
        return np.zeros(1, np.int64)
    if offs.ndim != 1 or offs[0] != 0 or offs[-1] > n_tokens or np.any(np.diff(offs) < 0):
        raise ConfigError(f"doc_offsets must rise from 0 to at most the {n_tokens} document tokens, "
                          f"got {offs[:3].tolist()}...{offs[-2:].tolist()}")
    return offs


__all__ = ["DEFAULT_MAX_ELEMENTS", "compute_dtype", "exhaustive_search", "maxsim_batch", "maxsim_scores",
           "segment_max"]
