"""QR ablation, step 1: cache every head's question-to-candidate attention mass (real query and the
null query "N/A", with and without the patient memory, given order only) for the seed questions and
a stratified subsample of evaluation questions of ``clinrag eval longitudinal`` (same split).

    PYTHONPATH=... python bench/qr_ablation_cache.py DATA INDEX OUT.pkl N_EVAL SEED_SIZE [mem,nomem]
    SKIP_EVAL=24 ...  # only the questions of the N_EVAL subsample that the 24-subsample lacks (no seed)

Then ``bench/qr_ablation_score.py OUT.pkl [MORE.pkl]`` scores every variant.
"""

import copyreg
import os
import pickle
import sys
import time
import types
from pathlib import Path

import torch

from clinrag.engine import Engine
from clinrag.eval.longitudinal import generate_questions, read_fhir_folder, subsample
from clinrag.eval.longitudinal_run import split_seed
from clinrag.retrieval.qr import NULL_QUERY, _candidate_text, build_prompt, get_causal_lm, question_mass

torch.set_num_threads(1)
copyreg.pickle(types.MappingProxyType, lambda m: (dict, (dict(m),)))  # Hits hold mapping proxies

data, index, out, n_eval, seed_size = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
mem_modes = sys.argv[6].split(",") if len(sys.argv) > 6 else ["mem", "nomem"]
docs = read_fhir_folder(data)
qs = generate_questions(docs, seed=0)
seed_qs, eval_all = split_seed(qs, seed_size, 0)
eval_qs = subsample(eval_all, n_eval, 0)
eng = Engine.open(index)
lm = get_causal_lm("gemma")
rows = []
t0 = time.time()

skip = int(os.environ.get("SKIP_EVAL", "0"))
groups = ([] if skip else [("seed", seed_qs)]) + [
    ("eval", [q for q in eval_qs if q.qid not in {p.qid for p in subsample(eval_all, skip, 0)}] if skip else eval_qs)
]
for role, group in groups:
    for q in group:
        hits = eng.search(q.query, k=20, filters={"patient_id": q.patient_id}, unique_docs=True, temporal=False)
        mem = eng.memory(q.patient_id).to_text(cite=False)
        texts = [_candidate_text(h) for h in hits]
        rel = [int(q.qrels.get(h.doc_id, 0)) for h in hits]
        r = {"role": role, "q": q, "hits": hits, "mem": mem, "texts": texts, "rel": rel}
        for m in mem_modes:
            mm = mem if m == "mem" else None
            p = build_prompt(lm.tokenizer, q.query, texts, mm)
            t = time.time()
            r[f"q_{m}"] = question_mass(lm, p)
            r[f"n_{m}"] = question_mass(lm, build_prompt(lm.tokenizer, NULL_QUERY, texts, mm))
            r[f"len_{m}"] = len(p.ids)
            r[f"sec_{m}"] = time.time() - t
        rows.append(r)
        print(role, q.type, len(hits), {m: (r[f"len_{m}"], round(r[f"sec_{m}"], 1)) for m in mem_modes}, flush=True)
        Path(out).write_bytes(pickle.dumps(rows))
print("total", time.time() - t0)
