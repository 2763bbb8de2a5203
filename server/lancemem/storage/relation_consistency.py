"""Make relation history agree with relations after a crash.

Every relation change is committed first and its history row appended
second (relation_history.py), so a process killed in between leaves a
change without its row. A relation's state says which event its history
must end with: a valid relation an ADD, an invalidated one an INVALIDATE,
both no older than the relation's ``updated_at``; a relation that is gone a
DELETE. ``repair`` appends what is missing. As for memories (consistency.py)
history is read before the relations, and the search for gaps runs in Arrow.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from ..core.relations import ADD, DELETE, INVALIDATE, Relation
from ..core.scoping import SCOPE_KEYS
from . import relation_history as rh
from . import sql
from .connection import Connection
from .relation_schema import RELATIONS, relation_columns

log = logging.getLogger(__name__)


def _latest(history: Any) -> Any:
    """The newest row of each relation id (Arrow in, Arrow out)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    rank = pc.index_in(history["event"], pa.array([ADD, INVALIDATE, DELETE]))
    order = pc.sort_indices(history.append_column("rank", rank), sort_keys=[
        ("relation_id", "ascending"), ("created_at", "ascending"), ("rank", "ascending")])
    newest = history.take(order)
    ids = newest["relation_id"]
    if len(ids):
        newest = newest.filter(pa.concat_arrays([
            pc.not_equal(ids.slice(0, len(ids) - 1), ids.slice(1)).combine_chunks(),
            pa.array([True])]))
    return newest


def _suspects(store: Connection) -> tuple[list[str], list[str]]:
    """Ids of relations whose history lacks its last event, and of relations
    that are gone without a DELETE."""
    import pyarrow.compute as pc

    newest = _latest(rh.RelationHistoryTable(store).events())
    state = store.arrow(RELATIONS, None, columns=["id", "valid", "updated_at"])
    joined = state.join(newest, keys="id", right_keys="relation_id", join_type="left outer")
    expected = pc.if_else(joined["valid"], ADD, INVALIDATE)
    wrong = pc.or_(pc.invert(pc.fill_null(pc.equal(joined["event"], expected), False)),
                   pc.fill_null(pc.less(joined["created_at"], joined["updated_at"]), True))
    unrecorded = joined.filter(wrong)["id"].to_pylist()
    gone = newest.join(state, keys="relation_id", right_keys="id", join_type="left anti")
    undeleted = gone.filter(pc.not_equal(gone["event"], DELETE))["relation_id"].to_pylist()
    return sorted(unrecorded), sorted(undeleted)


def _as_deleted(row: dict[str, Any]) -> Relation:
    """A gone relation as its last history row recorded it."""
    return Relation(id=row["relation_id"], source=row["source"],
                    relationship=row["relationship"], target=row["target"], source_type=None,
                    target_type=None, scope={name: row.get(name) for name in SCOPE_KEYS},
                    actor_id=row.get("actor_id"), valid=row["event"] == ADD,
                    invalidated_at=None, created_at=row["created_at"],
                    updated_at=row["created_at"])


def missing_history(store: Connection) -> list[dict[str, Any]]:
    """The relation history rows that a crash left unwritten (empty when all agree)."""
    unrecorded, undeleted = _suspects(store)
    fixes = []
    for start in range(0, len(unrecorded), 500):
        rows = store.select(RELATIONS, sql.one_of("id", unrecorded[start:start + 500]),
                            columns=relation_columns(vector=False))
        for row in rows:
            relation = Relation.from_row(row)
            event = ADD if relation.valid else INVALIDATE
            fixes.append(rh.history_row(relation, event, now=relation.updated_at))
    latest: dict[str, dict[str, Any]] = {}
    for row in rh.ordered(rh.RelationHistoryTable(store).of_relations(undeleted)):
        latest[row["relation_id"]] = row
    now = datetime.now(UTC)
    fixes += [rh.history_row(_as_deleted(row), DELETE, now=now) for row in latest.values()
              if row["event"] != DELETE]
    return fixes


def repair(store: Connection) -> int:
    """Append the relation history rows a crash left out; returns how many."""
    fixes = missing_history(store)
    if fixes:
        log.warning("repairing relation history: %d change(s) had no history row "
                    "(an earlier crash)", len(fixes))
        rh.RelationHistoryTable(store).append(fixes)
    return len(fixes)
