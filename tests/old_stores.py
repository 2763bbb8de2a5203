"""Stores as older lancemem versions wrote them, for the migration tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lancedb
import pyarrow as pa

from lancemem.storage.schema import PASSAGES, SEARCH_TEXT
from lancemem.storage.store import MEMORIES, memories_schema

# The memories column each schema version added.
ADDED = {2: SEARCH_TEXT, 3: "expiration_date", 4: PASSAGES}


def old_memories_schema(dim: int, version: int) -> pa.Schema:
    """The memories table's schema as schema ``version`` had it."""
    later = {column for added_in, column in ADDED.items() if added_in > version}
    return pa.schema([field for field in memories_schema(dim) if field.name not in later])


def write_old_store(db_path: Path, embedder: Any, version: int,
                    rows: list[dict[str, Any]]) -> Any:
    """A store of schema ``version`` holding these memory rows (and no other
    table but the meta one); its lancedb connection, for more tables."""
    conn = lancedb.connect(str(db_path))
    conn.create_table(MEMORIES, data=rows, schema=old_memories_schema(embedder.dim, version))
    conn.create_table("lancemem_meta", data=[
        {"key": "embedding_model", "value": embedder.model_name},
        {"key": "embedding_dim", "value": str(embedder.dim)},
        {"key": "schema_version", "value": str(version)}])
    return conn
