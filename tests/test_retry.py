"""The one retry helper (db/retry.py): attempts, the exception filter, the waits, and the last error re-raised."""

from __future__ import annotations

import sqlite3

import pytest

from db.retry import retrying


class Flaky:
    """A step that fails with `error` the first `failures` times it is called, then returns how many calls it took."""

    def __init__(self, failures: int, error: BaseException) -> None:
        self.failures, self.error, self.calls = failures, error, 0

    def __call__(self) -> int:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        return self.calls


def test_a_step_is_retried_until_it_succeeds() -> None:
    step = Flaky(2, sqlite3.OperationalError("database is locked"))
    assert retrying(sqlite3.OperationalError, attempts=3)(step) == 3


def test_the_last_error_is_re_raised_unchanged_after_the_last_attempt() -> None:
    error = sqlite3.OperationalError("database is locked")
    step = Flaky(5, error)
    with pytest.raises(sqlite3.OperationalError) as info:
        retrying(sqlite3.OperationalError, attempts=3)(step)
    assert info.value is error and step.calls == 3


def test_other_errors_and_filtered_ones_are_not_retried() -> None:
    step = Flaky(1, ValueError("bad"))
    with pytest.raises(ValueError):
        retrying(sqlite3.OperationalError, attempts=3)(step)
    assert step.calls == 1
    step = Flaky(1, sqlite3.OperationalError("no such table: x"))
    with pytest.raises(sqlite3.OperationalError):
        retrying(sqlite3.OperationalError, attempts=3, when=lambda exc: "locked" in str(exc))(step)
    assert step.calls == 1


def test_waits_follow_the_attempt_number_and_the_block_form_returns() -> None:
    waits: list[int] = []

    def wait(n: int) -> float:
        waits.append(n)
        return 0.0

    def block() -> int:
        step = Flaky(2, sqlite3.IntegrityError("duplicate"))
        for attempt in retrying(sqlite3.IntegrityError, attempts=4, wait=wait):
            with attempt:
                return step()
        raise AssertionError("unreachable")

    assert block() == 3
    assert waits == [1, 2]
    with pytest.raises(ValueError, match="at least 1"):
        retrying(ValueError, attempts=0)
