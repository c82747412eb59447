"""API keys: format, hashing, roles, and keeping keys out of the logs.

A key is `jnr_` + 43 URL-safe characters (32 random bytes). Only its SHA-256 is stored (a random 256-bit token
needs no slow hash: there is nothing to brute-force), with a short prefix to recognise it in listings. Roles:
`client` (chat: its own sessions only), `reviewer` (also the review queue and exports), `admin` (also the
knowledge DB and every session).
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
from dataclasses import dataclass

KEY_PREFIX = "jnr_"
PREFIX_CHARS = 12  # "jnr_" + 8 characters: stored in clear to find and show keys
ROLES = ("client", "reviewer", "admin")
REVIEW_ROLES = frozenset({"reviewer", "admin"})
ADMIN_ROLES = frozenset({"admin"})


@dataclass(frozen=True)
class Caller:
    """The authenticated key behind a request."""

    key_id: int
    name: str
    role: str
    prefix: str

    @property
    def owner(self) -> str:
        """What sessions created by this key record as their owner."""
        return str(self.key_id)

    @property
    def scope(self) -> str | None:
        """Owner filter for session look-ups: admins reach every session, others only their own."""
        return None if self.role == "admin" else self.owner


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def key_prefix(token: str) -> str:
    return token[:PREFIX_CHARS]


def looks_like_key(token: str) -> bool:
    return token.startswith(KEY_PREFIX) and 20 <= len(token) <= 200


# ------------------------------------------------------------------------------------------------ logging

_SECRETS = (
    (re.compile(r"(jnr_[A-Za-z0-9_\-]{8})[A-Za-z0-9_\-]{4,}"), r"\1…[redacted]"),
    (re.compile(r"(?i)(jnr%5f[A-Za-z0-9_\-%]{8})[A-Za-z0-9_\-%]{4,}"), r"\1…[redacted]"),  # URL-encoded
    (re.compile(r"(?i)(bearer\s+)[^\s\"',;]+"), r"\1[redacted]"),
    (re.compile(r"(?i)((?:api[_-]?key|access[_-]?token|token|key)(?:=|%3d))[^&\s\"']+"), r"\1[redacted]"),
    (re.compile(r"(?i)(authorization['\"]?\s*[:=]\s*['\"]?)[^'\"\n]+"), r"\1[redacted]"),
)


def scrub(text: str, *, keys_only: bool = False) -> str:
    """`text` without API keys, bearer tokens and `key=` values (`keys_only`: only things shaped like our keys,
    which leaves `%s` placeholders of a format string intact)."""
    for pattern, repl in _SECRETS[:2] if keys_only else _SECRETS:
        text = pattern.sub(repl, text)
    return text


def _scrub_arg(value: object) -> object:
    """A log argument without secrets; objects (URLs, headers) are replaced by their scrubbed text if needed."""
    if value is None or isinstance(value, (bool, int, float)):
        return value
    text = value if isinstance(value, str) else str(value)
    clean = scrub(text)
    return clean if clean != text or isinstance(value, str) else value


class KeyScrubber(logging.Filter):
    """Removes API keys (and any bearer token or `?api_key=`) from log records, message and arguments."""

    def filter(self, record: logging.LogRecord) -> bool:
        # scrub the parts, not the formatted message: some formatters (uvicorn's access log) read record.args
        if isinstance(record.msg, str):
            record.msg = scrub(record.msg, keys_only=bool(record.args))
        elif record.msg is not None and not isinstance(record.msg, (int, float)):
            record.msg = scrub(str(record.msg), keys_only=bool(record.args))
        if isinstance(record.args, tuple):
            record.args = tuple(_scrub_arg(a) for a in record.args)
        elif isinstance(record.args, dict):
            record.args = {k: _scrub_arg(v) for k, v in record.args.items()}
        if record.exc_info and not record.exc_text:
            record.exc_text = scrub(logging.Formatter().formatException(record.exc_info))
        elif record.exc_text:
            record.exc_text = scrub(record.exc_text)
        return True


SCRUBBER = KeyScrubber()
LOGGERS = ("", "uvicorn", "uvicorn.access", "uvicorn.error", "jinro", "jinro.api", "jinro.api.access", "fastapi")


def install_log_scrubber() -> None:
    """Scrub every log record of this process as it is created (a record factory: no logger, handler or library
    can bypass it), and attach the filter to the loggers and handlers configured so far as well."""
    current = logging.getLogRecordFactory()
    if not getattr(current, "jinro_scrubbing", False):
        def factory(*args, **kwargs):
            record = current(*args, **kwargs)
            SCRUBBER.filter(record)
            return record

        factory.jinro_scrubbing = True  # type: ignore[attr-defined]
        logging.setLogRecordFactory(factory)
    for name in LOGGERS:
        logger = logging.getLogger(name)
        if SCRUBBER not in logger.filters:
            logger.addFilter(SCRUBBER)
        for handler in logger.handlers:
            if SCRUBBER not in handler.filters:
                handler.addFilter(SCRUBBER)
