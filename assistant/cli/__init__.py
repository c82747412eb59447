"""`jinro`: the counselor's command line — serve, chat and evaluate.

Each sub-command lives in its own module; this file only mounts them.
"""

from __future__ import annotations

import typer

from assistant.cli.serve import keys_app, serve
from assistant.cli.chat import chat
from assistant.cli.evaluate import app as eval_app
from assistant.cli.evaluate_dialogue import dialogue
from assistant.cli.evaluate_types import types

app = typer.Typer(
    help="jinro, a Korean career-counseling assistant.\n\nExample: jinro eval retrieval data/eval/retrieval_dev.jsonl",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
eval_app.command("dialogue")(dialogue)
eval_app.command("types")(types)
app.add_typer(eval_app, name="eval", help="Measure retrieval, dialogue, question types and safety on labelled files.\n\nExample: jinro eval retrieval data/eval/retrieval_dev.jsonl --json")
app.command()(chat)
app.add_typer(keys_app, name="keys", help="Create, list and revoke API keys.")
app.command()(serve)
