"""Fusing the rankings of a question's formulations into one (ranx fusion) and picking snippets.

>>> fuse_rankings([[("a", 3.0), ("b", 2.0)], [("b", 9.0), ("c", 1.0)]], "rrf")[0][0]
'b'
"""

from __future__ import annotations

import re
import time
import warnings
from collections.abc import Sequence
from types import ModuleType
from typing import Any

from clinrag.errors import ConfigError

#: protocol name -> (ranx method, ranx normalisation)
RANX_METHODS = {"rrf": ("rrf", None), "combsum": ("sum", "min-max"), "combmnz": ("mnz", "min-max"),
                "max": ("max", "min-max"), "wsum": ("wsum", "min-max")}
RRF_K = 60


def fuse_rankings(rankings: Sequence[Sequence[tuple[str, float]]], method: str = "rrf") -> list[tuple[str, float]]:
    """Fuse ranked ``(doc_id, score)`` lists of one question, best first (ties: first seen first).

    Uses :func:`ranx.fuse`; a single non-empty list is scored the same way on its own.
    """
    if method not in RANX_METHODS:
        raise ConfigError(f"unknown fusion method {method!r}; choose one of {', '.join(RANX_METHODS)}")
    lists = [list(r) for r in rankings if r]
    if not lists:
        return []
    order: dict[str, int] = {}
    for lst in lists:
        for d, _ in lst:
            order.setdefault(d, len(order))
    if len(lists) == 1:
        fused = _single(lists[0], method)
    else:
        ranx_method, norm = RANX_METHODS[method]
        runs = [_ranx().Run({"q": _ranked_scores(lst)}) for lst in lists]
        params: dict[str, Any] = {"weights": [1.0 / len(runs)] * len(runs)} if ranx_method == "wsum" else {}
        if ranx_method == "rrf":
            params["k"] = RRF_K
        with warnings.catch_warnings():  # numba's uint64 -> int64 cast notices inside ranx
            warnings.simplefilter("ignore")
            fused = dict(_ranx().fuse(runs, norm=norm, method=ranx_method, params=params).to_dict()["q"])
    return sorted(((d, float(s)) for d, s in fused.items()), key=lambda kv: (-kv[1], order[kv[0]]))


def _ranx() -> ModuleType:
    try:
        import ranx
    except ImportError as exc:  # pragma: no cover - ranx is a core dependency
        from clinrag.errors import MissingDependencyError

        raise MissingDependencyError("ranx", "all", "fusion") from exc
    return ranx


def warm_up(method: str = "rrf") -> float:
    """Compile ranx's numba kernels once (tens of seconds on a busy CPU); returns the seconds spent."""
    t0 = time.perf_counter()
    fuse_rankings([[("a", 2.0), ("b", 1.0)], [("b", 2.0), ("c", 1.0)]], method)
    return time.perf_counter() - t0


def _ranked_scores(lst: Sequence[tuple[str, float]]) -> dict[str, float]:
    """Scores that keep the list's order even where the retriever tied (ranx ranks by score)."""
    n = len(lst)
    return {d: float(n - i) for i, (d, _) in enumerate(lst)} if _has_ties(lst) else {d: float(s) for d, s in lst}


def _has_ties(lst: Sequence[tuple[str, float]]) -> bool:
    return len({s for _, s in lst}) < len(lst)


def _single(lst: Sequence[tuple[str, float]], method: str) -> dict[str, float]:
    if method == "rrf":
        return {d: 1.0 / (RRF_K + r) for r, (d, _) in enumerate(lst, 1)}
    hi, lo = max(s for _, s in lst), min(s for _, s in lst)
    return {d: (s - lo) / (hi - lo) if hi > lo else 1.0 for d, s in lst}


_SENT = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9(\[])")
_WORD = re.compile(r"[a-z0-9]+")
_STOP = frozenset("a an and the of in on for with to at by from or as is are was were be this that these those "
                  "it its than not no".split())


def _stems(text: str) -> set[str]:
    return {w[:6] for w in _WORD.findall(text.lower()) if w not in _STOP and len(w) > 1}


def best_snippet(text: str, queries: Sequence[str], max_chars: int = 300) -> str:
    """The sentence of ``text`` sharing most words (6-letter prefixes) with the ``queries``.

    >>> best_snippet("Background text. Metformin lowered HbA1c in adults. Done.", ["metformin adults"])
    'Metformin lowered HbA1c in adults.'
    """
    sentences = [s.strip() for s in _SENT.split(" ".join(text.split())) if s.strip()]
    if not sentences:
        return ""
    q = set().union(*(_stems(x) for x in queries)) if queries else set()
    best = max(range(len(sentences)), key=lambda i: (len(_stems(sentences[i]) & q), -i))
    s = sentences[best]
    return s if len(s) <= max_chars else s[: max_chars - 1].rsplit(" ", 1)[0] + "…"


__all__ = ["RANX_METHODS", "best_snippet", "fuse_rankings", "warm_up"]
