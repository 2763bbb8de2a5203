"""Where each message of an add goes: a new record, the copy already stored
(event NONE), or that copy changed (event UPDATE): an expired copy brought
back, or a copy given the call's new metadata.

Text already stored in the same scope is not stored twice. When that copy
has expired, answering NONE would make the re-added text vanish silently, so
the copy is revived instead: it takes the new call's expiration date (None
if the call gave none), through the same compare-and-swap as an update, and
its history gets an UPDATE row. No row is inserted on this path, so the race
between writers adding the same text is still settled by
MemoryTable.insert_unique alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from ..core.errors import ConflictError
from ..core.messages import Message
from ..core.principal import Principal
from ..core.records import KEEP, Keep, MemoryRecord, Plan, is_expired, text_hash
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


@dataclass(frozen=True)
class Change:
    """What re-adding a stored text changes in its copy: an expired copy takes the
    call's expiration date, and metadata given that differs from the copy's
    replaces it (as ``update`` does). Neither (the same call again, a re-run
    import, or no metadata given): nothing, event NONE."""

    expiration: datetime | Keep | None
    metadata: Mapping[str, Any] | None

    @classmethod
    def of(cls, expiration_date: datetime | None, metadata: Mapping[str, Any], plan: Plan,
           now: datetime) -> Change:
        """The change to a copy that expires at ``expiration_date`` and holds ``metadata``."""
        revives = is_expired(expiration_date, now) and expiration_date != plan.expiration
        relabels = bool(plan.custom) and dict(plan.custom) != dict(metadata)
        return cls(plan.expiration if revives else KEEP, plan.custom if relabels else None)

    def __bool__(self) -> bool:
        return self.expiration is not KEEP or self.metadata is not None

    def fields(self) -> dict[str, Any]:
        """The add result's fields for this change."""
        out: dict[str, Any] = {"event": "UPDATE"}
        if self.expiration is not KEEP:
            out.update(expiry_field(self.expiration))
        if self.metadata is not None:
            out["metadata"] = dict(self.metadata)
        return out

    def expiration_after(self, before: datetime | None) -> datetime | None:
        return before if self.expiration is KEEP else self.expiration

    def metadata_after(self, before: Mapping[str, Any]) -> Mapping[str, Any]:
        return before if self.metadata is None else self.metadata


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
        change = Change.of(copy.expiration_date, copy.metadata, plan, self.now)
        if change:
            result.update(change.fields())
            self.revivals.append(Revival(result, copy.id, plan, message))
            known[digest] = Copy(copy.id, change.expiration_after(copy.expiration_date),
                                 change.metadata_after(copy.metadata))
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
        change = Change.of(stored.expiration_date, stored.metadata, revival.plan, now)
        for key in ("event", "expiration_date", "metadata"):  # as found now, not at planning
            revival.result.pop(key, None)
        revival.result.update(change.fields() if change else {"event": "NONE"})
        if not change:
            return True
        record = stored.revised(expiration_date=change.expiration, metadata=change.metadata,
                                updated_at=later_than(stored))
        if tables.memories.replace_if_unchanged(record, stored_at=stored.updated_at):
            tables.history.record_soon([hist.history_row(
                memory=record, event=hist.UPDATE, old_memory=stored.memory,
                new_memory=record.memory, now=record.updated_at, principal=principal,
                old_metadata=stored.metadata)])
            return True
    raise ConflictError(f"memory {revival.copy_id!r} kept changing while it was being revived; "
                        "add it again.")
