"""The ``clinrag`` command line (Typer). Run ``clinrag --help``.

Machine-readable output (``--json``) is a stable contract: ``search --json`` prints a
JSON array of hits (``doc_id``, ``chunk_id``, ``score``, ``text``, ``metadata``);
``info --json`` an object with ``counts`` and ``manifest``; ``eval ... --json`` an
object whose metric keys are ``ndcg@10``, ``recall@100``, ``mrr@10``...
"""

from __future__ import annotations

import json
import logging
import shutil
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from clinrag.commands.answer import ask
from clinrag.commands.common import IndexOpt, JsonOpt, emit_json, err, fail, on_index, out
from clinrag.commands.demo import demo
from clinrag.commands.patient import memory, rerank_app, timeline
from clinrag.commands.review import review
from clinrag.commands.search import search
from clinrag.config import IndexConfig
from clinrag.errors import ClinragError
from clinrag.eval.cli import eval_app
from clinrag.ner.cli import ner_app

app = typer.Typer(help="clinrag: offline clinical retrieval. Index records, search them, evaluate.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
app.add_typer(eval_app, name="eval")
app.add_typer(ner_app, name="ner")
app.add_typer(rerank_app, name="rerank")


@app.callback()
def _main(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log progress details.")] = False) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("bm25s", "httpx", "urllib3", "filelock"):
        logging.getLogger(noisy).setLevel(logging.INFO if verbose else logging.WARNING)


def index(
    sources: Annotated[list[Path], typer.Argument(help="Files or folders to index.")],
    index_dir: IndexOpt,
    fmt: Annotated[str, typer.Option("--format", "-f", help=(
        "Input format: auto, jsonl, beir, pubmedqa, fhir, cxr-csv. auto detects it per source."))] = "auto",
    on_error: Annotated[str, typer.Option(help=(
        "What to do with a bad record: 'stop' (default; the index is not touched) or 'skip' "
        "(index the rest and write a report of what was skipped)."))] = "stop",
    report: Annotated[Path | None, typer.Option(help="Where to write the skipped-records report (JSON).")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing index instead of adding to it.")] = False,
    chunk_words: Annotated[int | None, typer.Option(help="Maximum words per chunk (new index only).")] = None,
    text_model: Annotated[str | None, typer.Option(help=(
        "Multi-vector text model for late interaction (new index only): 'default' (the packaged "
        "all-MiniLM-L6-v2), a Hugging Face id or local path, or a colbert-ai / PyLate checkpoint. "
        "Without it the index is lexical (BM25) only."))] = None,
    dim: Annotated[int | None, typer.Option(help="Reduce token vectors to DIM by PCA (new index only).")] = None,
    nbits: Annotated[int, typer.Option(help="Bits per dimension of stored residuals: 1, 2 or 4.")] = 2,
    late_backend: Annotated[str, typer.Option(help=(
        "Late-interaction store: 'plaid' (compressed, clinrag's own search) or 'lancedb' (uncompressed "
        "vectors in LanceDB's native multivector column, exact and slower; for comparison)."))] = "plaid",
    ner: Annotated[bool, typer.Option("--ner", help=(
        "Recognise clinical entities (with negation etc.) in every chunk (new index only); "
        "enables --entity/--label filters and --entity-boost."))] = False,
    ner_model: Annotated[str | None, typer.Option("--ner-model", help=(
        "NER model for --ner: 'default' (packaged) or an installed spaCy/scispaCy name or path."))] = None,
    image_model: Annotated[str | None, typer.Option(help=(
        "CLIP-style image model for image search (new index only): hf-hub:ORG/REPO (open_clip, e.g. "
        "hf-hub:microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224), ARCH@TAG or ARCH@CHECKPOINT.pt, "
        "a saved open_clip or transformers CLIP folder. Without it images are indexed by metadata and notes."))] = None,
    json_out: JsonOpt = False,
) -> None:
    """Index SOURCES into an index directory (created if needed; otherwise records are added or updated).

    An interrupted run leaves the previous index intact; running the same command again resumes it.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from clinrag.data.readers import read_records
    from clinrag.data.report import ErrorSink
    from clinrag.engine import Engine
    from clinrag.errors import IndexNotFoundError

    if on_error not in ("stop", "skip"):
        fail(ClinragError(f"--on-error must be 'stop' or 'skip', got {on_error!r}"), 2)
    sink = ErrorSink("raise" if on_error == "stop" else "skip")
    t0 = time.perf_counter()
    created = False
    try:
        settings: dict[str, Any] = {}
        if chunk_words:
            settings["chunk_max_words"] = chunk_words
        if text_model:
            settings.update(text_model=text_model, dim=dim, nbits=nbits, late_backend=late_backend)
        if ner or ner_model:
            settings["ner_model"] = ner_model or "default"
        if image_model:
            settings["image_model"] = image_model
        config = IndexConfig(**settings) if settings else None
        try:
            if overwrite:
                raise IndexNotFoundError("replace")
            engine = Engine.open(index_dir)
            if config is not None and config != engine.config:
                fail(ClinragError("--chunk-words, --text-model, --dim, --nbits and --image-model apply to a new "
                                   "index; add --overwrite to rebuild it with them"), 2)
        except IndexNotFoundError:
            created = not index_dir.exists()
            engine = Engine.create(index_dir, config, overwrite=overwrite)
        with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=err, transient=True, disable=json_out or not err.is_terminal) as bar:
            task = bar.add_task("indexing", total=None)
            img_task = None

            def embedded(n: int) -> None:
                nonlocal img_task
                if img_task is None:
                    img_task = bar.add_task("embedding images", total=None)
                bar.update(img_task, completed=n)

            stats = engine.add(read_records(sources, fmt, sink),
                               progress=lambda i: bar.update(task, completed=i), image_progress=embedded,
                               build_info={"sources": [str(s) for s in sources], "format": fmt,
                                           "skipped": sink.skipped})
    except ClinragError as exc:
        # Nothing was committed: the index (if any) is as it was. A new, empty one is removed.
        if created:
            shutil.rmtree(index_dir, ignore_errors=True)
        fail(exc)
        return
    except KeyboardInterrupt:
        err.print("[yellow]interrupted[/]: the previous index is unchanged; run the same command to resume")
        raise typer.Exit(130) from None
    elapsed = time.perf_counter() - t0
    if sink.problems:
        path = report or index_dir.with_name(index_dir.name + ".skipped.json")
        path.write_text(json.dumps(sink.to_dict(), indent=2))
        err.print(f"[yellow]skipped {sink.skipped} record(s)[/]; report: {path}")
    result = {"index": str(index_dir), "seconds": round(elapsed, 2), "skipped": sink.skipped,
              **{k: getattr(stats, k) for k in stats.__dataclass_fields__}, "counts": dict(engine.manifest.counts)}
    if json_out:
        emit_json(result)
        return
    out.print(f"indexed into [bold]{index_dir}[/] in {elapsed:.1f}s: {stats.documents_added} new, "
              f"{stats.documents_updated} updated, {stats.documents_unchanged} unchanged documents; "
              f"{stats.images_added} images. Totals: {dict(engine.manifest.counts)}")


def info(index_dir: Annotated[Path, typer.Argument(help="Index directory.")], json_out: JsonOpt = False) -> None:
    """Show an index's counts, models and build settings."""
    data = on_index(index_dir, lambda engine: engine.info().to_dict())
    counts = data["counts"]
    if json_out:
        emit_json({"documents": counts.get("documents", 0), "chunks": counts.get("chunks", 0),
                   "images": counts.get("images", 0), "patients": counts.get("patients", 0), **data})
        return
    m = data["manifest"]
    table = Table(title=str(index_dir), show_header=False)
    for key in ("documents", "chunks", "images", "patients"):
        table.add_row(key, str(counts.get(key, 0)))
    table.add_row("format version", str(m["format_version"]))
    table.add_row("clinrag version", m["clinrag_version"])
    table.add_row("models", ", ".join(f"{k}: {v}" for k, v in m["models"].items()))
    table.add_row("updated", m["updated"])
    build = m.get("last_build", {})
    if "centroid_cos_train" in build:
        new = build.get("centroid_cos_new")
        drift = f"token-centroid cosine {build['centroid_cos_train']:.3f} at training"
        if new is not None:
            drift += f", {new:.3f} for the data added last"
            if build["centroid_cos_train"] - new > 0.05:
                drift += " [yellow](drifted: run `clinrag optimize`)[/]"
        table.add_row("multi-vector drift", drift)
    table.add_row("config", json.dumps(m["config"]))
    out.print(table)


def delete(index_dir: Annotated[Path, typer.Argument(help="Index directory.")],
           ids: Annotated[list[str], typer.Argument(help="Document or image ids to delete.")]) -> None:
    """Delete documents (with their chunks) or images by id."""
    n = on_index(index_dir, lambda engine: engine.delete(ids))
    out.print(f"deleted {n} record(s)")


def optimize(index_dir: Annotated[Path, typer.Argument(help="Index directory.")], json_out: JsonOpt = False) -> None:
    """Re-train the multi-vector centroids on the current data and rewrite every chunk's codes.

    Run it when `clinrag info` reports drift: the mean cosine between new tokens and their
    centroid has fallen well below its value at training time (or the index has grown many-fold).
    """
    report = on_index(index_dir, lambda engine: engine.optimize())
    if json_out:
        emit_json(report)
        return
    out.print(f"re-trained {int(report['centroids'])} centroids on {int(report['chunks'])} chunks; token-centroid "
              f"cosine {report['centroid_cos_before']:.3f} -> {report['centroid_cos_after']:.3f}")


for _command in (index, search, info, delete, optimize, review, timeline, memory, demo, ask):
    app.command()(_command)


def main() -> None:  # pragma: no cover - console entry point
    try:
        app()
    except BrokenPipeError:
        sys.exit(0)


if __name__ == "__main__":  # pragma: no cover
    main()
