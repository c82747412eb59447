"""jinro's session-aware REST API (FastAPI): `create_app(settings)`; served by `jinro serve`."""

from __future__ import annotations

from typing import Any

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:  # lazy: `jinro keys` needs crud, not the whole app
    if name == "create_app":
        from assistant.api.app import create_app

        return create_app
    raise AttributeError(name)
