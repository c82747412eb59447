"""Reading the evaluation files' JSON lines, with `file:line` in every error (one place for all evaluations)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

from assistant.errors import EvalDataError


def json_lines(path: Path, text: str) -> Iterator[tuple[int, Any]]:
    """(line number, parsed object) of each non-blank line of `text`, read from `path`."""
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            yield n, json.loads(line)
        except json.JSONDecodeError as exc:
            raise EvalDataError(f"{path}:{n}: invalid JSON ({exc.msg})") from exc
