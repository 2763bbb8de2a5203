"""The tables' schemas and the migrations that bring an older store up to them.

A migration adds a column in one commit; another process migrating the same
store at the same moment is not an error.
"""

from __future__ import annotations

import functools
import logging
from typing import TYPE_CHECKING

from ..core.errors import ConflictError, StorageError
from .retries import with_retries

if TYPE_CHECKING:
    import pyarrow as pa

    from .connection import Connection

log = logging.getLogger(__name__)

MEMORIES = "memories"
HISTORY = "history"
META = "lancemem_meta"
# 2: search_text and its full-text index; 3: expiration_date; 4: passages
SCHEMA_VERSION = "4"
INDEXED_COLUMNS = ("user_id", "agent_id", "run_id", "actor_id", "hash")
SEARCH_TEXT = "search_text"
EXPIRATION_DATE = "expiration_date"
PASSAGES = "passages"
HIDDEN_COLUMNS = ("vector", PASSAGES, SEARCH_TEXT, "meta_str", "meta_num", "meta_tags")
# What a version-1 store's rows get as search_text (records.document_text in SQL).
_SEARCH_TEXT_SQL = "concat_ws(': ', actor_id, memory)"  # concat_ws skips a NULL actor


def memories_schema(dim: int, *, vector: bool = True) -> pa.Schema:
    """The memories table: flat scope columns, JSON metadata and its typed views.

    ``search_text`` is what the full-text index and the embedding see: the
    memory with its actor in front (records.document_text).
    ``expiration_date`` is the instant a memory expires (null: never).
    ``passages`` holds a long memory's passage vectors (null for a short one:
    search/passages.py says why and how they are cut).
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
        expiration_field(),
    ]
    if vector:
        fields += [vector_field(dim), passages_field(dim)]
    return pa.schema(fields)


@functools.cache
def item_columns() -> list[str]:
    """What callers may see of a memory: every column but vectors and typed views."""
    return [name for name in memories_schema(0, vector=False).names
            if name not in HIDDEN_COLUMNS]


def vector_field(dim: int) -> pa.Field:
    """The vector column for a model of ``dim`` dimensions."""
    import pyarrow as pa

    return pa.field("vector", pa.list_(pa.float32(), dim))


def passages_field(dim: int) -> pa.Field:
    """A long memory's passage vectors, in text order; null for a short memory.

    Why a column of the memories table and not a table of its own: a memory
    and its passages are then one row, written, replaced (update's
    compare-and-swap), deleted and scoped by the same commit and the same
    compiled where clause, so no passage can outlive its memory or be read
    outside its scope, and no second table has to be opened on object storage.
    A null list costs a short memory's row only its validity bit. Lance's exact
    scan treats a list of vectors as a multivector: its cosine distance to one
    query is 1 - the best passage's cosine (Snapshot.nearest).
    """
    import pyarrow as pa

    return pa.field(PASSAGES, pa.list_(pa.list_(pa.float32(), dim)))


def expiration_field() -> pa.Field:
    """When a memory expires, in UTC; null for a memory that never does."""
    import pyarrow as pa

    return pa.field(EXPIRATION_DATE, pa.timestamp("us", tz="UTC"))


def vectors_schema(dim: int, *, passages: bool = False) -> pa.Schema:
    """A row's id and vector only (and a memory's passages): what a reindex writes."""
    import pyarrow as pa

    fields = [pa.field("id", pa.utf8(), nullable=False), vector_field(dim)]
    return pa.schema([*fields, passages_field(dim)] if passages else fields)


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
            *metadata_fields(),
        ]
    )


def metadata_fields() -> list[pa.Field]:
    """The memory's custom metadata before and after the change (JSON objects;
    null where there was none to record: an ADD has no old, a DELETE no new,
    rows from before these columns neither)."""
    import pyarrow as pa

    return [pa.field("old_metadata", pa.utf8()), pa.field("new_metadata", pa.utf8())]


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


def migrate(conn: Connection) -> None:
    """Bring the memories and history tables of an older store up to date."""
    _add_search_text(conn)
    _add_history_columns(conn)
    _add_expiration_date(conn)
    _add_passages(conn)
    # Columns are added through lancedb's handles: the next reads check for the
    # new versions rather than keep a cached one for the read consistency bound.
    conn.refresh()


def _add_search_text(conn: Connection) -> None:
    """Give a version-1 store its search_text column, filled from each row."""
    table = conn.table(MEMORIES)
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
             "with their actor", conn.uri)


def _add_history_columns(conn: Connection) -> None:
    """Give an older store's history its (empty) principal and metadata columns."""
    table = conn.table(HISTORY)
    missing = [f for f in (*principal_fields(), *metadata_fields())
               if f.name not in table.schema.names]
    if not missing:
        return
    try:
        with_retries(lambda: table.add_columns(missing), what="adding history columns")
    except (StorageError, ConflictError):
        if any(f.name not in conn.table(HISTORY).schema.names for f in missing):
            raise  # not another process's doing


def _add_expiration_date(conn: Connection) -> None:
    """Give a version-2 store its expiration_date column, null (never expires) in every row."""
    table = conn.table(MEMORIES)
    if EXPIRATION_DATE in table.schema.names:
        return
    try:
        with_retries(lambda: table.add_columns([expiration_field()]),
                     what="adding the expiration_date column")
    except (StorageError, ConflictError):
        if EXPIRATION_DATE not in conn.table(MEMORIES).schema.names:
            raise  # not another process's doing


def _add_passages(conn: Connection) -> None:
    """Give a version-3 store its passages column, null in every row.

    Its long memories keep the one vector they had (the head of their text)
    until ``lancemem reindex`` embeds their passages: embedding on open would
    make the first start after an upgrade take minutes on a large store, and
    that start may be a stdio server whose client is waiting for it.
    """
    table = conn.table(MEMORIES)
    if PASSAGES in table.schema.names or "vector" not in table.schema.names:
        return
    dim = table.schema.field("vector").type.list_size
    try:
        with_retries(lambda: table.add_columns([passages_field(dim)]),
                     what="adding the passages column")
    except (StorageError, ConflictError):
        if PASSAGES not in conn.table(MEMORIES).schema.names:
            raise  # not another process's doing
        return
    log.info("added passages to %s; `lancemem reindex` embeds the passages of long "
             "memories stored before", conn.uri)
