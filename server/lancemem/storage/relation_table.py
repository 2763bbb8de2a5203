"""The entities and relations tables in the domain's terms: records in, records out.

Scope clauses arrive compiled (scoping.py); the clauses around them (ids,
keys, validity) are written here. Rows are inserted by id with a merge, so
an entity or a triple that two writers add at once is stored once, and the
first spelling of an entity stays.
"""

from __future__ import annotations

import functools
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from ..core.relations import Entity, EntityIndex, Relation
from . import sql
from .relation_schema import (
    ENTITIES,
    RELATIONS,
    entities_schema,
    relation_columns,
    relations_schema,
)
from .snapshot import Snapshot, vector_matrix
from .vector_cache import VectorCache
from .vectors import replace_vector_column, set_vectors

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

    from .connection import Connection

_ID_CHUNK = 500  # values per IN list
# Entities (with their vectors) kept in memory per process, all scopes together:
# 20,000 names at 384 dimensions are 31 MB. A scope with more is matched by
# name only, its entities read anew for each search.
INDEX_ROWS = 20_000
# Relation vectors kept per process for ranking (vector_cache.py): 30 MB at 384
# dimensions, two scopes of 10,000 relations.
VECTOR_ROWS = 20_000
VALID = "valid = true"
_ENTITY_COLUMNS = ["id", "name", "entity_type", "user_id", "agent_id", "run_id", "created_at"]


def either_end(keys: Sequence[str]) -> str:
    """Relations whose source or target has one of these entity keys."""
    values = sorted(keys)
    return f"({sql.one_of('source_key', values)} OR {sql.one_of('target_key', values)})"


def key_chunks(keys: Iterable[str]) -> list[list[str]]:
    """Keys in lists short enough for one IN clause each."""
    ordered = sorted(set(keys))
    return [ordered[start:start + _ID_CHUNK] for start in range(0, len(ordered), _ID_CHUNK)]


@dataclass(frozen=True)
class Touching:
    """Relations touching some entities, as the columns they are ranked by:
    row ids, both ends' keys and vectors (one float32 matrix, None when there
    are none). At 10,000 relations a scope a memory search touches about
    2,000; read whole, they cost several times what ranking them on these
    does. A relation whose ends fall in different key chunks appears twice."""

    snapshot: Snapshot
    row_ids: list[int]
    source_keys: list[str]
    target_keys: list[str]
    matrix: np.ndarray | None

    def relations(self, row_ids: Sequence[int]) -> list[Relation]:
        """The relations at these row ids (of the same version), in that order."""
        return [Relation.from_row(row) for row in self.snapshot.rows(
            list(dict.fromkeys(row_ids)), relation_columns(vector=False))]


class EntityTable:
    """The entities table of one store, for a model of ``dim`` dimensions."""

    def __init__(self, conn: Connection, dim: int | None = None) -> None:
        self._conn = conn
        self._dim = dim
        self._indexes: OrderedDict[tuple[str, int], EntityIndex] = OrderedDict()
        self._indexes_lock = threading.Lock()  # tool calls run in several threads

    @functools.cached_property
    def schema(self) -> pa.Schema:
        """The table's schema (writing needs the model's dimension)."""
        if self._dim is None:
            raise TypeError("writing entities needs the table's dimension")
        return entities_schema(self._dim)

    def by_keys(self, keys: Iterable[str], exact: str) -> dict[str, Entity]:
        """The entities with these keys in the exact scope ``exact``, by key."""
        found: dict[str, Entity] = {}
        for chunk in key_chunks(keys):
            for row in self._conn.select(ENTITIES, sql.both(sql.one_of("name_key", chunk), exact),
                                         columns=_ENTITY_COLUMNS):
                entity = Entity.from_row(row)
                found[entity.key] = entity
        return found

    def index(self, where: str) -> EntityIndex:
        """The entities matching ``where`` (a scope) in memory, kept while the
        table's version stays (at most INDEX_ROWS entities' vectors in all)."""
        version = self._conn.version(ENTITIES)
        with self._indexes_lock:
            cached = self._indexes.get((where, version))
            if cached is not None:
                self._indexes.move_to_end((where, version))
                return cached
        found = self._conn.arrow(ENTITIES, where, version=version,
                                 columns=[*_ENTITY_COLUMNS, "match_key", "vector"])
        matrix = vector_matrix(found) if found.num_rows <= INDEX_ROWS else None
        rows = found.drop_columns(["vector"]).to_pylist()
        index = EntityIndex([Entity.from_row(row) for row in rows],
                            [row["match_key"] or "" for row in rows], matrix)
        with self._indexes_lock:
            self._indexes[(where, version)] = index
            while sum(len(i.entities) for i in self._indexes.values()) > INDEX_ROWS and len(
                    self._indexes) > 1:
                self._indexes.popitem(last=False)
        return index

    def insert_new(self, entities: Sequence[Entity]) -> None:
        """Store entities whose id is new; an entity stored meanwhile keeps its spelling."""
        self._conn.insert_new(ENTITIES, [entity.to_row() for entity in entities], self.schema)

    def by_ids(self, ids: Iterable[str]) -> dict[str, Entity]:
        """These entities as stored, by id."""
        found: dict[str, Entity] = {}
        for chunk in key_chunks(ids):
            for row in self._conn.select(ENTITIES, sql.one_of("id", chunk),
                                         columns=_ENTITY_COLUMNS):
                found[row["id"]] = Entity.from_row(row)
        return found

    def delete(self, where: str) -> int:
        """Delete the entities matching ``where``; returns how many."""
        return self._conn.delete(ENTITIES, where)

    def count_without_vector(self) -> int:
        """How many entities wait for a vector (during a reindex)."""
        return self._conn.count(ENTITIES, "vector IS NULL")

    def without_vector(self, *, limit: int) -> list[tuple[str, str]]:
        """Up to ``limit`` entities without a vector, as (id, name)."""
        rows = self._conn.select(ENTITIES, "vector IS NULL", columns=["id", "name"], limit=limit)
        return [(row["id"], row["name"]) for row in rows]

    def replace_vector_column(self, dim: int) -> None:
        """An empty vector column of ``dim`` in place of the old one (reindex)."""
        replace_vector_column(self._conn, ENTITIES, dim)

    def set_vectors(self, vectors: Mapping[str, Sequence[float]]) -> None:
        """Store new vectors (entity id -> vector), in one commit."""
        set_vectors(self._conn, ENTITIES, self._dim, vectors)


class RelationTable:
    """The relations table of one store, for a model of ``dim`` dimensions."""

    def __init__(self, conn: Connection, dim: int | None = None) -> None:
        self._conn = conn
        self._dim = dim
        self._empty_at: int | None = None
        self._vectors = VectorCache(VECTOR_ROWS)

    @functools.cached_property
    def schema(self) -> pa.Schema:
        """The table's schema (writing needs the model's dimension)."""
        if self._dim is None:
            raise TypeError("writing relations needs the table's dimension")
        return relations_schema(self._dim)

    def is_empty(self) -> bool:
        """Whether no relation is stored at all (checked once per table version):
        then searches skip relations at the cost of one version check."""
        version = self._conn.version(RELATIONS)
        if self._empty_at == version:
            return True
        if self._conn.count(RELATIONS) == 0:
            self._empty_at = version
            return True
        return False

    def select(self, where: str, *, limit: int | None = None) -> list[Relation]:
        """Relations matching ``where``, without vectors."""
        return [Relation.from_row(row) for row in self._conn.select(
            RELATIONS, where, columns=relation_columns(vector=False), limit=limit)]

    def by_ids(self, ids: Iterable[str], where: str) -> list[Relation]:
        """The relations with these ids among those matching ``where`` (a scope)."""
        found: list[Relation] = []
        for chunk in key_chunks(ids):
            found += self.select(sql.both(sql.one_of("id", chunk), where))
        return found

    def touching(self, where: str, keys: Iterable[str]) -> Touching:
        """The relations matching ``where`` with an end among these entity keys,
        as the columns to rank them by, at one pinned version whose rows the
        best are then read from (Touching.relations). Vectors come from the
        process's cache where they can (VECTOR_ROWS), by id and creation time:
        a triple deleted and added again may be spelt otherwise (its sentence,
        so its vector, too)."""
        import numpy as np

        snapshot = Snapshot(self._conn.dataset(RELATIONS))
        row_ids: list[int] = []
        stored: list[tuple[str, int]] = []
        sources: list[str] = []
        targets: list[str] = []
        for chunk in key_chunks(keys):
            table = snapshot.columns(sql.both(where, either_end(chunk)),
                                     ["id", "created_at", "source_key", "target_key"])
            row_ids += table.column("_rowid").to_pylist()
            created = table.column("created_at").to_numpy().astype("int64").tolist()
            stored += zip(table.column("id").to_pylist(), created, strict=True)
            sources += table.column("source_key").to_pylist()
            targets += table.column("target_key").to_pylist()
        vectors = self._vectors.get_many(stored)
        missing = {row_id: key for row_id, key in zip(row_ids, stored, strict=True)
                   if key not in vectors}
        if missing:
            read = dict(zip(missing.values(), snapshot.vectors_at(list(missing)), strict=True))
            self._vectors.put_many({key: v for key, v in read.items() if v.any()})  # not yet
            vectors.update(read)  # embedded (a reindex): ranked on its ends alone, not kept
        matrix = np.stack([vectors[key] for key in stored]) if stored else None
        return Touching(snapshot, row_ids, sources, targets, matrix)

    def insert_new(self, relations: Sequence[Relation]) -> set[str]:
        """Store relations whose id is new; returns the ids this call stored (a
        triple another writer stored meanwhile is theirs)."""
        if not relations:
            return set()
        inserted = self._conn.insert_new(RELATIONS, [r.to_row() for r in relations],
                                         self.schema)
        if inserted == len(relations):
            return {relation.id for relation in relations}
        mine = {relation.id: relation.created_at for relation in relations}
        stored = self._conn.select(RELATIONS, sql.one_of("id", sorted(mine)),
                                   columns=["id", "created_at"])
        return {row["id"] for row in stored if row["created_at"] == mine[row["id"]]}

    def replace_if_unchanged(self, relation: Relation, *, stored_at: datetime) -> bool:
        """Compare-and-swap: store ``relation`` over its row only if that row's
        ``updated_at`` is still ``stored_at``; returns whether it was."""
        return bool(self._conn.upsert(RELATIONS, [relation.to_row()],
                                      relations_schema(0, vector=False),
                                      only_if=sql.stored_at("updated_at", stored_at)))

    def delete_ids(self, ids: Iterable[str]) -> int:
        """Delete these relations; returns how many this call deleted."""
        return sum(self._conn.delete(RELATIONS, sql.one_of("id", chunk))
                   for chunk in key_chunks(ids))

    def count_without_vector(self) -> int:
        """How many relations wait for a vector (during a reindex)."""
        return self._conn.count(RELATIONS, "vector IS NULL")

    def without_vector(self, *, limit: int) -> list[tuple[str, str]]:
        """Up to ``limit`` relations without a vector, as (id, sentence)."""
        return [(relation.id, relation.text)
                for relation in self.select("vector IS NULL", limit=limit)]

    def replace_vector_column(self, dim: int) -> None:
        """An empty vector column of ``dim`` in place of the old one (reindex)."""
        self._vectors.clear()
        replace_vector_column(self._conn, RELATIONS, dim)

    def set_vectors(self, vectors: Mapping[str, Sequence[float]]) -> None:
        """Store new vectors (relation id -> vector), in one commit."""
        self._vectors.clear()
        set_vectors(self._conn, RELATIONS, self._dim, vectors)
