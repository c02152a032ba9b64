"""Image encoding throughput (ViT-B/32, ViT-B/16, random weights) and image-search latency at 100k images.

Encoding: real JPEGs from the shared covid-cxr folder (falls back to the bundled samples), decoded
and preprocessed as at index time (``indexing.image_embed.embed_image_files``); random weights give
real timings. Search: an index with 100k synthetic image rows (random unit 512-d embeddings, 1,000
patients, 3 modalities) written to LanceDB, loaded into FAISS, then queried through the Engine:
FAISS alone, and end to end (text query through the CLIP text tower, FAISS, LanceDB row fetch and
linked-note lookup), unfiltered and with patient / modality filters.

Prints a table and appends it to bench/RESULTS.md. Run:
`nice python bench/bench_images.py [--device cpu|cuda] [--images 64] [--n 100000]`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import resource
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from clinrag.config import IndexConfig
from clinrag.data.schema import ImageRecord
from clinrag.engine import Engine
from clinrag.indexing.image_embed import embed_image_files
from clinrag.indexing.image_encoders import load_image_encoder
from clinrag.indexing.store import images_table
from clinrag.indexing.writer import Transaction

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "covid-cxr"


def _images(n: int) -> list[str]:
    folder = next((p for p in (SHARED, Path("/work/shared/data/covid-cxr")) if (p / "images").is_dir()),
                  ROOT / "data" / "samples" / "cxr")
    files = sorted(str(p) for p in (folder / "images").glob("*.jpg"))
    return [files[i % len(files)] for i in range(n)]


def bench_encode(arch: str, n: int, batch: int, device: str) -> dict[str, object]:
    import torch

    enc = load_image_encoder(f"{arch}@random", device=device)
    paths = _images(n)
    embed_image_files(paths[:batch], enc, batch_size=batch)  # warm-up
    if device == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    out = embed_image_files(paths, enc, batch_size=batch)
    if device == "cuda":
        torch.cuda.synchronize()
    wall = time.perf_counter() - t0
    t1 = time.perf_counter()
    enc.encode_texts(["right lower lobe consolidation"] * 64)
    text_wall = time.perf_counter() - t1
    return {"arch": arch, "device": device, "threads": torch.get_num_threads(), "images": len(out), "batch": batch,
            "img_s": len(out) / wall, "text_s": 64 / text_wall}


def _lat(fn, repeats: int) -> tuple[float, float]:
    times = []
    for i in range(repeats):
        t0 = time.perf_counter()
        fn(i)
        times.append((time.perf_counter() - t0) * 1000)
    times.sort()
    return statistics.median(times), times[int(0.95 * (len(times) - 1))]


def bench_search(n: int, repeats: int) -> list[tuple[str, float, float]]:
    rng = np.random.default_rng(0)
    mods = ["X-ray", "CT", "MRI"]
    rows: list[tuple[str, float, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        eng = Engine.create(Path(tmp) / "idx", IndexConfig(image_model="ViT-B-32@random"))
        dim = eng.store.image_dim or 512
        with Transaction(eng.root, eng.manifest, "add") as tx:
            for start in range(0, n, 20_000):
                m = min(20_000, n - start)
                recs = [ImageRecord(id=f"img{i}", path=f"/data/img{i}.png", modality=mods[i % 3],
                                    patient_id=f"p{i % 1000}", timestamp=dt.datetime(2020, 1, 1 + i % 28))
                        for i in range(start, start + m)]
                emb = rng.standard_normal((m, dim)).astype(np.float32)
                emb /= np.linalg.norm(emb, axis=1, keepdims=True)
                tx.store.append("images", images_table(recs, emb, image_dim=dim))
            eng.manifest = tx.commit()
        eng.close()
        write_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        index = eng.image_index()
        load_s = time.perf_counter() - t0
        rows.append((f"write {n} rows to LanceDB (s)", write_s, float("nan")))
        rows.append((f"load {len(index)} embeddings into FAISS ({index.device}) (s)", load_s, float("nan")))
        q = rng.standard_normal((repeats, dim)).astype(np.float32)
        q /= np.linalg.norm(q, axis=1, keepdims=True)
        rows.append(("FAISS flat top-10, 1 query (ms)", *_lat(lambda i: index.search(q[i], 10), repeats)))
        t0 = time.perf_counter()
        index.search(q, 10)
        rows.append((f"FAISS flat top-10, batch of {repeats} (ms/query)",
                     (time.perf_counter() - t0) * 1000 / repeats, float("nan")))
        enc = eng.image_encoder
        enc.encode_texts(["warm up"])
        rows.append(("CLIP text tower, 1 query (ms)", *_lat(lambda i: enc.encode_texts([f"pneumonia {i}"]), repeats)))
        eng.search_images(vector=q[0], k=10)
        rows.append(("engine search_images top-10 from a query vector: FAISS + LanceDB rows + notes (ms)",
                     *_lat(lambda i: eng.search_images(vector=q[i], k=10), repeats)))
        rows.append(("  same, patient filter (100 of 100k admitted) (ms)",
                     *_lat(lambda i: eng.search_images(vector=q[i], k=10, filters={"patient_id": f"p{i}"}),
                           repeats)))
        rows.append(("  same, modality=CT filter (1/3 admitted) (ms)",
                     *_lat(lambda i: eng.search_images(vector=q[i], k=10, filters={"modality": "CT"}), repeats)))
        eng.close()
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--archs", nargs="*", default=["ViT-B-32", "ViT-B-16"])
    args = ap.parse_args()
    enc = [bench_encode(a, args.images, args.batch, args.device) for a in args.archs]
    search = bench_search(args.n, args.repeats) if args.n else []
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    cpu = f"{platform.machine()}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} (shared machine)"
    out = [f"\n## Images, {dt.date.today()} ({cpu}, device {args.device}); random weights; peak RSS {peak:.0f} MiB\n",
           "| model | device | torch threads | images | batch | images/s (decode+preprocess+encode) | texts/s |",
           "|---|---|---|---|---|---|---|"]
    out += [f"| {r['arch']} | {r['device']} | {r['threads']} | {r['images']} | {r['batch']} | {r['img_s']:.2f} | "
            f"{r['text_s']:.1f} |" for r in enc]
    if search:
        out += ["", f"Image search at {args.n} images (512-d, synthetic), {args.repeats} queries:", "",
                "| what | p50 | p95 |", "|---|---|---|"]
        out += [f"| {name} | {a:.2f} | {'' if b != b else f'{b:.2f}'} |" for name, a, b in search]
    text = "\n".join(out)
    print(text)
    with open(ROOT / "bench" / "RESULTS.md", "a") as fh:
        fh.write(text + "\n")


if __name__ == "__main__":
    main()
