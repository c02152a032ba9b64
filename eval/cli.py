"""``clinrag eval ...``: the evaluation commands (a Typer sub-app mounted by :mod:`clinrag.cli`).

Each command builds what it needs from a dataset, runs it and prints a table, or with
``--json`` an object whose metric keys are ``ndcg@10``, ``recall@100``, ``mrr@10``...
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from clinrag.commands.common import JsonOpt, emit_json, err, out
from clinrag.commands.common import fail as _fail
from clinrag.errors import ClinragError

eval_app = typer.Typer(help="Evaluate retrieval, NER, image, answer and screening quality.", no_args_is_help=True)


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
    feedback: Annotated[list[str] | None, typer.Option(help=(
        "Also run late/hybrid with pseudo-relevance feedback DOCS:WEIGHT, e.g. 5:1 (repeatable)."))] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write the results JSON here.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Build a temporary index for a task, run its queries and report nDCG@10, Recall@k, MRR@10."""
    from clinrag.eval.runner import evaluate_modes

    try:
        fb = []
        for spec in feedback or []:
            docs, _, weight = spec.partition(":")
            try:
                fb.append((int(docs), float(weight or 1.0)))
            except ValueError:
                raise typer.BadParameter(f"--feedback takes DOCS:WEIGHT such as 5:1, not {spec!r}") from None
        results = evaluate_modes(task, data, modes=mode or ["lexical"], text_model=text_model, dim=dim,
                                 nbits=nbits or [2], chunk_words=chunk_words, feedback=fb)
    except ClinragError as exc:
        _fail(exc)
        return
    payload: dict[str, Any] = results[0].to_dict() if len(results) == 1 else {
        "task": task, "runs": [r.to_dict() for r in results]}
    if output:
        output.write_text(json.dumps(payload, indent=2))
    if json_out:
        emit_json(payload)
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


@eval_app.command("ner")
def eval_ner(
    data: Annotated[Path, typer.Option(help="An IOB .tsv file (token<TAB>tag) or a folder of them.")],
    ner_model: Annotated[str, typer.Option("--ner-model", help=(
        "'default' (packaged), a packaged name, or an installed spaCy/scispaCy pipeline name or path."))] = "default",
    label: Annotated[list[str] | None, typer.Option("--label", help=(
        "Score only these entity types (repeatable), e.g. --label Disease for NCBI-disease."))] = None,
    context: Annotated[int, typer.Option(help=(
        "Tag consecutive sentences together in pieces of at most this many words (as indexed chunks "
        "are tagged); 0 tags each sentence alone."))] = 0,
    json_out: JsonOpt = False,
) -> None:
    """Entity-level precision/recall/F1 per label and micro-averaged (seqeval, exact span match)."""
    from clinrag.ner.evaluate import evaluate_ner

    try:
        r = evaluate_ner(data, ner_model, labels=label, context=context)
    except ClinragError as exc:
        _fail(exc)
        return
    if json_out:
        emit_json(r.to_dict())
        return
    table = Table(title=f"{r.data}: {r.n_sentences} sentences, {r.n_tokens} tokens ({r.model})")
    for col in ("label", "precision", "recall", "f1", "support"):
        table.add_column(col, justify="left" if col == "label" else "right")
    for name, s in [*sorted(r.per_label.items()), ("micro", r.micro)]:
        table.add_row(name, f"{s.precision:.4f}", f"{s.recall:.4f}", f"{s.f1:.4f}", str(s.support))
    out.print(table)


@eval_app.command("images")
def eval_images(
    data: Annotated[Path, typer.Option(help="An image-caption table: a folder with metadata.csv and images/ "
                                            "(the covid-cxr layout).")],
    image_model: Annotated[str, typer.Option(help=(
        "Image model: hf-hub:ORG/REPO (e.g. hf-hub:microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224), "
        "ARCH@CHECKPOINT, a saved open_clip or transformers CLIP folder; ARCH@random for random weights."))]
        = "ViT-B-32@random",
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write the results JSON here.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Image->text and text->image Recall@1/5/10, and finding-level Precision@1/5/10, each with its chance level."""
    from clinrag.eval.images import evaluate_images

    try:
        result = evaluate_images(data, image_model)
    except ClinragError as exc:
        _fail(exc)
        return
    payload = result.to_dict()
    if output:
        output.write_text(json.dumps(payload, indent=2))
    if json_out:
        emit_json(payload)
        return
    table = Table(title=f"images: {result.n_images} images, {result.n_texts} note texts, model {image_model}")
    for col in ("metric", "score", "chance"):
        table.add_column(col, justify="left" if col == "metric" else "right")
    for name, value in result.metrics.items():
        table.add_row(name, f"{value:.4f}", f"{result.chance[name]:.4f}")
    out.print(table)
    for note in result.notes:
        out.print(f"[yellow]{note}[/]")


@eval_app.command("review")
def eval_review(
    labels: Annotated[Path, typer.Option(help="Inclusion labels: CSV question_id,doc_id[,included] or JSON.")],
    run: Annotated[list[Path], typer.Option(help="A `clinrag review` output folder (repeatable: runs compared).")],
    k: Annotated[list[int] | None, typer.Option("-k", help="Cut-offs for Recall@k (repeatable).")] = None,
    plot: Annotated[Path | None, typer.Option(help=(
        "Where to write the recall-vs-screened PNG (default: in the first run folder)."))] = None,
    n_total: Annotated[int | None, typer.Option(help="Collection size for WSS (default: index documents).")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Screening metrics of review runs: Recall@k, rank of the last relevant record, WSS@95, and a recall plot."""
    from clinrag.eval.screening import evaluate_run, mean_metrics, plot_recall, read_labels, read_run

    ks = tuple(k or (10, 50, 100))
    try:
        gold = read_labels(labels)
        per_run = {}
        for r in run:
            manifest, _ = read_run(r)
            name = f"{r.name} ({manifest.get('mode')})"
            per_run[name] = evaluate_run(r, gold, ks=ks, n_total=n_total)
        png = plot_recall(per_run, plot or run[0] / "recall-vs-screened.png")
    except ClinragError as exc:
        _fail(exc)
        return
    runs = [{"run": name, **mean_metrics(ms), "per_question": [m.to_dict() for m in ms]}
            for name, ms in per_run.items()]
    payload: dict[str, Any] = {"plot": str(png), "runs": runs}
    if json_out:
        emit_json(payload)
        return
    _screening_table(f"screening: {len(gold)} labelled questions", payload["runs"], ks)
    out.print(f"recall-vs-screened plot: {png}")


def _screening_table(title: str, rows: list[dict[str, Any]], ks: tuple[int, ...], key: str = "run") -> None:
    table = Table(title=title)
    cols = [f"recall@{k}" for k in ks] + ["recall@depth", "last_relevant_rank", "all_found_share", "wss@95"]
    table.add_column(key)
    short = {"recall@depth": "R@depth", "last_relevant_rank": "last rel.", "all_found_share": "all found",
             "wss@95": "WSS@95"}
    for c in cols:
        table.add_column(short.get(c, c.replace("recall@", "R@")), justify="right")
    for r in rows:
        table.add_row(str(r[key]), *("-" if r.get(c) is None else f"{r[c]:.3f}" if c != "last_relevant_rank"
                                     else f"{r[c]:.1f}" for c in cols))
    out.print(table)


@eval_app.command("review-mesh")
def eval_review_mesh(
    data: Annotated[Path, typer.Option(help="PubMedQA json file (e.g. ../shared/data/pubmedqa/pqal_dev.json).")],
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Work folder: protocol, labels, index, runs, plot.")],
    mode: Annotated[list[str] | None, typer.Option(help="Mode(s): lexical, late, hybrid (repeatable).")] = None,
    text_model: Annotated[str, typer.Option(help="Text model for late/hybrid.")] = "default",
    depth: Annotated[int, typer.Option(help="Records retrieved per formulation.")] = 100,
    max_questions: Annotated[int | None, typer.Option(help="Only the first N topics.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Review benchmark from PubMedQA MeSH headings (the search never sees MeSH): screening metrics per mode."""
    from clinrag.eval.review_bench import run_mesh_review

    ks = (10, 50, 100)
    try:
        results = run_mesh_review(data, out_dir, modes=mode or ["lexical", "late", "hybrid"], text_model=text_model,
                                  depth=depth, max_questions=max_questions, ks=ks)
    except ClinragError as exc:
        _fail(exc)
        return
    rows = [r.to_dict() for r in results]
    if json_out:
        emit_json({"runs": rows, "plot": str(out_dir / "recall-vs-screened.png")})
        return
    n = results[0].per_question if results else ()
    _screening_table(f"pubmedqa-mesh review: {len(n)} topics, {results[0].n_formulations if results else 0} "
                     "formulations", rows, ks, key="mode")
    out.print(f"recall-vs-screened plot: {out_dir / 'recall-vs-screened.png'}")


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
        emit_json(payload)
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
    orders: Annotated[int, typer.Option(help="QR: score each list in 1 or 2 (given and reversed) orders.")] = 2,
    null_query: Annotated[bool, typer.Option(help=(
        "QR: subtract the attention drawn by the content-free question 'N/A' (QRHead calibration).")
    )] = True,
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
                                        seed_size=seed_size, n_heads=heads, seed=seed, orders=orders,
                                        text_model=None if text_model == "none" else text_model,
                                        null_query=null_query)
    except ClinragError as exc:
        _fail(exc)
        return
    if output:
        output.write_text(json.dumps(payload, indent=2))
    if json_out:
        emit_json(payload)
        return
    table = Table(title=f"{data}: {payload['n_questions']} questions, {payload['n_patients']} patients, "
                        f"QR seed set {payload.get('seed_size', 0)}")
    for col in ("stage", "recall@5", "ndcg@10", "answer@5", "seconds"):
        table.add_column(col, justify="right" if col != "stage" else "left")
    for name, m in payload["stages"].items():
        table.add_row(name, f"{m['recall@5']:.4f}", f"{m['ndcg@10']:.4f}", f"{m['answer_in_top5']:.4f}",
                      f"{m['seconds']:.1f}")
    out.print(table)
