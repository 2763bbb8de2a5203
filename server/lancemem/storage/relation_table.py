"""The entities and relations tables in the domain's terms: records in, records out.

Scope clauses arrive compiled (scoping.py); the clauses around them (ids,
keys, validity) are written here. Rows are inserted by id with a merge, so
an entity or a triple that two writers add at once is stored once, and the
first spelling of an entity stays.
"""

from __future__ import annotations

import functools
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ..core.relations import Entity, Relation
from . import sql
from .relation_schema import (
    ENTITIES,
    RELATIONS,
    entities_schema,
    relation_columns,
    relations_schema,
)
from .retries import with_retries
from .vectors import replace_vector_column, set_vectors

if TYPE_CHECKING:
    import pyarrow as pa

    from .connection import Connection

_ID_CHUNK = 500  # values per IN list
_NAME_CACHE = 16  # scopes whose entity names are kept, per process
VALID = "valid = true"


def either_end(keys: Sequence[str]) -> str:
    """Relations whose source or target has one of these entity keys."""
    values = sorted(keys)
    return f"({sql.one_of('source_key', values)} OR {sql.one_of('target_key', values)})"


def key_chunks(keys: Iterable[str]) -> list[list[str]]:
    """Keys in lists short enough for one IN clause each."""
    ordered = sorted(set(keys))
    return [ordered[start:start + _ID_CHUNK] for start in range(0, len(ordered), _ID_CHUNK)]


def _nearest(conn: Connection, name: str, vector: Sequence[float], where: str, *, limit: int,
             columns: list[str]) -> list[tuple[dict[str, Any], float]]:
    """Exact cosine top-``limit`` of rows matching ``where``, each with its cosine."""
    import numpy as np

    query = np.asarray(vector, dtype=np.float32)

    def run() -> Any:
        return conn.dataset(name).to_table(
            columns=[*columns, "_distance"], filter=where, prefilter=True,
            nearest={"column": "vector", "q": query, "k": limit, "metric": "cosine",
                     "use_index": False}, disable_scoring_autoprojection=True)

    found = with_retries(run, what=f"searching {name}").to_pylist()
    return [(row, 1.0 - float(row.pop("_distance"))) for row in found]


class EntityTable:
    """The entities table of one store, for a model of ``dim`` dimensions."""

    def __init__(self, conn: Connection, dim: int | None = None) -> None:
        self._conn = conn
        self._dim = dim
        self._names: OrderedDict[tuple[str, int], list[tuple[str, str]]] = OrderedDict()

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
                                         columns=["id", "name", "entity_type", "user_id",
                                                  "agent_id", "run_id", "created_at"]):
                entity = Entity.from_row(row)
                found[entity.key] = entity
        return found

    def nearest(self, vector: Sequence[float], where: str, *,
                limit: int) -> list[tuple[Entity, float]]:
        """The ``limit`` entities matching ``where`` whose names are closest in
        meaning to ``vector``, each with its cosine."""
        columns = ["id", "name", "entity_type", "user_id", "agent_id", "run_id", "created_at"]
        return [(Entity.from_row(row), score) for row, score in
                _nearest(self._conn, ENTITIES, vector, where, limit=limit, columns=columns)]

    def insert_new(self, entities: Sequence[Entity]) -> None:
        """Store entities whose id is new; an entity stored meanwhile keeps its spelling."""
        self._conn.insert_new(ENTITIES, [entity.to_row() for entity in entities], self.schema)

    def by_ids(self, ids: Iterable[str]) -> dict[str, Entity]:
        """These entities as stored, by id."""
        found: dict[str, Entity] = {}
        for chunk in key_chunks(ids):
            for row in self._conn.select(ENTITIES, sql.one_of("id", chunk),
                                         columns=["id", "name", "entity_type", "user_id",
                                                  "agent_id", "run_id", "created_at"]):
                found[row["id"]] = Entity.from_row(row)
        return found

    def names(self, where: str) -> list[tuple[str, str]]:
        """Every entity matching ``where`` as (key, match key); kept per table version."""
        version = self._conn.version(ENTITIES)
        cached = self._names.get((where, version))
        if cached is None:
            rows = self._conn.arrow(ENTITIES, where, columns=["name_key", "match_key"])
            cached = list(zip(rows.column("name_key").to_pylist(),
                              rows.column("match_key").to_pylist(), strict=True))
            self._names[(where, version)] = cached
            while len(self._names) > _NAME_CACHE:
                self._names.popitem(last=False)
        return cached

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

    def nearest(self, vector: Sequence[float], where: str, *,
                limit: int) -> list[tuple[Relation, float]]:
        """The ``limit`` relations matching ``where`` closest in meaning to
        ``vector``, each with its cosine."""
        return [(Relation.from_row(row), score) for row, score in _nearest(
            self._conn, RELATIONS, vector, where, limit=limit,
            columns=relation_columns(vector=False))]

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
        replace_vector_column(self._conn, RELATIONS, dim)

    def set_vectors(self, vectors: Mapping[str, Sequence[float]]) -> None:
        """Store new vectors (relation id -> vector), in one commit."""
        set_vectors(self._conn, RELATIONS, self._dim, vectors)
