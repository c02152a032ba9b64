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

    Chunking: documents are split at section boundaries when ``split_sections`` is true,
    and any piece longer than ``chunk_max_words`` is cut into overlapping windows of
    ``chunk_max_words`` words with ``chunk_overlap_words`` words of overlap.
    """

    chunk_max_words: int = 180
    chunk_overlap_words: int = 30
    split_sections: bool = True
    bm25_stopwords: str = "en"
    bm25_stemmer: str | None = None
    bm25_k1: float = 1.5
    bm25_b: float = 0.75
    default_mode: str = "lexical"

    def __post_init__(self) -> None:
        if self.chunk_max_words < 8:
            raise ConfigError(f"chunk_max_words must be at least 8, got {self.chunk_max_words}")
        if not 0 <= self.chunk_overlap_words < self.chunk_max_words:
            raise ConfigError(
                "chunk_overlap_words must be >= 0 and smaller than chunk_max_words "
                f"(got {self.chunk_overlap_words} and {self.chunk_max_words})"
            )
        if self.default_mode not in SEARCH_MODES:
            raise ConfigError(f"default_mode must be one of {SEARCH_MODES}, got {self.default_mode!r}")

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


__all__ = ["SEARCH_MODES", "IndexConfig"]
