"""The store: LanceDB tables, schema, indexes, retries and error translation.

Nothing above this module talks to LanceDB. Where clauses arrive already
compiled and escaped (filters.py); this module only runs them.
"""

from __future__ import annotations

import functools
import logging
import random
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from .errors import ConflictError, LanceMemError, ModelMismatchError, StorageError

if TYPE_CHECKING:
    import pyarrow as pa

log = logging.getLogger(__name__)

T = TypeVar("T")
MEMORIES = "memories"
HISTORY = "history"
META = "lancemem_meta"
SCHEMA_VERSION = "2"  # 2: search_text and its full-text index
INDEXED_COLUMNS = ("user_id", "agent_id", "run_id", "actor_id", "hash")
SEARCH_TEXT = "search_text"
HIDDEN_COLUMNS = ("vector", SEARCH_TEXT, "meta_str", "meta_num", "meta_tags")
# What a version-1 store's rows get as search_text (records.document_text in SQL).
_SEARCH_TEXT_SQL = "concat_ws(': ', actor_id, memory)"  # concat_ws skips a NULL actor
MAX_ATTEMPTS = 8
# Every commit adds a version and (for appends) a fragment; left alone they make
# disk use and search time grow with every write (FACTS.md). LanceDB's own
# optimize() compacts toward 1M-row fragments, so below that it rewrites the
# whole table every time. Compaction here is tiered instead: single-row
# fragments merge into fragments of SMALL_FRAGMENT rows, and those into
# LARGE_FRAGMENT rows; each pass rewrites only fragments under its target.
# Versions older than a few seconds are dropped: readers move to the newest
# version before each query, so nothing still uses them.
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


def memories_schema(dim: int, *, vector: bool = True) -> pa.Schema:
    """The memories table: flat scope columns, JSON metadata and its typed views.

    ``search_text`` is what the full-text index and the embedding see: the
    memory with its actor in front (records.document_text).
    """
    import pyarrow as pa  # imported on first use: it costs start-up time

    ts, js = pa.timestamp("us", tz="UTC"), pa.json_(pa.utf8())
    fields = [
        pa.field("id", pa.utf8(), nullable=False),
        pa.field("memory", pa.utf8()),
        pa.field(SEARCH_TEXT, pa.utf8()),
        pa.field("hash", pa.utf8()),
        pa.field("user_id", pa.utf8()),
        pa.field("agent_id", pa.utf8()),
        pa.field("run_id", pa.utf8()),
        pa.field("actor_id", pa.utf8()),
        pa.field("role", pa.utf8()),
        pa.field("metadata", js),
        pa.field("meta_str", js),
        pa.field("meta_num", js),
        pa.field("meta_tags", js),
        pa.field("created_at", ts),
        pa.field("updated_at", ts),
    ]
    if vector:
        fields.append(vector_field(dim))
    return pa.schema(fields)


def vector_field(dim: int) -> pa.Field:
    """The vector column for a model of ``dim`` dimensions."""
    import pyarrow as pa

    return pa.field("vector", pa.list_(pa.float32(), dim))


@functools.cache
def history_schema() -> pa.Schema:
    """The history table: one row per ADD, UPDATE or DELETE."""
    import pyarrow as pa

    ts = pa.timestamp("us", tz="UTC")
    return pa.schema(
        [
            pa.field("id", pa.utf8(), nullable=False),
            pa.field("memory_id", pa.utf8(), nullable=False),
            pa.field("event", pa.utf8(), nullable=False),
            pa.field("old_memory", pa.utf8()),
            pa.field("new_memory", pa.utf8()),
            pa.field("created_at", ts),
            pa.field("updated_at", ts),
            pa.field("is_deleted", pa.bool_()),
            pa.field("actor_id", pa.utf8()),
            pa.field("role", pa.utf8()),
            pa.field("user_id", pa.utf8()),
            pa.field("agent_id", pa.utf8()),
            pa.field("run_id", pa.utf8()),
            *principal_fields(),
        ]
    )


def principal_fields() -> list[pa.Field]:
    """Who made a change on an authenticated server (``token:<id>`` or
    ``jwt:<subject>``) and the token's label; null for local calls."""
    import pyarrow as pa

    return [pa.field("principal", pa.utf8()), pa.field("principal_label", pa.utf8())]


@functools.cache
def meta_schema() -> pa.Schema:
    """The store's key/value records."""
    import pyarrow as pa

    return pa.schema(
        [pa.field("key", pa.utf8(), nullable=False), pa.field("value", pa.utf8())]
    )


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


def _is_retryable(exc: Exception) -> bool:
    text = str(exc).lower()
    return "retryable" in text or "conflict" in text or "please retry" in text


def backoff(attempt: int) -> None:
    """Sleep before retry ``attempt`` (0-based): exponential, capped, with jitter."""
    time.sleep(min(2.0, 0.02 * 2**attempt) * (0.5 + random.random()))


def with_retries(action: Callable[[], T], *, what: str) -> T:
    """Run a LanceDB call, retrying commit conflicts with backoff and jitter.

    LanceDB raises bare ValueError/RuntimeError/OSError; they become
    StorageError (or ConflictError once retries run out).
    """
    for attempt in range(MAX_ATTEMPTS):
        try:
            return action()
        except LanceMemError:
            raise
        except (RuntimeError, ValueError, OSError) as exc:
            if not _is_retryable(exc):
                raise _storage_error(what, exc) from exc
            if attempt == MAX_ATTEMPTS - 1:
                raise ConflictError(
                    f"{what} kept conflicting with other writers after {MAX_ATTEMPTS} tries; "
                    "try again in a moment."
                ) from exc
            backoff(attempt)
    raise AssertionError("unreachable")


# What a caller is told of a LanceDB failure. LanceDB's own message can quote
# the where clause (the caller's filter values, other ids) and its source
# paths: it goes to the log, never into the error.
_REASONS = (
    ("no space left", "the disk is full"),
    ("permission denied", "permission was denied"),
    ("not found", "a table or file was not found"),
    ("invalid user input", "LanceDB refused the request"),
)


def _storage_error(what: str, exc: Exception) -> StorageError:
    detail = str(exc)
    lowered = detail.lower()
    reason = next((text for key, text in _REASONS if key in lowered),
                  f"LanceDB raised {type(exc).__name__}")
    log.warning("%s failed: %s", what, detail)
    return StorageError(f"{what} failed: {reason}; the server's log on stderr has the details.",
                        detail=detail)


def _unless_done_elsewhere(action: Callable[[], Any], *, done: Callable[[], bool],
                           what: str) -> None:
    """Run a create-if-missing step; if it fails because another process (or
    thread) did the same meanwhile, as ``done()`` then says, that is success."""
    try:
        with_retries(action, what=what)
    except (StorageError, ConflictError):
        if not with_retries(done, what=what):
            raise


class Store:
    """LanceDB at ``uri`` holding the memories, history and meta tables."""

    def __init__(self, uri: str, *, storage_options: dict[str, str] | None = None,
                 auto_compact: bool = True) -> None:
        self.uri = _normalise_uri(uri)
        self._storage_options = storage_options
        self._db: Any = None
        self._tables: dict[str, Any] = {}
        self._datasets: dict[str, Any] = {}
        self._read_session: Any = None
        self._auto_compact = auto_compact
        self._commits = 0
        self._compacting = threading.Lock()
        self._compactor: threading.Thread | None = None

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
                    storage_options=self._storage_options,
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

        Checking for a newer version costs about 0.05 ms on local disk, so every
        read sees every earlier commit, this process's or another's.
        """
        current = self._datasets.get(name)
        if current is None:
            import lance

            if self._read_session is None:
                self._read_session = lance.Session(
                    index_cache_size_bytes=READ_INDEX_CACHE_BYTES,
                    metadata_cache_size_bytes=READ_METADATA_CACHE_BYTES)
            current = self.table(name).to_lance(session=self._read_session)
        else:
            latest = current.latest_version
            if latest != current.version:
                current = current.checkout_version(latest)
        self._datasets[name] = current
        return current

    def version(self, name: str) -> int:
        """The table's newest version (reads at it with ``version=`` see one snapshot)."""
        return int(with_retries(lambda: self.dataset(name).version, what=f"reading {name}"))

    def has_table(self, name: str) -> bool:
        """Whether the store holds table ``name``."""
        return name in self._table_names()

    def exists(self) -> bool:
        """Whether this location already holds a lancemem store."""
        return MEMORIES in self._table_names()

    def _table_names(self) -> list[str]:
        result = with_retries(lambda: self.db.list_tables(), what="listing tables")
        return list(getattr(result, "tables", result))

    def open(self, *, model_name: str, dim: int, check_model: bool = True) -> None:
        """Create the tables if needed and check the store's embedding model."""
        self._create_if_missing(dim)  # also brings an older schema up to date
        meta = self.set_meta_defaults(
            {"embedding_model": model_name, "embedding_dim": str(dim),
             "schema_version": SCHEMA_VERSION}
        )
        if meta.get("schema_version") != SCHEMA_VERSION:
            self.set_meta({"schema_version": SCHEMA_VERSION})
        if check_model:
            self.check_model(model_name=model_name, dim=dim)

    def _create_if_missing(self, dim: int) -> None:
        existing = set(self._table_names())
        wanted = {MEMORIES: memories_schema(dim), HISTORY: history_schema(), META: meta_schema()}
        for name, schema in wanted.items():
            if name in existing:
                try:
                    self.table(name)
                    continue
                except StorageError as exc:
                    if "not found" not in exc.detail:
                        raise
                    # Listed but never openable: a process stopped while creating it.
                    log.warning("table %s in %s was left half-created; creating it again",
                                name, self.uri)
            _unless_done_elsewhere(
                lambda n=name, s=schema: self.db.create_table(n, schema=s, exist_ok=True),
                done=lambda n=name: self._opens(n), what=f"creating table {name}")
        self._add_search_text()
        self._add_history_principal()
        self.ensure_indexes()

    def ensure_table(self, name: str, schema: pa.Schema) -> None:
        """Create table ``name`` with ``schema`` unless it exists (safe under races)."""
        if name in self._table_names():
            self.table(name)
            return
        _unless_done_elsewhere(
            lambda: self.db.create_table(name, schema=schema, exist_ok=True),
            done=lambda: self._opens(name), what=f"creating table {name}")

    def _opens(self, name: str) -> bool:
        try:
            self.db.open_table(name)
            return True
        except (ValueError, RuntimeError, OSError):
            return False

    def _add_search_text(self) -> None:
        """Give a version-1 store its search_text column, filled from each row."""
        table = self.table(MEMORIES)
        if SEARCH_TEXT in table.schema.names:
            return
        try:
            with_retries(lambda: table.add_columns({SEARCH_TEXT: _SEARCH_TEXT_SQL}),
                         what="adding the search_text column")
        except (StorageError, ConflictError):
            if SEARCH_TEXT not in table.schema.names:  # not another process's doing
                raise
            return
        log.info("added search_text to %s; `lancemem reindex` re-embeds older memories "
                 "with their actor", self.uri)

    def _add_history_principal(self) -> None:
        """Give an older store's history its (empty) principal columns."""
        table = self.table(HISTORY)
        missing = [f for f in principal_fields() if f.name not in table.schema.names]
        if not missing:
            return
        try:
            with_retries(lambda: table.add_columns(missing), what="adding history columns")
        except (StorageError, ConflictError):
            if any(f.name not in self.table(HISTORY).schema.names for f in missing):
                raise  # not another process's doing

    def ensure_indexes(self) -> None:
        """Scalar indexes on the scope columns and history's memory_id; full text on search_text."""
        from lancedb.index import FTS, BTree

        # English stemming and stop words for search_text; rows written later
        # are scanned until compaction folds them into the index.
        wanted = [(MEMORIES, (column,), BTree()) for column in INDEXED_COLUMNS]
        wanted += [(HISTORY, ("memory_id",), BTree()), (MEMORIES, (SEARCH_TEXT,), FTS())]
        for name, columns, config in wanted:
            table = self.table(name)

            def indexed(t: Any = table, c: tuple[str, ...] = columns) -> bool:
                return c in {tuple(index.columns) for index in t.list_indices()}

            if not indexed():
                _unless_done_elsewhere(
                    lambda t=table, c=columns[0], k=config: t.create_index(c, config=k,
                                                                           replace=False),
                    done=indexed, what=f"indexing {name}.{columns[0]}")

    def check_model(self, *, model_name: str, dim: int) -> None:
        """Raise ModelMismatchError unless the store was built with this model."""
        meta = self.meta()
        if meta.get("reindex_target"):
            raise ModelMismatchError(
                f"a reindex to {meta['reindex_target']!r} was interrupted; "
                f"run `lancemem reindex --model {meta['reindex_target']}` to finish it."
            )
        stored = meta.get("embedding_model")
        stored_dim = meta.get("embedding_dim")
        if stored != model_name or stored_dim != str(dim):
            raise ModelMismatchError(
                f"this store's vectors were made by {stored!r} ({stored_dim} dims), but the "
                f"configured embedding model is {model_name!r} ({dim} dims). Either configure "
                f"{stored!r} again (--model / LANCEMEM_EMBEDDING_MODEL), or run "
                f"`lancemem reindex --model {model_name}` to re-embed every memory."
            )

    def meta(self) -> dict[str, str]:
        """The store's key/value records (embedding model, dimension, schema)."""
        rows = self.select(META, None)
        return {row["key"]: row["value"] for row in rows if row["value"] is not None}

    def set_meta(self, values: dict[str, str | None]) -> None:
        """Write meta records, replacing existing values."""
        import pyarrow as pa

        data = pa.Table.from_pylist(
            [{"key": k, "value": v} for k, v in values.items()], schema=meta_schema()
        )
        table = self.table(META)
        with_retries(
            lambda: table.merge_insert("key").when_matched_update_all()
            .when_not_matched_insert_all().execute(data),
            what="writing store metadata",
        )

    def set_meta_defaults(self, values: dict[str, str]) -> dict[str, str]:
        """Write meta records only where no value exists yet (safe under races).

        Returns the meta records as they now stand (defaults filled in).
        """
        existing = self.meta()
        missing = {k: v for k, v in values.items() if k not in existing}
        if not missing:  # the usual case: no commit, no new version
            return existing
        import pyarrow as pa

        data = pa.Table.from_pylist(
            [{"key": k, "value": v} for k, v in missing.items()], schema=meta_schema()
        )
        table = self.table(META)
        with_retries(
            lambda: table.merge_insert("key").when_not_matched_insert_all().execute(data),
            what="writing store metadata",
        )
        return self.meta()

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
        self._committed()
        return int(result.num_updated_rows)

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
        self._committed()
        return int(result.num_deleted_rows)

    def optimize(self, *, keep_versions_for: timedelta = KEEP_VERSIONS_FOR) -> None:
        """Compact fully, fold new rows into indexes, and drop old versions."""
        self._maintain(force=True, keep_versions_for=keep_versions_for)

    def _maintain(self, *, force: bool, keep_versions_for: timedelta = KEEP_VERSIONS_FOR) -> bool:
        """Tiered compaction where fragments piled up; returns whether anything ran.

        Safe while other processes write: conflicting commits are retried.
        """
        ran = False
        for name in (MEMORIES, HISTORY):
            table = self.table(name)
            targets = [SMALL_FRAGMENT, LARGE_FRAGMENT] if force else compaction_targets(
                with_retries(lambda tb=table: [
                    f.physical_rows for f in tb.to_lance().get_fragments()],
                    what=f"reading {name} fragments"))
            if not targets:
                continue
            # Each attempt opens the newest version: a retry on the version that
            # conflicted would conflict again.
            for target in targets:
                with_retries(lambda t=target, tb=table: tb.to_lance().optimize.compact_files(
                    target_rows_per_fragment=t), what=f"compacting {name}")
            if force or self._unindexed_rows(table) >= INDEX_AFTER_ROWS:
                with_retries(lambda tb=table: tb.to_lance().optimize.optimize_indices(),
                             what=f"indexing {name}")
            with_retries(lambda tb=table: tb.to_lance().cleanup_old_versions(
                older_than=keep_versions_for), what=f"cleaning up {name}")
            ran = True
        return ran

    @staticmethod
    def _unindexed_rows(table: Any) -> int:
        """The most rows any of the table's indexes does not cover yet."""
        def run() -> int:
            return max((table.index_stats(index.name).num_unindexed_rows
                        for index in table.list_indices()), default=0)

        return with_retries(run, what="reading index statistics")

    def _committed(self) -> None:
        self._commits += 1
        if self._auto_compact and self._commits % CHECK_EVERY_COMMITS == 0:
            self.compact_in_background()

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
                    log.debug("compacted %s in %.2f s", self.uri, time.perf_counter() - started)
            except Exception as exc:  # opportunistic: the next check tries again
                log.info("compaction skipped: %s", exc)
            finally:
                self._compacting.release()

        self._compactor = threading.Thread(target=run, name="lancemem-compact")
        self._compactor.start()

    def wait_for_compaction(self) -> None:
        """Block until a background compaction (if any) has finished."""
        if self._compactor is not None:
            self._compactor.join()

    def disk_bytes(self) -> int | None:
        """Bytes the store takes on local disk (None for object storage)."""
        if "://" in self.uri:
            return None
        return sum(f.stat().st_size for f in Path(self.uri).rglob("*") if f.is_file())

    def replace_vector_column(self, dim: int) -> None:
        """Drop the vector column (if any) and add an empty one of ``dim`` (for reindex)."""
        table = self.table(MEMORIES)
        if "vector" in table.schema.names:
            with_retries(lambda: table.drop_columns(["vector"]), what="dropping old vectors")
        with_retries(lambda: table.add_columns(vector_field(dim)), what="adding vector column")

    def reset(self) -> None:
        """Drop every lancemem table; the next open recreates them empty."""
        for name in (MEMORIES, HISTORY, META):
            if name in self._table_names():
                with_retries(lambda n=name: self.db.drop_table(n), what=f"dropping {name}")
        self._tables.clear()
        self._datasets.clear()


def _normalise_uri(uri: str) -> str:
    """Absolute local paths (LanceDB takes a bare relative name for a cloud URI)."""
    if "://" in uri:
        return uri
    return str(Path(uri).expanduser().resolve())
