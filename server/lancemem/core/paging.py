"""Paging through a listing, newest first.

A page ends with a cursor that names the last memory it showed (its
``created_at`` and ``id``, the listing's sort key). The next page starts
strictly after that key, so memories added or deleted between two calls never
make a page repeat or skip one that was there all along (an offset would: a
new memory at the top shifts every later page by one).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, Protocol, TypeVar

from .errors import ValidationError

MAX_CURSOR = 1_000  # ours are ~100 characters: a memory id and a timestamp
_BAD_CURSOR = ("'cursor' {0!r} is not one that list_memories returned; pass the "
               "next_cursor of the previous page, or leave cursor out to start from the newest.")


class Listed(Protocol):
    """What a page is made of: anything with the listing's sort key."""

    @property
    def created_at(self) -> datetime: ...

    @property
    def id(self) -> str: ...


@dataclass(frozen=True)
class Position:
    """Where a page ended: the sort key of its last memory."""

    created_at: datetime
    id: str

    def encode(self) -> str:
        """The opaque cursor string handed to callers."""
        raw = json.dumps([self.created_at.isoformat(), self.id], ensure_ascii=False)
        return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: Any) -> Position | None:
    """The position a cursor names; None (the first page) for None or ''."""
    if cursor is None or cursor == "":
        return None
    if not isinstance(cursor, str):
        raise ValidationError(f"'cursor' must be a string, got {type(cursor).__name__}.")
    bad = ValidationError(_BAD_CURSOR.format(cursor[:80]))
    if len(cursor) > MAX_CURSOR:
        raise bad
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        when, memory_id = json.loads(raw.decode())
        position = Position(datetime.fromisoformat(when), memory_id)
    except (binascii.Error, UnicodeDecodeError, ValueError, TypeError, RecursionError):
        raise bad from None
    if not isinstance(position.id, str) or position.created_at.tzinfo is None:
        raise bad
    return position


T = TypeVar("T", bound=Listed)


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a listing: its memories, how many the whole listing holds
    and where the next page starts (None: this was the last)."""

    items: list[T]
    total: int
    next_cursor: str | None


def _key(record: Listed) -> tuple[datetime, str]:
    return record.created_at, record.id


def page_of(records: Sequence[T], *, limit: int, after: Position | None) -> Page[T]:
    """The page of ``records`` (any order) after ``after`` (None: from the
    newest), newest first; ``limit`` is at least 1."""
    ordered = sorted(records, key=_key, reverse=True)
    if after is not None:
        ordered = [record for record in ordered if _key(record) < (after.created_at, after.id)]
    items = ordered[:limit]
    more = len(ordered) > limit
    next_cursor = Position(*_key(items[-1])).encode() if more else None
    return Page(items, len(records), next_cursor)
