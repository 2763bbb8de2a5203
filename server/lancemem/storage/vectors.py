"""A table's vector column, replaced and refilled: what ``lancemem reindex`` does
to memories, entities and relations alike."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from .retries import with_retries
from .schema import PASSAGES, passages_field, vector_field, vectors_schema

if TYPE_CHECKING:
    from .connection import Connection


def replace_vector_column(conn: Connection, name: str, dim: int) -> None:
    """Drop table ``name``'s vector column (if any) and add an empty one of ``dim``."""
    table = conn.table(name)
    if "vector" in table.schema.names:
        with_retries(lambda: table.drop_columns(["vector"]), what=f"dropping {name} vectors")
    with_retries(lambda: table.add_columns(vector_field(dim)), what=f"adding {name} vectors")
    # Committed through lancedb's handle: without this, reads within the read
    # consistency bound (1 s on object storage) keep the old version, find no
    # row without a vector, and reindex ends leaving the new column empty.
    conn.changed(name)


def replace_passages_column(conn: Connection, name: str, dim: int) -> None:
    """Drop table ``name``'s passages column (if any) and add an empty one of ``dim``."""
    table = conn.table(name)
    if PASSAGES in table.schema.names:
        with_retries(lambda: table.drop_columns([PASSAGES]), what=f"dropping {name} passages")
    with_retries(lambda: table.add_columns(passages_field(dim)),
                 what=f"adding {name} passages")
    conn.changed(name)  # as in replace_vector_column


def set_vectors(conn: Connection, name: str, dim: int | None,
                vectors: Mapping[str, Sequence[float]],
                passages: Mapping[str, Sequence[Sequence[float]] | None] | None = None) -> None:
    """Store new vectors (row id -> vector) in table ``name``, in one commit;
    with ``passages`` (row id -> passage vectors or None), those too."""
    if dim is None:
        raise TypeError("writing vectors needs the table's dimension")
    rows = [{"id": key, "vector": list(vector)} for key, vector in vectors.items()]
    if passages is not None:
        for row in rows:
            found = passages.get(row["id"])
            row[PASSAGES] = None if found is None else [list(p) for p in found]
    conn.upsert(name, rows, vectors_schema(dim, passages=passages is not None))
