"""The few where clauses the storage layer writes itself, escaped by filters.py.

Scope and filter clauses come compiled from scoping.py and filters.py; these
add what the tables need around them: ids, hashes, a compare-and-swap guard,
and the one clause that hides expired memories.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from ..core.filters import sql_string, sql_timestamp


def equals(column: str, value: str) -> str:
    """``column`` holds exactly ``value``."""
    return f"{column} = {sql_string(value)}"


def one_of(column: str, values: Iterable[str]) -> str:
    """``column`` holds one of ``values`` (in the order given)."""
    return f"{column} IN ({', '.join(sql_string(value) for value in values)})"


def both(first: str, second: str) -> str:
    """Two clauses that must both hold."""
    return f"{first} AND {second}"


def stored_at(column: str, moment: datetime) -> str:
    """A merge's guard: the stored row's ``column`` still holds ``moment``."""
    return f"target.{column} = {sql_timestamp(moment)}"


def unexpired(now: datetime) -> str:
    """Memories not expired at ``now``: no expiration date, or one still ahead
    (records.is_expired is the Python twin). Only ``now`` goes into it."""
    return f"(expiration_date IS NULL OR expiration_date > {sql_timestamp(now)})"


def expired(now: datetime) -> str:
    """Memories expired at ``now``: exactly those ``unexpired`` leaves out."""
    return f"expiration_date <= {sql_timestamp(now)}"
