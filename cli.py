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
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from clinrag.config import SEARCH_MODES, IndexConfig
from clinrag.errors import ClinragError
from clinrag.eval.cli import eval_app
from clinrag.ner.cli import ner_app

app = typer.Typer(help="clinrag: offline clinical retrieval. Index records, search them, evaluate.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
app.add_typer(eval_app, name="eval")
app.add_typer(ner_app, name="ner")
out = Console()
err = Console(stderr=True)

IndexOpt = Annotated[Path, typer.Option("--index", "-i", help="Index directory.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON instead of tables.")]
ModeOpt = Annotated[str | None, typer.Option(
    "--mode", help=f"Retrieval mode: {', '.join(SEARCH_MODES)} (default: the index's default).")]


def _fail(exc: BaseException, code: int = 1) -> None:
    from rich.markup import escape

    err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, markup=True)
    raise typer.Exit(code)


@app.callback()
def _main(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log progress details.")] = False) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("bm25s", "httpx", "urllib3", "filelock"):
        logging.getLogger(noisy).setLevel(logging.INFO if verbose else logging.WARNING)


@app.command()
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
        _fail(ClinragError(f"--on-error must be 'stop' or 'skip', got {on_error!r}"), 2)
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
                _fail(ClinragError("--chunk-words, --text-model, --dim, --nbits and --image-model apply to a new "
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
        _fail(exc)
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
        print(json.dumps(result))
        return
    out.print(f"indexed into [bold]{index_dir}[/] in {elapsed:.1f}s: {stats.documents_added} new, "
              f"{stats.documents_updated} updated, {stats.documents_unchanged} unchanged documents; "
              f"{stats.images_added} images. Totals: {dict(engine.manifest.counts)}")


@app.command()
def search(
    index_dir: Annotated[Path, typer.Argument(help="Index directory.")],
    query: Annotated[str | None, typer.Argument(help="The query text (or give --image).")] = None,
    k: Annotated[int, typer.Option("-k", help="Number of hits.")] = 10,
    patient: Annotated[list[str] | None, typer.Option(help="Only this patient's records (repeatable).")] = None,
    since: Annotated[str | None, typer.Option(help="Only records dated on/after: YYYY-MM-DD or 6m, 2y, 30d.")] = None,
    until: Annotated[str | None, typer.Option(help="Only records dated on/before: YYYY-MM-DD.")] = None,
    source: Annotated[list[str] | None, typer.Option(help="Only these sources (repeatable).")] = None,
    section: Annotated[list[str] | None, typer.Option(help="Only these note sections (repeatable).")] = None,
    kind: Annotated[list[str] | None, typer.Option(help="Only these record kinds, e.g. note, condition.")] = None,
    where: Annotated[list[str] | None, typer.Option(help=(
        "Metadata filter FIELD=VALUE (case-insensitive); repeat a field for 'any of'."))] = None,
    mode: ModeOpt = None,
    last: Annotated[str | None, typer.Option(help="Only records of the last 6m, 2y, 30d... (like --since 6m).")] = None,
    no_temporal: Annotated[bool, typer.Option("--no-temporal", help=(
        "Ignore 'first'/'most recent' wishes and dates named in the query."))] = False,
    recency: Annotated[float, typer.Option(help="Weight of a recency prior (0: none; 0.1 is mild).")] = 0.0,
    rerank: Annotated[str | None, typer.Option(help=(
        "Rerank the top hits: 'fast' (features, no LLM) or 'qr' (QR-head attention of --qr-model, with the "
        "patient's memory when one --patient is given; heads from `clinrag rerank calibrate`)."))] = None,
    qr_model: Annotated[str, typer.Option(help="Causal LM of --rerank qr ('gemma': the packaged one).")] = "gemma",
    docs: Annotated[bool, typer.Option("--docs", help="Best chunk per document only.")] = False,
    nprobe: Annotated[int | None, typer.Option(help="Late interaction: centroids probed per query token.")] = None,
    exhaustive: Annotated[bool, typer.Option(help="Late interaction: score every chunk exactly.")] = False,
    entity: Annotated[list[str] | None, typer.Option(help=(
        "Only chunks mentioning this entity (repeatable: any of; index built with --ner)."))] = None,
    label: Annotated[list[str] | None, typer.Option(help=(
        "Only chunks with an entity of this label, e.g. Disease (repeatable)."))] = None,
    exclude_negated: Annotated[bool, typer.Option(help=(
        "With --entity/--label: negated mentions ('no pneumonia') do not count."))] = False,
    entity_boost: Annotated[float, typer.Option(help=(
        "Re-rank by query entities found in a chunk with compatible assertion (0 = off, e.g. 0.3)."))] = 0.0,
    modality: Annotated[list[str] | None, typer.Option(help="Only these modalities, e.g. CT, X-ray.")] = None,
    image: Annotated[Path | None, typer.Option(help="Query by this image (JPEG, PNG or DICOM).")] = None,
    target: Annotated[str | None, typer.Option(help=(
        "What to return: 'text' (chunks; for --image: notes of similar images), 'images' (text->image "
        "or image->image), or 'both' (image and text hits fused). Default: text, or images with --image."))] = None,
    contact_sheet: Annotated[Path | None, typer.Option(help=(
        "Also render the image hits as a contact sheet: a .png grid or an .html page with their notes."))] = None,
    json_out: JsonOpt = False,
) -> None:
    """Search an index; prints a table, or a JSON array of hits with --json."""
    from clinrag.engine import Engine
    from clinrag.indexing.filters import Filters, parse_time, parse_where

    target = target or ("images" if image is not None else "text")
    if target not in ("text", "images", "both"):
        _fail(ClinragError(f"--target must be text, images or both, got {target!r}"), 2)
    if (query is None) == (image is None):
        _fail(ClinragError("give a QUERY text or --image PATH (one of them)"), 2)
    try:
        if last and since:
            raise ClinragError("give --since or --last, not both")
        since = since or last
        filters = Filters(patient_id=patient or None, since=parse_time(since, field_name="since"),
                          until=parse_time(until, field_name="until"), source=source or None,
                          section=section or None, kind=kind or None, modality=modality or None,
                          where=parse_where(where or []),
                          entity=entity or None, label=label or None, exclude_negated=exclude_negated)
        with Engine.open(index_dir) as engine:
            if target != "text" or image is not None or contact_sheet is not None:
                _image_search(engine, query, image, target, k=k, filters=filters, mode=mode,
                              contact_sheet=contact_sheet, json_out=json_out)
                return
            query = query or ""
            if exhaustive or nprobe:
                from dataclasses import replace

                engine.late_params = replace(engine.late_params, exhaustive=exhaustive,
                                             nprobe=nprobe or engine.late_params.nprobe)
            hits = engine.search(query, k=max(k, 20) if rerank else k, filters=filters, mode=mode, unique_docs=docs,
                                 entity_boost=entity_boost, temporal=not no_temporal and not rerank, recency=recency)
            if rerank:
                hits = _rerank(engine, rerank, qr_model, query, hits, patient)[:k]
    except ClinragError as exc:
        _fail(exc)
        return
    if json_out:
        print(json.dumps([h.to_dict() for h in hits], ensure_ascii=False))
        return
    _hits_table(query, hits)


def _image_search(engine: Any, query: str | None, image: Path | None, target: str, *, k: int, filters: Any,
                  mode: str | None, contact_sheet: Path | None, json_out: bool) -> None:
    """``search`` with --image, --target images|both or --contact-sheet (see Engine.search_images)."""
    if target == "images":
        hits: list[Any] = engine.search_images(query, image=image, k=k, filters=filters)
    elif target == "both":
        hits = engine.search_multimodal(query, image=image, k=k, filters=filters, mode=mode)
    elif image is not None:
        hits = engine.search_image_notes(image, k=k, filters=filters)
    else:
        hits = engine.search(query or "", k=k, filters=filters, mode=mode)
    if contact_sheet is not None:
        from clinrag.retrieval.contact_sheet import write_contact_sheet

        n = write_contact_sheet(contact_sheet, hits, title=query or f"similar to {image}")
        err.print(f"contact sheet of {n} image hit(s): {contact_sheet}")
    if json_out:
        print(json.dumps([h.to_dict() for h in hits], ensure_ascii=False, default=str))
        return
    _hits_table(query or f"image {image}", hits)


def _rerank(engine: Any, name: str, qr_model: str, query: str, hits: list[Any], patient: list[str] | None) -> list[Any]:
    from clinrag.retrieval.rerank import FastReranker

    if name == "fast":
        return FastReranker().rerank(query, hits)
    if name != "qr":
        raise ClinragError(f"--rerank must be 'fast' or 'qr', got {name!r}")
    from clinrag.retrieval.qr import QRReranker, get_causal_lm, load_heads

    lm = get_causal_lm(qr_model)
    heads = load_heads(engine.root, lm.name)
    if heads is None:
        err.print(f"[yellow]no calibrated QR heads for {qr_model!r} in this index[/]: run `clinrag rerank calibrate`")
    memory = engine.memory(patient[0]).to_text(cite=False) if patient and len(patient) == 1 else None
    return QRReranker(lm, heads).rerank(query, hits, memory=memory)


def _hits_table(query: str, hits: list[Any]) -> None:
    table = Table(title=f"{len(hits)} hit(s) for {query!r}", show_lines=True)
    for col in ("#", "score", "document", "patient / date", "text"):
        table.add_column(col, overflow="fold")
    for h in hits:
        when = h.timestamp.strftime("%Y-%m-%d") if h.timestamp else ""
        who = " ".join(x for x in (h.patient_id or "", when) if x)
        label = h.doc_id + (f"\n[dim]{h.section}[/]" if h.section else "")
        text = h.text if len(h.text) < 300 else h.text[:300] + "…"
        if getattr(h, "path", ""):  # an image hit
            label += f"\n[dim]{escape(h.modality)} {escape(h.path)}[/]"
        table.add_row(str(h.rank), f"{h.score:.3f}", label, who, text)
    out.print(table)


@app.command()
def info(index_dir: Annotated[Path, typer.Argument(help="Index directory.")], json_out: JsonOpt = False) -> None:
    """Show an index's counts, models and build settings."""
    from clinrag.engine import Engine

    try:
        with Engine.open(index_dir) as engine:
            data = engine.info().to_dict()
    except ClinragError as exc:
        _fail(exc)
        return
    counts = data["counts"]
    if json_out:
        print(json.dumps({"documents": counts.get("documents", 0), "chunks": counts.get("chunks", 0),
                          "images": counts.get("images", 0), "patients": counts.get("patients", 0), **data}))
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


@app.command()
def delete(index_dir: Annotated[Path, typer.Argument(help="Index directory.")],
           ids: Annotated[list[str], typer.Argument(help="Document or image ids to delete.")]) -> None:
    """Delete documents (with their chunks) or images by id."""
    from clinrag.engine import Engine

    try:
        with Engine.open(index_dir) as engine:
            n = engine.delete(ids)
    except ClinragError as exc:
        _fail(exc)
        return
    out.print(f"deleted {n} record(s)")


@app.command()
def optimize(index_dir: Annotated[Path, typer.Argument(help="Index directory.")], json_out: JsonOpt = False) -> None:
    """Re-train the multi-vector centroids on the current data and rewrite every chunk's codes.

    Run it when `clinrag info` reports drift: the mean cosine between new tokens and their
    centroid has fallen well below its value at training time (or the index has grown many-fold).
    """
    from clinrag.engine import Engine

    try:
        with Engine.open(index_dir) as engine:
            report = engine.optimize()
    except ClinragError as exc:
        _fail(exc)
        return
    if json_out:
        print(json.dumps(report))
        return
    out.print(f"re-trained {int(report['centroids'])} centroids on {int(report['chunks'])} chunks; token-centroid "
              f"cosine {report['centroid_cos_before']:.3f} -> {report['centroid_cos_after']:.3f}")


@app.command()
def review(
    protocol: Annotated[Path, typer.Argument(help="Review protocol (YAML); see docs/review.md.")],
    index_dir: IndexOpt,
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Output folder (re-running resumes it).")],
    mode: ModeOpt = None,
    batch_size: Annotated[int, typer.Option(help="Formulations searched per batch.")] = 64,
    json_out: JsonOpt = False,
) -> None:
    """Run a systematic-review protocol: every formulation, fused per question, de-duplicated, flagged.

    Writes OUT/<question>/ranked.csv, ranked.parquet, records.ris and OUT/manifest.json. A killed
    run resumes: run the same command again.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from clinrag.engine import Engine

    try:
        with Engine.open(index_dir) as engine, Progress(
                TextColumn("[bold]review[/] {task.description}"), BarColumn(), MofNCompleteColumn(),
                TimeElapsedColumn(), console=err, transient=True, disable=json_out or not err.is_terminal) as bar:
            task = bar.add_task("searching", total=None)

            def step(p: Any) -> None:
                bar.update(task, total=p.total, completed=p.done,
                           description=f"{p.question_id} ({p.n_records} records{', resumed' if p.resumed else ''})")

            result = engine.review(protocol, out=out_dir, mode=mode, batch_size=batch_size, progress=step)
    except ClinragError as exc:
        _fail(exc)
        return
    except KeyboardInterrupt:
        err.print(f"[yellow]interrupted[/]: finished questions are kept in {out_dir}; run the same command to resume")
        raise typer.Exit(130) from None
    summary = {"out": str(out_dir), "mode": result.mode, "protocol_sha256": result.protocol_sha256,
               "questions": [{"id": q.question_id, "records": len(q.records), "retrieved": q.n_retrieved,
                              "flagged": sum(r.flagged for r in q.records), "resumed": q.resumed}
                             for q in result.questions],
               "timings": result.manifest.get("timings", {})}
    if json_out:
        print(json.dumps(summary))
        return
    table = Table(title=f"review {result.protocol_name!r} ({result.mode}) -> {out_dir}")
    for col in ("question", "records", "retrieved", "flagged", "resumed"):
        table.add_column(col, justify="left" if col == "question" else "right")
    for q in summary["questions"]:
        table.add_row(q["id"], str(q["records"]), str(q["retrieved"]), str(q["flagged"]), "yes" if q["resumed"] else "")
    out.print(table)


@app.command()
def timeline(
    index_dir: Annotated[Path, typer.Argument(help="Index directory.")],
    patient: Annotated[str, typer.Argument(help="Patient id.")],
    since: Annotated[str | None, typer.Option(help="From: YYYY-MM-DD or 6m, 2y, 30d.")] = None,
    until: Annotated[str | None, typer.Option(help="Until: YYYY-MM-DD.")] = None,
    kind: Annotated[list[str] | None, typer.Option(help="Only these kinds (repeatable): note, condition, image...")]
    = None,
    json_out: JsonOpt = False,
) -> None:
    """Show a patient's dated events (notes, structured resources, images), oldest first."""
    from clinrag.engine import Engine

    try:
        with Engine.open(index_dir) as engine:
            events = engine.timeline(patient, since=since, until=until, kinds=kind or None)
    except ClinragError as exc:
        _fail(exc)
        return
    if json_out:
        print(json.dumps([e.to_dict() for e in events], ensure_ascii=False))
        return
    table = Table(title=f"{len(events)} event(s) of patient {patient}")
    for col in ("date", "kind", "event", "record"):
        table.add_column(col, overflow="fold")
    for e in events:
        text = e.text if len(e.text) < 160 else e.text[:160] + "…"
        table.add_row(e.timestamp.strftime("%Y-%m-%d") if e.timestamp else "", e.kind, text, e.doc_id)
    out.print(table)


@app.command()
def memory(
    index_dir: Annotated[Path, typer.Argument(help="Index directory.")],
    patient: Annotated[str, typer.Argument(help="Patient id.")],
    json_out: JsonOpt = False,
) -> None:
    """Show a patient's memory: problems, medications, allergies, last labs, encounters, with record ids."""
    from clinrag.engine import Engine

    try:
        with Engine.open(index_dir) as engine:
            mem = engine.memory(patient)
    except ClinragError as exc:
        _fail(exc)
        return
    if json_out:
        print(json.dumps(mem.to_dict(), ensure_ascii=False))
        return
    out.print(f"[bold]patient {mem.patient_id}[/]: {mem.n_records} records"
              + (f", {mem.first_date} to {mem.last_date}" if mem.first_date else ""))
    for name, title in mem.section_titles().items():
        lines = getattr(mem, name)
        if lines:
            out.print(f"[bold]{title}[/]")
            for line in lines:
                out.print("  " + line.text(), highlight=False, markup=False)


rerank_app = typer.Typer(help="The QR-head reranker: select its attention heads on a labelled seed set.",
                         no_args_is_help=True)
app.add_typer(rerank_app, name="rerank")


@rerank_app.command("calibrate")
def rerank_calibrate(
    index_dir: Annotated[Path, typer.Argument(help="Index directory (the heads are stored with it).")],
    seed: Annotated[Path | None, typer.Option(help=(
        "Seed set, JSONL: {\"query\", \"patient_id\" (optional), \"relevant\": {doc_id: grade} or [doc_id]}."))]
    = None,
    fhir: Annotated[Path | None, typer.Option(help=(
        "Or: generate the seed set from this folder of FHIR bundles (the longitudinal benchmark's questions)."))]
    = None,
    size: Annotated[int, typer.Option(help="Seed questions to use (with --fhir).")] = 16,
    model: Annotated[str, typer.Option(help="Causal LM: 'gemma' (packaged), a Hugging Face id or a local path.")]
    = "gemma",
    heads: Annotated[int, typer.Option(help="Number of heads to keep.")] = 16,
    depth: Annotated[int, typer.Option(help="First-stage candidates per seed question.")] = 20,
    no_memory: Annotated[bool, typer.Option("--no-memory", help="Calibrate without the patient memory.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Score every attention head of MODEL on a labelled seed set and store the best ones with the index."""
    from clinrag.engine import Engine
    from clinrag.eval.longitudinal import LongQuestion, generate_questions, read_fhir_folder
    from clinrag.eval.longitudinal_run import seed_examples, split_seed
    from clinrag.retrieval.qr import calibrate_heads, get_causal_lm, save_heads

    try:
        if (seed is None) == (fhir is None):
            raise ClinragError("give exactly one of --seed FILE.jsonl or --fhir DIR")
        if fhir is not None:
            questions = split_seed(generate_questions(read_fhir_folder(fhir)), size)[0]
        else:
            questions = []
            for n, line in enumerate(Path(seed).read_text().splitlines(), 1):  # type: ignore[arg-type]
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                    rel = row["relevant"]
                    qrels = ({str(d): 1 for d in rel} if isinstance(rel, list)
                             else {str(d): int(g) for d, g in rel.items()})
                    questions.append(LongQuestion(f"seed{n}", "seed", row.get("patient_id") or "", str(row["query"]),
                                                  "", tuple(qrels), qrels))
                except (ValueError, KeyError, TypeError, AttributeError) as exc:
                    from clinrag.errors import InputError

                    raise InputError(f"not a seed example ({exc})", path=str(seed), record=n) from None
        with Engine.open(index_dir) as engine:
            lm = get_causal_lm(model)
            examples = seed_examples(engine, questions, depth, with_memory=not no_memory)
            selection = calibrate_heads(lm, examples, heads)
            path = save_heads(engine.root, selection)
    except ClinragError as exc:
        _fail(exc)
        return
    if json_out:
        print(json.dumps({**selection.to_dict(), "path": str(path)}))
        return
    out.print(f"selected {len(selection.heads)} heads of {model} on {selection.seed_size} seed questions "
              f"(mean nDCG@10 of the best head {selection.head_scores[0]:.3f}); stored in {path}")


@app.command()
def demo(index_dir: Annotated[Path, typer.Option("--index", help="Where to build the demo index.")] = Path(
        "demo-index")) -> None:
    """Index the bundled sample corpus (abstracts, FHIR records, chest images), search it and answer, offline.

    The index has BM25 and a multi-vector index (the packaged all-MiniLM-L6-v2); searches are hybrid.
    """
    from clinrag.data.readers import read_records
    from clinrag.engine import Engine

    samples = Path(__file__).resolve().parent / "data" / "samples"
    sources = [p for p in (samples / "abstracts.jsonl", samples / "fhir", samples / "cxr") if p.exists()]
    t0 = time.perf_counter()
    engine = Engine.create(index_dir, IndexConfig(text_model="default"), overwrite=True)
    with err.status("indexing the sample corpus (encoding token vectors on "
                    f"{'GPU' if _cuda() else 'CPU'})..."):
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
        _hits_table(q + (f"  (filters: {filters})" if filters else ""), hits)
    for mode in ("lexical", "late"):
        hits = engine.search("low blood sugar episodes", k=2, mode=mode)
        _hits_table(f"low blood sugar episodes  (--mode {mode})", hits)
    _demo_answers(engine)
    engine.close()


def _demo_answers(engine: Any) -> None:
    """The demo's grounded answers: extractive (no LLM), then the packaged LLM when it is installed."""
    from rich.markup import escape

    from clinrag.generation.llm import parse_spec

    question = "Do statins reduce cardiovascular events?"
    loaded = _load_llm_or_none(parse_spec("llamacpp", max_new_tokens=96), "auto")
    for mode in ("extractive", "llm") if loaded is not None else ("extractive",):
        a = engine.ask(question, k=4, mode=mode, llm=loaded)
        out.print(f"\n[bold]clinrag ask --mode {mode}[/] {escape(question)}")
        if a.abstained:
            out.print(f"[yellow]abstained[/]: {escape(a.reason or '')}", highlight=False)
        else:
            out.print(escape(a.text), highlight=False)
        for e in a.cited:
            out.print(f"  [dim]\\[{e.n}] {escape(e.source or e.doc_id)}: {escape(e.text[:120])}...[/]", highlight=False)


@app.command()
def ask(
    index_dir: Annotated[Path, typer.Argument(help="Index directory.")],
    question: Annotated[str, typer.Argument(help="The question.")],
    patient: Annotated[str | None, typer.Option(help="Answer only from this patient's records (enforced).")] = None,
    k: Annotated[int, typer.Option("-k", help="Evidence chunks to retrieve.")] = 8,
    mode: Annotated[str, typer.Option("--mode", help=(
        "extractive (evidence sentences, no LLM), llm, or auto (the LLM, else extractive)."))] = "auto",
    llm: Annotated[str, typer.Option("--llm", help=(
        "LLM: llamacpp (packaged Gemma 3 270M GGUF), llamacpp:PATH.gguf, ollama:MODEL, hf:ID_OR_PATH, "
        "openai-like:URL#MODEL."))] = "llamacpp",
    family: Annotated[str | None, typer.Option(help=(
        "Prompt template: base, gemma, llama3, chatml, mistral, chat (default: from the model name)."))] = None,
    max_tokens: Annotated[int, typer.Option(help="Maximum tokens the LLM may generate.")] = 160,
    search_mode: Annotated[str | None, typer.Option(help="Retrieval mode: lexical, late or hybrid.")] = None,
    since: Annotated[str | None, typer.Option(help="Only records dated on/after: YYYY-MM-DD or 6m, 2y.")] = None,
    source: Annotated[list[str] | None, typer.Option(help="Only these sources (repeatable).")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Answer a question from an index with cited evidence; abstains when the evidence does not support one.

    Streams the answer, then lists the cited evidence (source, date, patient, section).
    """
    from clinrag.engine import Engine
    from clinrag.generation.answer import AnswerConfig
    from clinrag.generation.llm import parse_spec
    from clinrag.indexing.filters import Filters, parse_time

    streamed: list[str] = []

    def on_token(tok: str) -> None:
        streamed.append(tok)
        if not json_out:
            sys.stdout.write(tok)
            sys.stdout.flush()

    try:
        spec = parse_spec(llm, family=family, max_new_tokens=max_tokens) if mode != "extractive" else None
        filters = Filters(since=parse_time(since, field_name="since"), source=source or None)
        loaded = _load_llm_or_none(spec, mode)
        with Engine.open(index_dir) as engine:
            result = engine.ask(question, k=k, patient=patient, filters=filters,
                                mode=mode if loaded is not None else "extractive", llm=loaded,
                                search_mode=search_mode, on_token=on_token,
                                config=AnswerConfig(family=family))
    except ClinragError as exc:
        _fail(exc)
        return
    if json_out:
        print(json.dumps(result.to_dict(), ensure_ascii=False))
        return
    if streamed:
        sys.stdout.write("\n")
    if result.abstained:
        out.print(f"[bold yellow]abstained[/]: {result.reason}", highlight=False)
    if not streamed or result.abstained or any(not s.supported for s in result.sentences):
        from rich.markup import escape

        for s in result.sentences:
            why = f"support {s.support:.2f}" + (f"; {s.note}" if s.note else "")
            flag = "" if s.supported else f" [red](unsupported, {escape(why)})[/]"
            out.print(f"{escape(s.sentence)}{flag}", highlight=False)
        if not result.sentences and not streamed:
            out.print(escape(result.text), highlight=False)
    from rich.markup import escape

    table = Table(title="cited evidence" if result.cited else "evidence (none cited)", show_lines=True)
    for col in ("#", "source", "date", "patient", "section", "text"):
        table.add_column(col, overflow="fold")
    for e in result.cited or result.evidence:
        when = e.timestamp.strftime("%Y-%m-%d") if e.timestamp else ""
        text = e.text if len(e.text) < 240 else e.text[:240] + "…"
        table.add_row(escape(f"[{e.n}]"), escape(e.source or e.doc_id), when, e.patient_id or "", escape(e.section),
                      escape(text))
    out.print(table)
    t = result.timings
    out.print(f"[dim]{result.mode}{' / ' + result.model if result.model else ''}: "
              + ", ".join(f"{k} {v:.2f}s" for k, v in t.items()) + "[/]", highlight=False)


def _load_llm_or_none(spec: Any, mode: str) -> Any:
    """Load the LLM for llm mode; in auto mode, None when it cannot be loaded (extractive fallback)."""
    if spec is None:
        return None
    from clinrag.generation.llm import load_llm

    try:
        with err.status(f"loading {spec.kind} {spec.target or '(packaged Gemma 3 270M)'}..."):
            return load_llm(spec)
    except ClinragError as exc:
        if mode == "llm":
            raise
        from rich.markup import escape

        err.print(f"[yellow]no LLM[/] ({escape(str(exc))}); answering extractively", highlight=False)
        return None


def _cuda() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def main() -> None:  # pragma: no cover - console entry point
    try:
        app()
    except BrokenPipeError:
        sys.exit(0)


if __name__ == "__main__":  # pragma: no cover
    main()
