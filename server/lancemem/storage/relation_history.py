"""The relation_history table: an append-only record of every relation change.

Relations change in three ways: ADD (new, or valid again), INVALIDATE (a
newer relation replaced it, ``replace=true``) and DELETE. Like memory
history (history.py) a row is handed to the background writer once its
change is committed, and row ids derive from the change (the relation id,
the event, and the time of the state it records), so the repair after a
crash (relation_consistency.py) and a slow writer write the same row.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ..core.principal import Principal
from ..core.relations import ADD, DELETE, INVALIDATE, Relation
from ..core.scoping import SCOPE_KEYS
from . import sql
from .relation_schema import RELATION_HISTORY, relation_history_schema

if TYPE_CHECKING:
    import pyarrow as pa

    from .connection import Connection

_NAMESPACE = uuid.UUID("5e7c1a9d-2b4f-4d3e-8a61-0f9b3c2d7e54")
_EVENT_ORDER = {ADD: 0, INVALIDATE: 1, DELETE: 2}


def event_id(relation_id: str, event: str, state_at: datetime) -> str:
    """The id of the row recording ``event`` of a relation whose state (before a
    DELETE, after the others) dates from ``state_at``."""
    return str(uuid.uuid5(_NAMESPACE, f"{relation_id}/{event}/{state_at.isoformat()}"))


def history_row(relation: Relation, event: str, *, now: datetime,
                principal: Principal | None = None,
                replaced_by: Relation | None = None) -> dict[str, Any]:
    """The history row of one change: ADD and INVALIDATE record the relation as
    it now is (at its ``updated_at``), DELETE as it was, at ``now``. An
    INVALIDATE's new triple is the relation that replaced it, when known."""
    gone = event == DELETE
    new = relation.triple if event == ADD else (
        replaced_by.triple if replaced_by is not None else None)
    return {
        "id": event_id(relation.id, event, relation.updated_at),
        "relation_id": relation.id, "event": event, "source": relation.source,
        "relationship": relation.relationship, "target": relation.target,
        "old_relation": relation.triple if event != ADD else None,
        "new_relation": new,
        "created_at": now if gone else relation.updated_at, "actor_id": relation.actor_id,
        **{name: relation.scope.get(name) for name in SCOPE_KEYS},
        "principal": principal.name if principal else None,
        "principal_label": principal.label if principal else None,
    }


def ordered(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows oldest first, one per id (a repaired row may be written twice)."""
    unique = {row["id"]: row for row in rows}
    return sorted(unique.values(),
                  key=lambda row: (row["created_at"], _EVENT_ORDER.get(row["event"], 9)))


def entry(row: dict[str, Any]) -> dict[str, Any]:
    """A row as returned to callers (its time as ISO-8601)."""
    result = {key: row.get(key) for key in relation_history_schema().names}
    result["created_at"] = row["created_at"].isoformat()
    return result


class RelationHistoryTable:
    """The relation_history table of one store."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def append(self, rows: Sequence[dict[str, Any]]) -> None:
        """Append rows in one commit."""
        self._conn.insert(RELATION_HISTORY, rows, relation_history_schema())

    def of_relation(self, relation_id: str, where: str) -> list[dict[str, Any]]:
        """One relation's rows among those matching ``where`` (a scope), oldest first."""
        return ordered(self._conn.select(
            RELATION_HISTORY, sql.both(sql.equals("relation_id", relation_id), where)))

    def of_relations(self, ids: Sequence[str]) -> list[dict[str, Any]]:
        """Every row of these relations (any number of them), unordered."""
        rows: list[dict[str, Any]] = []
        for start in range(0, len(ids), 500):
            rows += self._conn.select(RELATION_HISTORY,
                                      sql.one_of("relation_id", ids[start:start + 500]))
        return rows

    def events(self) -> pa.Table:
        """Every row's relation id, event and time, as Arrow (for the repair)."""
        return self._conn.arrow(RELATION_HISTORY, None,
                                columns=["relation_id", "event", "created_at"])
