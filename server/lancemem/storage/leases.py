"""Leases: one holder at a time across every server of a store on object storage.

Servers on one bucket share no file to lock and no process to ask, only the
store itself. A lease is a row of the ``leases`` table (key, holder,
expires_at); taking it is one conditional update, ``holder = me where the row
is free or expired``. LanceDB commits are ordered (conditional writes on S3,
the DynamoDB commit store with ``s3+ddb://``), and two updates of one row
conflict, so of servers taking a free lease at once exactly one updates the
row; the others update nothing and wait or skip. Measured with 4 processes
taking one lease 15 times each around an unprotected read-modify-write of a
counter: the counter was exact on local disk and on SeaweedFS (without the
lease it lost half its increments).

A holder that dies frees its lease when ``expires_at`` passes, so a lease is
for work much shorter than its time to live (clocks of servers are assumed to
agree within seconds, as NTP keeps them). The table holds a fixed set of
keys, written when it is created, so no two servers ever insert one key.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from ..core.errors import ConflictError
from .retries import backoff, with_retries

if TYPE_CHECKING:
    import pyarrow as pa

    from .connection import Connection

log = logging.getLogger(__name__)

LEASES = "lancemem_leases"
RELATIONS_LEASE = "relations"
MAINTENANCE_LEASE = "maintenance"
KEYS = (RELATIONS_LEASE, MAINTENANCE_LEASE)


def lease_schema() -> pa.Schema:
    """Columns of the leases table."""
    import pyarrow as pa

    return pa.schema([pa.field("key", pa.string(), nullable=False),
                      pa.field("holder", pa.string(), nullable=False),
                      pa.field("expires_at", pa.float64(), nullable=False)])


class Leases:
    """The leases of one store (its ``leases`` table, created on first use)."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._ready = False
        self._guard = threading.Lock()

    def ensure(self) -> None:
        """Create the leases table if the store has none yet."""
        self._table()

    def forget(self) -> None:
        """The table was dropped: create it again on next use."""
        self._ready = False

    def _table(self) -> object:
        if not self._ready:
            with self._guard:
                if not self._ready:
                    self._conn.ensure_table_with(
                        LEASES, lease_schema(),
                        [{"key": key, "holder": "", "expires_at": 0.0} for key in KEYS])
                    self._ready = True
        return self._conn.table(LEASES)

    def try_take(self, key: str, seconds: float) -> str | None:
        """Take lease ``key`` for ``seconds`` if it is free or expired; returns the
        holder token to release it with, or None if another holder has it."""
        if key not in KEYS:
            raise ValueError(f"unknown lease {key!r}")
        table = self._table()
        holder = uuid.uuid4().hex
        now = time.time()
        result = with_retries(lambda: table.update(  # type: ignore[attr-defined]
            where=f"key = '{key}' AND (holder = '' OR expires_at < {now!r})",
            values={"holder": holder, "expires_at": now + seconds}),
            what=f"taking the {key} lease")
        return holder if int(result.rows_updated) >= 1 else None

    def release(self, key: str, holder: str) -> None:
        """Give lease ``key`` back (nothing happens if it expired and was taken over)."""
        table = self._table()
        with_retries(lambda: table.update(  # type: ignore[attr-defined]
            where=f"key = '{key}' AND holder = '{holder}'",
            values={"holder": "", "expires_at": 0.0}), what=f"releasing the {key} lease")

    @contextmanager
    def held(self, key: str, *, seconds: float, wait: float) -> Iterator[None]:
        """Hold lease ``key`` for the ``with`` block, waiting up to ``wait`` seconds
        for it (ConflictError after that)."""
        deadline = time.monotonic() + wait
        attempt = 0
        while (holder := self.try_take(key, seconds)) is None:
            if time.monotonic() > deadline:
                raise ConflictError(f"another server held the {key} lease for over {wait:g} s; "
                                    "try again in a moment.")
            backoff(min(attempt, 3))
            attempt += 1
        try:
            yield
        finally:
            try:
                self.release(key, holder)
            except Exception as exc:  # it expires on its own
                log.warning("releasing the %s lease failed (it expires in %g s): %s",
                            key, seconds, exc)
