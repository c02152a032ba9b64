"""QR ablation, step 2: score first stage, fast reranker and the QR variants (null query off/on; with
and without memory; QR alone; QR at w = 1 with the temporal intent; the seed-chosen w) from the rows
cached by ``bench/qr_ablation_cache.py``, with the benchmark's own metrics (ranx over the full qrels).
Heads and weight are calibrated on the seed rows with memory, as ``clinrag eval longitudinal`` does;
one candidate order (``orders=1``).

    PYTHONPATH=... python bench/qr_ablation_score.py OUT.pkl [MORE.pkl ...]
"""

import json
import pickle
import sys
from pathlib import Path

from clinrag.eval.longitudinal import score_stage
from clinrag.retrieval.qr import SeedExample, choose_weight, combine
from clinrag.retrieval.rerank import FastReranker

rows = [r for p in sys.argv[1:] for r in pickle.loads(Path(p).read_bytes())]
seed = [r for r in rows if r["role"] == "seed" and any(r["rel"])]
ev = [r for r in rows if r["role"] == "eval"]
qs = [r["q"] for r in ev]


def ids(hits):
    return list(dict.fromkeys(h.doc_id for h in hits))


out = {"n_eval": len(ev), "seed_size": len(seed)}
out["first_stage"] = score_stage(qs, {r["q"].qid: ids(r["hits"]) for r in ev}).to_dict()
out["fast_rerank"] = score_stage(
    qs, {r["q"].qid: ids(FastReranker().rerank(r["q"].query, r["hits"])) for r in ev}
).to_dict()
modes = [m for m in ("mem", "nomem") if f"q_{m}" in rows[0]]
for null in (False, True):

    def S(r, m, null=null):
        return r[f"q_{m}"] - r[f"n_{m}"] if null else r[f"q_{m}"]

    # heads and weight calibrated WITH memory on the seed set (as evaluate_longitudinal does)
    L, H = S(rows[0], "mem").shape[:2]
    from clinrag.retrieval.qr import ndcg_at

    score = sorted(
        (
            (sum(ndcg_at(S(r, "mem")[i, j].tolist(), r["rel"]) for r in seed) / len(seed), i, j)
            for i in range(L)
            for j in range(H)
        ),
        reverse=True,
    )[:16]
    heads = [(i, j) for _, i, j in score]

    def qr(r, m, heads=heads):
        return [float(sum(S(r, m)[i, j, c] for i, j in heads)) for c in range(len(r["rel"]))]

    ex_seed = [SeedExample(r["q"].query, tuple(r["texts"]), tuple(r["rel"]), None, tuple(r["hits"])) for r in seed]
    w, curve = choose_weight(ex_seed, [qr(r, "mem") for r in seed])
    tag = "null" if null else "plain"
    out[f"{tag}_weight"] = w
    out[f"{tag}_seed_curve"] = curve
    for m in modes:
        sfx = "" if m == "mem" else "_no_memory"
        out[f"qr_rerank{sfx}[{tag}]"] = score_stage(
            qs, {r["q"].qid: ids(combine(r["q"].query, r["hits"], qr(r, m), w)) for r in ev}
        ).to_dict()
        out[f"qr_alone{sfx}[{tag}]"] = score_stage(
            qs, {r["q"].qid: ids(combine(r["q"].query, r["hits"], qr(r, m), 1.0, temporal=False)) for r in ev}
        ).to_dict()
        out[f"qr_w1_temporal{sfx}[{tag}]"] = score_stage(
            qs, {r["q"].qid: ids(combine(r["q"].query, r["hits"], qr(r, m), 1.0)) for r in ev}
        ).to_dict()
print(json.dumps(out, indent=1))
