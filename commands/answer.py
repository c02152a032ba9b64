"""``clinrag ask``: a grounded, cited answer from an index (extractive or with an LLM)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from clinrag.commands.common import JsonOpt, emit_json, err, fail, out
from clinrag.errors import ClinragError


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
        AnswerConfig(mode=mode, family=family)  # a bad --mode or --family fails before any model loads
        spec = parse_spec(llm, family=family, max_new_tokens=max_tokens) if mode != "extractive" else None
        filters = Filters(since=parse_time(since, field_name="since"), source=source or None)
        loaded = load_llm_or_none(spec, mode)
        with Engine.open(index_dir) as engine:
            result = engine.ask(question, k=k, patient=patient, filters=filters,
                                mode=mode if loaded is not None else "extractive", llm=loaded,
                                search_mode=search_mode, on_token=on_token,
                                config=AnswerConfig(family=family))
    except ClinragError as exc:
        fail(exc)
        return
    if json_out:
        emit_json(result.to_dict())
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


def load_llm_or_none(spec: Any, mode: str) -> Any:
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


__all__ = ["ask", "load_llm_or_none"]
