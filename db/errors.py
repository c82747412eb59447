"""Errors of the db package."""

from __future__ import annotations


class DatabaseError(Exception):
    """Base class of db errors."""


class DatabaseUnavailable(DatabaseError):
    """The database URL cannot be reached or opened."""


class SchemaOutdated(DatabaseError):
    """The database exists but its schema is older than this code; run the migrations."""


class VectorIndexError(DatabaseError):
    """The vector index file is missing, unreadable, or built for another model or dimension."""
