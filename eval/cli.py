"""``clinrag eval ...``: the evaluation commands (a Typer sub-app mounted by :mod:`clinrag.cli`).

Each command builds what it needs from a dataset, runs it and prints a table, or with
``--json`` an object whose metric keys are ``ndcg@10``, ``recall@100``, ``mrr@10``...
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from clinrag.errors import ClinragError

eval_app = typer.Typer(help="Evaluate retrieval and answer quality on benchmark tasks.", no_args_is_help=True)
out = Console()
err = Console(stderr=True)
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON instead of tables.")]


def _fail(exc: BaseException, code: int = 1) -> None:
    err.print(f"[bold red]error:[/] {exc}", highlight=False, markup=True)
    raise typer.Exit(code)


@eval_app.command("retrieval")
def eval_retrieval(
    task: Annotated[str, typer.Option(help="beir, pubmedqa-questions or pubmedqa-mesh.")],
    data: Annotated[Path, typer.Option(help="BEIR folder, or a PubMedQA json file.")],
    mode: Annotated[list[str] | None, typer.Option(help=(
        "Mode(s) to evaluate (repeatable): lexical, late, hybrid, and the baselines late-exact (uncompressed "
        "exhaustive MaxSim) and dense (single-vector mean pooling)."))] = None,
    text_model: Annotated[str, typer.Option(help="Text model for late/hybrid/baselines.")] = "default",
    dim: Annotated[int | None, typer.Option(help="PCA dimension of token vectors (late/hybrid).")] = None,
    nbits: Annotated[list[int] | None, typer.Option(help="Residual bits (repeatable: 1, 2, 4).")] = None,
    chunk_words: Annotated[int | None, typer.Option(help="Maximum words per chunk.")] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write the results JSON here.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Build a temporary index for a task, run its queries and report nDCG@10, Recall@k, MRR@10."""
    from clinrag.eval.runner import evaluate_modes

    try:
        results = evaluate_modes(task, data, modes=mode or ["lexical"], text_model=text_model, dim=dim,
                                 nbits=nbits or [2], chunk_words=chunk_words)
    except ClinragError as exc:
        _fail(exc)
        return
    payload: dict[str, Any] = results[0].to_dict() if len(results) == 1 else {
        "task": task, "runs": [r.to_dict() for r in results]}
    if output:
        output.write_text(json.dumps(payload, indent=2))
    if json_out:
        print(json.dumps(payload))
        return
    table = Table(title=f"{task}: {results[0].n_queries} queries over {results[0].n_documents} documents")
    names = list(results[0].metrics)
    table.add_column("mode")
    table.add_column("model")
    for n in names:
        table.add_column(n, justify="right")
    table.add_column("seconds", justify="right")
    for r in results:
        table.add_row(r.mode, r.label, *(f"{r.metrics[n]:.4f}" for n in names), f"{r.seconds:.1f}")
    out.print(table)


@eval_app.command("qa")
def eval_qa(
    data: Annotated[Path, typer.Option(help="A PubMedQA json file (e.g. pqal_dev.json).")],
    mode: Annotated[list[str] | None, typer.Option(help="Answer mode(s): extractive, llm (repeatable).")] = None,
    setting: Annotated[list[str] | None, typer.Option(help="Setting(s): none, gold, retrieved (repeatable).")] = None,
    llm: Annotated[str, typer.Option(help="LLM spec for llm mode (default: the packaged Gemma 3 270M GGUF).")] = (
        "llamacpp"),
    limit: Annotated[int | None, typer.Option(help="Evaluate a seeded random subsample of N questions.")] = None,
    k: Annotated[int, typer.Option("-k", help="Retrieved evidence chunks per question.")] = 3,
    seed: Annotated[int, typer.Option(help="Seed of the --limit subsample.")] = 0,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write the results JSON here.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """PubMedQA yes/no/maybe accuracy without context, with the gold abstract and with retrieved evidence,
    plus citation precision and abstention rate (see clinrag.eval.qa for the decision rules)."""
    from rich.progress import Progress

    from clinrag.eval.qa import ANCHORS, evaluate_qa

    try:
        with Progress(console=err, transient=True, disable=json_out or not err.is_terminal) as bar:
            tasks: dict[str, Any] = {}

            def progress(name: str, done: int) -> None:
                if name not in tasks:
                    tasks[name] = bar.add_task(name, total=limit)
                bar.update(tasks[name], completed=done)

            results = evaluate_qa(data, modes=mode or ["extractive", "llm"], settings=setting or
                                  ["none", "gold", "retrieved"], limit=limit, llm=llm, k=k, seed=seed,
                                  progress=progress)
    except ClinragError as exc:
        _fail(exc)
        return
    payload = {"task": "pubmedqa", "data": str(data), "limit": limit, "seed": seed, "k": k, "anchors": ANCHORS,
               "runs": [r.to_dict() for r in results]}
    if output:
        output.write_text(json.dumps(payload, indent=2))
    if json_out:
        print(json.dumps(payload))
        return
    n = results[0].n if results else 0
    table = Table(title=f"PubMedQA: {n} questions" + (f" (seeded subsample, seed {seed})" if limit else "")
                  + (f"; majority class here {results[0].sample_majority:.1%}" if results else "")
                  + "; anchors (all 500): majority 55.2%, BioBERT 68.1%, human 78.0%")
    for col in ("mode", "setting", "model", "accuracy", "citation precision", "abstained", "parsed", "s/question",
                "predicted yes/no/maybe"):
        table.add_column(col, justify="right" if col not in ("mode", "setting", "model") else "left")
    for r in results:
        p = r.predictions
        table.add_row(r.mode, r.setting, r.model, f"{r.accuracy:.3f}",
                      "-" if r.citation_precision is None else f"{r.citation_precision:.3f}",
                      f"{r.abstention_rate:.3f}", f"{r.parsed:.3f}", f"{r.seconds_per_question:.2f}",
                      f"{p.get('yes', 0)}/{p.get('no', 0)}/{p.get('maybe', 0)}")
    out.print(table)
