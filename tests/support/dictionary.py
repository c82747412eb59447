"""The bundled job dictionary as tests pick from it: its records in file order, lines by position or by occupation."""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Iterable

from tests.support import ROOT

JOB_DICTIONARY = ROOT / "data" / "job_dictionary" / "job_dictionary_work24.jsonl"


@lru_cache(maxsize=1)
def records() -> tuple[tuple[str, str, str], ...]:
    """(dJobCd, dJobNm, line) of every non-blank line of the bundled dictionary, in file order."""
    out = []
    with JOB_DICTIONARY.open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                o = json.loads(line)
                out.append((o["dJobCd"], o["dJobNm"], line.rstrip("\n")))
    return tuple(out)


def code_of(name: str) -> str:
    """The dJobCd of the occupation named `name` (dJobNm)."""
    return next(code for code, nm, _ in records() if nm == name)


def bundled_lines(n: int | None = None, extra_codes: tuple[str, ...] = ()) -> list[str]:
    """The first `n` lines of the bundled job dictionary, then the lines of `extra_codes` not already in."""
    head = records() if n is None else records()[:n]
    codes = {code for code, _, _ in head}
    extra = [line for code, _, line in records() if code in extra_codes and code not in codes]
    return [line for _, _, line in head] + extra


def kb_lines(total: int, names: Iterable[str] = (), codes: Iterable[str] = ()) -> list[str]:
    """The records of the occupations wanted (by dJobNm or dJobCd) first, then the dictionary's head up to `total`
    lines (all in file order)."""
    names, codes = set(names), set(codes)
    wanted = [code in codes or name in names for code, name, _ in records()]
    chosen = [line for (_, _, line), w in zip(records(), wanted) if w]
    for (_, _, line), w in zip(records(), wanted):
        if len(chosen) >= total:
            break
        if not w:
            chosen.append(line)
    return chosen
