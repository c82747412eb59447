"""`jinro eval types`: the question-type classifier (or the rules, its peer) on a file of typed turns."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from assistant.counselor.question_types import question_types
from assistant.counselor.understanding import rule_intent
from assistant.evaluation.question_types import load_typed, score_types
from db.errors import JinroError

out = Console()
err = Console(stderr=True)


def types(
    file: Annotated[Path, typer.Argument(help="JSONL of {\"q\" or \"turns\", \"type\"} lines (e.g. the procedural benchmark's single turns).")],
    rules: Annotated[bool, typer.Option("--rules", help="Score the rules alone (the peer) instead of the classifier.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Per-type precision, recall and F1, and macro-F1, of the question types predicted for each turn.

    Only aggregates are printed, for any file (blind ones included).

    Example: jinro eval types data/eval/procedural_hard_single_dev.jsonl --json
    """
    try:
        turns = load_typed(file)
        report = score_types((lambda text: {rule_intent(text)}) if rules else question_types, turns)
    except JinroError as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False)
        raise typer.Exit(2) from None
    report["predictor"] = "rules" if rules else "classifier"
    if as_json:
        typer.echo(json.dumps(report, ensure_ascii=False))
        return
    out.print(f"{escape(file.name)}: {report['n']} turns, {report['predictor']}: macro-F1 {report['macro_f1']}, "
              f"exact {report['exact']}", highlight=False)
    for name, row in report["per_type"].items():
        out.print(f"  {escape(name)}: n={row['n']} P {row['precision']} R {row['recall']} F1 {row['f1']}", highlight=False)
