"""Build the BM25 (bm25s) index of an index's chunks, as plain files in its own directory.

The directory holds bm25s's own files (sparse matrix ``.npy`` + vocab JSON),
``chunk_ids.npy`` (row order) and ``params.json``.

>>> import tempfile, pathlib
>>> d = pathlib.Path(tempfile.mkdtemp()) / "bm25"
>>> build_bm25(d, ["a", "b"], ["aspirin and heart disease", "soil bacteria"], IndexConfig())
2
>>> tokenize(["Aspirin lowers the risk"], IndexConfig())  # English stopwords and stemmer by default
[['aspirin', 'lower', 'risk']]
>>> tokenize(["Aspirin lowers the risk"], IndexConfig(bm25_stemmer=None))
[['aspirin', 'lowers', 'risk']]
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from clinrag.config import IndexConfig

log = logging.getLogger(__name__)
PARAMS = "params.json"
IDS = "chunk_ids.npy"


@functools.lru_cache(maxsize=4)
def _stemmer(language: str | None):  # noqa: ANN202 - PyStemmer object
    if not language:
        return None
    import Stemmer

    return Stemmer.Stemmer(language)


@functools.lru_cache(maxsize=1)
def _bm25s():  # noqa: ANN202 - the bm25s module
    """Import bm25s, which sets its own logger to DEBUG on import; quieten it to WARNING."""
    import bm25s

    logging.getLogger("bm25s").setLevel(logging.WARNING)
    return bm25s


def tokenize(texts: Sequence[str], config: IndexConfig) -> list[list[str]]:
    """Tokenise like the index does: lower-case words, stopwords removed, optional stemming."""
    bm25s = _bm25s()

    stop = config.bm25_stopwords or None
    out = bm25s.tokenize(list(texts), stopwords=stop, stemmer=_stemmer(config.bm25_stemmer),
                         return_ids=False, show_progress=False)
    return [list(t) for t in out]


def build_bm25(directory: Path, chunk_ids: Sequence[str], texts: Sequence[str], config: IndexConfig) -> int:
    """Index ``texts`` with bm25s into ``directory`` (created). Returns the number of rows."""
    bm25s = _bm25s()

    directory.mkdir(parents=True, exist_ok=False)
    if len(chunk_ids) != len(texts):
        raise ValueError("chunk_ids and texts differ in length")
    if texts:
        model = bm25s.BM25(k1=config.bm25_k1, b=config.bm25_b)
        model.index(tokenize(texts, config), show_progress=False)
        model.save(str(directory))
    width = max((len(c) for c in chunk_ids), default=1)
    np.save(directory / IDS, np.asarray(list(chunk_ids), dtype=f"<U{width}"), allow_pickle=False)
    (directory / PARAMS).write_text(json.dumps({
        "library": "bm25s", "version": bm25s.__version__, "k1": config.bm25_k1, "b": config.bm25_b,
        "stopwords": config.bm25_stopwords, "stemmer": config.bm25_stemmer, "rows": len(texts),
    }, indent=2))
    log.info("BM25 index of %d chunks written to %s", len(texts), directory)
    return len(texts)


def bm25_model_id() -> str:
    return f"bm25s-{_bm25s().__version__}"


__all__ = ["IDS", "PARAMS", "bm25_model_id", "build_bm25", "tokenize"]
