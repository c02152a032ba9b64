"""Best chunk per document: search deeper until every query has ``k`` distinct documents.

>>> from clinrag.retrieval.base import Scored
>>> class Fixed:
...     name = "fixed"
...     def search(self, queries, k, allowed=None):
...         return [[Scored("a#0", 3.0), Scored("a#1", 2.0), Scored("b#0", 1.0)][:k] for _ in queries]
>>> doc_of = {"a#0": "a", "a#1": "a", "b#0": "b"}
>>> [[s.chunk_id for s in r] for r in rank_unique_docs(Fixed(), ["q"], 2, None, total=3, doc_of=doc_of)]
[['a#0', 'b#0']]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from clinrag.retrieval.base import Retriever, Scored


def rank_unique_docs(retriever: Retriever, queries: Sequence[str], k: int, allowed: frozenset[str] | None, *,
                     total: int, doc_of: Mapping[str, str]) -> list[list[Scored]]:
    """Each query's best chunk of each of its ``k`` best documents; ``total`` is how many chunks can be
    searched (the search deepens 4x at a time until ``k`` documents are found or all were seen)."""
    out: list[list[Scored]] = [[] for _ in queries]
    todo = list(range(len(queries)))
    depth = max(4 * k, 50)
    while todo:
        results = retriever.search([queries[i] for i in todo], depth, allowed)
        again = []
        for qi, res in zip(todo, results, strict=True):
            best: dict[str, Scored] = {}
            for s in res:
                best.setdefault(doc_of.get(s.chunk_id, s.chunk_id), s)
            out[qi] = list(best.values())[:k]
            if len(best) < k and len(res) >= depth and depth < total:
                again.append(qi)
        todo, depth = again, depth * 4
    return out


__all__ = ["rank_unique_docs"]
