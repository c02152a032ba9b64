"""PyLate peer for bench/bench_late_scale.py: its PLAID (fast-plaid) and Voyager indexes on saved vectors.

Runs in PyLate's own virtual environment (it pins another torch than clinrag's), never imports
clinrag, and reads the vectors the clinrag bench saved (plain ``.npy``): ``docs.npy`` (float16
``T x dim``), ``doc_offsets.npy``, ``queries.npy``, ``query_offsets.npy``, ``truth.npy`` (the
exhaustive MaxSim top-10 rows). Writes one JSON line of results to ``--out``.

    /work/peers/pylate/bin/python bench/peer_pylate.py --workdir W --index plaid --phase build --out W/p.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import torch
from _common import rss_mib, split  # noqa: E402


def make_index(kind: str, folder: Path, dim: int, nbits: int, override: bool,  # noqa: ANN201
               setting: tuple[int, int] = (8, 8192)):
    """PyLate's index; for PLAID ``setting`` = (n_ivf_probe, n_full_scores), PyLate's defaults (8, 8192)."""
    from pylate import indexes

    if kind == "plaid":
        return indexes.PLAID(index_folder=str(folder), index_name="plaid", override=override, nbits=nbits,
                             show_progress=False, device="cpu", n_ivf_probe=setting[0], n_full_scores=setting[1])
    return indexes.Voyager(index_folder=str(folder), index_name="voyager", override=override, embedding_size=dim)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workdir", required=True, type=Path)
    ap.add_argument("--index", choices=["plaid", "voyager"], required=True)
    ap.add_argument("--phase", choices=["build", "search"], required=True)
    ap.add_argument("--nbits", type=int, default=4)
    ap.add_argument("--settings", nargs="+", default=["8/8192"],
                    help="PLAID search settings n_ivf_probe/n_full_scores (PyLate's default 8/8192)")
    ap.add_argument("--out", required=True, type=Path)
    args = ap.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS") or os.cpu_count() or 1))
    w = args.workdir
    folder = w / f"pylate-{args.index}-{args.nbits}"
    docs = np.load(w / "docs.npy", mmap_mode="r")
    dim = int(docs.shape[1])
    res: dict[str, object] = {"torch": torch.__version__}
    if args.phase == "build":
        doc_off = np.load(w / "doc_offsets.npy")
        chunks = [np.asarray(c, dtype=np.float32) for c in split(docs, doc_off)]
        t0 = time.perf_counter()
        index = make_index(args.index, folder, dim, args.nbits, override=True)
        index.add_documents(documents_ids=[str(i) for i in range(len(chunks))], documents_embeddings=chunks)
        res["build_s"] = time.perf_counter() - t0
        res["chunks"] = len(chunks)
        size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
        res["bytes_per_token"] = size / int(doc_off[-1])
    else:
        from pylate import retrieve

        queries = [np.asarray(q, dtype=np.float32) for q in split(np.load(w / "queries.npy"),
                                                                  np.load(w / "query_offsets.npy"))]
        truth = np.load(w / "truth.npy")
        rows = []
        for spec in args.settings if args.index == "plaid" else ["-"]:
            setting = tuple(int(x) for x in spec.split("/")) if spec != "-" else (8, 8192)
            index = make_index(args.index, folder, dim, args.nbits, override=False, setting=setting)  # type: ignore[arg-type]
            retriever = retrieve.ColBERT(index=index)

            def run(qs: list[np.ndarray], retriever=retriever) -> list[list[int]]:  # noqa: ANN001
                out = retriever.retrieve(queries_embeddings=qs, k=10, batch_size=len(qs))
                return [[int(r["id"]) for r in hits] for hits in out]

            run(queries[:1])  # warm-up
            lat, rec = [], []
            for i, q in enumerate(queries):
                t0 = time.perf_counter()
                ids = run([q])[0]
                lat.append(time.perf_counter() - t0)
                rec.append(len(set(ids) & set(truth[i].tolist())) / 10)
            t0 = time.perf_counter()
            run(queries[:64])
            rows.append({"setting": spec, "batch64_ms_per_q": 1000 * (time.perf_counter() - t0) / len(queries[:64]),
                         "p50_ms": 1000 * float(np.percentile(lat, 50)), "p95_ms": 1000 * float(np.percentile(lat, 95)),
                         "recall@10": float(np.mean(rec))})
        res["rows"] = rows
    res["peak_rss_mib"] = rss_mib()
    args.out.write_text(json.dumps(res))


if __name__ == "__main__":
    main()
