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

eval_app = typer.Typer(help="Evaluate retrieval quality on benchmark tasks.", no_args_is_help=True)
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


@eval_app.command("longitudinal")
def eval_longitudinal(
    data: Annotated[Path, typer.Option(help="A folder of FHIR bundles (e.g. ../shared/data/synthea-r4).")],
    index_dir: Annotated[Path | None, typer.Option("--index", help=(
        "Index of the same folder to reuse (built there, hybrid with the default text model, if absent)."))] = None,
    questions: Annotated[int | None, typer.Option(help="Evaluate at most N questions (stratified by type).")] = None,
    depth: Annotated[int, typer.Option(help="First-stage hits reranked per question.")] = 20,
    qr_model: Annotated[str | None, typer.Option(help=(
        "Causal LM of the QR-head reranker: a Hugging Face id or local path; 'gemma' (the default) is the "
        "packaged Gemma 3 270M; 'none' skips the QR stage."))] = "gemma",
    seed_size: Annotated[int, typer.Option(help=(
        "Questions (from patients held out of the evaluation) used to select the QR heads."))] = 16,
    heads: Annotated[int, typer.Option(help="Number of QR heads to select.")] = 16,
    seed: Annotated[int, typer.Option(help="Random seed of question generation and sampling.")] = 0,
    text_model: Annotated[str, typer.Option(help=(
        "Text model of a new index ('default': packaged all-MiniLM-L6-v2, hybrid search; 'none': BM25 only)."))]
    = "default",
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write the results JSON here.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Generate a longitudinal benchmark from FHIR bundles and score first-stage retrieval, the fast
    reranker and the QR-head reranker (with and without patient memory): Recall@5, nDCG@10, answer@5."""
    from clinrag.eval.longitudinal_run import evaluate_longitudinal

    try:
        payload = evaluate_longitudinal(data, index_dir=index_dir, n_questions=questions, depth=depth,
                                        qr_model=None if qr_model in (None, "none") else qr_model,
                                        seed_size=seed_size, n_heads=heads, seed=seed,
                                        text_model=None if text_model == "none" else text_model)
    except ClinragError as exc:
        _fail(exc)
        return
    if output:
        output.write_text(json.dumps(payload, indent=2))
    if json_out:
        print(json.dumps(payload))
        return
    table = Table(title=f"{data}: {payload['n_questions']} questions, {payload['n_patients']} patients, "
                        f"QR seed set {payload.get('seed_size', 0)}")
    for col in ("stage", "recall@5", "ndcg@10", "answer@5", "seconds"):
        table.add_column(col, justify="right" if col != "stage" else "left")
    for name, m in payload["stages"].items():
        table.add_row(name, f"{m['recall@5']:.4f}", f"{m['ndcg@10']:.4f}", f"{m['answer_in_top5']:.4f}",
                      f"{m['seconds']:.1f}")
    out.print(table)
