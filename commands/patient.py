"""Patient commands: ``clinrag timeline``, ``clinrag memory`` and ``clinrag rerank calibrate``
(the QR-head reranker's heads, selected on a patient-centred seed set)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from clinrag.commands.common import JsonOpt, emit_json, fail, on_index, out
from clinrag.errors import ClinragError


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
    events = on_index(index_dir, lambda engine: engine.timeline(patient, since=since, until=until, kinds=kind or None))
    if json_out:
        emit_json([e.to_dict() for e in events])
        return
    table = Table(title=f"{len(events)} event(s) of patient {patient}")
    for col in ("date", "kind", "event", "record"):
        table.add_column(col, overflow="fold")
    for e in events:
        text = e.text if len(e.text) < 160 else e.text[:160] + "…"
        table.add_row(e.timestamp.strftime("%Y-%m-%d") if e.timestamp else "", e.kind, text, e.doc_id)
    out.print(table)


def memory(
    index_dir: Annotated[Path, typer.Argument(help="Index directory.")],
    patient: Annotated[str, typer.Argument(help="Patient id.")],
    json_out: JsonOpt = False,
) -> None:
    """Show a patient's memory: problems, medications, allergies, last labs, encounters, with record ids."""
    mem = on_index(index_dir, lambda engine: engine.memory(patient))
    if json_out:
        emit_json(mem.to_dict())
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
        fail(exc)
        return
    if json_out:
        emit_json({**selection.to_dict(), "path": str(path)})
        return
    out.print(f"selected {len(selection.heads)} heads of {model} on {selection.seed_size} seed questions "
              f"(mean nDCG@10 of the best head {selection.head_scores[0]:.3f}); stored in {path}")


__all__ = ["memory", "rerank_app", "rerank_calibrate", "timeline"]
