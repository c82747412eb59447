"""One error tree: every package error is a `JinroError`, the tree in `db/errors.py` names each of them, and the
API maps any `JinroError` to a problem document."""

from __future__ import annotations

import inspect

import pytest

import assistant.errors
import db.errors
import finetune.errors
import ingest.errors
from assistant.api.problems import domain_mapping
from db.errors import JinroError

MODULES = (db.errors, ingest.errors, assistant.errors, finetune.errors)


def _error_classes() -> list[type[BaseException]]:
    return [cls for m in MODULES for _, cls in inspect.getmembers(m, inspect.isclass)
            if issubclass(cls, BaseException) and cls.__module__ == m.__name__]


@pytest.mark.parametrize("cls", _error_classes(), ids=lambda c: c.__name__)
def test_every_package_error_is_a_jinro_error_drawn_in_the_tree(cls: type[BaseException]) -> None:
    assert issubclass(cls, JinroError)
    assert f" {cls.__name__} " in db.errors.__doc__, f"add {cls.__name__} to the tree in db/errors.py"


def test_the_tree_names_no_class_that_does_not_exist() -> None:
    names = {cls.__name__ for cls in _error_classes()}
    drawn = {line.split("── ")[1].split()[0] for line in db.errors.__doc__.splitlines() if "── " in line}
    assert drawn == names - {"JinroError"}


def test_the_api_maps_any_jinro_error() -> None:
    class NewError(JinroError):
        pass

    status, slug, _, detail = domain_mapping(NewError("do this next"))
    assert (status, slug, detail) == (500, "jinro-error", "do this next")
    assert domain_mapping(ingest.errors.EmptySource("empty"))[:2] == (422, "ingest-error")
    assert domain_mapping(finetune.errors.ConfigError("bad"))[:2] == (500, "jinro-error")
