"""Re-embed every memory with another model (``lancemem reindex``), and the
entity names and relation sentences that relations search by.

The store is marked with the target model first (phase ``prepare``), the
vector column is replaced by an empty one of the new size, the phase becomes
``embed``, and rows without a vector are embedded batch by batch. Every step
is one commit. An interrupted run leaves the mark in place, so the store
refuses normal use until ``lancemem reindex`` is run again, which redoes an
unfinished ``prepare`` and otherwise picks up the rows still without a vector.
A long memory gets its passages in the same commit as its vector
(search/passages.py); a reindex with the store's own model is how a store
from before passages gets them for its long memories.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

from ..search.embeddings import Embedder
from ..search.passages import embed_memories
from ..storage.memory_table import MemoryTable
from ..storage.meta import EMBED, PREPARE
from ..storage.relation_table import EntityTable, RelationTable
from ..storage.store import Store

Progress = Callable[[int, int], None]


class _Vectors(Protocol):
    """A table whose rows reindex re-embeds (memories, entities, relations)."""

    def replace_vector_column(self, dim: int) -> None: ...

    def count_without_vector(self) -> int: ...

    def without_vector(self, *, limit: int) -> list[tuple[str, str]]: ...

    def set_vectors(self, vectors: Mapping[str, Sequence[float]]) -> None: ...


def reindex(store: Store, embedder: Embedder, *, batch_size: int = 256,
            progress: Progress | None = None) -> int:
    """Re-embed all memories (and the names and sentences of relations) with
    ``embedder``; returns how many memories were embedded. A model that cannot
    be loaded raises before anything in the store changes."""
    # Load the model before the store is touched: one that cannot be loaded
    # (offline, a typo) must leave the store as it was, not marked mid-reindex.
    embedder.embed_documents(["lancemem reindex: the model loads"])
    model, dim = embedder.model_name, embedder.dim
    store.open(model_name=model, dim=dim, check_model=False)
    meta = store.meta_table
    memories = MemoryTable(store, dim)
    tables: list[_Vectors] = [memories, EntityTable(store, dim), RelationTable(store, dim)]
    if not meta.reindex_embedding(model):
        meta.mark_reindex(model, PREPARE)
        for table in tables:
            table.replace_vector_column(dim)
        meta.mark_reindex(model, EMBED)
    done = _embed_memories(memories, embedder, batch_size, progress)
    for table in tables[1:]:
        _embed(table, embedder, batch_size, None)
    meta.finish_reindex(model_name=model, dim=dim)
    store.optimize()
    return done


def _embed_memories(table: MemoryTable, embedder: Embedder, batch_size: int,
                    progress: Progress | None) -> int:
    """Embed every memory still without a vector, with its passages, batch by batch."""
    def store(batch: list[tuple[str, str]]) -> None:
        embedded = embed_memories(embedder, [text for _, text in batch])
        ids = [row_id for row_id, _ in batch]
        table.set_vectors(dict(zip(ids, (vector for vector, _ in embedded), strict=True)),
                          dict(zip(ids, (passages for _, passages in embedded), strict=True)))

    return _batches(table, batch_size, progress, store)


def _embed(table: _Vectors, embedder: Embedder, batch_size: int,
           progress: Progress | None) -> int:
    """Embed every row of ``table`` still without a vector, batch by batch."""
    def store(batch: list[tuple[str, str]]) -> None:
        vectors = embedder.embed_documents([text for _, text in batch])
        table.set_vectors({row_id: vector for (row_id, _), vector
                           in zip(batch, vectors, strict=True)})

    return _batches(table, batch_size, progress, store)


def _batches(table: _Vectors, batch_size: int, progress: Progress | None,
             store: Callable[[list[tuple[str, str]]], None]) -> int:
    """Hand ``store`` the rows of ``table`` still without a vector, batch by
    batch, until none is left; how many were handed."""
    remaining = table.count_without_vector()
    done = 0
    while True:
        batch = table.without_vector(limit=batch_size)
        if not batch:
            return done
        store(batch)
        done += len(batch)
        if progress:
            progress(done, remaining)
