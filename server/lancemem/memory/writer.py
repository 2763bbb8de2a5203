"""Memory's writes: add, add_many, update, delete, delete_all, purge_expired.

Each change is committed to the memories table first and handed to the
history writer second (history.py), so a crash in between leaves a change
without its history row, which the next open repairs (consistency.py).
Where an add's messages go (new, NONE, or an expired copy revived) is
placement.py's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from ..core.errors import ConflictError, NotFoundError, ValidationError
from ..core.messages import check_expiration, check_metadata, check_text, normalise_messages
from ..core.principal import Principal
from ..core.records import (
    KEEP,
    MemoryRecord,
    Plan,
    chunks,
    document_text,
    scope_key,
    split_record,
    text_hash,
)
from ..search.passages import Embedded, embed_memories
from ..storage import history as hist
from ..storage.retries import backoff
from .context import Context, Tables, not_found
from .placement import Placement, Revival, later_than, revive

EAGER_EMBED = 16  # adds of up to this many texts embed them before the duplicate check
_ID_CHUNK = 500
_UPDATE_ATTEMPTS = 8
Results = list[list[dict[str, Any]]]  # per plan, one result per message


class Writer:
    """Every write of one Memory; its public methods are Memory's."""

    def __init__(self, context: Context) -> None:
        self._ctx = context

    def add(self, messages: Any, *, ids: Mapping[str, Any], actor_id: Any, metadata: Any,
            principal: Principal | None, expiration_date: Any = None) -> dict[str, Any]:
        """Memory.add: each non-system message stored once per scope."""
        plan = self._plan(messages, **ids, actor_id=actor_id, metadata=metadata,
                          expiration_date=expiration_date)
        tables = self._ctx.tables()
        return {"results": self._commit(tables, [plan], principal=principal)[0]}

    def add_many(self, records: Iterable[Mapping[str, Any]], *, batch_size: int,
                 progress: Callable[[int, int], None] | None) -> dict[str, int]:
        """Memory.add_many: every record checked first, then stored in batches."""
        plans = [self._plan_record(record, index) for index, record in enumerate(records)]
        tables = self._ctx.tables()
        total = sum(len(plan.messages) for plan in plans)
        done, added = 0, 0
        for chunk in chunks(plans, batch_size):
            results = self._commit(tables, chunk)
            # An expired copy revived counts as added: it is back.
            added += sum(r["event"] in ("ADD", "UPDATE") for batch in results for r in batch)
            done += sum(len(plan.messages) for plan in chunk)
            if progress:
                progress(done, total)
        return {"added": added, "skipped": total - added}

    def _plan_record(self, record: Any, index: int) -> Plan:
        messages, fields = split_record(record, index)
        try:
            return self._plan(messages, **fields)
        except ValidationError as exc:
            raise type(exc)(f"record {index + 1}: {exc.message}") from None

    def _plan(self, messages: Any, *, user_id: Any = None, agent_id: Any = None,
              run_id: Any = None, actor_id: Any = None, metadata: Any = None,
              expiration_date: Any = None) -> Plan:
        """Check one add call's input and resolve its scope; nothing is written."""
        items = normalise_messages(messages)
        custom = check_metadata(metadata)
        expiration = check_expiration(expiration_date)
        call = self._ctx.scope({"user_id": user_id, "agent_id": agent_id, "run_id": run_id},
                               actor_id=actor_id, metadata=custom)
        return Plan(items, call.scope.ids(), custom, call.scope.actor_id, expiration)

    def _commit(self, tables: Tables, plans: list[Plan], *,
                principal: Principal | None = None, attempt: int = 0) -> Results:
        """Store planned messages, skipping text already in the same scope
        (reviving it where that copy has expired: placement.py).

        A small add embeds its texts while the duplicates are looked up (a
        duplicate's embedding is wasted); a batch looks first and embeds only
        what is new, so that re-running an import costs no embedding.
        """
        eager = None
        if sum(len(plan.messages) for plan in plans) <= EAGER_EMBED:
            documents = list(dict.fromkeys(document_text(m.content, m.name or plan.actor)
                                           for plan in plans for m in plan.messages))
            eager = self._ctx.runtime.run_soon(self._embed_documents, documents)
        wanted: dict[tuple[Any, ...], set[str]] = {}
        for plan in plans:
            wanted.setdefault(scope_key(plan), set()).update(
                text_hash(m.content) for m in plan.messages)
        scopes = {scope_key(plan): plan.scope for plan in plans}
        checked_at = tables.memories.version()
        known = {key: tables.memories.duplicates(scopes[key], hashes, checked_at)
                 for key, hashes in wanted.items()}
        placed = Placement(datetime.now(UTC))
        out = [[placed.place(plan, message, known[scope_key(plan)]) for message in plan.messages]
               for plan in plans]
        earlier = self._write_new(tables, placed.new, placed.now, checked_at=checked_at,
                                  embedded=eager.result() if eager and placed.new else None,
                                  principal=principal)
        for record_id, kept in earlier.items():  # another writer stored the same text first
            result = placed.added[record_id]
            for key in ("actor_id", "role", "expiration_date"):
                result.pop(key, None)
            result.update(id=kept, event="NONE")
        self._revive(tables, placed.revivals, placed.now, principal=principal, attempt=attempt)
        return out

    def _revive(self, tables: Tables, revivals: list[Revival], now: datetime, *,
                principal: Principal | None, attempt: int) -> None:
        """Bring back the expired copies an add found; text whose copy was
        deleted meanwhile (a purge) is added anew, its result replaced."""
        gone = [revival for revival in revivals if not revive(tables, revival, now, principal)]
        if not gone:
            return
        if attempt >= _UPDATE_ATTEMPTS:
            raise ConflictError("memories kept disappearing while they were being added; "
                                "add them again.")
        plans = [replace(revival.plan, messages=[revival.message]) for revival in gone]
        again = self._commit(tables, plans, principal=principal, attempt=attempt + 1)
        for revival, results in zip(gone, again, strict=True):
            revival.result.clear()
            revival.result.update(results[0])

    def _embed_documents(self, documents: list[str]) -> dict[str, Embedded]:
        """Each document's vector and (when long) passages, by document."""
        return dict(zip(documents, embed_memories(self._ctx.embedder, documents), strict=True))

    def _write_new(self, tables: Tables, records: list[MemoryRecord], now: datetime, *,
                   checked_at: int, embedded: Mapping[str, Embedded] | None = None,
                   principal: Principal | None = None) -> dict[str, str]:
        """Embed and append new records, and hand their ADDs to history;
        returns the ones another writer beat (record id -> kept id)."""
        if not records:
            return {}
        documents = [record.search_text for record in records]
        vectors = ([embedded[d] for d in documents] if embedded is not None
                   else embed_memories(self._ctx.embedder, documents))
        records = [replace(record, vector=vector, passages=passages)
                   for record, (vector, passages) in zip(records, vectors, strict=True)]
        earlier = tables.memories.insert_unique(records, checked_at=checked_at)
        tables.history.record_soon(
            [hist.history_row(memory=record, event=hist.ADD, old_memory=None,
                              new_memory=record.memory, now=now, principal=principal)
             for record in records if record.id not in earlier]
        )
        return earlier

    def update(self, memory_id: str, *, text: str | None, metadata: Mapping[str, Any] | None,
               ids: Mapping[str, Any], principal: Principal | None,
               expiration_date: Any = None) -> dict[str, Any]:
        """Memory.update: a compare-and-swap, retried while other writers win it.

        ``expiration_date`` None keeps the memory's; ``""`` removes it."""
        if text is None and metadata is None and expiration_date is None:
            raise ValidationError("give 'text', 'metadata' and/or 'expiration_date' to update "
                                  "a memory.")
        new_text = check_text(text) if text is not None else None
        custom = check_metadata(metadata) if metadata is not None else None
        expiration = KEEP if expiration_date is None else check_expiration(
            expiration_date, removable=True)
        vector, passages = None, None
        for attempt in range(_UPDATE_ATTEMPTS):
            if attempt:
                backoff(attempt - 1)  # another writer won the swap: let it finish
            stored = self._ctx.find(memory_id, ids, with_vector=True)
            text_changes = new_text is not None and new_text != stored.memory
            if text_changes and vector is None:  # the actor never changes: one embedding
                document = document_text(new_text, stored.actor_id)
                vector, passages = embed_memories(self._ctx.embedder, [document])[0]
            record = stored.revised(
                text=new_text if text_changes else None, vector=vector if text_changes else None,
                passages=passages if text_changes else None,
                metadata=custom, expiration_date=expiration, updated_at=later_than(stored))
            tables = self._ctx.tables()
            if tables.memories.replace_if_unchanged(record, stored_at=stored.updated_at):
                tables.history.record_soon(
                    [hist.history_row(memory=record, event=hist.UPDATE, old_memory=stored.memory,
                                      new_memory=record.memory, now=record.updated_at,
                                      principal=principal, old_metadata=stored.metadata)])
                return record.to_item()
        raise ConflictError(f"memory {memory_id!r} kept changing while it was being updated; "
                            "try again.")

    def delete(self, memory_id: str, *, ids: Mapping[str, Any],
               principal: Principal | None) -> dict[str, Any]:
        """Memory.delete: one memory in the caller's scope."""
        record = self._ctx.find(memory_id, ids)
        if not self._delete(self._ctx.tables(), [record], principal):
            raise NotFoundError(not_found(memory_id))  # another caller deleted it since
        return {"id": record.id, "deleted": True}

    def delete_all(self, *, ids: Mapping[str, Any], actor_id: Any, filters: Any,
                   principal: Principal | None) -> dict[str, Any]:
        """Memory.delete_all: every memory in the scope that matches ``filters``."""
        where = self._ctx.scope(ids, actor_id=actor_id, filters=filters).where()
        tables = self._ctx.tables()
        return {"deleted": self._delete(tables, tables.memories.select(where), principal)}

    def purge_expired(self) -> dict[str, int]:
        """Memory.purge_expired: delete every expired memory of every scope, each
        with its DELETE history row."""
        tables, now = self._ctx.tables(), datetime.now(UTC)
        return {"deleted": self._delete(tables, tables.memories.expired(now), expired_at=now)}

    @staticmethod
    def _delete(tables: Tables, records: list[MemoryRecord],
                principal: Principal | None = None, *,
                expired_at: datetime | None = None) -> int:
        """Delete these memories and record it; returns how many this call deleted.

        A memory another caller deleted meanwhile counts for that caller only;
        its DELETE history row has the same id either way (history.event_id).
        With ``expired_at``, only memories still expired then are deleted: one
        revived or extended meanwhile stays, and gets no DELETE row.
        """
        now = datetime.now(UTC)
        deleted = 0
        for start in range(0, len(records), _ID_CHUNK):
            chunk = records[start:start + _ID_CHUNK]
            ids = [record.id for record in chunk]
            count = tables.memories.delete_ids(ids, expired_at=expired_at)
            deleted += count
            if count and expired_at is not None and count < len(chunk):
                stayed = {row["id"] for row in tables.memories.by_ids(ids, ["id"])}
                chunk = [record for record in chunk if record.id not in stayed]
            if count:
                tables.history.record_soon(
                    [hist.history_row(memory=record, event=hist.DELETE, old_memory=record.memory,
                                      new_memory=None, now=now, principal=principal)
                     for record in chunk]
                )
        return deleted

