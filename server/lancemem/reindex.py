"""Re-embed every memory with another model (``lancemem reindex``).

The store is marked with the target model first (phase ``prepare``), the
vector column is replaced by an empty one of the new size, the phase becomes
``embed``, and rows without a vector are embedded batch by batch. Every step
is one commit. An interrupted run leaves the mark in place, so the store
refuses normal use until ``lancemem reindex`` is run again, which redoes an
unfinished ``prepare`` and otherwise picks up the rows still without a vector.
"""

from __future__ import annotations

from collections.abc import Callable

import pyarrow as pa

from .embeddings import Embedder
from .store import MEMORIES, SEARCH_TEXT, Store, vector_field

Progress = Callable[[int, int], None]


def reindex(store: Store, embedder: Embedder, *, batch_size: int = 256,
            progress: Progress | None = None) -> int:
    """Re-embed all memories with ``embedder``; returns how many were embedded."""
    model, dim = embedder.model_name, embedder.dim
    store.open(model_name=model, dim=dim, check_model=False)
    meta = store.meta()
    if meta.get("reindex_target") != model or meta.get("reindex_phase") != "embed":
        store.set_meta({"reindex_target": model, "reindex_phase": "prepare"})
        store.replace_vector_column(dim)
        store.set_meta({"reindex_phase": "embed"})
    remaining = store.count(MEMORIES, "vector IS NULL")
    schema = pa.schema([pa.field("id", pa.utf8(), nullable=False), vector_field(dim)])
    done = 0
    while True:
        rows = store.select(MEMORIES, "vector IS NULL", columns=["id", SEARCH_TEXT],
                            limit=batch_size)
        if not rows:
            break
        vectors = embedder.embed_documents([row[SEARCH_TEXT] for row in rows])
        store.upsert(MEMORIES, [{"id": row["id"], "vector": vector}
                                for row, vector in zip(rows, vectors, strict=True)], schema)
        done += len(rows)
        if progress:
            progress(done, remaining)
    store.set_meta({"embedding_model": model, "embedding_dim": str(dim),
                    "reindex_target": None, "reindex_phase": None})
    store.optimize()
    return done
