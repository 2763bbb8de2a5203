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

from ..search.embeddings import Embedder
from ..storage.memory_table import MemoryTable
from ..storage.meta import EMBED, PREPARE
from ..storage.store import Store

Progress = Callable[[int, int], None]


def reindex(store: Store, embedder: Embedder, *, batch_size: int = 256,
            progress: Progress | None = None) -> int:
    """Re-embed all memories with ``embedder``; returns how many were embedded."""
    model, dim = embedder.model_name, embedder.dim
    store.open(model_name=model, dim=dim, check_model=False)
    memories, meta = MemoryTable(store, dim), store.meta_table
    if not meta.reindex_embedding(model):
        meta.mark_reindex(model, PREPARE)
        memories.replace_vector_column(dim)
        meta.mark_reindex(model, EMBED)
    remaining = memories.count_without_vector()
    done = 0
    while True:
        batch = memories.without_vector(limit=batch_size)
        if not batch:
            break
        vectors = embedder.embed_documents([text for _, text in batch])
        memories.set_vectors({memory_id: vector for (memory_id, _), vector
                              in zip(batch, vectors, strict=True)})
        done += len(batch)
        if progress:
            progress(done, remaining)
    meta.finish_reindex(model_name=model, dim=dim)
    store.optimize()
    return done
