"""Configuration of an index: what is stored in its manifest and checked on open.

>>> cfg = IndexConfig(chunk_max_words=120)
>>> IndexConfig.from_dict(cfg.to_dict()) == cfg
True
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from clinrag.errors import ConfigError

SEARCH_MODES = ("lexical", "late", "hybrid")


@dataclass(frozen=True)
class IndexConfig:
    """Build settings of an index. Stored in ``manifest.json``; unknown keys are rejected.

    Multi-vector: ``text_model`` names the token encoder (``"default"`` is the packaged
    all-MiniLM-L6-v2; any Hugging Face id or local path, a colbert-ai or PyLate checkpoint);
    ``dim`` reduces token vectors by a PCA projection trained at the first build; token
    vectors are stored as centroid id + ``nbits``-per-dimension residual; ``n_centroids``
    defaults to PLAID's rule (a power of two near ``16 * sqrt(tokens)``). ``hybrid`` search fuses
    min-max normalised scores, ``hybrid_weight`` for late interaction and the rest for BM25
    (0.8: on the PubMedQA tasks BM25 adds little and equal weights lose to late interaction alone).
    BM25 tokens are lower-cased words without English stopwords, stemmed with PyStemmer's
    ``bm25_stemmer`` (``"english"``; ``None`` turns stemming off: on the PubMedQA MeSH-topic task
    stemming raises BM25's nDCG@10 from 0.392 to 0.422).
    ``late_backend="lancedb"`` stores uncompressed token vectors in LanceDB's native multivector
    column and lets LanceDB score MaxSim (flat, exact, slower, larger), for comparison.

    Images: ``image_model`` names a CLIP-style image-text model (see
    :mod:`clinrag.indexing.image_encoders`: ``hf-hub:ORG/REPO``, ``ARCH@TAG_OR_CHECKPOINT``, a saved
    open_clip or transformers folder); image embeddings are stored in the images table and
    searched with FAISS. Without one, images are indexed by metadata and linked notes only.

    Chunking: documents are split at section boundaries when ``split_sections`` is true,
    and any piece longer than ``chunk_max_words`` is cut into overlapping windows of
    ``chunk_max_words`` words with ``chunk_overlap_words`` words of overlap.

    NER: with ``ner_model`` (``"default"``: clinrag's packaged clinical pipeline, or any spaCy
    pipeline name/path) every chunk's entities, with assertion flags, are stored at index time
    and can be filtered on and used to boost search (see :mod:`clinrag.ner`).
    """

    chunk_max_words: int = 180
    chunk_overlap_words: int = 30
    split_sections: bool = True
    bm25_stopwords: str = "en"
    bm25_stemmer: str | None = "english"
    bm25_k1: float = 1.5
    bm25_b: float = 0.75
    default_mode: str | None = None
    text_model: str | None = None
    dim: int | None = None
    nbits: int = 2
    n_centroids: int | None = None
    late_backend: str = "plaid"
    hybrid_weight: float = 0.8
    hybrid_method: str = "wsum"
    ner_model: str | None = None
    image_model: str | None = None

    def __post_init__(self) -> None:
        if self.nbits not in (1, 2, 4):
            raise ConfigError(f"nbits must be 1, 2 or 4, got {self.nbits}")
        if self.late_backend not in ("plaid", "lancedb"):
            raise ConfigError(f"late_backend must be 'plaid' or 'lancedb', got {self.late_backend!r}")
        if self.late_backend == "lancedb" and self.dim is not None:
            raise ConfigError("late_backend 'lancedb' stores the encoder's vectors as they are: drop dim")
        if not 0.0 <= self.hybrid_weight <= 1.0:
            raise ConfigError(f"hybrid_weight (the late-interaction share) must be in [0, 1], got {self.hybrid_weight}")
        if self.hybrid_method not in ("wsum", "rrf"):
            raise ConfigError(f"hybrid_method must be 'wsum' or 'rrf', got {self.hybrid_method!r}")
        if self.dim is not None and self.dim < 8:
            raise ConfigError(f"dim must be at least 8, got {self.dim}")
        if self.default_mode not in (None, "lexical") and not self.text_model:
            raise ConfigError(f"default_mode {self.default_mode!r} needs a text_model (a multi-vector encoder)")
        if self.chunk_max_words < 8:
            raise ConfigError(f"chunk_max_words must be at least 8, got {self.chunk_max_words}")
        if not 0 <= self.chunk_overlap_words < self.chunk_max_words:
            raise ConfigError(
                "chunk_overlap_words must be >= 0 and smaller than chunk_max_words "
                f"(got {self.chunk_overlap_words} and {self.chunk_max_words})"
            )
        if self.image_model is not None and not self.image_model.strip():
            raise ConfigError("image_model must be a model name or path, or None")
        if self.default_mode is not None and self.default_mode not in SEARCH_MODES:
            raise ConfigError(f"default_mode must be one of {SEARCH_MODES}, got {self.default_mode!r}")

    @property
    def mode(self) -> str:
        """The search mode used when none is given: hybrid with a text model, else lexical."""
        return self.default_mode or ("hybrid" if self.text_model else "lexical")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> IndexConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(
                f"unknown index setting(s) {unknown}; this clinrag knows {sorted(known)}. "
                "Was the index built by a newer clinrag?"
            )
        return cls(**data)

    def with_(self, **changes: Any) -> IndexConfig:
        """A copy with some settings changed."""
        return replace(self, **changes)


@dataclass(frozen=True)
class LateParams:
    """Search-time settings of late-interaction retrieval (not stored; may differ per query).

    ``nprobe`` centroids are probed per query token; at most ``ncandidates`` chunks survive
    centroid-interaction pruning and are scored exactly (default as colbert-ai's PLAID, which
    decompresses the best quarter of its ``ndocs``: 64 for k <= 10, 256 for k <= 100, else 4k).
    When more than ``prefilter * ncandidates`` chunks are probed, a cheaper score read off the
    inverted lists keeps that many first (0: off). ``exhaustive`` scores every admitted chunk
    exactly.
    ``feedback_docs`` > 0 turns on pseudo-relevance feedback for ``late`` and ``hybrid`` search
    (:mod:`clinrag.retrieval.feedback`): the top 100 chunks are re-scored by their closeness to the
    ``feedback_docs`` best, with ``feedback_weight``.
    """

    nprobe: int = 8
    ncandidates: int | None = None
    centroid_pruning: bool = True
    prefilter: int = 8
    exhaustive: bool = False
    block_tokens: int = 1 << 20
    feedback_docs: int = 0
    feedback_weight: float = 1.0

    def __post_init__(self) -> None:
        if self.nprobe < 1 or (self.ncandidates is not None and self.ncandidates < 1):
            raise ConfigError("nprobe and ncandidates must be positive")
        if self.prefilter < 0:
            raise ConfigError(f"prefilter must be >= 0 (0 turns it off), got {self.prefilter}")
        if self.feedback_docs < 0 or self.feedback_weight < 0:
            raise ConfigError("feedback_docs and feedback_weight must be >= 0")

    def candidates(self, k: int) -> int:
        """How many chunks survive pruning for a top-``k`` search (never fewer than ``k``)."""
        if self.ncandidates is not None:
            return max(self.ncandidates, k)
        return 64 if k <= 10 else 256 if k <= 100 else 4 * k


__all__ = ["SEARCH_MODES", "IndexConfig", "LateParams"]
