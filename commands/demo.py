"""``clinrag demo``: index the bundled samples, search them and answer, offline."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer

from clinrag.commands.answer import load_llm_or_none
from clinrag.commands.common import err, hits_table, out
from clinrag.config import IndexConfig


def demo(index_dir: Annotated[Path, typer.Option("--index", help="Where to build the demo index.")] = Path(
        "demo-index")) -> None:
    """Index the bundled sample corpus (abstracts, FHIR records, chest images), search it and answer, offline.

    The index has BM25 and a multi-vector index (the packaged all-MiniLM-L6-v2); searches are hybrid.
    """
    from clinrag.data.readers import read_records
    from clinrag.engine import Engine

    samples = Path(__file__).resolve().parents[1] / "data" / "samples"
    sources = [p for p in (samples / "abstracts.jsonl", samples / "fhir", samples / "cxr") if p.exists()]
    t0 = time.perf_counter()
    engine = Engine.create(index_dir, IndexConfig(text_model="default"), overwrite=True)
    with err.status("indexing the sample corpus (encoding token vectors on "
                    f"{'GPU' if cuda() else 'CPU'})..."):
        engine.add(read_records(sources))
    c = engine.manifest.counts
    out.print(f"[bold]Indexed[/] {c['documents']} documents ({c['chunks']} chunks), {c['images']} images, "
              f"{c['patients']} patients from {samples} in {time.perf_counter() - t0:.1f}s -> {index_dir}")
    queries: list[tuple[str, dict[str, Any]]] = [
        ("statins and cardiovascular outcomes", {}),
        ("chest x-ray ground glass opacities pneumonia", {}),
        ("hemoglobin A1c", {"kind": ["observation"]}),
    ]
    for q, filters in queries:
        hits = engine.search(q, k=3, filters=filters)
        hits_table(q + (f"  (filters: {filters})" if filters else ""), hits)
    for mode in ("lexical", "late"):
        hits = engine.search("low blood sugar episodes", k=2, mode=mode)
        hits_table(f"low blood sugar episodes  (--mode {mode})", hits)
    demo_answers(engine)
    engine.close()


def demo_answers(engine: Any) -> None:
    """The demo's grounded answers: extractive (no LLM), then the packaged LLM when it is installed."""
    from rich.markup import escape

    from clinrag.generation.llm import parse_spec

    question = "Do statins reduce cardiovascular events?"
    loaded = load_llm_or_none(parse_spec("llamacpp", max_new_tokens=96), "auto")
    for mode in ("extractive", "llm") if loaded is not None else ("extractive",):
        a = engine.ask(question, k=4, mode=mode, llm=loaded)
        out.print(f"\n[bold]clinrag ask --mode {mode}[/] {escape(question)}")
        if a.abstained:
            out.print(f"[yellow]abstained[/]: {escape(a.reason or '')}", highlight=False)
        else:
            out.print(escape(a.text), highlight=False)
        for e in a.cited:
            out.print(f"  [dim]\\[{e.n}] {escape(e.source or e.doc_id)}: {escape(e.text[:120])}...[/]", highlight=False)


def cuda() -> bool:
    import torch

    return bool(torch.cuda.is_available())


__all__ = ["demo", "demo_answers"]
