"""Retries and error translation for every LanceDB call.

LanceDB raises bare ValueError/RuntimeError/OSError; ``with_retries`` turns
them into our errors (errors.py), retrying commit conflicts with backoff.
"""

from __future__ import annotations

import logging
import random
import re
import time
from collections.abc import Callable
from typing import Any, TypeVar

from ..core.errors import ConflictError, LanceMemError, StorageError
from ..core.object_storage import secrets

log = logging.getLogger(__name__)

T = TypeVar("T")
MAX_ATTEMPTS = 8


def _is_retryable(exc: Exception) -> bool:
    # An AWS SDK error prints its body's "retryable: true" flag: that is not a conflict
    text = str(exc).lower().replace("retryable: true", "").replace("retryable: false", "")
    return "retryable" in text or "conflict" in text or "please retry" in text


def _gave_up(exc: Exception) -> bool:
    """Lance's own commit retries ran out ("Too many concurrent writers.
    Attempted 5 times, but failed on retry_timeout of 30.000 seconds")."""
    return "too many concurrent writers" in str(exc).lower()


def backoff(attempt: int) -> None:
    """Sleep before retry ``attempt`` (0-based): exponential, capped, with jitter."""
    time.sleep(min(2.0, 0.02 * 2**attempt) * (0.5 + random.random()))


def with_retries(action: Callable[[], T], *, what: str) -> T:
    """Run a LanceDB call, retrying commit conflicts with backoff and jitter.

    LanceDB raises bare ValueError/RuntimeError/OSError; they become
    StorageError (or ConflictError once retries run out).
    """
    for attempt in range(MAX_ATTEMPTS):
        try:
            return action()
        except LanceMemError:
            raise
        except (RuntimeError, ValueError, OSError) as exc:
            if _gave_up(exc):  # Lance retried the commit itself, for its 30 s
                log.warning("%s gave up: %s", what, secrets.redact(str(exc)))
                raise ConflictError(
                    f"{what} kept conflicting with other writers (LanceDB retried it for "
                    "30 s: the table is busy); try again in a moment.") from exc
            if not _is_retryable(exc):
                raise _storage_error(what, exc) from exc
            if attempt == MAX_ATTEMPTS - 1:
                raise ConflictError(
                    f"{what} kept conflicting with other writers after {MAX_ATTEMPTS} tries; "
                    "try again in a moment."
                ) from exc
            backoff(attempt)
    raise AssertionError("unreachable")


# What a caller is told of a LanceDB failure. LanceDB's own message can quote
# the where clause (the caller's filter values, other ids) and its source
# paths: it goes to the log, never into the error.
_REASONS = (
    ("resourcenotfoundexception", "the DynamoDB commit table named by ddbTableName does not "
     "exist (create it: README, Running several servers)"),
    ("nosuchbucket", "the bucket does not exist"),
    ("invalidaccesskeyid", "the object store does not accept the access key "
     "(AWS_ACCESS_KEY_ID; with AWS_SESSION_TOKEN set, a wrong secret key or an expired "
     "token is reported this way too: check all three)"),
    ("signaturedoesnotmatch", "the object store refused the secret key (AWS_SECRET_ACCESS_KEY)"),
    ("accessdenied", "the object store denied access to the bucket"),
    ("connection refused", "the object store could not be reached (check the endpoint, "
     "AWS_ENDPOINT_URL_S3)"),
    ("config error", "a storage option has a value LanceDB cannot read (check "
     "LANCEMEM_STORAGE_OPTIONS: durations are written like \"30s\", booleans \"true\")"),
    ("no space left", "the disk is full"),
    ("permission denied", "permission was denied"),
    ("not found", "a table or file was not found"),
    ("invalid user input", "LanceDB refused the request"),
)


_UNPARSED = re.compile(r'failed to parse "[^"]{0,80}" as \w+')


def _storage_error(what: str, exc: Exception) -> StorageError:
    detail = secrets.redact(str(exc))  # an object store's answer can quote a key
    lowered = detail.lower()
    reason = next((text for key, text in _REASONS if key in lowered),
                  f"LanceDB raised {type(exc).__name__}")
    parse = _UNPARSED.search(detail) if "config error" in lowered else None
    if parse:  # the storage option's value LanceDB could not read
        reason = f"{reason}: {parse.group(0)}"
    log.warning("%s failed: %s", what, detail)
    return StorageError(f"{what} failed: {reason}; the server's log on stderr has the details.",
                        detail=detail)


def unless_done_elsewhere(action: Callable[[], Any], *, done: Callable[[], bool],
                          what: str) -> None:
    """Run a create-if-missing step; if it fails because another process (or
    thread) did the same meanwhile, as ``done()`` then says, that is success."""
    try:
        with_retries(action, what=what)
    except (StorageError, ConflictError):
        if not with_retries(done, what=what):
            raise
