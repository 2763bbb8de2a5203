"""Memory.export and Memory.restore: a scope's memories (and history) out as
JSON lines, and back in with their ids and timestamps.

An export reads two narrow columns of the scope to order it (memories by
``created_at`` then id), then the memories themselves 500 at a time, never
a vector. Each memory's history follows it, oldest first; the history of
memories deleted before the export comes last, one memory after another in
the order of its first row (then id).

A restore checks every line, and everything it names in the store, before
it writes anything (core/exchange.py checks a line). It never changes a
stored memory: one whose id is stored already with the same text and scope
is skipped, with other text or scope it is an error. A memory whose text is
already stored in exactly its scope under another id is skipped too (a
scope holds a text once), with its history. History rows are kept by their
ids, so a second run writes nothing. A restored memory with no history line
gets the rows the crash repair would give it (consistency.py): its ADD at
``created_at``, and an UPDATE at ``updated_at`` if that is later.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import replace
from typing import Any

from ..core.errors import NotFoundError, ValidationError
from ..core.exchange import EVENTS, Checked, check_line, from_mem0, history_line, memory_line
from ..core.messages import check_limit
from ..core.paging import decode_cursor, page_of
from ..core.records import MemoryRecord, in_scope
from ..core.scoping import SCOPE_KEYS, validate_id
from ..search.passages import embed_memories
from ..storage import history as hist
from ..storage.connection import Connection
from ..storage.schema import history_schema, item_columns
from .context import Context, Tables, not_found

CHUNK = 500  # memories read, or history rows looked up, per query
Progress = Callable[[int, int], None] | None
SOURCES = ("lancemem", "mem0")


def _order(row: Mapping[str, Any]) -> tuple[Any, ...]:
    """History oldest first; the event and the row id settle ties, so the order is fixed."""
    event = EVENTS.index(row["event"]) if row["event"] in EVENTS else len(EVENTS)
    return row["created_at"], event, row["id"]


def _scope_of(row: Mapping[str, Any]) -> dict[str, Any]:
    return {key: row.get(key) for key in SCOPE_KEYS}


class Transfer:
    """Export and restore for one Memory; its public methods are Memory's."""

    def __init__(self, context: Context, store: Connection) -> None:
        self._ctx = context
        self._history = hist.HistoryTable(store)

    # -- export --------------------------------------------------------------

    def export(self, *, ids: Mapping[str, Any], memory_ids: Sequence[str] | None,
               include_history: bool, every_scope: bool,
               progress: Progress = None) -> Iterator[dict[str, Any]]:
        """Memory.export: checked and ordered now, lines read as they are consumed."""
        if every_scope and any(value is not None for value in ids.values()):
            raise ValidationError("give a scope (user_id, agent_id, run_id) or every_scope, "
                                  "not both.")
        where = None if every_scope else self._ctx.scope(ids).where()
        tables = self._ctx.tables()
        keys = sorted(tables.memories.keys(where))
        if memory_ids is not None:
            keys = _only(keys, memory_ids)
        gone: list[str] = []
        if include_history:
            tables.history.flush()  # this process's pending rows belong in the export
            if memory_ids is None:
                gone = self._deleted(where, {memory_id for _, memory_id in keys})
        return self._lines(tables, [memory_id for _, memory_id in keys], gone,
                           include_history=include_history, progress=progress)

    def export_page(self, *, ids: Mapping[str, Any], include_history: bool, limit: Any,
                    cursor: Any) -> dict[str, Any]:
        """Memory.export_page: one read of the scope, paged as get_all pages it."""
        limit, after = check_limit(limit), decode_cursor(cursor)
        tables = self._ctx.tables()
        page = page_of(tables.memories.select(self._ctx.scope(ids).where()), limit=limit,
                       after=after)
        history: dict[str, list[dict[str, Any]]] = {}
        if include_history and page.items:
            tables.history.flush()  # this process's pending rows belong in the export
            history = self._history_lines([record.id for record in page.items])
        lines = []
        for record in sorted(page.items, key=lambda record: (record.created_at, record.id)):
            lines += [memory_line(record), *history.get(record.id, [])]
        return {"lines": lines, "total": page.total, "next_cursor": page.next_cursor}

    def _deleted(self, where: str | None, present: set[str]) -> list[str]:
        """Ids of memories with history in scope but no longer stored, by first row."""
        first: dict[str, Any] = {}
        for memory_id, created_at in self._history.times(where):
            if memory_id not in present and (memory_id not in first
                                             or created_at < first[memory_id]):
                first[memory_id] = created_at
        return sorted(first, key=lambda memory_id: (first[memory_id], memory_id))

    def _lines(self, tables: Tables, ids: list[str], gone: list[str], *,
               include_history: bool, progress: Progress) -> Iterator[dict[str, Any]]:
        total, done = len(ids) + len(gone), 0
        for start in range(0, len(ids), CHUNK):
            chunk = ids[start:start + CHUNK]
            rows = {row["id"]: MemoryRecord.from_row(row)
                    for row in tables.memories.by_ids(chunk, item_columns())}
            history = self._history_lines(chunk) if include_history else {}
            for memory_id in chunk:
                if memory_id in rows:  # else deleted since the export began
                    yield memory_line(rows[memory_id])
                    yield from history.get(memory_id, [])
            done += len(chunk)
            if progress:
                progress(done, total)
        for start in range(0, len(gone), CHUNK):
            chunk = gone[start:start + CHUNK]
            history = self._history_lines(chunk)
            for memory_id in chunk:
                yield from history.get(memory_id, [])
            done += len(chunk)
            if progress:
                progress(done, total)

    def _history_lines(self, memory_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
        rows = {row["id"]: row for row in self._history.of_memories(
            memory_ids, history_schema().names)}  # a repaired row may be stored twice
        lines: dict[str, list[dict[str, Any]]] = {}
        for row in sorted(rows.values(), key=_order):
            lines.setdefault(row["memory_id"], []).append(history_line(row))
        return lines

    # -- restore -------------------------------------------------------------

    def restore(self, records: Iterable[Any], *, ids: Mapping[str, Any], source: str,
                labels: Sequence[str] | None, batch_size: int,
                progress: Progress = None) -> dict[str, int]:
        """Memory.restore: every line checked, then memories, then history written."""
        if source not in SOURCES:
            raise ValidationError(f"'source' is {source!r}; use one of {', '.join(SOURCES)}.")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValidationError(f"'batch_size' must be a positive integer, got {batch_size!r}.")
        defaults = {key: validate_id(key, value) for key, value in ids.items()
                    if value is not None}
        check = from_mem0 if source == "mem0" else check_line
        lines = [check(labels[index] if labels else f"record {index + 1}", record, defaults)
                 for index, record in enumerate(records)]
        tables = self._ctx.tables()
        plan = _Plan(lines)
        plan.against_store(tables, self._history)
        restored = self._write_memories(tables, plan.new, batch_size, progress)
        rows = plan.history_rows()
        for start in range(0, len(rows), 5 * CHUNK):
            tables.history.record(rows[start:start + 5 * CHUNK])
        return {"restored": restored, "skipped": len(plan.memories) - restored,
                "history_restored": len(rows)}

    def _write_memories(self, tables: Tables, records: list[MemoryRecord], batch_size: int,
                        progress: Progress) -> int:
        restored = 0
        for start in range(0, len(records), batch_size):
            batch = records[start:start + batch_size]
            vectors = embed_memories(self._ctx.embedder, [r.search_text for r in batch])
            restored += tables.memories.restore(
                [replace(record, vector=vector, passages=passages)
                 for record, (vector, passages) in zip(batch, vectors, strict=True)])
            if progress:
                progress(start + len(batch), len(records))
        return restored


def _only(keys: list[tuple[Any, str]], memory_ids: Sequence[str]) -> list[tuple[Any, str]]:
    """The keys of these memories; NOT_FOUND_001 for one not in the scope."""
    if isinstance(memory_ids, str):
        raise ValidationError("'memory_ids' must be a list of ids, not one string.")
    wanted = {validate_id("memory_ids", memory_id) for memory_id in memory_ids}
    present = {memory_id for _, memory_id in keys}
    missing = sorted(wanted - present)
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise NotFoundError(not_found(missing[0]) + more)
    return [key for key in keys if key[1] in wanted]


class _Plan:
    """A checked file, held against the store: what to write and what to skip."""

    def __init__(self, lines: list[Checked]) -> None:
        self.memories: dict[str, tuple[str, MemoryRecord]] = {}
        self.history: dict[str, tuple[str, dict[str, Any]]] = {}
        for line in lines:
            if line.record is not None:
                self._add_memory(line.label, line.record)
            elif line.row is not None:
                self.history.setdefault(line.row["id"], (line.label, line.row))
        self.new: list[MemoryRecord] = []
        self._dropped: set[str] = set()  # memories skipped as another id's text
        self._present: set[str] = set()  # history rows already stored

    def _add_memory(self, label: str, record: MemoryRecord) -> None:
        earlier = self.memories.get(record.id)
        if earlier is None:
            self.memories[record.id] = (label, record)
        elif memory_line(earlier[1]) != memory_line(record):
            raise ValidationError(f"{label}: field 'id' {record.id!r} is also {earlier[0]}'s, "
                                  "with other content; give each memory its own id.")

    def against_store(self, tables: Tables, history: hist.HistoryTable) -> None:
        """Refuse what would change or move stored memories; find what to skip."""
        stored = {row["id"]: row for row in tables.memories.by_ids(
            sorted(self.memories), ["id", "memory", *SCOPE_KEYS])}
        for label, record in self.memories.values():
            row = stored.get(record.id)
            if row is not None and (row["memory"] != record.memory
                                    or not in_scope(row, _fields(record))):
                raise ValidationError(
                    f"{label}: field 'id' {record.id!r} is already stored with other text or "
                    "scope; a restore never changes or moves a stored memory. Give it another "
                    "id or leave it out. Nothing was written.")
        candidates = [record for _, record in self.memories.values() if record.id not in stored]
        self.new = self._unique_texts(tables, candidates)
        self._check_history(tables, history, stored)

    def _unique_texts(self, tables: Tables, records: list[MemoryRecord]) -> list[MemoryRecord]:
        """The records whose text is not yet in their exact scope, in the store or
        earlier in the file."""
        version = tables.memories.version()
        by_scope: dict[tuple[Any, ...], list[MemoryRecord]] = {}
        for record in records:
            by_scope.setdefault(tuple(getattr(record, k) for k in SCOPE_KEYS), []).append(record)
        kept = []
        for key, group in by_scope.items():
            stored = tables.memories.duplicates(dict(zip(SCOPE_KEYS, key, strict=True)),
                                                {r.hash for r in group}, version)
            seen = set(stored)
            for record in group:
                if record.hash in seen:
                    self._dropped.add(record.id)
                else:
                    seen.add(record.hash)
                    kept.append(record)
        return kept

    def _check_history(self, tables: Tables, history: hist.HistoryTable,
                       stored: Mapping[str, Any]) -> None:
        """Each history line's memory is in the file or the store, in the same scope,
        or was deleted (its history ends in DELETE)."""
        named = sorted({row["memory_id"] for _, row in self.history.values()})
        outside = [m for m in named if m not in self.memories and m not in stored]
        scopes = {m: _fields(record) for m, (_, record) in self.memories.items()}
        scopes.update({row["id"]: _scope_of(row) for row in tables.memories.by_ids(
            outside, ["id", *SCOPE_KEYS])})
        earlier = history.of_memories(sorted({*named, *(r.id for r in self.new)}),
                                      ["id", "memory_id", *SCOPE_KEYS])
        self._present = {row["id"] for row in earlier}
        for row in earlier:
            scopes.setdefault(row["memory_id"], _scope_of(row))
        last: dict[str, dict[str, Any]] = {}
        for label, row in sorted(self.history.values(), key=lambda line: _order(line[1])):
            scope = scopes.setdefault(row["memory_id"], _scope_of(row))
            if _scope_of(row) != _scope_of(scope):
                raise ValidationError(
                    f"{label}: fields 'user_id', 'agent_id', 'run_id' are not those of memory "
                    f"{row['memory_id']!r} ({_shown(scope)}); history stays with its memory.")
            last[row["memory_id"]] = row
        for memory_id, row in last.items():
            if memory_id not in self.memories and memory_id not in stored and (
                    row["event"] != hist.DELETE):
                label = next(lab for lab, r in self.history.values() if r is row)
                raise ValidationError(
                    f"{label}: field 'memory_id' {memory_id!r} names no memory in the file or "
                    "the store, and its history does not end in DELETE; include the memory "
                    "line too.")

    def history_rows(self) -> list[dict[str, Any]]:
        """The history rows to write: the file's new ones, then those restored
        memories without history get."""
        rows = [row for _, row in self.history.values()
                if row["id"] not in self._present and row["memory_id"] not in self._dropped]
        with_history = {row["memory_id"] for _, row in self.history.values()}
        for record in self.new:
            if record.id not in with_history:
                rows += [row for row in _made_history(record) if row["id"] not in self._present]
        return rows


def _fields(record: MemoryRecord) -> dict[str, Any]:
    return {key: getattr(record, key) for key in SCOPE_KEYS}


def _shown(scope: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in scope.items() if v is not None) or "no scope"


def _made_history(record: MemoryRecord) -> list[dict[str, Any]]:
    """What the crash repair writes for a memory without history (consistency.py)."""
    rows = [hist.history_row(memory=record, event=hist.ADD, old_memory=None,
                             new_memory=record.memory, now=record.created_at)]
    if record.updated_at > record.created_at:
        rows.append(hist.history_row(memory=record, event=hist.UPDATE, old_memory=None,
                                     new_memory=record.memory, now=record.updated_at))
    return rows

