"""The relation tables' schemas: entities, relations and their history.

Entities and relations carry the same flat scope columns as memories, so
the one scope clause (scoping.scope_where) selects them the same way; both
have a vector (an entity's name, a relation's sentence) for search by
meaning. Their history is a table of its own: memory history's repair
(consistency.py) must never take a relation for a deleted memory.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from .schema import principal_fields, vector_field

if TYPE_CHECKING:
    import pyarrow as pa

ENTITIES = "entities"
RELATIONS = "relations"
RELATION_HISTORY = "relation_history"
RELATION_TABLES = (ENTITIES, RELATIONS, RELATION_HISTORY)
ENTITY_INDEXED = ("name_key", "match_key", "user_id", "agent_id", "run_id")
RELATION_INDEXED = ("source_key", "target_key", "relationship", "user_id", "agent_id", "run_id")


def _scope_fields() -> list[pa.Field]:
    import pyarrow as pa

    return [pa.field(name, pa.utf8()) for name in ("user_id", "agent_id", "run_id")]


def entities_schema(dim: int) -> pa.Schema:
    """One row per entity and scope: first spelling, keys, type, name vector."""
    import pyarrow as pa

    return pa.schema([
        pa.field("id", pa.utf8(), nullable=False),
        pa.field("name", pa.utf8()),
        pa.field("name_key", pa.utf8()),
        pa.field("match_key", pa.utf8()),
        pa.field("entity_type", pa.utf8()),
        *_scope_fields(),
        pa.field("created_at", pa.timestamp("us", tz="UTC")),
        vector_field(dim),
    ])


def relation_columns(*, vector: bool) -> list[str]:
    """The relations table's columns (the vector only when asked for)."""
    return [field.name for field in _relation_fields()] + (["vector"] if vector else [])


@functools.cache
def _relation_fields() -> list[pa.Field]:
    import pyarrow as pa

    ts = pa.timestamp("us", tz="UTC")
    return [
        pa.field("id", pa.utf8(), nullable=False),
        pa.field("source", pa.utf8()),
        pa.field("source_key", pa.utf8()),
        pa.field("relationship", pa.utf8()),
        pa.field("target", pa.utf8()),
        pa.field("target_key", pa.utf8()),
        pa.field("source_type", pa.utf8()),
        pa.field("target_type", pa.utf8()),
        *_scope_fields(),
        pa.field("actor_id", pa.utf8()),
        pa.field("valid", pa.bool_()),
        pa.field("invalidated_at", ts),
        pa.field("created_at", ts),
        pa.field("updated_at", ts),
    ]


def relations_schema(dim: int, *, vector: bool = True) -> pa.Schema:
    """One row per relation: the triple, both ends' keys, validity, sentence vector."""
    import pyarrow as pa

    return pa.schema([*_relation_fields(), *([vector_field(dim)] if vector else [])])


@functools.cache
def relation_history_schema() -> pa.Schema:
    """One row per ADD, INVALIDATE or DELETE of a relation."""
    import pyarrow as pa

    ts = pa.timestamp("us", tz="UTC")
    return pa.schema([
        pa.field("id", pa.utf8(), nullable=False),
        pa.field("relation_id", pa.utf8(), nullable=False),
        pa.field("event", pa.utf8(), nullable=False),
        pa.field("source", pa.utf8()),
        pa.field("relationship", pa.utf8()),
        pa.field("target", pa.utf8()),
        pa.field("old_relation", pa.utf8()),
        pa.field("new_relation", pa.utf8()),
        pa.field("created_at", ts),
        pa.field("actor_id", pa.utf8()),
        *_scope_fields(),
        *principal_fields(),
    ])
