"""One LanceDB connection: table handles, read snapshots, and rows by table name.

Writes go through lancedb (merge, delete) or pylance (appends); reads go
straight to pylance datasets, refreshed to the newest version before each
read. Where clauses arrive already compiled and escaped (filters.py,
scoping.py, storage_sql.py); this module only runs them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core.errors import StorageError
from ..core.object_storage import is_remote, secrets
from .retries import MAX_ATTEMPTS, backoff, unless_done_elsewhere, with_retries

if TYPE_CHECKING:
    import pyarrow as pa

log = logging.getLogger(__name__)

# LanceDB's caches default to gigabytes, and every compaction makes new index
# files and manifests to cache: a long-running process grew by about 120 KB per
# single add (3,000 adds: +350 MB). With these caps it levels off (+70 MB by
# 5,000 adds, then about 6 KB per add).
INDEX_CACHE_BYTES = 64 * 2**20
METADATA_CACHE_BYTES = 32 * 2**20
# Reads go straight to pylance: lancedb's query builder re-reads the table's
# schema (a version check each, with read_consistency_interval=0) three times
# per query, which cost 4-8 ms a query; pylance answers the same query in about
# 1 ms plus the scan. Writes stay on lancedb. The read caches are capped too.
READ_INDEX_CACHE_BYTES = 48 * 2**20
READ_METADATA_CACHE_BYTES = 32 * 2**20
# Except for the vector index of a store with a large scope (vector_index.py):
# an HNSW search touches pages all over its graph, and with the index larger
# than the cache every query reloaded them (57 MB at 100,000 rows: 89 ms a
# query instead of 9.6). The read cache grows by the index's estimated size
# once a table has one; sizes are looked at again at most this often.
READ_CACHE_RECHECK_S = 60.0
READ_CACHE_HEADROOM = 1.25  # room to grow before the cache is sized (and reopened) again


class Connection:
    """LanceDB at ``uri``: opened on first use, its table handles kept and reused.

    Every commit calls ``_committed`` (a subclass's hook for maintenance).
    The class is longer than most (about 220 lines) because every handle it
    caches is used by the row operations beside it, which keep a table's
    retries and version checks in one place.
    """

    def __init__(self, uri: str, *, storage_options: Mapping[str, str] | None = None,
                 read_consistency: float | None = None) -> None:
        self.uri = _normalise_uri(uri)
        self.remote = is_remote(self.uri)
        self.storage_options = dict(storage_options or {})
        secrets.remember(self.storage_options)
        # Seconds a read may go without checking for a newer version (another
        # process's writes); this process's own commits are seen at once.
        self.read_consistency = (read_consistency if read_consistency is not None
                                 else 1.0 if self.remote else 0.0)
        self._db: Any = None
        self._tables: dict[str, Any] = {}
        self._datasets: dict[str, Any] = {}
        self._checked: dict[str, float] = {}  # table -> monotonic time of its last version check
        self._generation: dict[str, int] = {}  # table -> how many commits this process made
        self._epoch = 0  # how many times every table was marked changed (refresh)
        self._lock = threading.Lock()
        self._read_session: Any = None
        self._read_cache_bytes = READ_INDEX_CACHE_BYTES
        self._read_cache_checked = -1e9  # monotonic time the read cache was last sized

    @property
    def db(self) -> Any:
        """The LanceDB connection; every read sees other processes' latest writes."""
        if self._db is None:
            import lancedb  # imported here: it takes ~1.5 s, kept off server start-up

            if "://" not in self.uri:
                Path(self.uri).mkdir(parents=True, exist_ok=True)
            self._db = with_retries(
                lambda: lancedb.connect(
                    self.uri,
                    read_consistency_interval=timedelta(0),
                    storage_options=self.storage_options or None,
                    session=lancedb.Session(index_cache_size_bytes=INDEX_CACHE_BYTES,
                                            metadata_cache_size_bytes=METADATA_CACHE_BYTES),
                ),
                what=f"opening the database at {self.uri}",
            )
        return self._db

    def table(self, name: str) -> Any:
        """An open table handle (opened once, then reused).

        A table another process is creating this moment can be listed before
        it can be opened: "not found" is retried for a few seconds.
        """
        if name not in self._tables:
            for attempt in range(MAX_ATTEMPTS):
                try:
                    self._tables[name] = with_retries(
                        lambda: self.db.open_table(name), what=f"opening table {name}")
                    break
                except StorageError as exc:
                    if "not found" not in exc.detail or attempt == MAX_ATTEMPTS - 1:
                        raise
                    backoff(attempt)
        return self._tables[name]

    def dataset(self, name: str) -> Any:
        """The table as a pylance dataset at its newest version, for reading.

        Checking for a newer version costs about 0.05 ms on local disk, so by
        default every read there sees every earlier commit, this process's or
        another's. On object storage the check is a request: it is made at most
        once per ``read_consistency`` seconds, and after each commit of this
        process's.
        """
        current = self._datasets.get(name)
        now = time.monotonic()
        if current is not None and now - self._checked.get(name, -1e9) < self.read_consistency:
            return current
        generation = self._generation.get(name, 0), self._epoch
        if current is None:
            current = self.open_dataset(name, session=self._session())
            current = self._fit_read_cache(name, current, now)
        else:
            latest = current.latest_version
            if latest != current.version:
                current = current.checkout_version(latest)
                if now - self._read_cache_checked >= READ_CACHE_RECHECK_S:
                    current = self._fit_read_cache(name, current, now)
        with self._lock:
            # A check that began before one of this process's commits may not
            # have seen it: it answers its own read but is not kept (another
            # thread's check after the commit may already be).
            if (self._generation.get(name, 0), self._epoch) == generation:
                self._datasets[name] = current
                self._checked[name] = now
            else:
                self._datasets.setdefault(name, current)
        return current

    def _session(self) -> Any:
        """The pylance session every read dataset shares (its caches)."""
        if self._read_session is None:
            import lance

            self._read_session = lance.Session(
                index_cache_size_bytes=self._read_cache_bytes,
                metadata_cache_size_bytes=READ_METADATA_CACHE_BYTES)
        return self._read_session

    def _fit_read_cache(self, name: str, dataset: Any, now: float) -> Any:
        """``dataset``, reopened in a larger read session if its vector index
        would not fit the index cache beside the other indexes."""
        from .vector_index import index_cache_bytes

        self._read_cache_checked = now
        wanted = READ_INDEX_CACHE_BYTES + index_cache_bytes(dataset)
        if wanted <= self._read_cache_bytes:
            return dataset
        with self._lock:
            self._read_cache_bytes = int(wanted * READ_CACHE_HEADROOM)
            self._read_session = None
            self._datasets.clear()  # reopened in the new session on their next read
        log.info("read cache sized to %d MiB for the vector index of %s",
                 wanted // 2**20, name)
        return self.open_dataset(name, session=self._session())

    def index_built(self) -> None:
        """Tell the connection a vector index was built: the read cache is
        sized for it on the next read."""
        self._read_cache_checked = -1e9

    def open_dataset(self, name: str, *, session: Any = None) -> Any:
        """Table ``name`` as a new pylance dataset at its newest version, for
        reading and for commits of its own (appends, compaction, clean-up).

        On ``s3+ddb://`` it is opened by its ``s3+ddb://`` URI, so its commits
        and its idea of the newest version go through the DynamoDB commit
        store as lancedb's do: lancedb's ``to_lance()`` opens the plain
        ``s3://`` path, whose commits DynamoDB never hears of (other servers
        then read without them, and lancedb writes over them).
        """
        if self.uri.startswith("s3+ddb://"):
            import lance

            base, _, query = self.uri.partition("?")
            return with_retries(
                lambda: lance.dataset(f"{base.rstrip('/')}/{name}.lance?{query}",
                                      storage_options=self.storage_options or None,
                                      session=session),
                what=f"opening table {name}")
        return self.table(name).to_lance(session=session)

    def version(self, name: str) -> int:
        """The table's newest version (reads at it with ``version=`` see one snapshot)."""
        return int(with_retries(lambda: self.dataset(name).version, what=f"reading {name}"))

    def has_table(self, name: str) -> bool:
        """Whether the store holds table ``name``."""
        return name in self.table_names()

    def table_names(self) -> list[str]:
        """The names of every table at this location."""
        result = with_retries(lambda: self.db.list_tables(), what="listing tables")
        return list(getattr(result, "tables", result))

    def create_missing(self, wanted: Mapping[str, pa.Schema]) -> None:
        """Create each table that does not exist yet, or that a process stopped
        while creating (listed but never openable); safe under races."""
        existing = set(self.table_names())
        for name, schema in wanted.items():
            if name in existing:
                try:
                    self.table(name)
                    continue
                except StorageError as exc:
                    if "not found" not in exc.detail:
                        raise
                    log.warning("table %s in %s was left half-created; creating it again",
                                name, self.uri)
            self._create(name, schema)

    def ensure_table(self, name: str, schema: pa.Schema) -> None:
        """Create table ``name`` with ``schema`` unless it exists (safe under races)."""
        if name in self.table_names():
            self.table(name)
            return
        self._create(name, schema)

    def ensure_table_with(self, name: str, schema: pa.Schema,
                          rows: Sequence[dict[str, Any]]) -> None:
        """Create table ``name`` holding ``rows`` unless it exists (safe under races)."""
        if name in self.table_names():
            self.table(name)
            return
        import pyarrow as pa

        data = pa.Table.from_pylist(list(rows), schema=schema)
        unless_done_elsewhere(
            lambda: self.db.create_table(name, data=data, exist_ok=True),
            done=lambda: self._opens(name), what=f"creating table {name}")

    def _create(self, name: str, schema: pa.Schema) -> None:
        unless_done_elsewhere(
            lambda: self.db.create_table(name, schema=schema, exist_ok=True),
            done=lambda: self._opens(name), what=f"creating table {name}")

    def _opens(self, name: str) -> bool:
        try:
            self.db.open_table(name)
            return True
        except (ValueError, RuntimeError, OSError):
            return False

    def drop(self, names: Iterable[str]) -> None:
        """Drop these tables where they exist, and forget every handle."""
        for name in names:
            if name in self.table_names():
                with_retries(lambda n=name: self.db.drop_table(n), what=f"dropping {name}")
        self._tables.clear()
        self._datasets.clear()

    def insert(self, name: str, rows: Sequence[dict[str, Any]], schema: pa.Schema) -> int | None:
        """Append rows to a table in one commit (through pylance: 4.2 ms a row
        where lancedb's add took 6.5); returns the version it committed."""
        if not rows:
            return None
        import lance
        import pyarrow as pa

        data = pa.Table.from_pylist(list(rows), schema=schema)
        written = with_retries(
            lambda: lance.write_dataset(data, self.dataset(name), mode="append"),
            what=f"writing to {name}")
        self._changed(name)
        self._committed()
        return int(written.version)

    def upsert(self, name: str, rows: Sequence[dict[str, Any]], schema: pa.Schema,
               *, only_if: str | None = None) -> int:
        """Replace rows matched by id, where ``only_if`` holds for the stored row
        (``target.column``); returns how many were replaced. Rows whose id is
        gone are not inserted again.
        """
        if not rows:
            return 0
        import pyarrow as pa

        data = pa.Table.from_pylist(list(rows), schema=schema)
        table = self.table(name)

        def run() -> Any:
            return table.merge_insert("id").when_matched_update_all(where=only_if).execute(data)

        result = with_retries(run, what=f"updating {name}")
        self._changed(name)
        self._committed()
        return int(result.num_updated_rows)

    def insert_new(self, name: str, rows: Sequence[dict[str, Any]], schema: pa.Schema) -> int:
        """Insert the rows whose id is not stored yet, in one commit; returns how
        many this call inserted. Not safe against a concurrent insert of the
        same new id: LanceDB commits both copies (storage/write_lock.py), so
        callers take turns."""
        if not rows:
            return 0
        import pyarrow as pa

        data = pa.Table.from_pylist(list(rows), schema=schema)
        table = self.table(name)
        result = with_retries(
            lambda: table.merge_insert("id").when_not_matched_insert_all().execute(data),
            what=f"writing to {name}")
        self._changed(name)
        self._committed()
        return int(result.num_inserted_rows)

    def merge_by_key(self, name: str, rows: Sequence[dict[str, Any]], schema: pa.Schema, *,
                     replace: bool, what: str) -> None:
        """Insert rows whose ``key`` is new; with ``replace``, also overwrite
        the rows whose key exists (key/value tables)."""
        import pyarrow as pa

        data = pa.Table.from_pylist(list(rows), schema=schema)
        table = self.table(name)

        def run() -> Any:
            merge = table.merge_insert("key")
            if replace:
                merge = merge.when_matched_update_all()
            return merge.when_not_matched_insert_all().execute(data)

        with_retries(run, what=what)
        self._changed(name)

    def select(self, name: str, where: str | None, *, columns: Iterable[str] | None = None,
               limit: int | None = None, version: int | None = None) -> list[dict[str, Any]]:
        """Rows matching ``where`` (all rows when None), as dicts."""
        return self.arrow(name, where, columns=columns, limit=limit,
                          version=version).to_pylist()

    def arrow(self, name: str, where: str | None, *, columns: Iterable[str] | None = None,
              limit: int | None = None, version: int | None = None) -> pa.Table:
        """Rows matching ``where`` (all rows when None), as an Arrow table, at the
        newest version or at ``version``."""
        def run() -> pa.Table:
            return self._dataset_at(name, version).to_table(
                columns=None if columns is None else list(columns), filter=where or None,
                limit=limit)

        return with_retries(run, what=f"reading {name}")

    def count(self, name: str, where: str | None = None, *, version: int | None = None) -> int:
        """How many rows match ``where``, at the newest version or at ``version``."""
        return with_retries(lambda: int(self._dataset_at(name, version).count_rows(where)),
                            what=f"counting {name}")

    def _dataset_at(self, name: str, version: int | None) -> Any:
        """The table at its newest version, or at ``version``."""
        dataset = self.dataset(name)
        if version is not None and dataset.version != version:
            dataset = dataset.checkout_version(version)
        return dataset

    def delete(self, name: str, where: str) -> int:
        """Delete the rows matching ``where`` in one commit; returns how many it
        deleted (a row another writer deleted first is not counted)."""
        table = self.table(name)
        result = with_retries(lambda: table.delete(where), what=f"deleting from {name}")
        self._changed(name)
        self._committed()
        return int(result.num_deleted_rows)

    def _changed(self, name: str) -> None:
        """This process committed to ``name``: its next read checks for the new version."""
        with self._lock:
            self._generation[name] = self._generation.get(name, 0) + 1
            self._checked.pop(name, None)

    def refresh(self) -> None:
        """Make the next read of every table check for a newer version."""
        with self._lock:
            self._epoch += 1
            self._checked.clear()

    def changed(self, name: str) -> None:
        """Tell the connection that ``name`` was written through another handle."""
        self._changed(name)

    def _committed(self) -> None:
        """Called after each commit of rows (not of metadata or schema changes)."""

    def disk_bytes(self) -> int | None:
        """Bytes the store takes on local disk (None for object storage)."""
        if "://" in self.uri:
            return None
        return sum(f.stat().st_size for f in Path(self.uri).rglob("*") if f.is_file())


def _normalise_uri(uri: str) -> str:
    """Absolute local paths (LanceDB takes a bare relative name for a cloud URI)."""
    if "://" in uri:
        return uri
    return str(Path(uri).expanduser().resolve())
