"""The entity record clinrag stores per chunk, and its normalised keys for filtering.

Pure Python (no spaCy): indexing and retrieval read entities without loading a model.

>>> e = Entity("no pneumonia", "Disease", 3, 12, negated=True, normalized="pneumonia")
>>> Entity.from_dict(e.to_dict()) == e
True
>>> entity_keys([e, Entity("Metformin hydrochloride", "Chemical", 0, 23, normalized="metformin hydrochloride")])
['k:pneumonia', 'l:disease', 'k:metformin hydrochloride', 'k:metformin', 'k:hydrochloride', 'l:chemical', \
'k+:metformin hydrochloride', 'k+:metformin', 'k+:hydrochloride', 'l+:chemical']
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

#: assertion flags set by medspaCy ConText
ASSERTIONS = ("negated", "uncertain", "historical", "family", "hypothetical")
_WS = re.compile(r"\s+")
_EDGE = re.compile(r"^[\W_]+|[\W_]+$")
_STOP = frozenset({"the", "and", "with", "for", "from", "of", "in", "on", "to", "or", "a", "an", "by", "at"})


def normalize(text: str) -> str:
    """Lower-cased, whitespace-collapsed text without surrounding punctuation.

    >>> normalize("  Type 2  Diabetes, ")
    'type 2 diabetes'
    """
    return _EDGE.sub("", _WS.sub(" ", text.strip().lower()))


@dataclass(frozen=True)
class Entity:
    """One recognised entity: text, label, character span (in the chunk or text it came
    from), assertion flags, clinical section, normalised form and rule details (dose, unit...)."""

    text: str
    label: str
    start: int
    end: int
    negated: bool = False
    uncertain: bool = False
    historical: bool = False
    family: bool = False
    hypothetical: bool = False
    section: str | None = None
    normalized: str = ""
    details: tuple[tuple[str, str], ...] = field(default=())

    def __post_init__(self) -> None:
        if not self.normalized:
            object.__setattr__(self, "normalized", normalize(self.text))

    @property
    def assertions(self) -> tuple[str, ...]:
        """The names of the assertion flags that are set."""
        return tuple(a for a in ASSERTIONS if getattr(self, a))

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"text": self.text, "label": self.label, "start": self.start, "end": self.end,
                             "normalized": self.normalized}
        d.update({a: getattr(self, a) for a in ASSERTIONS})
        d["section"] = self.section
        d["details"] = dict(self.details)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Entity:
        return cls(text=str(d["text"]), label=str(d["label"]), start=int(d["start"]), end=int(d["end"]),
                   section=d.get("section"), normalized=str(d.get("normalized") or ""),
                   details=tuple((str(k), str(v)) for k, v in dict(d.get("details") or {}).items()),
                   **{a: bool(d.get(a, False)) for a in ASSERTIONS})


def term_keys(normalized: str) -> list[str]:
    """The normalised form and its content words (a filter on ``metformin`` matches
    ``metformin hydrochloride``).

    >>> term_keys("type 2 diabetes")
    ['type 2 diabetes', 'type', 'diabetes']
    """
    words = [w for w in re.split(r"[\s/,;()]+", normalized) if len(w) >= 3 and w not in _STOP and not w.isdigit()]
    return list(dict.fromkeys([normalized, *words]))


def entity_keys(entities: Iterable[Entity]) -> list[str]:
    """Filter keys of a chunk's entities: ``k:`` term, ``l:`` label; ``k+:``/``l+:`` for non-negated ones."""
    keys: list[str] = []
    ents = list(entities)
    for prefix, group in (("", ents), ("+", [e for e in ents if not e.negated])):
        for e in group:
            keys += [f"k{prefix}:{t}" for t in term_keys(e.normalized)]
            keys.append(f"l{prefix}:{e.label.lower()}")
    return list(dict.fromkeys(keys))


__all__ = ["ASSERTIONS", "Entity", "entity_keys", "normalize", "term_keys"]
