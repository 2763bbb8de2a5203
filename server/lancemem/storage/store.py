"""The store: one LanceDB location holding memories, relations, their history and meta.

``Store`` is a Connection (storage_connection.py) that knows lancemem's
tables: opening creates and migrates them (storage_schema.py), indexes them
and checks the embedding model (storage_meta.py), and every few commits
compacts them (storage_maintenance.py). The domain reads and writes through
the typed tables, MemoryTable (memory_table.py) and HistoryTable
(history.py); nothing above the storage modules talks to LanceDB.

The names below were defined here before the storage layer was split; they
are imported from here still.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from .commit_probe import unsafe_for_writers
from .commit_store import record_commit_store, refuse_another_commit_form
from .connection import Connection
from .leases import LEASES, Leases
from .maintenance import (
    KEEP_VERSIONS_FOR,
    LARGE_FRAGMENT,
    SLACK_FRAGMENTS,
    SMALL_FRAGMENT,
    Maintenance,
    compaction_targets,
    ensure_indexes,
    unindexed_rows,
)
from .meta import MetaTable
from .relation_schema import (
    ENTITIES,
    RELATION_HISTORY,
    RELATION_TABLES,
    RELATIONS,
    entities_schema,
    relation_history_schema,
    relations_schema,
)
from .retries import MAX_ATTEMPTS, backoff, with_retries
from .schema import (
    HIDDEN_COLUMNS,
    HISTORY,
    INDEXED_COLUMNS,
    MEMORIES,
    META,
    SCHEMA_VERSION,
    SEARCH_TEXT,
    history_schema,
    memories_schema,
    meta_schema,
    migrate,
    principal_fields,
    vector_field,
)
from .write_lock import relation_writer

if TYPE_CHECKING:
    from ..core.config import Settings

log = logging.getLogger(__name__)

__all__ = [
    "HIDDEN_COLUMNS", "HISTORY", "INDEXED_COLUMNS", "LARGE_FRAGMENT", "MAX_ATTEMPTS", "MEMORIES",
    "META", "SCHEMA_VERSION", "SEARCH_TEXT", "SLACK_FRAGMENTS", "SMALL_FRAGMENT", "Store",
    "backoff", "compaction_targets", "history_schema", "memories_schema", "meta_schema",
    "principal_fields", "vector_field", "with_retries",
]


class Store(Connection):
    """LanceDB at ``uri`` holding the memories, history, relation and meta tables."""

    def __init__(self, uri: str, *, storage_options: Mapping[str, str] | None = None,
                 read_consistency: float | None = None, auto_compact: bool = True) -> None:
        super().__init__(uri, storage_options=storage_options, read_consistency=read_consistency)
        self.meta_table = MetaTable(self)
        # On object storage several servers may share the store: they take turns
        # through leases (leases.py) for relation writes and compaction.
        self.leases = Leases(self) if self.remote else None
        self._maintenance = Maintenance(self, auto_compact=auto_compact, leases=self.leases)

    @classmethod
    def from_settings(cls, settings: Settings) -> Store:
        """The store ``settings`` name, with its storage options and read consistency."""
        return cls(settings.db, storage_options=settings.storage_options,
                   read_consistency=settings.read_consistency)

    def exists(self) -> bool:
        """Whether this location already holds a lancemem store."""
        return MEMORIES in self.table_names()

    def _table_names(self) -> list[str]:  # the name tests and older callers use
        return self.table_names()

    def open(self, *, model_name: str, dim: int, check_model: bool = True) -> None:
        """Create the tables if needed and check the store's embedding model."""
        refuse_another_commit_form(self.uri, self.storage_options)  # before any write
        self.create_missing({MEMORIES: memories_schema(dim), HISTORY: history_schema(),
                             META: meta_schema(), ENTITIES: entities_schema(dim),
                             RELATIONS: relations_schema(dim),
                             RELATION_HISTORY: relation_history_schema()})
        record_commit_store(self.meta_table, self.uri)
        migrate(self)  # an older schema brought up to date
        ensure_indexes(self)
        if self.leases is not None:
            self.leases.ensure()
            unsafe = unsafe_for_writers(self.uri, self.storage_options)
            if unsafe:
                log.warning("%s", unsafe)
        self.meta_table.stamp(model_name=model_name, dim=dim)
        if check_model:
            self.check_model(model_name=model_name, dim=dim)

    def ensure_indexes(self) -> None:
        """Scalar indexes on the scope columns and history's memory_id; full text on search_text."""
        ensure_indexes(self)

    def check_model(self, *, model_name: str, dim: int) -> None:
        """Raise ModelMismatchError unless the store was built with this model."""
        self.meta_table.check_model(model_name=model_name, dim=dim)

    def meta(self) -> dict[str, str]:
        """The store's key/value records (embedding model, dimension, schema)."""
        return self.meta_table.read()

    def set_meta(self, values: dict[str, str | None]) -> None:
        """Write meta records, replacing existing values."""
        self.meta_table.write(values)

    def set_meta_defaults(self, values: dict[str, str]) -> dict[str, str]:
        """Write meta records only where no value exists yet; returns them as they stand."""
        return self.meta_table.write_defaults(values)

    @contextmanager
    def relation_writer(self) -> Iterator[None]:
        """The lock relation writers of this store take turns with (write_lock.py).

        What a writer reads while it holds the lock is read fresh: another
        server's relation committed a moment ago must be seen, not the version
        the read consistency bound would allow.
        """
        with relation_writer(self.uri, self.leases):
            self.refresh()
            yield

    def _committed(self) -> None:
        self._maintenance.committed()

    def optimize(self, *, keep_versions_for: timedelta = KEEP_VERSIONS_FOR) -> None:
        """Compact fully, fold new rows into indexes, and drop old versions."""
        self._maintenance.optimize(keep_versions_for=keep_versions_for)

    def compact_in_background(self) -> None:
        """Compact in a worker thread if needed; never blocks or fails the caller."""
        self._maintenance.compact_in_background()

    def wait_for_compaction(self) -> None:
        """Block until a background compaction (if any) has finished."""
        self._maintenance.wait()

    @staticmethod
    def _unindexed_rows(table: Any) -> int:
        """The most rows any of the table's indexes does not cover yet."""
        return unindexed_rows(table)

    def reset(self) -> None:
        """Drop every lancemem table; the next open recreates them empty."""
        self.drop((MEMORIES, HISTORY, META, *RELATION_TABLES, LEASES))
        if self.leases is not None:
            self.leases.forget()
