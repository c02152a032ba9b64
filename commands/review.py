"""``clinrag review``: run a systematic-review protocol over an index (see docs/review.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from clinrag.commands.common import IndexOpt, JsonOpt, ModeOpt, emit_json, err, fail, out
from clinrag.errors import ClinragError


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
        fail(exc)
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
        emit_json(summary)
        return
    table = Table(title=f"review {result.protocol_name!r} ({result.mode}) -> {out_dir}")
    for col in ("question", "records", "retrieved", "flagged", "resumed"):
        table.add_column(col, justify="left" if col == "question" else "right")
    for q in summary["questions"]:
        table.add_row(q["id"], str(q["records"]), str(q["retrieved"]), str(q["flagged"]), "yes" if q["resumed"] else "")
    out.print(table)


__all__ = ["review"]
