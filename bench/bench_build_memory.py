"""Peak memory and time of a full library build (Engine.create + add + commit) at scale.

``bench_late_scale.py`` measures the multi-vector layout alone; this script goes through the
whole write path a user runs: documents chunked, token vectors compressed and appended to
the LanceDB chunks table batch by batch (``Transaction.add``), then the commit (BM25 over all
chunk texts, the multi-vector layout streamed from the table in record batches, the manifest).

Documents are synthetic: 150-word texts (one chunk each, 150 tokens) drawn from the PubMedQA abstracts' vocabulary. The
text model is a stand-in (``HashTokenEncoder``): one fixed random 128-d unit vector per word
plus noise, so that encoding costs nothing and the measure is the index's own work; it keeps
the real shape of the data (one vector per token, ~150 tokens a chunk with the real model).
Peak RSS is read per phase (VmHWM of this process; page cache is not counted). Prints a table
and appends it to bench/RESULTS.md::

    .venv/bin/python bench/bench_build_memory.py --docs 100000
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import shutil
import sys
import time
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import rss_mib  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PQA = ROOT.parent / "shared" / "data" / "pubmedqa" / "pqal_dev.json"
if not PQA.exists():
    PQA = Path("/work/shared/data/pubmedqa/pqal_dev.json")


class HashTokenEncoder:
    """One fixed random unit vector per word (crc32-seeded) plus noise: a free stand-in text model."""

    name, truncated = "bench-hash-128", 0

    def __init__(self, dim: int = 128, noise: float = 0.3) -> None:
        self.dim, self.noise = dim, noise
        self._table: dict[str, np.ndarray] = {}
        self._rng = np.random.default_rng(0)

    def _word(self, w: str) -> np.ndarray:
        v = self._table.get(w)
        if v is None:
            v = np.random.default_rng(zlib.crc32(w.encode())).standard_normal(self.dim).astype(np.float32)
            self._table[w] = v
        return v

    def _encode(self, texts: Sequence[str]) -> list[np.ndarray]:
        out = []
        for t in texts:
            words = re.findall(r"\w+", t.lower()) or ["empty"]
            v = np.stack([self._word(w) for w in words])
            v += self.noise * self._rng.standard_normal(v.shape, dtype=np.float32)
            out.append((v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float16))
        return out

    def encode_documents(self, texts: Sequence[str], *, batch_size: int = 32, progress=None) -> list[np.ndarray]:  # noqa: ANN001
        return self._encode(texts)

    def encode_queries(self, texts: Sequence[str], *, batch_size: int = 32, progress=None) -> list[np.ndarray]:  # noqa: ANN001
        return self._encode(texts)


def current_rss_mib() -> float:
    """Resident memory now (VmRSS), in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def synthetic_documents(n: int, words_per_doc: int = 150, seed: int = 0) -> Iterator:
    from clinrag.data.schema import Document

    data = json.loads(PQA.read_text())
    vocab = re.findall(r"[A-Za-z][A-Za-z0-9-]+", " ".join(" ".join(v["CONTEXTS"]) for v in data.values()))
    vocab_arr = np.asarray(vocab)
    rng = np.random.default_rng(seed)
    for i in range(n):
        start = int(rng.integers(0, len(vocab_arr) - words_per_doc))  # a real run of words, then shuffled a bit
        words = vocab_arr[start:start + words_per_doc].copy()
        rng.shuffle(words[: words_per_doc // 3])
        yield Document(id=f"d{i}", text=" ".join(words.tolist()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", type=int, default=100_000)
    ap.add_argument("--n-centroids", type=int, default=8192)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/clinrag-bench-build"))
    ap.add_argument("--note", default="")
    args = ap.parse_args()

    from clinrag.config import IndexConfig
    from clinrag.engine import Engine

    shutil.rmtree(args.workdir, ignore_errors=True)
    enc = HashTokenEncoder()
    cfg = IndexConfig(text_model="bench-hash-128", nbits=2, n_centroids=args.n_centroids)
    rows = []
    t0 = time.perf_counter()
    with Engine.create(args.workdir / "index", cfg, encoder=enc) as eng:
        base = rss_mib()
        # add() commits at the end of the with-block's transaction; time the two phases apart
        from clinrag.indexing.writer import Transaction

        marks: list[tuple[int, float]] = []  # (documents read, current RSS): flat means bounded by a flush

        def sample(n: int) -> None:
            if n % (args.docs // 10 or 1) == 0:
                marks.append((n, current_rss_mib()))

        with Transaction(eng.root, eng.manifest, "add", encoder=enc) as tx:
            stats = tx.add(synthetic_documents(args.docs), progress=sample)
            t_add, rss_add = time.perf_counter() - t0, rss_mib()
            t1 = time.perf_counter()
            manifest = tx.commit()
            t_commit, rss_commit = time.perf_counter() - t1, rss_mib()
    mv = manifest.last_build.get("multivector", {})
    def du(path: Path) -> int:
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())

    size, tokens = du(args.workdir / "index"), max(1, int(mv.get("tokens") or 1))
    layout = du(args.workdir / "index" / str(manifest.mv_dir)) + du(args.workdir / "index" / str(manifest.codec_dir))
    rows += [("documents / chunks", f"{args.docs} / {stats.chunks_added}"),
             ("tokens", mv.get("tokens")),
             ("centroids", args.n_centroids),
             ("add: chunk + encode + compress + append (s)", f"{t_add:.0f}"),
             ("commit: BM25 + streamed layout + manifest (s)", f"{t_commit:.0f}"),
             ("chunks/s overall", f"{stats.chunks_added / (t_add + t_commit):.0f}"),
             ("peak RSS after create (MiB)", f"{base:.0f}"),
             ("peak RSS after add (MiB)", f"{rss_add:.0f}"),
             ("current RSS while adding, at 10%, 20%, ... of the documents (MiB)",
              ", ".join(f"{r:.0f}" for _, r in marks)),
             ("peak RSS after commit (MiB)", f"{rss_commit:.0f}"),
             ("index on disk (MiB)", f"{size / 2**20:.0f}"),
             ("bytes/token, search layout (mv + codec)", f"{layout / tokens:.1f}"),
             ("bytes/token, whole index (chunks table with text and codes, layout, BM25)", f"{size / tokens:.1f}")]
    title = (f"\n## Full build memory, CPU ({platform.machine()}, {os.cpu_count()} cores), {dt.date.today()}: "
             f"Engine.create + add + commit, synthetic 150-word documents (150 tokens each), stand-in 128-d text model"
             f"{'; ' + args.note if args.note else ''}\n\n")
    lines = ["| what | value |", "|---|---|"] + [f"| {k} | {v} |" for k, v in rows]
    print(title + "\n".join(lines))
    with open(ROOT / "bench" / "RESULTS.md", "a") as fh:
        fh.write(title + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
