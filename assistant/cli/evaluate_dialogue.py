"""`jinro eval dialogue`: play multi-turn scenarios through the counselor and score the last answers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from assistant.evaluation.blind import WITHHELD, is_blind
from assistant.evaluation.dialogue import evaluate_dialogue, load_scenarios
from assistant.runtime import Runtime
from db.errors import JinroError
from db.settings import Settings

out = Console()
err = Console(stderr=True)


def dialogue(
    scenarios: Annotated[Path, typer.Option("--scenarios", help="JSONL of {\"turns\", \"gold\", \"answer_any\"} lines.")],
    db: Annotated[Optional[str], typer.Option("--db", help="Database URL (default: JINRO_DB_URL or the SQLite file).")] = None,
    generator: Annotated[Optional[str], typer.Option(help="grounded | transformers:<model> | openai:<url> (default: JINRO_GENERATOR).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Whether the last answer of each scenario cites a gold source and contains an expected string.

    Example: jinro eval dialogue --scenarios data/eval/dialogue_dev.jsonl --json
    """
    settings = Settings()
    try:
        items = load_scenarios(scenarios)
        rt = Runtime.from_settings(settings, db_url=db, generator=generator)
        rt.warm()
        rt.counselor.config.finish_model_answer = True  # an LLM's own answer is scored whole, past the guard
        gen = rt.counselor.generator
        report = evaluate_dialogue(rt.counselor, items)
    except JinroError as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False)
        raise typer.Exit(2) from None
    report["generator"] = gen.name
    if is_blind(scenarios):
        report.update(failures=[], answers=[], errors_withheld=True)
    if as_json:
        typer.echo(json.dumps(report, ensure_ascii=False))
        return
    table = Table(title=f"{scenarios.name}: {report['scenarios']} scenarios ({gen.name})", show_header=False)
    keys = ("cited", "answered", "turn_p50_ms", "turn_p95_ms")
    if gen.name != "grounded":
        keys = keys[:2] + ("model_answered", "guard_replaced") + keys[2:]
    for key in keys:
        table.add_row(key, str(report[key]))
    out.print(table)
    for name, row in report.get("per_type", {}).items():
        out.print(f"{escape(name)}: n={row['n']} cited {row['cited']} answered {row['answered']}", highlight=False)
    if is_blind(scenarios):
        out.print(WITHHELD)
    for f in report["failures"][:10]:
        out.print(f"[yellow]{escape(f['name'])}[/yellow]: {escape(' / '.join(f['turns']))} → {escape(f['answer'][:160])}")
