"""Answer latency on CPU for the default LLM (packaged Gemma 3 270M Q4_K_M GGUF via llama-cpp-python).

For N seeded PubMedQA questions, ``Engine.ask`` over a BM25 index of all abstracts: model
load time, time to first token, total answer time (retrieval + prompt + generation + checks),
generated tokens per second; extractive mode for comparison. Prints a table and appends it
to bench/RESULTS.md. Run: `.venv/bin/python bench/bench_answer.py [--questions 20] [--k 3]`.
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

from clinrag.data.readers.pubmedqa import document_from_entry, load_pubmedqa
from clinrag.engine import Engine
from clinrag.eval.qa import sample_ids
from clinrag.generation.llm import load_llm, parse_spec

ROOT = Path(__file__).resolve().parents[1]
DATA = next((p for p in (ROOT.parent / "shared", ROOT.parents[1] / "shared", Path("/work/shared"))
             if (p / "data" / "pubmedqa" / "pqal_dev.json").exists()), ROOT.parent / "shared") / "data" / "pubmedqa" \
    / "pqal_dev.json"


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--questions", type=int, default=20)
    ap.add_argument("--k", type=int, default=3)
    ap.add_argument("--llm", default="llamacpp")
    ap.add_argument("--max-tokens", type=int, default=160)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    raw = load_pubmedqa(args.data)
    ids = sample_ids(raw, args.questions, seed=1)
    t0 = time.perf_counter()
    model = load_llm(parse_spec(args.llm, max_new_tokens=args.max_tokens, threads=args.threads))
    load_s = time.perf_counter() - t0
    tokenize = getattr(getattr(model.llm, "_model", None), "tokenize", None)
    rows: dict[str, list[float]] = {"first_token": [], "generation": [], "total": [], "tok_s": [],
                                    "prompt_chars": [], "extractive_total": []}
    with tempfile.TemporaryDirectory() as tmp, Engine.create(Path(tmp) / "idx") as eng:
        eng.add(document_from_entry(p, raw[p], args.data) for p in sorted(raw))
        eng.ask("warm up the index", mode="extractive")
        for pmid in ids:
            q = raw[pmid]["QUESTION"]
            a = eng.ask(q, k=args.k, mode="llm", llm=model)
            t = a.timings
            rows["first_token"].append(t["first_token"])
            rows["generation"].append(t["generation"])
            rows["total"].append(t["total"])
            n_tok = len(tokenize(a.raw.encode())) if tokenize and a.raw else 0
            gen_after_first = t["generation"] - t["first_token"]
            if n_tok > 1 and gen_after_first > 0:
                rows["tok_s"].append((n_tok - 1) / gen_after_first)
            rows["prompt_chars"].append(sum(len(e.text) for e in a.evidence))
            rows["extractive_total"].append(eng.ask(q, k=args.k, mode="extractive").timings["total"])
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    med = {k: statistics.median(v) if v else float("nan") for k, v in rows.items()}
    table = [
        ("model", f"{model.name} ({model.family} template), max {args.max_tokens} new tokens, greedy"),
        ("questions / k", f"{len(ids)} PubMedQA questions (seed 1), k={args.k} BM25 chunks"),
        ("model load (s)", f"{load_s:.2f}"),
        ("time to first token p50 / p95 (s)", f"{med['first_token']:.2f} / {pct(rows['first_token'], .95):.2f}"),
        ("total answer time p50 / p95 (s)", f"{med['total']:.2f} / {pct(rows['total'], .95):.2f}"),
        ("generation tokens/s p50", f"{med['tok_s']:.1f}"),
        ("evidence chars per prompt p50", f"{med['prompt_chars']:.0f}"),
        ("extractive answer total p50 (s)", f"{med['extractive_total']:.3f}"),
        ("peak RSS (MiB)", f"{peak:.0f}"),
    ]
    width = max(len(k) for k, _ in table)
    body = "\n".join(f"| {k:<{width}} | {v} |" for k, v in table)
    header = (f"\n## Answer latency, CPU ({platform.machine()}, {os.cpu_count()} cores, shared), {dt.date.today()}"
              "\n\n| what | value |\n|---|---|\n")
    print(header + body)
    with open(ROOT / "bench" / "RESULTS.md", "a") as fh:
        fh.write(header + body + "\n")


if __name__ == "__main__":
    main()
