"""Where each message of an add goes: a new record, the copy already stored
(event NONE), or an expired copy brought back (event UPDATE).

Text already stored in the same scope is not stored twice. When that copy
has expired, answering NONE would make the re-added text vanish silently, so
the copy is revived instead: it takes the new call's expiration date (None
if the call gave none), through the same compare-and-swap as an update, and
its history gets an UPDATE row. No row is inserted on this path, so the race
between writers adding the same text is still settled by
MemoryTable.insert_unique alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from ..core.errors import ConflictError
from ..core.messages import Message
from ..core.principal import Principal
from ..core.records import MemoryRecord, Plan, is_expired, text_hash
from ..core.scoping import Scope, scope_where
from ..storage import history as hist
from ..storage.memory_table import Copy
from ..storage.retries import backoff
from .context import Tables

REVIVE_ATTEMPTS = 8


def expiry_field(expiration_date: datetime | None) -> dict[str, str]:
    """``expiration_date`` for a result, when there is one (ISO-8601, UTC)."""
    return {} if expiration_date is None else {"expiration_date": expiration_date.isoformat()}


def later_than(stored: MemoryRecord) -> datetime:
    """An ``updated_at`` for a change to ``stored``: now, but strictly later than
    the version read, whatever the clocks of other processes say, so history
    sorts in the order the changes landed."""
    return max(datetime.now(UTC), stored.updated_at + timedelta(microseconds=1))


@dataclass
class Revival:
    """An expired copy that a re-added message brings back, and that message's result."""

    result: dict[str, Any]
    copy_id: str
    plan: Plan
    message: Message


@dataclass
class Placement:
    """What one commit does with its plans' messages, decided at ``now``."""

    now: datetime
    new: list[MemoryRecord] = field(default_factory=list)
    added: dict[str, dict[str, Any]] = field(default_factory=dict)  # new records' results
    revivals: list[Revival] = field(default_factory=list)

    def place(self, plan: Plan, message: Message, known: dict[str, Copy]) -> dict[str, Any]:
        """The result for one message; ``known`` (text hash -> stored copy in the
        plan's scope) learns the copy this message leaves."""
        scope_fields = {k: v for k, v in plan.scope.items() if v is not None}
        digest = text_hash(message.content)
        copy = known.get(digest)
        if copy is None:
            return self._new(plan, message, known, scope_fields)
        result = {"id": copy.id, "memory": message.content, "event": "NONE", **scope_fields}
        # The same expiration again (a re-run import) changes nothing: NONE.
        if is_expired(copy.expiration_date, self.now) and copy.expiration_date != plan.expiration:
            result.update(event="UPDATE", **expiry_field(plan.expiration))
            self.revivals.append(Revival(result, copy.id, plan, message))
            known[digest] = Copy(copy.id, plan.expiration)
        return result

    def _new(self, plan: Plan, message: Message, known: dict[str, Copy],
             scope_fields: dict[str, Any]) -> dict[str, Any]:
        record = MemoryRecord.new(message, plan, self.now)
        known[record.hash] = Copy(record.id, record.expiration_date)
        self.new.append(record)
        attribution = {k: getattr(record, k) for k in ("actor_id", "role")
                       if getattr(record, k) is not None}
        self.added[record.id] = {"id": record.id, "memory": record.memory, "event": "ADD",
                                 **scope_fields, **attribution,
                                 **expiry_field(record.expiration_date)}
        return self.added[record.id]


def revive(tables: Tables, revival: Revival, now: datetime,
           principal: Principal | None) -> bool:
    """Give an expired copy its new expiration date (compare-and-swap, retried
    while other writers win it) and hand its UPDATE to history.

    Returns False if the copy is gone (a purge or delete came first), so the
    text must be added anew. A copy another writer made live meanwhile is left
    as it is, and the result becomes NONE.
    """
    where = scope_where(Scope(**revival.plan.scope))
    for attempt in range(REVIVE_ATTEMPTS):
        if attempt:
            backoff(attempt - 1)
        stored = tables.memories.find(revival.copy_id, where, with_vector=True)
        if stored is None:
            return False
        if not stored.expired(now) or stored.expiration_date == revival.plan.expiration:
            revival.result["event"] = "NONE"
            revival.result.pop("expiration_date", None)
            return True
        record = stored.revised(expiration_date=revival.plan.expiration,
                                updated_at=later_than(stored))
        if tables.memories.replace_if_unchanged(record, stored_at=stored.updated_at):
            tables.history.record_soon([hist.history_row(
                memory=record, event=hist.UPDATE, old_memory=stored.memory,
                new_memory=record.memory, now=record.updated_at, principal=principal)])
            return True
    raise ConflictError(f"memory {revival.copy_id!r} kept changing while it was being revived; "
                        "add it again.")
