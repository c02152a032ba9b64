"""One process-wide cache of loaded models, so each encoder is loaded once.

>>> calls = []
>>> def load(name): calls.append(name); return object()
>>> a = get_model("demo", "x", load); b = get_model("demo", "x", load)
>>> a is b, calls
(True, ['x'])
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")
_CACHE: dict[tuple[str, str], Any] = {}
_LOCK = threading.Lock()


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


__all__ = ["clear", "get_model"]
