"""Where every `finetune` command prints (stderr, so stdout stays for data) and how a command fails: the message
of the error (it says what to do next) and exit status 1. Used by `finetune.cli` and by the `train` command, which
lives with its loop in `finetune.train` so that `accelerate launch -m finetune.train` runs it."""

from __future__ import annotations

import typer
from rich.console import Console

console = Console(stderr=True)


def fail(exc: Exception) -> typer.Exit:
    console.print(f"[red]error:[/red] {exc}")
    return typer.Exit(1)
