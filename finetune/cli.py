"""`finetune`: prepare data, train a LoRA adapter, evaluate it, merge it. Thin commands over the modules of this
package; heavy imports (torch, transformers) happen inside the commands so `--help` stays fast."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.progress import MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from db.errors import JinroError
from finetune.console import console, fail
from finetune.train import train_command

app = typer.Typer(
    help="Fine-tune the counselor: prepare -> train -> eval -> merge.\n\n"
         "Example: finetune prepare --derive-jobs data/job_dictionary/job_dictionary_work24.jsonl --out var/sft",
    no_args_is_help=True, pretty_exceptions_enable=False)


@app.command()
def prepare(
    out: Path = typer.Option(..., help="Output directory for train.jsonl, val.jsonl, stats.json."),
    transcripts: Optional[Path] = typer.Option(None, help="Counseling transcripts JSONL (docs/finetune.md)."),
    koalpaca: Optional[Path] = typer.Option(None, help="KoAlpaca instruction data (.json array or .jsonl)."),
    reviews: Optional[Path] = typer.Option(None, help="The API's review export JSONL (approved/edited)."),
    derive_jobs: Optional[Path] = typer.Option(None, help="Job dictionary JSONL to derive grounded conversations from."),
    chitchat: Optional[Path] = typer.Option(None, help="ChatbotData.csv for chit-chat pairs."),
    tokenizer: Optional[str] = typer.Option(None, help="Model dir / hub id whose tokenizer counts tokens (else chars)."),
    max_tokens: int = typer.Option(2048, help="Longest example, in tokens (chars without --tokenizer)."),
    val_fraction: float = typer.Option(0.05, help="Share of SESSIONS held out for validation."),
    seed: int = typer.Option(42, help="Seed of derivation, sampling and the split."),
    derive_limit: Optional[int] = typer.Option(None, help="Occupations to derive from (default: all)."),
    chitchat_limit: int = typer.Option(1000, help="Chit-chat pairs to take."),
    koalpaca_limit: Optional[int] = typer.Option(None, help="KoAlpaca records to take (default: all)."),
) -> None:
    """Build the multi-turn SFT dataset (loss on counselor turns only, PII redacted, deduplicated, split by session).

    Example: finetune prepare --derive-jobs data/job_dictionary/job_dictionary_work24.jsonl
    --chitchat data/chatbot_data/ChatbotData.csv --transcripts var/aihub71618.jsonl --out var/sft
    --tokenizer EleutherAI/polyglot-ko-1.3b
    """
    from finetune.prepare import PrepareOptions, prepare as run

    opts = PrepareOptions(out=out, transcripts=transcripts, koalpaca=koalpaca, reviews=reviews, derive_jobs=derive_jobs,
                          chitchat=chitchat, tokenizer=tokenizer, max_tokens=max_tokens, val_fraction=val_fraction,
                          seed=seed, derive_limit=derive_limit, chitchat_limit=chitchat_limit,
                          koalpaca_limit=koalpaca_limit)
    try:
        with Progress(SpinnerColumn(), TextColumn("{task.description}"), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=console, transient=True) as bar:
            tasks: dict[str, int] = {}

            def tick(source: str, n: int) -> None:
                if source not in tasks:
                    tasks[source] = bar.add_task(source, total=None)
                bar.advance(tasks[source], n)

            stats = run(opts, progress=tick)
    except JinroError as exc:
        raise fail(exc) from exc
    table = Table(title=f"SFT data in {out}", show_header=False)
    for key, value in stats.to_json().items():
        if key != "error_samples":
            table.add_row(key, str(value))
    Console().print(table)
    for sample in stats.error_samples[:5]:
        console.print(f"[yellow]skipped[/yellow] {sample}")


app.command("train")(train_command)  # defined with its loop: `accelerate launch -m finetune.train` runs it


@app.command("eval")
def eval_(
    model: str = typer.Option(..., help="Base model: hub id, local dir or gemma3-270m-gguf."),
    adapter: Path = typer.Option(..., help="Adapter directory written by `finetune train`."),
    data: Path = typer.Option(..., help="val.jsonl from `finetune prepare`."),
    report: Path = typer.Option(..., help="Markdown report to write (the JSON goes next to it)."),
    gguf_file: Optional[str] = typer.Option(None, help="GGUF file inside --model's directory."),
    max_examples: int = typer.Option(200, help="Validation conversations to score."),
    samples: bool = typer.Option(True, help="Generate sample answers to the fixed prompts."),
    max_new_tokens: int = typer.Option(96, help="Longest sample answer."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
) -> None:
    """Validation loss/perplexity on counselor tokens before and after the adapter, plus sample answers.

    Example: finetune eval --model EleutherAI/polyglot-ko-1.3b --adapter var/runs/polyglot-ko-1.3b/adapter
    --data var/sft/val.jsonl --report var/runs/polyglot-ko-1.3b/eval.md
    """
    from finetune.evaluate import evaluate

    try:
        with console.status("evaluating"):
            result = evaluate(model, str(adapter), data, report, gguf_file=gguf_file, max_examples=max_examples,
                              samples=samples, max_new_tokens=max_new_tokens, device=device)
    except JinroError as exc:
        raise fail(exc) from exc
    console.print(f"loss {result.base_loss:.4f} -> {result.adapter_loss:.4f} (perplexity {result.base_perplexity:.2f} "
                  f"-> {result.adapter_perplexity:.2f}); report: {report}")


@app.command()
def merge(
    model: str = typer.Option(..., help="Base model: hub id, local dir or gemma3-270m-gguf."),
    adapter: Path = typer.Option(..., help="Adapter directory written by `finetune train`."),
    out: Path = typer.Option(..., help="New directory for the merged model."),
    gguf_file: Optional[str] = typer.Option(None, help="GGUF file inside --model's directory."),
    dtype: str = typer.Option("auto", help="auto, fp32, fp16 or bf16."),
) -> None:
    """Merge the adapter into the base model (merge_and_unload) and save a plain model directory.

    Example: finetune merge --model EleutherAI/polyglot-ko-5.8b --adapter var/runs/polyglot-ko-5.8b/adapter --out var/runs/merged
    """
    from finetune.merge import merge as run

    try:
        with console.status("merging"):
            path = run(model, str(adapter), out, gguf_file=gguf_file, dtype=dtype)
    except JinroError as exc:
        raise fail(exc) from exc
    console.print(f"merged model: {path}")


@app.command("tiny-model")
def tiny_model(out: Path = typer.Option(..., help="Directory for the tiny model and tokenizer.")) -> None:
    """Write a tiny random GPT-NeoX (Polyglot-Ko's architecture) + BPE tokenizer for smoke runs on a CPU.

    Example: finetune tiny-model --out var/tiny-neox
    """
    from finetune.tiny import build_tiny_model

    console.print(f"tiny model: {build_tiny_model(out)}")


if __name__ == "__main__":
    app()
