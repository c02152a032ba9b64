"""IR metrics through ranx, with clinrag's metric names (``ndcg@10``, ``recall@100``, ``mrr@10``).

>>> qrels = {"q1": {"d1": 1}, "q2": {"d3": 1}}
>>> run = {"q1": {"d1": 2.0, "d2": 1.0}, "q2": {"d2": 2.0, "d3": 1.0}}
>>> m = evaluate(qrels, run, ["mrr@10", "recall@100"])
>>> m["mrr@10"], m["recall@100"]
(0.75, 1.0)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

DEFAULT_METRICS = ("ndcg@10", "recall@10", "recall@100", "mrr@10")
_RANX = {"ndcg": "ndcg", "recall": "recall", "mrr": "mrr", "precision": "precision", "map": "map",
         "hits": "hits", "hit_rate": "hit_rate"}


def _to_ranx(name: str) -> str:
    base, _, cut = name.partition("@")
    if base not in _RANX:
        raise ValueError(f"unknown metric {name!r}; known: {sorted(_RANX)} with an optional @k")
    return _RANX[base] + (f"@{cut}" if cut else "")


def evaluate(qrels: Mapping[str, Mapping[str, int]], run: Mapping[str, Mapping[str, float]],
             metrics: Sequence[str] = DEFAULT_METRICS) -> dict[str, float]:
    """Mean of each metric over the queries of ``qrels``; a query with no results scores 0."""
    from ranx import Qrels, Run
    from ranx import evaluate as ranx_evaluate

    q = {qid: {d: int(r) for d, r in docs.items()} for qid, docs in qrels.items() if docs}
    r = {qid: dict(run.get(qid, {})) for qid in q}
    # ranx needs every query in the run; an empty result is an all-miss.
    for docs in r.values():
        if not docs:
            docs["__no_result__"] = 0.0
    scores = ranx_evaluate(Qrels(q), Run(r), [_to_ranx(m) for m in metrics], make_comparable=True)
    if isinstance(scores, float):
        scores = {_to_ranx(metrics[0]): scores}
    return {m: float(scores[_to_ranx(m)]) for m in metrics}


__all__ = ["DEFAULT_METRICS", "evaluate"]
