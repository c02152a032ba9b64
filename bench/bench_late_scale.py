"""Late interaction at scale, with peers side by side on the same saved vectors.

Vectors: real all-MiniLM-L6-v2 token vectors of the 500 PubMedQA abstracts, PCA-projected to
128-d, resampled with Gaussian noise into synthetic chunks of ~150 tokens (``--chunks`` of them);
queries: the 156 MeSH-topic queries' token vectors projected the same way. They are saved as
plain ``.npy`` in ``--workdir/<n>/`` and every engine runs in its own process on them, so each
reports its own peak RSS for the build and for the search:

- ``exhaustive``: torch MaxSim over the uncompressed vectors (float32 compute, float16 storage);
  its top-10 is the truth that "R@10" is measured against;
- ``clinrag``: the PLAID-style index (FAISS centroids, 2-bit residuals, inverted lists) built
  and searched through the library, single queries and ``search_batch_vectors`` over 64;
- ``lancedb``: LanceDB's native multivector column (flat MaxSim), on ``--lancedb-queries`` queries;
- ``plaid`` / ``voyager``: PyLate's indexes, run by ``bench/peer_pylate.py`` in PyLate's own
  virtual environment (``--peer-python``), which pins another torch.

Prints a table and appends it to bench/RESULTS.md::

    nice -n 10 .venv/bin/python bench/bench_late_scale.py --chunks 10000 100000
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import rss_mib, split  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PQA = ROOT.parent / "shared" / "data" / "pubmedqa" / "pqal_dev.json"
if not PQA.exists():
    PQA = Path("/work/shared/data/pubmedqa/pqal_dev.json")




# -- data ---------------------------------------------------------------------------------------------
def real_vectors(cache: Path, dim: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Projected MiniLM token vectors of the abstracts and of the queries (cached in ``cache``)."""
    files = [cache / f"real_{n}.npy" for n in ("docs", "doc_offsets", "queries", "query_offsets")]
    if not all(f.exists() for f in files):
        from bench_late import real_vectors as encode_real  # the same PCA-projected MiniLM vectors

        docs, queries, _ = encode_real(dim)
        for (flat_f, off_f), parts in zip(((files[0], files[1]), (files[2], files[3])),
                                          (docs, queries), strict=True):
            off = np.zeros(len(parts) + 1, np.int64)
            np.cumsum([len(x) for x in parts], out=off[1:])
            np.save(flat_f, np.concatenate(parts).astype(np.float32))
            np.save(off_f, off)
    d, do, q, qo = (np.load(f) for f in files)
    return split(d, do), split(q, qo)


GEN_BLOCK = 4096  # synthetic chunks are generated in blocks of this many, each from its own seed


def prepare(w: Path, docs: list[np.ndarray], queries: list[np.ndarray], n: int, seed: int = 0,
            write_vectors: bool = True) -> None:
    """Plan ``n`` synthetic chunks of ~150 tokens (a real abstract's tokens resampled + noise).

    The plan (source abstract and length of each chunk) is small; the vectors are written to
    ``docs.npy`` (float16) only with ``write_vectors`` (the peers and the exhaustive reference
    read them); otherwise :func:`chunk_block` regenerates them block by block, identically.
    """
    w.mkdir(parents=True, exist_ok=True)
    qoff = np.zeros(len(queries) + 1, np.int64)
    np.cumsum([len(q) for q in queries], out=qoff[1:])
    np.save(w / "queries.npy", np.concatenate(queries).astype(np.float32))
    np.save(w / "query_offsets.npy", qoff)
    if not (w / "doc_offsets.npy").exists():
        rng = np.random.default_rng(seed)
        src = rng.integers(len(docs), size=n)
        lengths = np.clip(rng.normal(150, 30, size=n), 40, 300).astype(np.int64)
        off = np.zeros(n + 1, np.int64)
        np.cumsum(lengths, out=off[1:])
        np.save(w / "doc_src.npy", src)
        np.save(w / "doc_offsets.npy", off)
    if not write_vectors or (w / "docs.npy").exists():
        return
    off = np.load(w / "doc_offsets.npy")
    out = np.lib.format.open_memmap(w / "docs.npy.tmp", mode="w+", dtype=np.float16,
                                    shape=(int(off[-1]), docs[0].shape[1]))
    for s in range(0, n, GEN_BLOCK):
        e = min(n, s + GEN_BLOCK)
        out[off[s]:off[e]] = chunk_block(w, docs, s // GEN_BLOCK, seed=seed)
    out.flush()
    del out
    os.replace(w / "docs.npy.tmp", w / "docs.npy")


def chunk_block(w: Path, docs: list[np.ndarray], block: int, seed: int = 0, noise: float = 0.05) -> np.ndarray:
    """Token vectors (float32, unit length) of synthetic chunks ``block * GEN_BLOCK`` onwards, concatenated."""
    src, off = np.load(w / "doc_src.npy"), np.load(w / "doc_offsets.npy")
    s, e = block * GEN_BLOCK, min(len(src), (block + 1) * GEN_BLOCK)
    rng = np.random.default_rng([seed, block])
    parts = []
    for i in range(s, e):
        d, m = docs[src[i]], int(off[i + 1] - off[i])
        parts.append(d[rng.integers(0, len(d), m)])
    v = np.concatenate(parts).astype(np.float32)
    v += noise * rng.standard_normal(v.shape, np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def load_queries(w: Path) -> list[np.ndarray]:
    return split(np.load(w / "queries.npy"), np.load(w / "query_offsets.npy"))


# -- workers (each in its own process) ------------------------------------------------------------------
def work_exhaustive(w: Path, n_single: int) -> dict:
    import torch

    from clinrag.retrieval.maxsim import maxsim_batch

    D = torch.from_numpy(np.load(w / "docs.npy"))  # float16; blocks are computed in float32
    off = torch.from_numpy(np.load(w / "doc_offsets.npy"))
    Qs = [torch.from_numpy(q) for q in load_queries(w)]
    truth = np.zeros((len(Qs), 10), np.int64)
    t_batch = None
    for s in range(0, len(Qs), 64):
        t0 = time.perf_counter()
        sc = maxsim_batch(Qs[s:s + 64], D, off)
        if s == 0:
            t_batch = (time.perf_counter() - t0) / len(Qs[s:s + 64])
        truth[s:s + 64] = torch.topk(sc, 10, dim=1).indices.numpy()
    np.save(w / "truth.npy", truth)
    lat = []
    for q in Qs[:n_single]:
        t0 = time.perf_counter()
        sc = maxsim_batch([q], D, off)
        torch.topk(sc, 10, dim=1)
        lat.append(time.perf_counter() - t0)
    return {"p50_ms": 1000 * float(np.percentile(lat, 50)), "p95_ms": 1000 * float(np.percentile(lat, 95)),
            "batch64_ms_per_q": 1000 * (t_batch or 0.0), "recall@10": 1.0, "bytes_per_token": 2.0 * D.shape[1],
            "single_queries": len(lat), "peak_rss_mib": rss_mib()}


def work_clinrag_build(w: Path, nbits: int, max_centroids: int, niter: int, dim: int, assign_nprobe: int = 16) -> dict:
    """Build through the library's streaming layout, regenerating the synthetic chunks block by block
    (so the build never holds, nor maps, more than one block of raw vectors)."""
    from clinrag.indexing.codec import default_n_centroids
    from clinrag.indexing.multivector import TokenCompressor
    from clinrag.indexing.mv_writer import MultiVectorWriter

    base, _ = real_vectors(w.parent, dim)
    off = np.load(w / "doc_offsets.npy")
    n = len(off) - 1
    folder = w / f"clinrag-{nbits}"
    if folder.exists():
        import shutil

        shutil.rmtree(folder)
    folder.mkdir()
    t0 = time.perf_counter()
    sample: list[np.ndarray] = []  # chunks are i.i.d. by construction: the first ~3000 are a fair sample
    for blk in range(0, -(-min(n, 3000) // GEN_BLOCK)):
        s = blk * GEN_BLOCK
        sample += split(chunk_block(w, base, blk), off[s:min(n, s + GEN_BLOCK) + 1] - off[s])
    n_centroids = min(default_n_centroids(int(off[-1])), max_centroids)
    comp = TokenCompressor.fit(sample[:3000], dim=None, nbits=nbits, n_centroids=n_centroids,
                               expected_tokens=int(off[-1]), niter=niter)
    del sample
    t_train = time.perf_counter() - t0
    writer = MultiVectorWriter(folder / "mv", n_centroids=len(comp.codec.centroids),
                               residual_bytes=comp.codec.bytes_per_token - 4)
    for blk in range(-(-n // GEN_BLOCK)):
        s, e = blk * GEN_BLOCK, min(n, (blk + 1) * GEN_BLOCK)
        codes, packed = comp.codec.compress(comp.project(chunk_block(w, base, blk)), nprobe=assign_nprobe)
        writer.add([f"c{i}" for i in range(s, e)], np.diff(off[s:e + 1]), codes, packed)
    writer.close()
    comp.save(folder / "codec")
    build_s = time.perf_counter() - t0
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    return {"build_s": build_s, "train_s": t_train, "chunks": n, "centroids": len(comp.codec.centroids),
            "bytes_per_token": size / int(off[-1]), "peak_rss_mib": rss_mib()}


class _NoEncoder:
    name, dim, truncated = "none", 128, 0


def work_clinrag_search(w: Path, nbits: int, grid: list[tuple[int, int]]) -> dict:
    import torch

    from clinrag.config import LateParams
    from clinrag.indexing.multivector import MultiVectorIndex, TokenCompressor
    from clinrag.retrieval.late import LateRetriever

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS") or os.cpu_count() or 1))
    folder = w / f"clinrag-{nbits}"
    comp = TokenCompressor.load(folder / "codec")
    retr = LateRetriever(MultiVectorIndex.load(folder / "mv"), comp.codec, _NoEncoder(),  # type: ignore[arg-type]
                         device="cpu")
    queries = load_queries(w)
    truth = np.load(w / "truth.npy") if (w / "truth.npy").exists() else None  # none without the reference
    rows = []
    for nprobe, ncand in grid:
        retr.params = LateParams(nprobe=nprobe, ncandidates=ncand)
        retr.search_vectors(queries[0], 10)  # warm-up
        lat, rec = [], []
        for i, q in enumerate(queries):
            t0 = time.perf_counter()
            res = retr.search_vectors(q, 10)
            lat.append(time.perf_counter() - t0)
            if truth is not None:
                rec.append(len({int(s.chunk_id[1:]) for s in res} & set(truth[i].tolist())) / 10)
        t0 = time.perf_counter()
        batch = retr.search_batch_vectors(queries[:64], 10)
        per_q = (time.perf_counter() - t0) / 64
        one = [retr.search_vectors(q, 10) for q in queries[:64]]
        same = all([s.chunk_id for s in a] == [s.chunk_id for s in b] for a, b in zip(batch, one, strict=True))
        rows.append({"nprobe": nprobe, "ncandidates": ncand, "p50_ms": 1000 * float(np.percentile(lat, 50)),
                     "p95_ms": 1000 * float(np.percentile(lat, 95)), "batch64_ms_per_q": 1000 * per_q,
                     "recall@10": float(np.mean(rec)) if rec else None, "batch_same_hits": same})
    return {"rows": rows, "peak_rss_mib": rss_mib()}


def work_lancedb(w: Path, n_queries: int) -> dict:
    import shutil

    from clinrag.retrieval.lance_mv import LanceMultiVectorRetriever

    docs = np.load(w / "docs.npy", mmap_mode="r")
    off = np.load(w / "doc_offsets.npy")
    folder = w / "lancedb"
    shutil.rmtree(folder, ignore_errors=True)
    t0 = time.perf_counter()
    r = LanceMultiVectorRetriever.build(folder, [f"c{i}" for i in range(len(off) - 1)], split(docs, off))
    build_s = time.perf_counter() - t0
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    truth = np.load(w / "truth.npy")
    lat, rec = [], []
    for i, q in enumerate(load_queries(w)[:n_queries]):
        t1 = time.perf_counter()
        res = r.search_vectors(q, 10)
        lat.append(time.perf_counter() - t1)
        rec.append(len({int(s.chunk_id[1:]) for s in res} & set(truth[i].tolist())) / 10)
    shutil.rmtree(folder, ignore_errors=True)
    return {"build_s": build_s, "bytes_per_token": size / int(off[-1]), "single_queries": len(lat),
            "p50_ms": 1000 * float(np.percentile(lat, 50)), "p95_ms": 1000 * float(np.percentile(lat, 95)),
            "recall@10": float(np.mean(rec)), "peak_rss_mib": rss_mib()}


THREADS = 1


def _worker_env() -> dict[str, str]:
    n = str(THREADS)
    return {**os.environ, "OMP_NUM_THREADS": n, "MKL_NUM_THREADS": n, "OPENBLAS_NUM_THREADS": n,
            "RAYON_NUM_THREADS": n}


def run_worker(argv: list[str], out: Path, timeout: float, python: str = sys.executable) -> dict:
    """Run one worker process; its JSON result, or why there is none."""
    t0 = time.perf_counter()
    cmd = [python, *argv, "--out", str(out)]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=_worker_env())
    except subprocess.TimeoutExpired:
        return {"error": f"not finished after {timeout:.0f} s (killed)"}
    if p.returncode != 0 or not out.exists():
        tail = (p.stderr or p.stdout).strip().splitlines()[-3:]
        return {"error": f"exit {p.returncode}: {' | '.join(tail)}"}
    res = json.loads(out.read_text())
    res["wall_s"] = time.perf_counter() - t0
    return res


# -- table -------------------------------------------------------------------------------------------------
def fmt(x: object, spec: str = ".1f") -> str:
    return "-" if x is None else format(x, spec) if isinstance(x, float) else str(x)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--chunks", type=int, nargs="+", default=[10000, 100000])
    ap.add_argument("--engines", nargs="+", default=["exhaustive", "clinrag", "plaid", "lancedb", "voyager"])
    ap.add_argument("--nbits", type=int, nargs="+", default=[2], help="clinrag residual bits (one index each)")
    ap.add_argument("--grid", nargs="+", default=["8/256", "16/256", "16/1024"],
                    help="clinrag nprobe/ncandidates settings")
    ap.add_argument("--max-centroids", type=int, default=8192,
                    help="cap on PLAID's centroid rule (k-means cost on 2 CPU cores)")
    ap.add_argument("--assign-nprobe", type=int, default=16,
                    help="centroid lists scanned to assign a token from 8192 centroids on (library default 16)")
    ap.add_argument("--build-timeout", type=float, default=3600, help="seconds allowed to each clinrag build")
    ap.add_argument("--kmeans-niter", type=int, default=4, help="k-means iterations (PyLate/colbert-ai default: 4)")
    ap.add_argument("--queries", type=int, default=None, help="use only the first N of the 156 queries")
    ap.add_argument("--lancedb-queries", type=int, default=32)
    ap.add_argument("--exhaustive-single", type=int, default=16, help="single queries timed for exhaustive")
    ap.add_argument("--peer-python", default="/work/peers/pylate/bin/python")
    ap.add_argument("--peer-nbits", type=int, default=4)
    ap.add_argument("--peer-grid", nargs="+", default=["8/8192", "8/1024", "8/256"],
                    help="PyLate PLAID n_ivf_probe/n_full_scores settings (PyLate's default 8/8192)")
    ap.add_argument("--peer-timeout", type=float, default=1800)
    ap.add_argument("--voyager-max-chunks", type=int, default=10000,
                    help="Voyager (HNSW over every token) is skipped above this size")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/clinrag-bench-late"))
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--threads", type=int, default=1,
                    help="threads per engine (1: on 2 cores shared with other jobs, more threads only wait)")
    ap.add_argument("--vectors-up-to", type=int, default=200_000,
                    help="above this many chunks the vectors are not written out (38 GB at 1M): only the "
                         "clinrag build and search run, regenerating them block by block; no exhaustive "
                         "reference, so no recall")
    ap.add_argument("--note", default="", help="appended to the table title (e.g. CPU contention)")
    # worker mode
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    grid = [tuple(int(x) for x in g.split("/")) for g in args.grid]
    global THREADS
    THREADS = args.threads
    if args.worker:
        import torch

        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS") or os.cpu_count() or 1))
        w = args.workdir
        res = {"exhaustive": lambda: work_exhaustive(w, args.exhaustive_single),
               "clinrag-build": lambda: work_clinrag_build(w, args.nbits[0], args.max_centroids, args.kmeans_niter,
                                                           args.dim, args.assign_nprobe),
               "clinrag-search": lambda: work_clinrag_search(w, args.nbits[0], grid),  # type: ignore[arg-type]
               "lancedb": lambda: work_lancedb(w, args.lancedb_queries)}[args.worker]()
        args.out.write_text(json.dumps(res))
        return

    args.workdir.mkdir(parents=True, exist_ok=True)
    docs, queries = real_vectors(args.workdir, args.dim)
    queries = queries[:args.queries]
    me = [str(Path(__file__).resolve())]
    rows: list[tuple] = []

    def worker(name: str, w: Path, timeout: float = 3600, nbits: int = 2) -> dict:
        res = run_worker([*me, "--worker", name, "--workdir", str(w), "--nbits", str(nbits),
                          "--max-centroids", str(args.max_centroids), "--kmeans-niter", str(args.kmeans_niter),
                          "--assign-nprobe", str(args.assign_nprobe),
                          "--lancedb-queries", str(args.lancedb_queries),
                          "--exhaustive-single", str(args.exhaustive_single), "--grid", *args.grid],
                         w / f"{name}.json", timeout)
        print(name, json.dumps(res)[:400], flush=True)
        return res

    def peers(n: int, w: Path, tokens: int, which: list[str]) -> None:
        for peer in which:
            if peer not in args.engines:
                continue
            label = (f"PyLate PLAID (fast-plaid) {args.peer_nbits}-bit" if peer == "plaid"
                     else "PyLate Voyager (HNSW per token)")
            if peer == "voyager" and n > args.voyager_max_chunks:
                rows.append((n, label, "-", "-", "-", "-", "-", "-", "-", "-", "-", "-",
                             f"skipped: {tokens} token vectors in HNSW exceed the 2-core time budget"))
                continue
            if not Path(args.peer_python).exists():
                rows.append((n, label, *["-"] * 10, f"not installed ({args.peer_python} missing)"))
                continue
            base = [str(ROOT / "bench" / "peer_pylate.py"), "--workdir", str(w), "--index", peer,
                    "--nbits", str(args.peer_nbits), "--settings", *args.peer_grid]
            pb = run_worker([*base, "--phase", "build"], w / f"{peer}-build.json", args.peer_timeout,
                            args.peer_python)
            print(peer, "build", pb, flush=True)
            ps = (run_worker([*base, "--phase", "search"], w / f"{peer}-search.json", args.peer_timeout,
                             args.peer_python) if "error" not in pb else {"error": "no index"})
            print(peer, "search", ps, flush=True)
            for r in ps.get("rows") or [{}]:  # type: ignore[union-attr]
                setting = ("M 64, ef 200" if peer == "voyager" else
                           f"probe {r['setting'].replace('/', ' / full scores ')}" if "setting" in r else "-")
                rows.append((n, label, setting, fmt(r.get("p50_ms")), fmt(r.get("p95_ms")),
                             fmt(r.get("batch64_ms_per_q")), fmt(r.get("recall@10"), ".3f"),
                             fmt(pb.get("bytes_per_token")), fmt(pb.get("build_s")),
                             fmt(n / pb["build_s"] if "build_s" in pb else None, ".0f"),
                             fmt(pb.get("peak_rss_mib"), ".0f"), fmt(ps.get("peak_rss_mib"), ".0f"),
                             pb.get("error") or ps.get("error") or f"torch {pb.get('torch')}, own venv"))

    for n in args.chunks:
        w = args.workdir / str(n)
        t0 = time.perf_counter()
        with_vectors = n <= args.vectors_up_to
        prepare(w, docs, queries, n, write_vectors=with_vectors)
        tokens = int(np.load(w / "doc_offsets.npy")[-1])
        print(f"{n} chunks, {tokens} tokens prepared in {time.perf_counter() - t0:.0f} s", flush=True)
        engines = args.engines if with_vectors else [e for e in args.engines if e == "clinrag"]
        ex = worker("exhaustive", w) if with_vectors else {}  # it writes the truth
        if "exhaustive" in engines:
            rows.append((n, "torch exhaustive MaxSim (fp16 stored, fp32 compute)", "-", fmt(ex.get("p50_ms")),
                         fmt(ex.get("p95_ms")), fmt(ex.get("batch64_ms_per_q")), "1.000",
                         fmt(ex.get("bytes_per_token"), ".0f"), "-", "-", "-", fmt(ex.get("peak_rss_mib"), ".0f"),
                         f"single: {ex.get('single_queries')} queries" if "error" not in ex else ex["error"]))
        for nbits in args.nbits if "clinrag" in engines else []:
            b = worker("clinrag-build", w, timeout=args.build_timeout, nbits=nbits)
            s = worker("clinrag-search", w, nbits=nbits) if "error" not in b else {"error": "no index"}
            search_rows: list[dict] = s.get("rows") or [{}]  # type: ignore[assignment]
            for r in search_rows:
                rows.append((n, f"clinrag {nbits}-bit ({b.get('centroids')} centroids)",
                             f"nprobe {r.get('nprobe')} / cand {r.get('ncandidates')}", fmt(r.get("p50_ms")),
                             fmt(r.get("p95_ms")), fmt(r.get("batch64_ms_per_q")), fmt(r.get("recall@10"), ".3f"),
                             fmt(b.get("bytes_per_token")), fmt(b.get("build_s")),
                             fmt(n / b["build_s"] if "build_s" in b else None, ".0f"),
                             fmt(b.get("peak_rss_mib"), ".0f"), fmt(s.get("peak_rss_mib"), ".0f"),
                             b.get("error") or s.get("error")
                             or f"batch = search_batch_vectors; same hits as single: {r.get('batch_same_hits')}"))
        peers(n, w, tokens, [p for p in ["plaid"] if p in engines])
        if "lancedb" in engines:
            lr = worker("lancedb", w)
            rows.append((n, "LanceDB native multivector (flat)", "-", fmt(lr.get("p50_ms")), fmt(lr.get("p95_ms")),
                         "-", fmt(lr.get("recall@10"), ".3f"), fmt(lr.get("bytes_per_token")),
                         fmt(lr.get("build_s")), fmt(n / lr["build_s"] if "build_s" in lr else None, ".0f"), "-",
                         fmt(lr.get("peak_rss_mib"), ".0f"),
                         lr.get("error") or f"build+search in one process; {lr.get('single_queries')} queries"))
        peers(n, w, tokens, [p for p in ["voyager"] if p in engines])
    header = ("chunks", "engine", "setting", "p50 ms", "p95 ms", "batch64 ms/q", "R@10 vs exhaustive",
              "bytes/token", "build s", "build chunks/s", "peak RSS build MiB", "peak RSS search MiB", "notes")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    title = (f"\n## Late interaction at scale, CPU ({platform.machine()}, {os.cpu_count()} cores), {dt.date.today()}: "
             f"real MiniLM token vectors PCA->{args.dim}-d resampled with noise into ~150-token chunks (synthetic); "
             f"{len(queries)} MeSH queries; {args.threads} thread(s) per engine; k-means {args.kmeans_niter} "
             f"iterations, at most {args.max_centroids} centroids"
             f"{'; ' + args.note if args.note else ''}\n\n")
    print(title + "\n".join(lines))
    with open(ROOT / "bench" / "RESULTS.md", "a") as fh:
        fh.write(title + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
