"""What Memory's writer and searcher share: the opened tables, a call's scope,
and finding one memory by id inside it."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ..core.errors import NotFoundError, ValidationError
from ..core.records import MemoryRecord
from ..core.runtime import Runtime
from ..core.scoping import ScopedCall, build_filters_and_metadata
from ..search.embeddings import Embedder
from ..storage import history as hist
from ..storage.memory_table import MemoryTable
from ..storage.relation_history import RelationHistoryTable
from ..storage.relation_table import EntityTable, RelationTable


@dataclass(frozen=True)
class RelationTables:
    """An opened store's relation tables, their history's background writer, and
    the lock its relation writers take turns with (storage/write_lock.py)."""

    entities: EntityTable
    relations: RelationTable
    log: hist.History
    history: RelationHistoryTable
    writing: Callable[[], AbstractContextManager[None]]


@dataclass(frozen=True)
class Tables:
    """An opened store's tables: memories, and history through its background
    writer; relations and their history (``graph``)."""

    memories: MemoryTable
    history: hist.History
    graph: RelationTables


@dataclass(frozen=True)
class Context:
    """One Memory's parts, as its writer and searcher use them.

    ``tables`` opens the store on first use (and refuses once the Memory is
    closed): every call goes through it before it touches storage.
    """

    tables: Callable[[], Tables]
    embedder: Embedder
    runtime: Runtime
    defaults: Mapping[str, str]

    def scope(self, ids: Mapping[str, Any], *, actor_id: Any = None, metadata: Any = None,
              filters: Any = None) -> ScopedCall:
        """The call's scope (defaults filling ids it leaves out) and its own filters."""
        return build_filters_and_metadata(
            user_id=ids.get("user_id"), agent_id=ids.get("agent_id"), run_id=ids.get("run_id"),
            actor_id=actor_id, input_metadata=metadata, input_filters=filters,
            defaults=self.defaults,
        )

    def find(self, memory_id: Any, ids: Mapping[str, Any], *, with_vector: bool = False,
             live_at: datetime | None = None) -> MemoryRecord:
        """The stored memory with this id inside the caller's scope, or NotFoundError;
        with ``live_at``, one expired at that moment is NotFoundError too."""
        if not isinstance(memory_id, str) or not memory_id.strip():
            raise ValidationError("'memory_id' must be a non-empty string such as the id "
                                  "returned by add or search.")
        where = self.scope(ids).where()
        record = self.tables().memories.find(memory_id.strip(), where, with_vector=with_vector,
                                             live_at=live_at)
        if record is None:
            raise NotFoundError(not_found(memory_id))
        return record


def not_found(memory_id: Any) -> str:
    """The one message for a memory that is missing or outside the caller's scope."""
    return (f"no memory with id {memory_id!r} in this scope; list or search memories "
            "to find the right id.")


def live_at(show_expired: bool) -> datetime | None:
    """The moment a read hides memories expired at (now), or None to show them all."""
    return None if show_expired else datetime.now(UTC)
