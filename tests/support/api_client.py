"""What a client of our API does: API keys (created as an operator would), bearer headers, and server-sent events
read the way a client reads them."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Iterable, Iterator


def new_key(url: str, role: str, name: str = "") -> str:
    """A new API key of `role` in the database at `url` (the secret)."""
    from assistant.api import crud
    from db.engine import create_db_engine, session_factory

    engine = create_db_engine(url)
    try:
        return crud.create_key(session_factory(engine), role, name or role)[1]
    finally:
        engine.dispose()


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@dataclass
class Event:
    event: str
    data: str

    def json(self) -> Any:
        return json.loads(self.data)


def parse_sse(lines: Iterable[str]) -> Iterator[Event]:
    """Server-sent events as the WHATWG spec reads them: `event:`/`data:` fields, comments, blank-line dispatch."""
    name, data = "message", []
    for raw in lines:
        line = raw.rstrip("\r\n")
        if not line:
            if data:
                yield Event(name, "\n".join(data))
            name, data = "message", []
            continue
        if line.startswith(":"):
            continue
        fieldname, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if fieldname == "event":
            name = value
        elif fieldname == "data":
            data.append(value)
    if data:
        yield Event(name, "\n".join(data))


def sse_lines(text: str) -> list[str]:
    return text.replace("\r\n", "\n").split("\n")
