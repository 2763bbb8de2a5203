"""Make history agree with memories after a crash.

Every write changes the memories table first and appends its history row
second, so a process killed in between leaves exactly one kind of gap: a
change whose history row is missing. ``repair`` finds those gaps and appends
the missing rows:

* a memory with no history at all gets its ADD;
* a memory whose newest history row predates its ``updated_at`` gets an UPDATE;
* a memory that is gone while its history does not end in DELETE gets a DELETE.

History is read before memories: a write that lands between the two reads can
then only look like a missing row for a change that did happen (which the
writer itself is about to record, under the same deterministic id), never
like a deletion that did not.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from . import history as hist
from .store import HISTORY, MEMORIES, Store

log = logging.getLogger(__name__)

_HISTORY_COLUMNS = ["id", "memory_id", "event", "new_memory", "created_at", "actor_id", "role",
                    "user_id", "agent_id", "run_id"]
_MEMORY_COLUMNS = ["id", "memory", "created_at", "updated_at", "actor_id", "role", "user_id",
                   "agent_id", "run_id"]


def _latest_events(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    latest: dict[str, dict[str, Any]] = {}
    for row in hist.ordered(rows):
        latest[row["memory_id"]] = row
    return latest


def missing_history(store: Store) -> list[dict[str, Any]]:
    """The history rows that a crash left unwritten (empty when all agree)."""
    latest = _latest_events(store.select(HISTORY, None, columns=_HISTORY_COLUMNS))
    memories = store.select(MEMORIES, None, columns=_MEMORY_COLUMNS)
    fixes = []
    for memory in memories:
        last = latest.get(memory["id"])
        if last is None:
            fixes.append(hist.history_row(memory=memory, event=hist.ADD, old_memory=None,
                                          new_memory=memory["memory"], now=memory["created_at"]))
        elif last["event"] != hist.DELETE and last["created_at"] < memory["updated_at"]:
            fixes.append(hist.history_row(memory=memory, event=hist.UPDATE,
                                          old_memory=last["new_memory"],
                                          new_memory=memory["memory"], now=memory["updated_at"]))
    present = {memory["id"] for memory in memories}
    now = datetime.now(UTC)
    for memory_id, last in latest.items():
        if memory_id not in present and last["event"] != hist.DELETE:
            gone = {**last, "id": memory_id}
            fixes.append(hist.history_row(memory=gone, event=hist.DELETE,
                                          old_memory=last["new_memory"], new_memory=None,
                                          now=now))
    return fixes


def repair(store: Store) -> int:
    """Append the history rows a crash left out; returns how many."""
    fixes = missing_history(store)
    if fixes:
        log.warning("repairing history: %d change(s) had no history row (an earlier crash)",
                    len(fixes))
        hist.History(store).record(fixes)
    return len(fixes)
