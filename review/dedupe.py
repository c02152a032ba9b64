"""De-duplication of retrieved records: same PubMed id, same DOI, or near-duplicate titles.

Records come best first; a duplicate is merged into the first (best-ranked) record of its
group, which lists the merged ids and why, so nothing disappears silently.

>>> recs = [Key("a", pmid="1", title="Metformin and lactic acidosis: a cohort study"),
...         Key("b", doi="10.1/X", title="Other"),
...         Key("c", pmid="1"),
...         Key("d", doi="https://doi.org/10.1/x"),
...         Key("e", title="Metformin and lactic acidosis - a cohort study.")]
>>> [(g.keep, g.merged) for g in group_duplicates(recs)]
[('a', (('c', 'same PubMed id 1'), ('e', 'near-duplicate title'))), ('b', (('d', 'same DOI 10.1/x'),))]
"""

from __future__ import annotations

import re
import unicodedata
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from difflib import SequenceMatcher
from typing import Any

#: Titles with fewer words are too generic to call duplicates by title alone.
MIN_TITLE_WORDS = 4
TITLE_RATIO = 0.92
_STOP = frozenset("a an and the of in on for with to at by from or as is are was were vs versus".split())


@dataclass(frozen=True)
class Key:
    """The identifying fields of one record."""

    id: str
    pmid: str | None = None
    doi: str | None = None
    title: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "doi", normalize_doi(self.doi))


@dataclass(frozen=True)
class Group:
    """A kept record and the ``(id, reason)`` of each duplicate merged into it."""

    keep: str
    merged: tuple[tuple[str, str], ...] = ()


def normalize_doi(doi: Any) -> str | None:
    """Lower-case DOI without resolver prefix (``https://doi.org/``, ``doi:``).

    >>> normalize_doi(" DOI: 10.1000/ABC ")
    '10.1000/abc'
    """
    if doi is None:
        return None
    s = str(doi).strip().lower()
    s = re.sub(r"^(https?://(dx\.)?doi\.org/|doi:\s*)", "", s)
    return s or None


def normalize_title(title: str) -> str:
    """Lower-case, accents and punctuation removed, whitespace collapsed."""
    s = unicodedata.normalize("NFKD", title)
    s = "".join(ch for ch in s if not unicodedata.combining(ch)).lower()
    return " ".join(re.sub(r"[^\w\s]", " ", s).split())


def key_of(doc_id: str, title: str, metadata: Mapping[str, Any]) -> Key:
    """The :class:`Key` of a record: PubMed id from ``metadata['pmid']`` or a ``pubmed:`` id prefix."""
    pmid = metadata.get("pmid") or metadata.get("pubmed_id")
    if pmid is None and doc_id.lower().startswith(("pubmed:", "pmid:")):
        pmid = doc_id.split(":", 1)[1]
    return Key(doc_id, str(pmid).strip() if pmid not in (None, "") else None, normalize_doi(metadata.get("doi")),
               title)


def group_duplicates(keys: Sequence[Key]) -> list[Group]:
    """Group ``keys`` (best first) into kept records with their duplicates, in the input order."""
    parent = list(range(len(keys)))
    reason: dict[int, str] = {}

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def union(i: int, j: int, why: str) -> None:
        a, b = find(i), find(j)
        if a == b:
            return
        lo, hi = min(a, b), max(a, b)
        parent[hi] = lo
        reason.setdefault(hi, why)

    by_pmid: dict[str, int] = {}
    by_doi: dict[str, int] = {}
    for i, k in enumerate(keys):
        if k.pmid:
            if k.pmid in by_pmid:
                union(by_pmid[k.pmid], i, f"same PubMed id {k.pmid}")
            else:
                by_pmid[k.pmid] = i
        if k.doi:
            if k.doi in by_doi:
                union(by_doi[k.doi], i, f"same DOI {k.doi}")
            else:
                by_doi[k.doi] = i
    for i, j in _similar_titles([k.title for k in keys]):
        union(i, j, "near-duplicate title")
    groups: dict[int, list[int]] = defaultdict(list)
    for i in range(len(keys)):
        groups[find(i)].append(i)
    return [Group(keys[root].id, tuple((keys[j].id, reason.get(j, "duplicate")) for j in members if j != root))
            for root, members in sorted(groups.items())]


def _similar_titles(titles: Sequence[str]) -> list[tuple[int, int]]:
    """Pairs ``(i, j)``, ``i < j``, of near-identical titles (blocked by shared rare words)."""
    norm = [normalize_title(t) for t in titles]
    words = [[w for w in n.split() if w not in _STOP] for n in norm]
    postings: dict[str, list[int]] = defaultdict(list)
    for i, ws in enumerate(words):
        if len(norm[i].split()) >= MIN_TITLE_WORDS:
            for w in set(ws):
                postings[w].append(i)
    # block on each title's two rarest content words: near-duplicates share at least one of them
    pairs: set[tuple[int, int]] = set()
    for i, ws in enumerate(words):
        if len(norm[i].split()) < MIN_TITLE_WORDS or not ws:
            continue
        rare = sorted(set(ws), key=lambda w: (len(postings[w]), w))[:2]
        for w in rare:
            for j in postings[w]:
                if j > i:
                    pairs.add((i, j))
    out = []
    for i, j in sorted(pairs):
        if norm[i] == norm[j] or SequenceMatcher(None, norm[i], norm[j], autojunk=False).ratio() >= TITLE_RATIO:
            out.append((i, j))
    return out


__all__ = ["MIN_TITLE_WORDS", "TITLE_RATIO", "Group", "Key", "group_duplicates", "key_of", "normalize_doi",
           "normalize_title"]
