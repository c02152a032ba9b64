"""Latency of the QR-head reranker: rerank 50 candidates of ~150 tokens (one prompt of ~7,700 tokens).

    PYTHONPATH=... python bench/bench_qr.py [--model gemma] [--heads 16] [--repeat 3] [--no-append]

Times (median of ``--repeat``): the selected-heads path (hooks, early exit after the last selected
layer) with 1 and 2 orders, with and without the null-query calibration (one more pass per
order), and, for reference, one plain SDPA forward pass of the whole model over the same prompt.
Prints a table and appends it to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import statistics
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="gemma")
    ap.add_argument("--heads", type=int, default=16)
    ap.add_argument("--candidates", type=int, default=50)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--orders", default="1,2", help="QRReranker orders to time, comma-separated")
    ap.add_argument("--null", default="0,1", help="null-query calibration off (0) / on (1) to time, comma-separated")
    ap.add_argument("--no-warmup", action="store_true")
    ap.add_argument("--no-append", action="store_true")
    args = ap.parse_args()

    import torch

    from clinrag.retrieval.qr import HeadSelection, QRReranker, build_prompt, get_causal_lm, head_scores

    lm = get_causal_lm(args.model)
    words = ("Observation: Hemoglobin A1c = 7.2 %. Date 2019-03-01. Category: laboratory. The patient reports "
             "fatigue and polyuria; metformin 500 mg twice daily was continued and diet advice given. ").split()
    texts = [" ".join((words * 8)[i % 7: i % 7 + 120]) for i in range(args.candidates)]
    prompt = build_prompt(lm.tokenizer, "most recent hemoglobin A1c", texts, max_candidate_tokens=150)
    n_layers, n_heads = lm.n_layers, lm.n_heads
    # heads spread over the upper layers (a calibrated selection looks similar; the cost depends
    # on the number of heads and on the deepest selected layer)
    pool = [(i, j) for i in range(n_layers // 2, n_layers) for j in range(n_heads)]
    heads = tuple(pool[:: max(1, len(pool) // args.heads)][: args.heads])
    sel = HeadSelection(lm.name, heads)
    threads = torch.get_num_threads()

    def timed(fn) -> float:
        if not args.no_warmup:
            fn()
        out = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t0)
        return statistics.median(out) * 1000

    rows = []
    ids = torch.tensor([prompt.ids])
    with torch.inference_mode():
        rows.append(("full forward, SDPA (reference)", timed(lambda: lm.model(input_ids=ids, use_cache=False))))
    rows.append((f"selected heads only ({len(heads)} heads, up to layer {max(h[0] for h in heads)})",
                 timed(lambda: head_scores(lm, prompt, heads))))
    for null in (bool(int(x)) for x in args.null.split(",")):
        for orders in (int(o) for o in args.orders.split(",")):
            rr = QRReranker(lm, sel, top_n=args.candidates, orders=orders, null_query=null)
            rows.append((f"QRReranker.scores, orders={orders}, null query {'on' if null else 'off'}",
                         timed(lambda rr=rr: rr.scores("most recent hemoglobin A1c", texts))))
    device = "cuda" if torch.cuda.is_available() else f"CPU ({os.cpu_count()} cores, torch threads {threads})"
    title = (f"QR-head rerank latency: {args.model}, {args.candidates} candidates x ~150 tokens = {len(prompt.ids)} "
             f"prompt tokens; {device}; {dt.date.today()} ({platform.node()}); median of {args.repeat}"
             f"{', no warm-up' if args.no_warmup else ''}; shared machine, 1-min load average {os.getloadavg()[0]:.1f}")
    lines = [f"### {title}", "", "| path | ms |", "|---|---:|"] + [f"| {n} | {ms:.0f} |" for n, ms in rows]
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.no_append:
        with open(Path(__file__).with_name("RESULTS.md"), "a") as fh:
            fh.write("\n" + text)


if __name__ == "__main__":
    main()
