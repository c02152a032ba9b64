"""Late-interaction search speed, size and recall against exhaustive MaxSim, with peers in the same run.

Vectors: real all-MiniLM-L6-v2 token vectors of the PubMedQA abstracts, PCA-projected to 128-d,
resampled with noise into synthetic chunks of ~150 tokens (``--chunks`` of them); queries are
the 156 MeSH-topic queries' token vectors (projected the same way). Prints a table and appends it
to bench/RESULTS.md.

    .venv/bin/python bench/bench_late.py --chunks 10000 100000 --nbits 2
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import resource
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch

from clinrag.config import LateParams
from clinrag.eval.tasks import load_task
from clinrag.indexing.encoders import HFTokenEncoder
from clinrag.indexing.multivector import MultiVectorIndex, TokenCompressor, build_multivector
from clinrag.retrieval.late import LateRetriever
from clinrag.retrieval.maxsim import maxsim_scores

ROOT = Path(__file__).resolve().parents[1]
PQA = ROOT.parent / "shared" / "data" / "pubmedqa" / "pqal_dev.json"


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def real_vectors(dim: int) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray]:
    task = load_task("pubmedqa-mesh", PQA)
    enc = HFTokenEncoder()
    docs = enc.encode_documents([d.text for d in task.documents], batch_size=32)
    queries = enc.encode_queries(list(task.queries.values()))
    allv = np.concatenate(docs).astype(np.float32)
    mean = allv.mean(0)
    _, _, vt = np.linalg.svd(allv[:60000] - mean, full_matrices=False)
    proj = vt[:dim].T.astype(np.float32)

    def p(x: np.ndarray) -> np.ndarray:
        y = x.astype(np.float32) @ proj
        return y / np.linalg.norm(y, axis=1, keepdims=True)

    return [p(d) for d in docs], [p(q) for q in queries], proj


def synthetic(docs: list[np.ndarray], n_chunks: int, seed: int = 0, noise: float = 0.05) -> list[np.ndarray]:
    """Chunks of ~150 tokens: a real document's tokens (resampled) plus Gaussian noise."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_chunks):
        d = docs[rng.integers(len(docs))]
        n = int(np.clip(rng.normal(150, 30), 40, 300))
        v = d[rng.integers(0, len(d), n)] + noise * rng.normal(size=(n, d.shape[1])).astype(np.float32)
        out.append((v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float16))
    return out


class _NoEncoder:
    name, dim, truncated = "none", 128, 0


def build(chunks: list[np.ndarray], nbits: int, root: Path) -> tuple[LateRetriever, dict]:
    t0 = time.perf_counter()
    comp = TokenCompressor.fit(chunks[: min(len(chunks), 20000)], dim=None, nbits=nbits, n_centroids=None,
                               expected_tokens=sum(len(c) for c in chunks))
    codes, residuals = [], []
    for s in range(0, len(chunks), 4096):
        c, r = comp.compress(chunks[s:s + 4096])
        codes += c
        residuals += r
    table = pa.table({"chunk_id": [f"c{i}" for i in range(len(chunks))],
                      "codes": pa.array(codes, pa.list_(pa.int32())),
                      "residuals": pa.array(residuals, pa.large_binary())})
    mv_dir = root / f"mv-{nbits}"
    stats = build_multivector(mv_dir, table, len(comp.codec.centroids))
    build_s = time.perf_counter() - t0
    size = sum(p.stat().st_size for p in mv_dir.glob("*.npy"))
    retr = LateRetriever(MultiVectorIndex.load(mv_dir), comp.codec, _NoEncoder(),  # type: ignore[arg-type]
                         device="cpu")
    return retr, {"build_s": build_s, "bytes_per_token": size / stats["tokens"],
                  "centroids": len(comp.codec.centroids)}


def exhaustive_topk(chunks: list[np.ndarray], queries: list[np.ndarray], k: int) -> tuple[list[set[int]], float]:
    D = torch.as_tensor(np.concatenate(chunks).astype(np.float32))
    off = torch.zeros(len(chunks) + 1, dtype=torch.long)
    off[1:] = torch.cumsum(torch.tensor([len(c) for c in chunks]), 0)
    tops, t0 = [], time.perf_counter()
    for q in queries:
        s = maxsim_scores(torch.as_tensor(q.astype(np.float32)), D, off)
        tops.append(set(torch.topk(s, k).indices.tolist()))
    return tops, (time.perf_counter() - t0) / len(queries)


def measure(retr: LateRetriever, queries: list[np.ndarray], truth: list[set[int]], k: int = 10) -> dict:
    lat, rec = [], []
    pos = {f"c{i}": i for i in range(retr.mv.n_chunks)}
    for q in queries:
        t0 = time.perf_counter()
        res = retr.search_vectors(q, k)
        lat.append(time.perf_counter() - t0)
        rec.append(len({pos[s.chunk_id] for s in res} & truth[len(rec)]) / k)
    batch = queries[:64]
    t0 = time.perf_counter()
    for q in batch:
        retr.search_vectors(q, k)
    per_q_batch = (time.perf_counter() - t0) / len(batch)
    return {"p50_ms": 1000 * float(np.percentile(lat, 50)), "p95_ms": 1000 * float(np.percentile(lat, 95)),
            "batch64_ms_per_q": 1000 * per_q_batch, "recall@10": float(np.mean(rec))}


def lancedb_row(n: int, chunks: list[np.ndarray], queries: list[np.ndarray], truth: list[set[int]]) -> tuple:
    """LanceDB's native multivector column (flat MaxSim) on the same vectors."""
    from clinrag.retrieval.lance_mv import LanceMultiVectorRetriever

    tmp = Path(tempfile.mkdtemp())
    t0 = time.perf_counter()
    r = LanceMultiVectorRetriever.build(tmp, [f"c{i}" for i in range(n)], chunks)
    build_s = time.perf_counter() - t0
    size = sum(p.stat().st_size for p in tmp.rglob("*") if p.is_file())
    lat, rec = [], []
    for q, t in zip(queries, truth, strict=True):
        t1 = time.perf_counter()
        res = r.search_vectors(q, 10)
        lat.append(time.perf_counter() - t1)
        rec.append(len({int(s.chunk_id[1:]) for s in res} & t) / 10)
    shutil.rmtree(tmp, ignore_errors=True)
    tokens = sum(len(c) for c in chunks)
    return (n, "LanceDB multivector (flat)", "-", "-", f"{1000 * np.percentile(lat, 50):.1f}",
            f"{1000 * np.percentile(lat, 95):.1f}", "-", f"{np.mean(rec):.3f}", f"{size / tokens:.1f}",
            f"{build_s:.1f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--chunks", type=int, nargs="+", default=[10000, 100000])
    ap.add_argument("--nbits", type=int, nargs="+", default=[2])
    ap.add_argument("--nprobe", type=int, nargs="+", default=[4, 8, 16])
    ap.add_argument("--ncandidates", type=int, nargs="+", default=[256, 1024, 4096])
    ap.add_argument("--engines", nargs="+", default=["exhaustive", "clinrag", "lancedb"],
                    help="which engines to run: exhaustive (torch), clinrag, lancedb (native multivector)")
    ap.add_argument("--dim", type=int, default=128)
    args = ap.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    docs, queries, _ = real_vectors(args.dim)
    rows = []
    for n in args.chunks:
        chunks = synthetic(docs, n)
        truth, ex_ms = exhaustive_topk(chunks, queries, 10)
        if "exhaustive" in args.engines:
            rows.append((n, "torch exhaustive fp32", "-", "-", f"{ex_ms * 1000:.1f}", "-", "-", "1.000",
                         f"{2 * args.dim:.0f} (fp16)", "-"))
        if "lancedb" in args.engines:
            rows.append(lancedb_row(n, chunks, queries, truth))
            print(rows[-1], flush=True)
        for nbits in args.nbits if "clinrag" in args.engines else []:
            tmp = Path(tempfile.mkdtemp())
            retr, info = build(chunks, nbits, tmp)
            for nprobe in args.nprobe:
                for ncand in args.ncandidates:
                    retr.params = LateParams(nprobe=nprobe, ncandidates=ncand)
                    m = measure(retr, queries, truth)
                    rows.append((n, f"clinrag {nbits}-bit", f"{nprobe} / {ncand}", info["centroids"],
                                 f"{m['p50_ms']:.1f}", f"{m['p95_ms']:.1f}", f"{m['batch64_ms_per_q']:.1f}",
                                 f"{m['recall@10']:.3f}", f"{info['bytes_per_token']:.1f}",
                                 f"{info['build_s']:.1f}"))
                    print(rows[-1], flush=True)
            shutil.rmtree(tmp, ignore_errors=True)
    header = ("chunks", "engine", "nprobe / ncandidates", "centroids", "p50 ms", "p95 ms", "batch64 ms/q",
              "R@10 vs exact", "bytes/token", "build s")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    title = (f"\n## Late interaction, CPU ({platform.machine()}, {os.cpu_count()} cores), {dt.date.today()}: "
             f"real MiniLM token vectors PCA->{args.dim}-d resampled into ~150-token chunks; 156 MeSH queries; "
             f"peak RSS {rss_mb():.0f} MiB\n\n")
    print(title + "\n".join(lines))
    with open(ROOT / "bench" / "RESULTS.md", "a") as fh:
        fh.write(title + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
