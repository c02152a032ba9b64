"""What the ``clinrag`` command modules share: the consoles, common options, the error exit, the hits table.

>>> try:
...     fail(ValueError("no index at /tmp/nowhere"), 2)  # prints the error on stderr
... except typer.Exit as exc:
...     print(exc.exit_code)
2
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from clinrag.config import SEARCH_MODES
from clinrag.errors import ClinragError

if TYPE_CHECKING:
    from clinrag.engine import Engine

T = TypeVar("T")

out = Console()
err = Console(stderr=True)

IndexOpt = Annotated[Path, typer.Option("--index", "-i", help="Index directory.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON instead of tables.")]
ModeOpt = Annotated[str | None, typer.Option(
    "--mode", help=f"Retrieval mode: {', '.join(SEARCH_MODES)} (default: the index's default).")]


def fail(exc: BaseException, code: int = 1) -> None:
    """Print ``exc`` as an error on stderr and exit with ``code``."""
    err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, markup=True)
    raise typer.Exit(code)


def on_index(index_dir: Path, action: Callable[[Engine], T]) -> T:
    """``action(engine)`` on the index at ``index_dir`` (closed afterwards); a clinrag error exits with its message."""
    from clinrag.engine import Engine

    try:
        with Engine.open(index_dir) as engine:
            return action(engine)
    except ClinragError as exc:
        fail(exc)
        raise  # not reached: fail() exits


def emit_json(obj: Any, *, default: Any = None) -> None:
    """Write ``obj`` as one line of JSON on stdout (the ``--json`` output of every command)."""
    typer.echo(json.dumps(obj, ensure_ascii=False, default=default))


def hits_table(query: str, hits: list[Any]) -> None:
    """Print search hits (chunks or images) as a table."""
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


__all__ = ["IndexOpt", "JsonOpt", "ModeOpt", "emit_json", "err", "fail", "hits_table", "on_index", "out"]
