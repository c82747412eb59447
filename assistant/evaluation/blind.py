"""The blind-file rule every evaluation command follows: a file whose name contains "blind" is scored, but its
errors, failures and answers are never shown or returned, only aggregates, so that nothing is tuned on them."""

from __future__ import annotations

from pathlib import Path

WITHHELD = "a blind file: only aggregates are shown (its errors are withheld so that nothing is tuned on them)"


def is_blind(path: str | Path) -> bool:
    return "blind" in Path(path).name
