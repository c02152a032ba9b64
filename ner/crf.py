"""Linear-chain CRF over word-level emission scores, with IOB transition constraints.

A small torch module (no extra dependency) used as the output layer of the transformer token
classifier (:mod:`clinrag.ner.transformer`, ``crf=True``): training minimises the negative
log-likelihood of the gold tag path (forward algorithm), decoding takes the best path (Viterbi).
Transitions an IOB tagging can never make (``O -> I-X``, ``B-X -> I-Y``, start ``-> I-X``) are
forbidden by a fixed mask, so decoded paths are always well formed.

>>> import torch
>>> crf = LinearChainCRF(["O", "B-Disease", "I-Disease"])
>>> em = torch.tensor([[[0.0, 2.0, 0.0], [0.0, 0.0, 1.0], [3.0, 0.0, 0.0]]])
>>> crf.decode(em, torch.ones(1, 3, dtype=torch.bool))
[[1, 2, 0]]
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

FORBIDDEN = -10000.0
CRF_FILE = "clinrag_crf.pt"


def allowed_transitions(labels: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Boolean ``(trans[i, j]`` = tag j may follow tag i``, ``start[j]`` = tag j may begin)``.

    >>> t, s = allowed_transitions(["O", "B-X", "I-X"])
    >>> t.int().tolist(), s.int().tolist()
    ([[1, 1, 0], [1, 1, 1], [1, 1, 1]], [1, 1, 0])
    """
    n = len(labels)
    trans = torch.ones(n, n, dtype=torch.bool)
    start = torch.ones(n, dtype=torch.bool)
    for j, to in enumerate(labels):
        if not to.startswith("I-"):
            continue
        start[j] = False
        for i, frm in enumerate(labels):
            trans[i, j] = frm[2:] == to[2:] and frm[:2] in ("B-", "I-")
    return trans, start


class LinearChainCRF(nn.Module):
    """Transition scores between ``labels`` plus start/end scores; IOB-illegal moves masked."""

    def __init__(self, labels: Sequence[str]) -> None:
        super().__init__()
        self.labels = list(labels)
        n = len(self.labels)
        self.transitions = nn.Parameter(torch.zeros(n, n))
        self.start = nn.Parameter(torch.zeros(n))
        self.end = nn.Parameter(torch.zeros(n))
        trans_ok, start_ok = allowed_transitions(self.labels)
        self.register_buffer("trans_mask", torch.where(trans_ok, 0.0, FORBIDDEN))
        self.register_buffer("start_mask", torch.where(start_ok, 0.0, FORBIDDEN))

    def _scores(self) -> tuple[torch.Tensor, torch.Tensor]:
        trans_mask, start_mask = self.get_buffer("trans_mask"), self.get_buffer("start_mask")
        return self.transitions + trans_mask, self.start + start_mask

    def neg_log_likelihood(self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Mean over the batch of ``log Z - score(gold path)``.

        ``emissions`` (B, T, L) float, ``tags`` (B, T) long, ``mask`` (B, T) bool; every row's
        mask is a prefix of ones with at least one (rows of length 0 are ignored).
        """
        keep = mask[:, 0]
        if not bool(keep.all()):
            emissions, tags, mask = emissions[keep], tags[keep], mask[keep]
        if emissions.shape[0] == 0:
            return emissions.sum() * 0.0
        trans, start = self._scores()
        b, t, _ = emissions.shape
        tags = tags.masked_fill(~mask, 0)
        rows = torch.arange(b, device=emissions.device)
        # gold path score
        gold = start[tags[:, 0]] + emissions[rows, 0, tags[:, 0]]
        for i in range(1, t):
            step = trans[tags[:, i - 1], tags[:, i]] + emissions[rows, i, tags[:, i]]
            gold = gold + step * mask[:, i]
        last = tags[rows, mask.sum(1) - 1]
        gold = gold + self.end[last]
        # partition function (forward algorithm)
        alpha = start + emissions[:, 0]
        for i in range(1, t):
            nxt = torch.logsumexp(alpha.unsqueeze(2) + trans.unsqueeze(0), dim=1) + emissions[:, i]
            alpha = torch.where(mask[:, i : i + 1], nxt, alpha)
        log_z = torch.logsumexp(alpha + self.end, dim=1)
        return (log_z - gold).mean()

    @torch.no_grad()
    def decode(self, emissions: torch.Tensor, mask: torch.Tensor) -> list[list[int]]:
        """Best tag path of each row (Viterbi), as lists of the row's masked length."""
        trans, start = self._scores()
        b, t, _ = emissions.shape
        lengths = mask.sum(1).tolist()
        score = start + emissions[:, 0]
        back = []
        for i in range(1, t):
            cand = score.unsqueeze(2) + trans.unsqueeze(0)  # (B, from, to)
            best, arg = cand.max(dim=1)
            back.append(arg)
            score = torch.where(mask[:, i : i + 1], best + emissions[:, i], score)
        score = score + self.end
        paths: list[list[int]] = []
        for r in range(b):
            n = int(lengths[r])
            if n == 0:
                paths.append([])
                continue
            tag = int(score[r].argmax())
            path = [tag]
            for i in range(n - 1, 0, -1):
                tag = int(back[i - 1][r, tag])
                path.append(tag)
            paths.append(path[::-1])
        return paths

    def save(self, folder: str | Path) -> None:
        """Store the CRF next to a saved token classifier (``clinrag_crf.pt``)."""
        torch.save({"labels": self.labels, "state": self.state_dict()}, Path(folder) / CRF_FILE)

    @classmethod
    def load(cls, folder: str | Path) -> LinearChainCRF | None:
        """The CRF saved in ``folder``, or None when the folder holds a softmax-only model."""
        f = Path(folder) / CRF_FILE
        if not f.exists():
            return None
        data = torch.load(f, map_location="cpu", weights_only=True)
        crf = cls(data["labels"])
        crf.load_state_dict(data["state"])
        return crf

    def __repr__(self) -> str:
        return f"LinearChainCRF({json.dumps(self.labels)})"


def word_emissions(logits: torch.Tensor, first: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Gather the logits of each row's word-first sub-tokens into a left-aligned (B, W, L) tensor.

    ``first`` (B, T) bool marks the sub-token that carries each word's label; returns the
    emissions and their (B, W) mask.

    >>> lg = torch.arange(12.0).view(1, 4, 3)
    >>> em, m = word_emissions(lg, torch.tensor([[False, True, False, True]]))
    >>> em.tolist(), m.tolist()
    ([[[3.0, 4.0, 5.0], [9.0, 10.0, 11.0]]], [[True, True]])
    """
    counts = first.sum(1)
    w = max(1, int(counts.max())) if first.numel() else 1
    b, _, n_lab = logits.shape
    # position of each word-first sub-token among its row's words
    slot = (first.cumsum(1) - 1).clamp(min=0)
    em = logits.new_zeros(b, w, n_lab)
    rows = torch.arange(b, device=logits.device).unsqueeze(1).expand_as(first)
    em[rows[first], slot[first]] = logits[first]
    mask = torch.arange(w, device=logits.device).unsqueeze(0) < counts.unsqueeze(1)
    return em, mask
