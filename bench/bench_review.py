"""Review throughput: formulations/s and records scored/s for a 100-question protocol, per mode.

The protocol is the first ``--questions`` topics of the PubMedQA MeSH review benchmark
(``clinrag eval review-mesh``: ~4.6 formulations each), over the 500 PubMedQA abstracts indexed
without MeSH, with the packaged all-MiniLM-L6-v2 for late/hybrid. Model loading and ranx's numba
compilation are done by a warm-up run first and not timed. Prints a table and appends it to
bench/RESULTS.md.

- ``formulations/s``: formulations searched / search seconds (``search_batch`` calls only);
- ``chunk scores/s``: formulations x chunks in the index / search seconds (the index each
  formulation is searched over; late interaction prunes to candidates before exact MaxSim, so
  this is coverage per second, not exact MaxSim evaluations);
- ``records/s``: de-duplicated, flagged output records / end-to-end seconds (search, fusion,
  document fetch, de-duplication, criteria; no files written).

    .venv/bin/python bench/bench_review.py --questions 100 [--index DIR]
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
import resource
import tempfile
import time
from pathlib import Path

import torch

from clinrag.engine import Engine
from clinrag.eval.review_bench import mesh_review
from clinrag.eval.runner import TASK_CONFIG
from clinrag.review.protocol import ReviewProtocol
from clinrag.review.runner import run_review

ROOT = Path(__file__).resolve().parents[1]
PQA = next((p / "shared/data/pubmedqa/pqal_dev.json" for p in (ROOT.parent, ROOT.parents[1])
            if (p / "shared/data/pubmedqa/pqal_dev.json").exists()), ROOT.parent / "shared/data/pubmedqa/pqal_dev.json")


class Timed:
    """Wraps an engine and times its ``search_batch`` calls."""

    def __init__(self, eng: Engine) -> None:
        self.eng = eng
        self.seconds = 0.0
        self.formulations = 0

    def search_batch(self, queries, k=10, filters=None, *, mode=None, unique_docs=False, temporal=True):
        t0 = time.perf_counter()
        out = self.eng.search_batch(queries, k, filters, mode=mode, unique_docs=unique_docs, temporal=temporal)
        self.seconds += time.perf_counter() - t0
        self.formulations += len(queries)
        return out

    def documents(self, ids):
        return self.eng.documents(ids)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=PQA)
    ap.add_argument("--questions", type=int, default=100)
    ap.add_argument("--depth", type=int, default=100)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--modes", nargs="+", default=["lexical", "late", "hybrid"])
    ap.add_argument("--index", type=Path, help="Reuse an index of the benchmark's abstracts (built here if absent).")
    ap.add_argument("--no-append", action="store_true")
    args = ap.parse_args()

    bench = mesh_review(args.data, depth=args.depth, max_questions=args.questions)
    proto = ReviewProtocol.model_validate(bench.protocol)
    n_forms = sum(len(q.formulations) for q in proto.questions)
    tmp = tempfile.TemporaryDirectory(prefix="bench-review-")
    index_dir = args.index or Path(tmp.name) / "index"
    cfg = TASK_CONFIG.with_(text_model="default")
    build = 0.0
    if (index_dir / "manifest.json").exists():
        eng = Engine.open(index_dir, expect_config=cfg)
    else:
        t0 = time.perf_counter()
        eng = Engine.create(index_dir, cfg)
        eng.add(bench.documents)
        build = time.perf_counter() - t0
    n_chunks = eng.manifest.counts["chunks"]
    device = "cuda" if torch.cuda.is_available() else "cpu"
    rows = []
    warm = ReviewProtocol.model_validate({**bench.protocol, "questions": bench.protocol["questions"][:2]})
    for mode in args.modes:
        run_review(eng, warm, mode=mode, batch_size=args.batch_size)  # load models, compile ranx
        timed = Timed(eng)
        t0 = time.perf_counter()
        res = run_review(timed, proto, mode=mode, batch_size=args.batch_size)
        total = time.perf_counter() - t0
        n_rec = sum(len(q.records) for q in res.questions)
        rows.append((mode, timed.formulations, timed.seconds, total, n_rec))
        print(f"{mode}: {timed.formulations} formulations, search {timed.seconds:.1f}s, total {total:.1f}s", flush=True)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    head = (f"\n## Review throughput, {device.upper()} ({platform.machine()}, {torch.get_num_threads()} threads), "
            f"{dt.date.today().isoformat()}: {len(proto.questions)} MeSH-topic questions, {n_forms} formulations, "
            f"depth {args.depth}, batch {args.batch_size}; {len(bench.documents)} abstracts / {n_chunks} chunks; "
            f"peak RSS {rss:.0f} MiB{f'; index build {build:.0f}s' if build else ''}\n\n")
    table = ["| mode | formulations | search s | formulations/s | chunk scores/s | end-to-end s | records "
             "| records/s |",
             "|---|---|---|---|---|---|---|---|"]
    for mode, f, s, total, n_rec in rows:
        table.append(f"| {mode} | {f} | {s:.1f} | {f / s:.1f} | {f * n_chunks / s:,.0f} | {total:.1f} | {n_rec} | "
                     f"{n_rec / total:.0f} |")
    text = head + "\n".join(table) + "\n"
    print(text)
    if not args.no_append:
        with open(ROOT / "bench" / "RESULTS.md", "a") as fh:
            fh.write(text)
    eng.close()
    tmp.cleanup()


if __name__ == "__main__":
    main()
