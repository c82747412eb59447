"""Errors of the fine-tuning pipeline.

Part of the one error tree drawn in `db/errors.py` (root `JinroError`).
Each message says what went wrong and what to do next."""

from __future__ import annotations

from db.errors import JinroError


class FinetuneError(JinroError):
    """Base class of every error raised by `finetune`."""


class ConfigError(FinetuneError):
    """A training config (YAML or --set override) is invalid."""


class DataFormatError(FinetuneError):
    """One record of an input file is malformed; `location` is `file:line` so it can be found and fixed."""

    def __init__(self, location: str, reason: str) -> None:
        super().__init__(f"{location}: {reason}")
        self.location = location
        self.reason = reason
