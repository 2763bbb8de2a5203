"""Checking and normalising what callers pass in: messages, text, metadata,
limits, expiration dates.

Each check raises ValidationError with a message that tells the caller how to
fix the call; nothing is silently dropped except system messages, which mem0
also skips.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from .errors import ValidationError
from .scoping import check_custom_metadata, validate_id

STORED_ROLES = ("user", "assistant", "tool")
SKIPPED_ROLES = ("system",)
MAX_TEXT = 32_000
MAX_MESSAGES = 1_000
MAX_METADATA_BYTES = 16_384
MAX_LIMIT = 1_000
MESSAGE_KEYS = ("role", "content", "name")
EXPIRATION_FORMS = ("a date such as '2026-12-31' (the memory is kept through that day, UTC) or "
                    "a datetime such as '2026-12-31T18:00:00+01:00' (no offset means UTC)")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_DATETIME = re.compile(
    r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:?\d{2})?")


@dataclass(frozen=True)
class Message:
    """One message to remember: its text, the speaker's role and optional name."""

    content: str
    role: str
    name: str | None = None


def check_text(value: Any, *, field: str = "text") -> str:
    """A non-empty memory text (surrounding whitespace stripped), within bounds."""
    if not isinstance(value, str):
        raise ValidationError(f"'{field}' must be a string, got {type(value).__name__}.")
    text = value.strip()
    query = field == "query"
    if not text:
        raise ValidationError(f"'{field}' is empty; give the text to "
                              f"{'search for' if query else 'remember'}.")
    if len(text) > MAX_TEXT:
        advice = "Search with a shorter text" if query else "Split it into several memories"
        raise ValidationError(
            f"'{field}' is {len(text)} characters; at most {MAX_TEXT}. {advice}.")
    if any(0xD800 <= ord(ch) <= 0xDFFF for ch in text):
        raise ValidationError(f"'{field}' contains an unpaired surrogate; send valid Unicode.")
    return text


def normalise_messages(messages: Any) -> list[Message]:
    """A string, one message dict, or a list of either, as Messages to store.

    System messages are skipped; a call made only of them is an error, since
    nothing would be remembered.
    """
    if isinstance(messages, str):
        return [Message(check_text(messages), "user")]
    if isinstance(messages, Mapping):
        items: list[Any] = [messages]
    elif isinstance(messages, list):
        items = messages
    else:
        raise ValidationError(
            "'messages' must be a string, a message object or a list of "
            '{"role": "user", "content": "..."} objects; got ' + type(messages).__name__ + "."
        )
    if not items:
        raise ValidationError("'messages' is empty; give at least one message.")
    if len(items) > MAX_MESSAGES:
        raise ValidationError(f"{len(items)} messages in one call; at most {MAX_MESSAGES}.")
    result = [_message(item, index) for index, item in enumerate(items)]
    stored = [message for message in result if message.role not in SKIPPED_ROLES]
    if not stored:
        raise ValidationError(
            "only system messages were given, and system messages are not stored; "
            "send the user's or assistant's words."
        )
    return stored


def _message(item: Any, index: int) -> Message:
    where = f"messages[{index}]"
    if isinstance(item, str):
        return Message(check_text(item, field=where), "user")
    if not isinstance(item, Mapping):
        raise ValidationError(
            f'{where} must be an object like {{"role": "user", "content": "..."}}.'
        )
    role = item.get("role", "user")
    if role not in (*STORED_ROLES, *SKIPPED_ROLES):
        raise ValidationError(
            f"{where}.role is {role!r}; use one of {', '.join(STORED_ROLES + SKIPPED_ROLES)} "
            "(put a speaker's name in 'name')."
        )
    unknown = [key for key in item if key not in MESSAGE_KEYS]
    if unknown:
        raise ValidationError(no_such_keys(where, unknown, MESSAGE_KEYS))
    content = check_text(item.get("content"), field=f"{where}.content")
    name = item.get("name")
    return Message(content, role, validate_id(f"{where}.name", name) if name is not None else None)


def no_such_keys(owner: str, unknown: Iterable[Any], known: Iterable[str], *,
                 noun: str = "key") -> str:
    """The sentence refusing keys that ``owner`` does not take, naming those it does.

    For example ``messages[0] has no key 'nmae'; its keys are role, content, name.``
    """
    unknown = list(unknown)
    names = ", ".join(repr(key) for key in unknown)
    plural = "s" if len(unknown) > 1 else ""
    return f"{owner} has no {noun}{plural} {names}; its {noun}s are {', '.join(known)}."


def check_metadata(metadata: Any) -> dict[str, Any]:
    """Custom metadata: a JSON object of finite values, no reserved keys, bounded size."""
    if metadata is None:
        return {}
    check_custom_metadata(metadata)
    try:
        encoded = json.dumps(metadata, allow_nan=False, ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise ValidationError(
            f"'metadata' must hold only JSON values (strings, finite numbers, booleans, "
            f"null, lists, objects): {exc}."
        ) from None
    try:
        size = len(encoded.encode("utf-8"))
    except UnicodeEncodeError:
        raise ValidationError(
            "'metadata' contains an unpaired surrogate; send valid Unicode."
        ) from None
    if size > MAX_METADATA_BYTES:
        raise ValidationError(f"'metadata' is {size} bytes as JSON; at most {MAX_METADATA_BYTES}.")
    return json.loads(encoded)


def check_limit(limit: Any, *, field: str = "limit", maximum: int = MAX_LIMIT) -> int:
    """A result count between 1 and ``maximum`` (MAX_LIMIT unless given)."""
    if isinstance(limit, bool) or not isinstance(limit, int):
        raise ValidationError(f"'{field}' must be a whole number, got {limit!r}.")
    if not 1 <= limit <= maximum:
        raise ValidationError(f"'{field}' is {limit}; use 1 to {maximum}.")
    return limit


def check_threshold(threshold: Any) -> float | None:
    """A least score (a relevance from 0 to 1), or None."""
    if threshold is None:
        return None
    if isinstance(threshold, bool) or not isinstance(threshold, int | float):
        raise ValidationError(f"'threshold' must be a number, got {threshold!r}.")
    if not math.isfinite(threshold) or not 0.0 <= threshold <= 1.0:
        raise ValidationError(f"'threshold' is {threshold}; scores are relevances from 0 to 1: "
                              "use a threshold from 0 to 1 (e.g. 0.3), or none to keep all.")
    return float(threshold)


def check_expiration(value: Any, *, field: str = "expiration_date",
                     removable: bool = False) -> datetime | None:
    """When a memory expires (an aware UTC datetime), or None if it never does.

    ``value`` is an ISO-8601 date or datetime string (or, from Python, a
    ``date``/``datetime``). A date keeps the memory through that whole day in
    UTC: it expires at 00:00 UTC of the next day. A datetime expires at that
    instant; without an offset it is UTC. None and ``""`` mean no expiration.
    A moment already past is accepted (imports need it): the memory is then
    hidden at once. ``removable`` adds to the error that ``""`` removes one.
    """
    if isinstance(value, str):
        value = value.strip()
    if value is None or value == "":
        return None
    more = "; or '' to remove it" if removable else ""
    if not isinstance(value, str | date):
        raise ValidationError(f"'{field}' must be a string, got {type(value).__name__}; "
                              f"use {EXPIRATION_FORMS}{more}.")
    try:
        return _expiration_moment(value)
    except (ValueError, OverflowError):
        shown = value if len(str(value)) <= 64 else f"{str(value)[:61]}..."
        raise ValidationError(f"'{field}' is {shown!r}, which is not an ISO-8601 date or "
                              f"datetime (years 0001-9999); use {EXPIRATION_FORMS}{more}."
                              ) from None


def _expiration_moment(value: str | date) -> datetime:
    """The UTC instant ``value`` names; ValueError or OverflowError if none."""
    if isinstance(value, str):
        if _DATE.fullmatch(value):
            value = date.fromisoformat(value)
        elif _DATETIME.fullmatch(value):
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        else:
            raise ValueError(value)
    if not isinstance(value, datetime):  # a date: kept through that day
        value = datetime.combine(value + timedelta(days=1), time(), UTC)
    elif value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)
