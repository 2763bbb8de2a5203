"""Upkeep of a store: its indexes, tiered compaction, and old versions.

Every commit adds a version and (for appends) a fragment; left alone they make
disk use and search time grow with every write (FACTS.md). LanceDB's own
optimize() compacts toward 1M-row fragments, so below that it rewrites the
whole table every time. Compaction here is tiered instead: single-row
fragments merge into fragments of SMALL_FRAGMENT rows, and those into
LARGE_FRAGMENT rows; each pass rewrites only fragments under its target.
The memories table's large tier also puts a scope's rows side by side
(storage/locality.py); the other tables keep Lance's insertion order.
Versions older than a few seconds are dropped: readers move to the newest
version before each query, so nothing still uses them.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from . import locality
from .leases import LEASES, MAINTENANCE_LEASE
from .relation_schema import (
    ENTITIES,
    ENTITY_INDEXED,
    RELATION_HISTORY,
    RELATION_INDEXED,
    RELATION_TABLES,
    RELATIONS,
)
from .retries import unless_done_elsewhere, with_retries
from .schema import HISTORY, INDEXED_COLUMNS, MEMORIES, SEARCH_TEXT
from .vector_index import VectorIndexRule, build_vector_index

if TYPE_CHECKING:
    from .connection import Connection
    from .leases import Leases

log = logging.getLogger(__name__)

SMALL_FRAGMENT = 1_024
LARGE_FRAGMENT = 65_536
SLACK_FRAGMENTS = 32  # fragments under SMALL_FRAGMENT rows before they are merged
SLACK_SMALL = 16  # fragments between the two sizes before they are merged
CHECK_EVERY_COMMITS = 8
# New rows are folded into the indexes only once this many are unindexed (or
# on optimize()). Until then queries scan them: at 100,000 rows, 4,000
# unindexed rows added under 0.6 ms to a scoped query. Indexing after every
# merge cost far more: once indexed, a fragment that is merged again makes
# compaction remap every index (0.84 s instead of 0.04 s at 100,000 rows),
# and optimize_indices itself took 0.78 s, all on the server's two cores.
INDEX_AFTER_ROWS = 4_096
KEEP_VERSIONS_FOR = timedelta(seconds=5)
# Held while one server compacts a store on object storage; a server that dies
# compacting frees it after this long. A full optimize of 1,000,000 memories
# took minutes, not tens of minutes.
MAINTENANCE_LEASE_SECONDS = 900.0


def compaction_targets(fragment_rows: list[int]) -> list[int]:
    """The compaction passes (target fragment sizes) that fragments of these sizes need."""
    tiny = sum(rows < SMALL_FRAGMENT for rows in fragment_rows)
    small = sum(SMALL_FRAGMENT <= rows < LARGE_FRAGMENT for rows in fragment_rows)
    targets = []
    if tiny > SLACK_FRAGMENTS:
        targets.append(SMALL_FRAGMENT)
    if small > SLACK_SMALL:
        targets.append(LARGE_FRAGMENT)
    return targets


def ensure_indexes(conn: Connection) -> None:
    """Scalar indexes on the scope columns and history's memory_id; full text on search_text."""
    from lancedb.index import FTS, BTree

    # English stemming and stop words for search_text; rows written later
    # are scanned until compaction folds them into the index.
    wanted = [(MEMORIES, (column,), BTree()) for column in INDEXED_COLUMNS]
    wanted += [(HISTORY, ("memory_id",), BTree()), (MEMORIES, (SEARCH_TEXT,), FTS())]
    wanted += [(ENTITIES, (column,), BTree()) for column in ENTITY_INDEXED]
    wanted += [(RELATIONS, (column,), BTree()) for column in RELATION_INDEXED]
    wanted += [(RELATION_HISTORY, ("relation_id",), BTree())]
    for name, columns, config in wanted:
        table = conn.table(name)

        def indexed(t: Any = table, c: tuple[str, ...] = columns) -> bool:
            return c in {tuple(index.columns) for index in t.list_indices()}

        if not indexed():
            unless_done_elsewhere(
                lambda t=table, c=columns[0], k=config: t.create_index(c, config=k,
                                                                       replace=False),
                done=indexed, what=f"indexing {name}.{columns[0]}")


def unindexed_rows(table: Any) -> int:
    """The most rows any of the table's indexes does not cover yet."""
    def run() -> int:
        return max((table.index_stats(index.name).num_unindexed_rows
                    for index in table.list_indices()), default=0)

    return with_retries(run, what="reading index statistics")


class Maintenance:
    """Compaction of one store's memories and history, run every few commits
    in a background thread (``auto_compact``) and fully on ``optimize``."""

    def __init__(self, conn: Connection, *, auto_compact: bool = True,
                 leases: Leases | None = None) -> None:
        self._conn = conn
        self._auto_compact = auto_compact
        self._leases = leases
        self._commits = 0
        self._compacting = threading.Lock()
        self._compactor: threading.Thread | None = None
        self._vector_index = VectorIndexRule()

    def committed(self) -> None:
        """Count a commit; every few, check in the background whether to compact."""
        self._commits += 1
        if self._auto_compact and self._commits % CHECK_EVERY_COMMITS == 0:
            self.compact_in_background()

    def optimize(self, *, keep_versions_for: timedelta = KEEP_VERSIONS_FOR) -> None:
        """Compact fully, fold new rows into indexes, and drop old versions."""
        self._maintain(force=True, keep_versions_for=keep_versions_for)

    def _maintain(self, *, force: bool, keep_versions_for: timedelta = KEEP_VERSIONS_FOR) -> bool:
        """Tiered compaction where fragments piled up; returns whether anything ran.

        Safe while other processes write: conflicting commits are retried. On
        object storage one server at a time compacts (the maintenance lease):
        a background check skips while another holds it, ``optimize`` waits.
        """
        if self._leases is None:
            return self._compact(force=force, keep_versions_for=keep_versions_for)
        if force:
            with self._leases.held(MAINTENANCE_LEASE, seconds=MAINTENANCE_LEASE_SECONDS,
                                   wait=MAINTENANCE_LEASE_SECONDS):
                return self._compact(force=True, keep_versions_for=keep_versions_for)
        if not any(self._targets(name) for name in (MEMORIES, HISTORY, *RELATION_TABLES)):
            return False  # the usual check: nothing to do, so no lease taken (two commits)
        holder = self._leases.try_take(MAINTENANCE_LEASE, MAINTENANCE_LEASE_SECONDS)
        if holder is None:
            log.debug("another server is compacting %s; skipped", self._conn.uri)
            return False
        try:
            return self._compact(force=False, keep_versions_for=keep_versions_for)
        finally:
            self._leases.release(MAINTENANCE_LEASE, holder)

    def _compact(self, *, force: bool, keep_versions_for: timedelta) -> bool:
        ran = False
        if self._leases is not None:  # every lease taken and given back is two versions
            with_retries(lambda: self._conn.open_dataset(LEASES).cleanup_old_versions(
                older_than=keep_versions_for), what=f"cleaning up {LEASES}")
        for name in (MEMORIES, HISTORY, *RELATION_TABLES):
            table = self._conn.table(name)
            targets = [SMALL_FRAGMENT, LARGE_FRAGMENT] if force else self._targets(name)
            if not targets:
                continue
            # Each attempt opens the newest version: a retry on the version that
            # conflicted would conflict again.
            for target in targets:
                if name == MEMORIES and target == LARGE_FRAGMENT:
                    continue  # merged in scope order below
                with_retries(lambda t=target, n=name: self._conn.open_dataset(
                    n).optimize.compact_files(target_rows_per_fragment=t),
                    what=f"compacting {name}")
            if name == MEMORIES:
                self._sort_by_scope(force=force, large_tier=LARGE_FRAGMENT in targets)
            if force or unindexed_rows(table) >= INDEX_AFTER_ROWS:
                with_retries(lambda n=name: self._conn.open_dataset(n).optimize.optimize_indices(),
                             what=f"indexing {name}")
            if name == MEMORIES and self._vector_index.due(self._conn, force=force):
                build_vector_index(self._conn)  # a scope grew too large to read whole
            with_retries(lambda n=name: self._conn.open_dataset(n).cleanup_old_versions(
                older_than=keep_versions_for), what=f"cleaning up {name}")
            ran = True
        return ran

    def _sort_by_scope(self, *, force: bool, large_tier: bool) -> None:
        """The memories table in scope order: all of it once its scopes lie in
        too many runs (any more than one on ``optimize``), else the large tier's
        merge of the fragments below LARGE_FRAGMENT rows, sorted."""
        dataset = with_retries(lambda: self._conn.open_dataset(MEMORIES),
                               what=f"reading {MEMORIES}")
        runs = 1.0 if force else locality.FULL_SORT_RUNS
        if with_retries(lambda: locality.scattered(dataset, runs_per_scope=runs),
                        what=f"reading {MEMORIES} scopes"):
            select: locality.Select = locality.all_fragments
        elif large_tier:
            select = locality.below(LARGE_FRAGMENT)
        else:
            return
        locality.sort_fragments(self._conn, MEMORIES, select=select,
                                rows_per_fragment=LARGE_FRAGMENT)

    def _targets(self, name: str) -> list[int]:
        """The compaction passes table ``name`` needs now."""
        return compaction_targets(with_retries(
            lambda: [f.physical_rows for f in self._conn.open_dataset(name).get_fragments()],
            what=f"reading {name} fragments"))

    def compact_in_background(self) -> None:
        """Compact in a worker thread if needed; never blocks or fails the caller.

        The thread is not a daemon: a short-lived process waits for it to finish
        rather than abandoning a half-written compaction.
        """
        if not self._compacting.acquire(blocking=False):
            return

        def run() -> None:
            started = time.perf_counter()
            try:
                if self._maintain(force=False):
                    log.debug("compacted %s in %.2f s", self._conn.uri,
                              time.perf_counter() - started)
            except Exception as exc:  # opportunistic: the next check tries again
                log.info("compaction skipped: %s", exc)
            finally:
                self._compacting.release()

        self._compactor = threading.Thread(target=run, name="lancemem-compact")
        self._compactor.start()

    def wait(self) -> None:
        """Block until a background compaction (if any) has finished."""
        if self._compactor is not None:
            self._compactor.join()
