"""Build an index's first-stage retriever for a search mode (``lexical``, ``late`` or ``hybrid``).

:meth:`clinrag.Engine.retriever` caches what :func:`build_retriever` returns, per mode.

>>> import tempfile
>>> from clinrag import Document, Engine
>>> with Engine.create(tempfile.mkdtemp() + "/idx") as eng:
...     _ = eng.add([Document(id="d1", text="Metformin for type 2 diabetes.")])
...     type(build_retriever("lexical", eng.root, eng.manifest, store=lambda: eng.store,
...                          encoder=lambda: eng.encoder, late_params=eng.late_params, sub=eng.retriever)).__name__
'BM25Retriever'
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from clinrag.config import LateParams
from clinrag.errors import ConfigError
from clinrag.indexing.manifest import Manifest
from clinrag.retrieval.base import Retriever
from clinrag.retrieval.bm25 import BM25Retriever

if TYPE_CHECKING:
    from clinrag.indexing.encoders import TokenEncoder
    from clinrag.indexing.store import LanceStore


def build_retriever(mode: str, root: Path, manifest: Manifest, *, store: Callable[[], LanceStore],
                    encoder: Callable[[], TokenEncoder | None], late_params: LateParams,
                    sub: Callable[[str, LateParams], Retriever]) -> Retriever:
    """The retriever of ``mode`` over the index at ``root``; ``store`` and ``encoder`` give the open
    store and text encoder when needed, ``sub(mode, late_params)`` the (cached) retrievers that a
    hybrid or feedback retriever builds on."""
    config = manifest.config
    if mode == "lexical":
        if manifest.bm25_dir is None:
            raise ConfigError(f"{root} has no lexical index; add records to build it")
        return BM25Retriever.load(root / manifest.bm25_dir, config)
    if config.text_model is None:
        raise ConfigError(f"search mode {mode!r} needs a multi-vector text model, and {root} "
                          "was built without one; use --mode lexical or rebuild the index with --text-model")
    if mode == "late" and config.late_backend == "lancedb":
        from clinrag.retrieval.lance_mv import LanceMultiVectorRetriever

        return LanceMultiVectorRetriever(store().table("chunks"), encoder(), vector_column="vectors")
    if late_params.feedback_docs and mode in ("late", "hybrid"):
        if config.late_backend == "lancedb":
            raise ConfigError("pseudo-relevance feedback reads the compressed token vectors; the lancedb "
                              "late backend has none (use the default plaid backend)")
        from dataclasses import replace

        from clinrag.retrieval.feedback import FeedbackRetriever, PseudoFeedback
        from clinrag.retrieval.late import LateRetriever

        plain = replace(late_params, feedback_docs=0)
        late = sub("late", plain)
        if not isinstance(late, LateRetriever):  # pragma: no cover - the plaid backend builds one
            raise ConfigError(f"feedback needs the compressed late-interaction index, got {type(late).__name__}")
        return FeedbackRetriever(sub(mode, plain), late,
                                 PseudoFeedback(late_params.feedback_docs, late_params.feedback_weight))
    if mode == "late":
        if manifest.mv_dir is None or manifest.codec_dir is None:
            raise ConfigError(f"{root} has no multi-vector index yet; add records to build it")
        from clinrag.indexing.multivector import MultiVectorIndex, TokenCompressor
        from clinrag.retrieval.late import LateRetriever

        enc = encoder()
        if enc is None:  # pragma: no cover - text_model is set here
            raise ConfigError("no text model")
        comp = TokenCompressor.load(root / manifest.codec_dir)
        return LateRetriever(MultiVectorIndex.load(root / manifest.mv_dir), comp.codec, enc,
                             query_transform=comp.project if comp.projection is not None else None,
                             params=late_params)
    from clinrag.retrieval.hybrid import HybridRetriever

    w = config.hybrid_weight
    return HybridRetriever([sub("lexical", late_params), sub("late", late_params)], weights=[1 - w, w],
                           method=config.hybrid_method)


__all__ = ["build_retriever"]
