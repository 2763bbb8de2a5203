"""The memories table in the domain's terms: records in, records out.

Scope and filter clauses arrive compiled (scoping.py, filters.py); the
clauses around them (ids, hashes, the compare-and-swap guard, hiding expired
memories) are written here, and writers racing to add the same text are
settled here.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ..core.errors import ConflictError, StorageError
from ..core.records import MemoryRecord, in_scope, row_key
from ..core.scoping import SCOPE_KEYS, Scope, scope_where
from . import sql
from .meta import MetaTable
from .schema import (
    EXPIRATION_DATE,
    MEMORIES,
    SEARCH_TEXT,
    item_columns,
    memories_schema,
)
from .snapshot import Snapshot
from .vectors import replace_passages_column, replace_vector_column, set_vectors

if TYPE_CHECKING:
    import pyarrow as pa

    from .connection import Connection

_ID_CHUNK = 500  # ids per IN list


@dataclass(frozen=True)
class Copy:
    """A stored memory that holds some text: its id, when it expires (None:
    never) and its custom metadata."""

    id: str
    expiration_date: datetime | None
    metadata: Mapping[str, Any] = field(default_factory=dict)


class MemoryTable:
    """The memories table of one store, for a model of ``dim`` dimensions."""

    def __init__(self, conn: Connection, dim: int | None = None) -> None:
        """``dim`` is needed to write rows, not to read them."""
        self._conn = conn
        self._dim = dim
        self._meta = MetaTable(conn)

    @functools.cached_property
    def schema(self) -> pa.Schema:
        """The table's schema (built on first use: pyarrow loads slowly)."""
        if self._dim is None:
            raise TypeError("writing memories needs the table's dimension")
        return memories_schema(self._dim)

    def version(self) -> int:
        """The table's newest version."""
        return self._conn.version(MEMORIES)

    def snapshot(self, *, live_at: datetime | None = None) -> Snapshot:
        """The table at its newest version, pinned for the reads of one search;
        with ``live_at``, memories expired at that moment are left out."""
        dataset = self._conn.dataset(MEMORIES)  # before the marks are read: see _hiding
        return Snapshot(dataset, visible=self._hiding(live_at),
                        passages=self._meta.uses_long_memories())

    def find(self, memory_id: str, where: str, *, with_vector: bool = False,
             live_at: datetime | None = None) -> MemoryRecord | None:
        """The memory with this id among those matching ``where`` (a scope);
        with ``live_at``, not if it is expired at that moment."""
        version = None if live_at is None else self.version()
        where = _both(sql.both(sql.equals("id", memory_id), where), self._hiding(live_at))
        rows = self._conn.select(MEMORIES, where, columns=None if with_vector else item_columns(),
                                 limit=1, version=version)
        return MemoryRecord.from_row(rows[0]) if rows else None

    def select(self, where: str, *, live_at: datetime | None = None) -> list[MemoryRecord]:
        """Every memory matching ``where``, without vectors; with ``live_at``,
        not those expired at that moment."""
        version = None if live_at is None else self.version()
        return [MemoryRecord.from_row(row) for row in self._conn.select(
            MEMORIES, _both(where, self._hiding(live_at)), columns=item_columns(),
            version=version)]

    def _hiding(self, live_at: datetime | None) -> str | None:
        """The clause that hides memories expired at ``live_at``, or None when
        nothing needs hiding: no ``live_at``, or no memory of the store was ever
        given an expiration date.

        Callers pin the version they read before asking: the mark is written
        before the first expiring memory, so a version holding one is always
        read with the clause.
        """
        if live_at is None or not self._meta.uses_expirations():
            return None
        return sql.unexpired(live_at)

    def scope_counts(self, where: str | None, *,
                     live_at: datetime | None = None) -> dict[str, dict[str, int]]:
        """How many memories matching ``where`` (every memory when None) each
        user, agent and run id holds: ``{"user_id": {"alice": 3, ...}, ...}``;
        with ``live_at``, not counting those expired at that moment."""
        version = None if live_at is None else self.version()
        table = self._conn.arrow(MEMORIES, _both_optional(where, self._hiding(live_at)),
                                 columns=list(SCOPE_KEYS), version=version)
        counts: dict[str, dict[str, int]] = {}
        for key in SCOPE_KEYS:
            grouped = table.group_by(key).aggregate([([], "count_all")]).to_pylist()
            counts[key] = {row[key]: row["count_all"] for row in grouped
                           if row[key] is not None}
        return counts

    def expired(self, now: datetime) -> list[MemoryRecord]:
        """Every memory of every scope expired at ``now``, without vectors (for
        a purge: the one read that spans every scope)."""
        return [MemoryRecord.from_row(row) for row in self._conn.select(
            MEMORIES, sql.expired(now), columns=item_columns())]

    def by_ids(self, ids: Sequence[str], columns: Iterable[str]) -> list[dict[str, Any]]:
        """These columns of the memories with these ids (any number of them)."""
        rows: list[dict[str, Any]] = []
        for start in range(0, len(ids), _ID_CHUNK):
            rows += self._conn.select(MEMORIES, sql.one_of("id", ids[start:start + _ID_CHUNK]),
                                      columns=list(columns))
        return rows

    def keys(self, where: str | None) -> list[tuple[datetime, str]]:
        """Every matching memory's ``(created_at, id)`` (all memories when
        ``where`` is None): two narrow columns, for an export to order and page."""
        found = self._conn.arrow(MEMORIES, where, columns=["created_at", "id"])
        return list(zip(found["created_at"].to_pylist(), found["id"].to_pylist(), strict=True))

    def restore(self, records: Sequence[MemoryRecord]) -> int:
        """Insert embedded records as they are (ids and timestamps kept), skipping
        ids already stored; returns how many were inserted (for an import)."""
        self._mark_flags(records)
        return self._conn.insert_new(MEMORIES, [record.to_row() for record in records],
                                     self.schema)

    def change_times(self) -> pa.Table:
        """Every memory's id and ``updated_at``, as Arrow (for consistency.py)."""
        return self._conn.arrow(MEMORIES, None, columns=["id", "updated_at"])

    def duplicates(self, scope: Mapping[str, str | None], hashes: set[str],
                   version: int) -> dict[str, Copy]:
        """Text hashes already stored in exactly ``scope`` at ``version``, with
        the copy that holds each (expired copies too)."""
        where = _duplicate_query(scope, hashes)
        if self._conn.count(MEMORIES, where, version=version) == 0:  # the usual case, cheaper
            return {}
        rows = self._conn.select(MEMORIES, where,
                                 columns=["id", "hash", EXPIRATION_DATE, "metadata",
                                          *SCOPE_KEYS],
                                 version=version)
        copies: dict[str, set[str]] = {}
        stored = {row["id"]: row for row in rows}
        for row in rows:
            if in_scope(row, scope):
                copies.setdefault(row["hash"], set()).add(row["id"])
        # Two copies: a raced add whose loser has not deleted its copy yet.
        kept = {text: self._first_committed(ids, version) for text, ids in copies.items()}
        return {text: Copy(kept_id, stored[kept_id][EXPIRATION_DATE],
                           json.loads(stored[kept_id]["metadata"] or "{}"))
                for text, kept_id in kept.items()}

    def insert_unique(self, records: Sequence[MemoryRecord], *,
                      checked_at: int) -> dict[str, str]:
        """Append embedded records whose text ``duplicates`` found nowhere in
        their scope at version ``checked_at``; returns the ones another writer
        beat (record id -> the id that stays), deleted again.

        Two writers (threads or processes) may add the same text to one scope
        at once, both having found no copy. Each then looks at the table as
        of its own commit: a copy committed before it means it lost, and it
        deletes its row again. Commits are ordered, so exactly one copy stays.
        When this commit directly follows ``checked_at``, nothing came between
        and the look is skipped: the usual case, and one query fewer per add.
        """
        if not records:
            return {}
        self._mark_flags(records)
        rows = [record.to_row() for record in records]
        version = self._conn.insert(MEMORIES, rows, self.schema)
        earlier = {} if version == checked_at + 1 else self._earlier_copies(rows, version)
        if earlier:
            self._conn.delete(MEMORIES, sql.one_of("id", earlier))
        return earlier

    def _earlier_copies(self, rows: list[dict[str, Any]], version: int) -> dict[str, str]:
        """Of ``rows`` (committed at ``version``), those whose text was already
        in their scope at that version, mapped to the copy that stays."""
        mine = {row["id"] for row in rows}
        found = self._conn.select(MEMORIES, sql.one_of("hash", sorted({r["hash"] for r in rows})),
                                  columns=["id", "hash", *SCOPE_KEYS], version=version)
        if len(found) == len(rows):  # the usual case: only the rows just written
            return {}
        others: dict[tuple[Any, ...], set[str]] = {}
        for other in found:
            if other["id"] not in mine:
                others.setdefault(row_key(other), set()).add(other["id"])
        kept = {key: self._first_committed(ids, version) for key, ids in others.items()}
        return {row["id"]: kept[row_key(row)] for row in rows if row_key(row) in kept}

    def _first_committed(self, ids: set[str], version: int) -> str:
        """Of copies present at ``version``, the one committed first: the copy
        that stays, since every later writer of the text saw it and backs off.

        Other losers may not have deleted their copy yet, so the table is read
        backwards version by version (only in a race, and only as far back as
        the first copy) until one candidate is left.
        """
        candidates = set(ids)
        while len(candidates) > 1 and version > 1:
            version -= 1
            try:
                present = {row["id"] for row in self._conn.select(
                    MEMORIES, sql.one_of("id", sorted(candidates)), columns=["id"],
                    version=version)}
            except (StorageError, ConflictError):  # that version was already cleaned up
                break
            if not present:
                break
            candidates = present
        return min(candidates)

    def replace_if_unchanged(self, record: MemoryRecord, *, stored_at: datetime) -> bool:
        """Compare-and-swap: store ``record`` over its row only if that row's
        ``updated_at`` is still ``stored_at``; returns whether it was."""
        self._mark_flags([record])
        return bool(self._conn.upsert(MEMORIES, [record.to_row()], self.schema,
                                      only_if=sql.stored_at("updated_at", stored_at)))

    def _mark_flags(self, records: Sequence[MemoryRecord]) -> None:
        """Mark the store as having expiring memories, or long ones, before
        writing the first of them (meta.py)."""
        if any(record.expiration_date is not None for record in records):
            self._meta.mark_expirations()
        if any(record.passages is not None for record in records):
            self._meta.mark_long_memories()

    def delete_ids(self, ids: Iterable[str], *, expired_at: datetime | None = None) -> int:
        """Delete the memories with these ids in one commit; returns how many
        this call deleted (one another writer deleted first is not counted).
        With ``expired_at``, only those expired at that moment."""
        where = sql.one_of("id", ids)
        if expired_at is not None:
            where = sql.both(where, sql.expired(expired_at))
        return self._conn.delete(MEMORIES, where)

    def count_without_vector(self) -> int:
        """How many memories wait for a vector (during a reindex)."""
        return self._conn.count(MEMORIES, "vector IS NULL")

    def without_vector(self, *, limit: int) -> list[tuple[str, str]]:
        """Up to ``limit`` memories without a vector, as (id, search text)."""
        rows = self._conn.select(MEMORIES, "vector IS NULL", columns=["id", SEARCH_TEXT],
                                 limit=limit)
        return [(row["id"], row[SEARCH_TEXT]) for row in rows]

    def set_vectors(self, vectors: Mapping[str, Sequence[float]],
                    passages: Mapping[str, Sequence[Sequence[float]] | None] | None = None,
                    ) -> None:
        """Store new vectors (memory id -> vector) and, given, passages (memory
        id -> passage vectors, None for a short memory), in one commit."""
        if passages is not None and any(p is not None for p in passages.values()):
            self._meta.mark_long_memories()
        set_vectors(self._conn, MEMORIES, self._dim, vectors, passages)

    def replace_vector_column(self, dim: int) -> None:
        """Drop the vector and passages columns (if any) and add empty ones of
        ``dim`` (for reindex)."""
        replace_vector_column(self._conn, MEMORIES, dim)
        replace_passages_column(self._conn, MEMORIES, dim)


def _both(where: str, extra: str | None) -> str:
    """``where``, ANDed with ``extra`` if given."""
    return where if extra is None else sql.both(where, extra)


def _both_optional(where: str | None, extra: str | None) -> str | None:
    """``where`` and ``extra`` ANDed, either of them possibly absent."""
    if where is None:
        return extra
    return _both(where, extra)


def _duplicate_query(scope: Mapping[str, str | None], hashes: Iterable[str]) -> str:
    """Rows that may hold one of these text hashes in exactly this scope.

    Only the ids the scope has narrow the query; rows whose other ids are
    set must be dropped by the caller (``in_scope``). ``agent_id IS NULL``
    matches most rows, and through the index it cost ten times what it
    saved (7.5 ms against 0.7 ms at 100,000 rows).
    """
    return sql.both(sql.one_of("hash", sorted(hashes)), scope_where(Scope(**scope)))
