"""clinrag: offline multimodal clinical retrieval and RAG.

The public API is importable from here; modules load on first use, so
``import clinrag`` stays fast and loads no model or index.

>>> import clinrag
>>> clinrag.Document(id="d1", text="Metformin 500 mg").kind
'document'
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "IndexConfig": "clinrag.config",
    "Chunk": "clinrag.data.schema",
    "Document": "clinrag.data.schema",
    "ImageRecord": "clinrag.data.schema",
    "Section": "clinrag.data.schema",
    "Engine": "clinrag.engine",
    "IndexInfo": "clinrag.engine",
    "ClinragError": "clinrag.errors",
    "InputError": "clinrag.errors",
    "Filters": "clinrag.indexing.filters",
    "WriteStats": "clinrag.indexing.writer",
    "Hit": "clinrag.retrieval.base",
}

if TYPE_CHECKING:
    from clinrag.config import IndexConfig
    from clinrag.data.schema import Chunk, Document, ImageRecord, Section
    from clinrag.engine import Engine, IndexInfo
    from clinrag.errors import ClinragError, InputError
    from clinrag.indexing.filters import Filters
    from clinrag.indexing.writer import WriteStats
    from clinrag.retrieval.base import Hit


def __getattr__(name: str) -> Any:
    if name == "__version__":
        from clinrag.indexing.manifest import clinrag_version

        return clinrag_version()
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'clinrag' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = [
    "Chunk", "ClinragError", "Document", "Engine", "Filters", "Hit", "ImageRecord", "IndexConfig", "IndexInfo",
    "InputError", "Section", "WriteStats", "__version__",
]
