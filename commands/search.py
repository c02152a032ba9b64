"""``clinrag search``: text, image and multimodal search, with optional reranking."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from clinrag.commands.common import JsonOpt, ModeOpt, emit_json, err, fail, hits_table
from clinrag.errors import ClinragError


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
    feedback: Annotated[int, typer.Option(help=(
        "Late/hybrid: pseudo-relevance feedback from the N best chunks (topic-style queries; 0: off)."))] = 0,
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
        fail(ClinragError(f"--target must be text, images or both, got {target!r}"), 2)
    if (query is None) == (image is None):
        fail(ClinragError("give a QUERY text or --image PATH (one of them)"), 2)
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
                image_search(engine, query, image, target, k=k, filters=filters, mode=mode,
                              contact_sheet=contact_sheet, json_out=json_out)
                return
            query = query or ""
            if exhaustive or nprobe or feedback:
                from dataclasses import replace

                engine.late_params = replace(engine.late_params, exhaustive=exhaustive,
                                             nprobe=nprobe or engine.late_params.nprobe, feedback_docs=feedback)
            hits = engine.search(query, k=max(k, 20) if rerank else k, filters=filters, mode=mode, unique_docs=docs,
                                 entity_boost=entity_boost, temporal=not no_temporal and not rerank, recency=recency)
            if rerank:
                hits = rerank_hits(engine, rerank, qr_model, query, hits, patient)[:k]
    except ClinragError as exc:
        fail(exc)
        return
    if json_out:
        emit_json([h.to_dict() for h in hits])
        return
    hits_table(query, hits)


def image_search(engine: Any, query: str | None, image: Path | None, target: str, *, k: int, filters: Any,
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
        emit_json([h.to_dict() for h in hits], default=str)
        return
    hits_table(query or f"image {image}", hits)


def rerank_hits(engine: Any, name: str, qr_model: str, query: str, hits: list[Any],
                patient: list[str] | None) -> list[Any]:
    """``search --rerank``: rerank ``hits`` with the fast feature reranker or the QR-head reranker."""
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


__all__ = ["image_search", "rerank_hits", "search"]
