"""The history table: an append-only record of every ADD, UPDATE and DELETE.

Rows carry the memory's user/agent/run ids so that history is scoped exactly
like memories. Memory hands over a change's history rows once the change
itself is committed, so a crash in between leaves a change without its
history row, never a row without its change; the repair on the next open
(consistency.py) writes such rows.

The rows are committed by a background writer, after the call that made the
change has returned: a single add then waits for one commit, not two. Pending
rows are batched into one commit. Reading history in the same process waits
for them first (``flush``); closing the Memory (runtime.py) flushes them.

Row ids are derived from the change (memory id, event, and for updates the
new ``updated_at``), so the repair that fills a missing row (consistency.py)
and a slow writer that fills it too produce the same row; readers keep one.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import Future
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from ..core.principal import Principal
from ..core.records import ITEM_FIELDS, MemoryRecord
from ..core.runtime import Runtime
from . import sql
from .schema import HISTORY, history_schema

if TYPE_CHECKING:
    import pyarrow as pa

    from .connection import Connection

ADD, UPDATE, DELETE = "ADD", "UPDATE", "DELETE"
_EVENT_ORDER = {ADD: 0, UPDATE: 1, DELETE: 2}
_NAMESPACE = uuid.UUID("8d0f6c2e-5b7a-4c61-9a35-3f1e2b7d9c40")
log = logging.getLogger(__name__)


def event_id(memory_id: str, event: str, updated_at: datetime | None = None) -> str:
    """The id of the history row recording ``event`` for a memory."""
    suffix = f"/{updated_at.isoformat()}" if event == UPDATE and updated_at else ""
    return str(uuid.uuid5(_NAMESPACE, f"{memory_id}/{event}{suffix}"))


def ordered(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """History rows oldest first, one per id (a repaired row may be written twice)."""
    unique = {row["id"]: row for row in rows}
    return sorted(unique.values(),
                  key=lambda row: (row["created_at"], _EVENT_ORDER.get(row["event"], 9)))


def history_row(
    *,
    memory: Mapping[str, Any] | MemoryRecord,
    event: str,
    old_memory: str | None,
    new_memory: str | None,
    now: datetime,
    principal: Principal | None = None,
    old_metadata: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """One history row for a change to ``memory`` (a record or a stored row,
    after an ADD or UPDATE, before a DELETE), made by ``principal`` on an
    authenticated server (None: a local call). An UPDATE's ``old_metadata`` is
    the custom metadata it replaced."""
    if isinstance(memory, MemoryRecord):
        memory = {"id": memory.id, "updated_at": memory.updated_at,
                  "metadata": memory.metadata,
                  **{key: getattr(memory, key) for key in ITEM_FIELDS}}
    metadata = _metadata_json(memory.get("metadata"))
    return {
        "id": event_id(memory["id"], event, memory.get("updated_at")),
        "memory_id": memory["id"],
        "event": event,
        "old_memory": old_memory,
        "new_memory": new_memory,
        "created_at": now,
        "updated_at": now,
        "is_deleted": event == DELETE,
        "actor_id": memory.get("actor_id"),
        "role": memory.get("role"),
        "user_id": memory.get("user_id"),
        "agent_id": memory.get("agent_id"),
        "run_id": memory.get("run_id"),
        "principal": principal.name if principal else None,
        "principal_label": principal.label if principal else None,
        "old_metadata": metadata if event == DELETE else _metadata_json(old_metadata),
        "new_metadata": None if event == DELETE else metadata,
    }


def _metadata_json(metadata: Mapping[str, Any] | str | None) -> str | None:
    """Custom metadata as the JSON history stores (a stored row holds it as JSON)."""
    if metadata is None or isinstance(metadata, str):
        return metadata
    return json.dumps(dict(metadata), ensure_ascii=False, sort_keys=True)


def entry(row: Mapping[str, Any]) -> dict[str, Any]:
    """A history row as returned to callers (timestamps as ISO-8601 strings)."""
    result = {key: row.get(key) for key in history_schema().names}
    for key in ("old_metadata", "new_metadata"):
        if result[key] is not None:
            result[key] = json.loads(result[key])
    for key in ("created_at", "updated_at"):
        value = result[key]
        result[key] = value.isoformat() if value is not None else None
    return result


_ID_CHUNK = 500  # ids per IN list


class HistoryTable:
    """The history table of one store: rows appended, read by memory."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def append(self, rows: Sequence[dict[str, Any]]) -> None:
        """Append history rows in one commit."""
        self._conn.insert(HISTORY, rows, history_schema())

    def of_memory(self, memory_id: str, where: str) -> list[dict[str, Any]]:
        """The rows of one memory among those matching ``where`` (a scope), unordered."""
        return self._conn.select(HISTORY, sql.both(sql.equals("memory_id", memory_id), where))

    def of_memories(self, ids: Sequence[str], columns: Iterable[str]) -> list[dict[str, Any]]:
        """These columns of the rows of these memories (any number of them)."""
        rows: list[dict[str, Any]] = []
        for start in range(0, len(ids), _ID_CHUNK):
            rows += self._conn.select(HISTORY, sql.one_of("memory_id",
                                                          ids[start:start + _ID_CHUNK]),
                                      columns=list(columns))
        return rows

    def times(self, where: str | None) -> list[tuple[str, datetime]]:
        """Every matching row's ``(memory_id, created_at)`` (all rows when
        ``where`` is None): for an export to find and order deleted memories."""
        found = self._conn.arrow(HISTORY, where, columns=["memory_id", "created_at"])
        return list(zip(found["memory_id"].to_pylist(), found["created_at"].to_pylist(),
                        strict=True))

    def events(self) -> pa.Table:
        """Every row's memory id, event and time, as Arrow (for consistency.py)."""
        return self._conn.arrow(HISTORY, None, columns=["memory_id", "event", "created_at"])


class Appendable(Protocol):
    """A history table that takes rows in one commit."""

    def append(self, rows: Sequence[dict[str, Any]]) -> None: ...


class History:
    """Appends history rows through a background writer, and reads them back."""

    def __init__(self, store: Connection, runtime: Runtime | None = None, *,
                 table: Appendable | None = None) -> None:
        """``runtime`` writes rows handed to ``record_soon``; without one they are
        written at once. ``table`` is where the rows go (memory history unless
        given: relation history shares the writer, relation_history.py)."""
        self._store = store
        self._table = table or HistoryTable(store)
        self._runtime = runtime
        self._pending: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._last: Future[None] | None = None

    def record(self, rows: Sequence[dict[str, Any]]) -> None:
        """Append history rows in one commit, now."""
        self._table.append(rows)

    def record_soon(self, rows: Sequence[dict[str, Any]]) -> None:
        """Append history rows from the background writer; returns at once."""
        if self._runtime is None:
            self.record(rows)
            return
        with self._lock:
            self._pending.extend(rows)
            self._last = self._runtime.write_soon(self._drain)

    def _drain(self) -> None:
        with self._lock:
            rows, self._pending = self._pending, []
        if not rows:  # an earlier drain took them
            return
        try:
            self.record(rows)
        except Exception as exc:  # kept for the next drain; a restart repairs them too
            log.warning("could not write %d history row(s) yet: %s", len(rows), exc)
            with self._lock:
                self._pending[:0] = rows

    def flush(self) -> None:
        """Wait until the rows handed over so far are committed (or failed again)."""
        with self._lock:
            if self._pending and self._runtime is not None:
                self._last = self._runtime.write_soon(self._drain)
            last = self._last
        if last is not None:
            last.result()

    def of_memory(self, memory_id: str, where: str) -> list[dict[str, Any]]:
        """One memory's rows among those matching ``where`` (a scope), oldest
        first, this process's pending rows included."""
        self.flush()
        return ordered(HistoryTable(self._store).of_memory(memory_id, where))
