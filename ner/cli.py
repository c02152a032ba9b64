"""``clinrag ner ...``: recognise entities in text or a file, train the NER model.

``clinrag ner TEXT|FILE`` prints entities with assertion flags; ``clinrag ner train``
trains the Chemical/Disease model. Mounted by :mod:`clinrag.cli` (this module does not
import the engine).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from typer.core import TyperGroup

from clinrag.errors import ClinragError


class _DefaultToExtract(TyperGroup):
    """``clinrag ner TEXT`` means ``clinrag ner extract TEXT`` (subcommands still win)."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["extract", *args]
        return super().parse_args(ctx, args)


ner_app = typer.Typer(cls=_DefaultToExtract, no_args_is_help=True,
                      help="Clinical entities: `clinrag ner TEXT|FILE` prints them with assertion; "
                           "`clinrag ner train` trains the model.")
out = Console()
err = Console(stderr=True)
ModelOpt = Annotated[str, typer.Option("--ner-model", help=(
    "'default' (clinrag's packaged model), a packaged name, or any installed spaCy/scispaCy "
    "pipeline name or path."))]


def _fail(exc: BaseException) -> None:
    err.print(f"[bold red]error:[/] {exc}", highlight=False)
    raise typer.Exit(1)


@ner_app.command("extract")
def extract(
    text: Annotated[str, typer.Argument(help="Text, or a path to a text file.")],
    ner_model: ModelOpt = "default",
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Print the entities of TEXT (or of the file it names) with their assertion flags."""
    from clinrag.ner.pipeline import load_pipeline

    p = Path(text)
    try:
        body = p.read_text(encoding="utf-8") if len(text) < 4096 and "\n" not in text and p.is_file() else text
        pipe = load_pipeline(ner_model)
        ents = pipe(body)
    except (ClinragError, OSError) as exc:
        _fail(exc)
        return
    if json_out:
        print(json.dumps({"model": pipe.model_id, "entities": [e.to_dict() for e in ents]}))
        return
    table = Table(title=f"{len(ents)} entities ({pipe.model_id})")
    for col in ("text", "label", "span", "assertion", "section", "normalized", "details"):
        table.add_column(col)
    for e in ents:
        table.add_row(e.text, e.label, f"{e.start}-{e.end}", ", ".join(e.assertions) or "affirmed",
                      e.section or "", e.normalized, ", ".join(f"{k}={v}" for k, v in e.details))
    out.print(table)


@ner_app.command("train")
def train_cmd(
    train: Annotated[Path, typer.Option(help="IOB training file or folder.")] = Path(
        "../shared/data/bc5cdr/train.tsv"),
    dev: Annotated[Path, typer.Option(help="IOB dev file or folder (model selection).")] = Path(
        "../shared/data/bc5cdr/devel.tsv"),
    output: Annotated[Path, typer.Option("--output", "-o", help="Training output folder.")] = Path("ner-train"),
    arch: Annotated[str, typer.Option(help="cnn (spaCy tok2vec, config in clinrag/ner/configs) or "
                                           "minilm (fine-tuned packaged all-MiniLM-L6-v2 token classifier).")] = "cnn",
    config: Annotated[Path | None, typer.Option(help="spaCy config (cnn); default configs/cnn.cfg.")] = None,
    max_steps: Annotated[int | None, typer.Option(help="cnn: training steps (overrides the config).")] = None,
    epochs: Annotated[int, typer.Option(help="minilm: epochs.")] = 3,
    max_minutes: Annotated[float, typer.Option(help="minilm: time box in minutes.")] = 25.0,
    lr: Annotated[float, typer.Option(help="minilm: peak learning rate (linear decay).")] = 1e-4,
    context: Annotated[int, typer.Option(help=(
        "minilm: train on consecutive sentences packed into pieces of at most this many sub-tokens "
        "(cross-sentence context); 0: single sentences."))] = 0,
    crf: Annotated[bool, typer.Option("--crf/--no-crf", help=(
        "minilm: linear-chain CRF output layer (Viterbi decoding, IOB-illegal transitions masked); "
        "--no-crf: softmax layer."))] = True,
    package_as: Annotated[str | None, typer.Option(help=(
        "Copy the best model into clinrag/ner/models/NAME (NAME 'bc5cdr-minilm-crf' replaces the default)."))] = None,
) -> None:
    """Train the Chemical/Disease NER model (BC5CDR train; dev for model selection)."""
    from clinrag.ner.train import package_model

    result: Any
    try:
        if arch == "cnn":
            from clinrag.ner.train import train as train_cnn

            ov: dict[str, object] = {"training.max_steps": max_steps} if max_steps else {}
            result = train_cnn(train, dev, output, config=config, overrides=ov)
            best, f1 = result.model_dir, result.dev_f1
        elif arch == "minilm":
            from clinrag.ner.transformer import train_token_classifier

            result = train_token_classifier(train, dev, output, epochs=epochs, max_minutes=max_minutes, lr=lr,
                                            context=context, crf=crf)
            best, f1 = result.model_dir, result.dev_f1
        else:
            raise typer.BadParameter(f"--arch must be cnn or minilm, not {arch!r}")
        if package_as:
            from clinrag.ner.pipeline import MODELS_DIR

            package_model(best, MODELS_DIR / package_as, name=package_as)
    except ClinragError as exc:
        _fail(exc)
        return
    out.print(f"best dev entity F1 {f1:.4f}; model in {best}")
