"""`jinro chat`: a conversation with the counselor in the terminal, on the embedded defaults."""

from __future__ import annotations

import sys
from typing import Annotated, Optional

import typer
from rich.console import Console

from assistant.runtime import Runtime
from assistant.counselor.sessions import create_session
from db.errors import JinroError
from db.settings import Settings

DEMO = ["안녕하세요", "저는 고2인데 동물을 좋아해요", "수의사가 되고 싶어요", "그 직업은 자격증이 필요해?",
        "대학은 꼭 가야 돼?"]
console = Console()
err = Console(stderr=True)


def chat(
    db: Annotated[Optional[str], typer.Option("--db", help="Database URL (default: JINRO_DB_URL or the SQLite file).")] = None,
    demo: Annotated[bool, typer.Option("--demo", help="Play a short scripted conversation and exit.")] = False,
    session: Annotated[Optional[str], typer.Option(help="Resume this session id.")] = None,
) -> None:
    """Talk with the counselor in the terminal (empty line or Ctrl-D ends).

    Example: jinro chat --demo
    """
    settings = Settings()
    try:
        rt = Runtime.from_settings(settings, db_url=db)
        rt.warm()
        sid = session or create_session(rt.knowledge.factory, "local").id
    except JinroError as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False)
        raise typer.Exit(2) from None
    console.print(f"[dim]session {sid} · generator {rt.counselor.generator.name} · 끝내려면 빈 줄을 입력하세요[/dim]")
    lines = iter(DEMO) if demo else None
    while True:
        if lines is not None:
            text = next(lines, "")
            if text:
                console.print(f"[bold cyan]학생>[/bold cyan] {text}", highlight=False)
        else:
            try:
                text = console.input("[bold cyan]학생>[/bold cyan] ")
            except EOFError:
                text = ""
        if not text.strip():
            break
        console.print("[bold green]상담>[/bold green] ", end="")
        try:
            result = None
            for piece in rt.counselor.stream(sid, text, owner="local"):
                if isinstance(piece, str):
                    console.print(piece, end="", highlight=False, soft_wrap=True)
                    sys.stdout.flush()
                else:
                    result = piece
        except JinroError as exc:
            err.print(f"\n[red]error:[/red] {exc}", highlight=False)
            continue
        console.print()
        if result and result.citations:
            src = ", ".join(f"{c['title']} ({c['external_id']}, {c['as_of'] or '연도 미상'})" for c in result.citations)
            console.print(f"[dim]출처: {src}[/dim]", highlight=False)
        if result and result.safety.get("crisis"):
            console.print("[yellow]상담 선생님께 긴급 검토 요청이 전달되었습니다.[/yellow]")
