"""The one retry helper: a configured `tenacity.Retrying` for the few places that retry a step by hand.

    for attempt in retrying(IntegrityError, attempts=3):
        with attempt:
            ...                                  # the step; `return` from inside works

    retrying((IntegrityError, OperationalError), attempts=5, wait=lambda n: 0.02 * n)(store_once, memory)

It runs the step up to `attempts` times while it raises `on` (and `when(exc)` holds), sleeping `wait` seconds
between attempts (or `wait(n)` after the n-th failed one), and then re-raises the step's last error unchanged,
so the caller catches the error it knows, not a tenacity wrapper.
"""

from __future__ import annotations

from typing import Callable

import tenacity

Wait = float | Callable[[int], float]


def retrying(on: type[BaseException] | tuple[type[BaseException], ...], *, attempts: int, wait: Wait = 0.0,
             when: Callable[[BaseException], bool] | None = None) -> tenacity.Retrying:
    """A `tenacity.Retrying` for a step that fails with `on` (only when `when(exc)`, if given) `attempts` times at most."""
    if attempts < 1:
        raise ValueError(f"attempts must be at least 1, not {attempts}")

    def transient(exc: BaseException) -> bool:
        return isinstance(exc, on) and (when is None or when(exc))

    def pause(state: tenacity.RetryCallState) -> float:
        return wait(state.attempt_number) if callable(wait) else wait

    return tenacity.Retrying(stop=tenacity.stop_after_attempt(attempts), retry=tenacity.retry_if_exception(transient),
                             wait=pause, reraise=True)
