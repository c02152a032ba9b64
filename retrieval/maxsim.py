"""Exact late-interaction (MaxSim) scoring in torch, on CPU or CUDA.

``score(q, d) = sum_i max_j q_i . d_j`` over the query's token vectors ``q_i`` and the
document's ``d_j``. Documents are given packed: all their token vectors in one
``(T, dim)`` tensor and ``offsets`` (``n_docs + 1``) marking where each one starts.

>>> import torch
>>> Q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
>>> D = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]])
>>> [round(x, 4) for x in maxsim_scores(Q, D, torch.tensor([0, 2, 3])).tolist()]
[1.8, 1.0]
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def maxsim_scores(Q: torch.Tensor, D: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """MaxSim of one query (``Lq x dim``) against packed documents; returns ``(n_docs,)``.

    A document with no token scores 0.
    """
    if int(offsets.numel()) <= 1:
        return torch.zeros(0, device=Q.device, dtype=torch.float32)
    return _per_token_max(Q.to(D.device, D.dtype), D, offsets).sum(0)


def maxsim_batch(queries: Sequence[torch.Tensor], D: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """MaxSim of several queries (each ``Lq_i x dim``) against packed documents: ``(n_queries, n_docs)``.

    Queries are padded into one matrix product; padded rows are masked out of the sum.
    """
    if not queries:
        return torch.zeros(0, int(offsets.numel()) - 1)
    lq = [int(q.shape[0]) for q in queries]
    Qp = torch.zeros(len(queries), max(lq), D.shape[1], device=D.device, dtype=D.dtype)
    for i, q in enumerate(queries):
        Qp[i, : lq[i]] = q.to(D.device, D.dtype)
    flat = Qp.reshape(-1, D.shape[1])
    scores = _per_token_max(flat, D, offsets)  # (B * Lmax, n_docs)
    mask = (torch.arange(max(lq), device=D.device)[None, :] < torch.tensor(lq, device=D.device)[:, None])
    scores = scores.reshape(len(queries), max(lq), -1) * mask[..., None]
    return scores.sum(1)


def _per_token_max(Q: torch.Tensor, D: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    return segment_max(Q @ D.T, offsets)


def segment_max(sims: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """Row-wise max of ``sims`` (``rows x T``) within each segment of columns: ``(rows, n_segments)``.

    Empty segments give 0.
    """
    n = int(offsets.numel()) - 1
    offsets = offsets.to(sims.device, torch.long)
    lengths = offsets[1:] - offsets[:-1]
    seg = torch.repeat_interleave(torch.arange(n, device=sims.device), lengths)
    out = torch.full((sims.shape[0], n), float("-inf"), device=sims.device, dtype=sims.dtype)
    out.scatter_reduce_(1, seg.unsqueeze(0).expand(sims.shape[0], -1), sims, reduce="amax", include_self=True)
    return torch.where(torch.isinf(out), torch.zeros_like(out), out).float()


def exhaustive_search(queries: Sequence[torch.Tensor], D: torch.Tensor, offsets: torch.Tensor,
                      k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-``k`` documents of each query by exact MaxSim: ``(scores, indices)``, each ``(n_queries, k)``."""
    scores = maxsim_batch(queries, D, offsets)
    k = min(k, scores.shape[1])
    top = torch.topk(scores, k, dim=1)
    return top.values, top.indices


__all__ = ["exhaustive_search", "maxsim_batch", "maxsim_scores", "segment_max"]
