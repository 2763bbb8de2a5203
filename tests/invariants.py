"""Whole-store invariants the reliability tests check after every abuse."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

from lancemem.core import relations as rel
from lancemem.core.scoping import SCOPE_KEYS
from lancemem.storage import history as hist
from lancemem.storage import relation_consistency
from lancemem.storage import relation_history as rh
from lancemem.storage.consistency import missing_history
from lancemem.storage.relation_schema import (
    ENTITIES,
    RELATION_HISTORY,
    RELATIONS,
    relation_columns,
)
from lancemem.storage.store import HISTORY, MEMORIES, Store

if TYPE_CHECKING:
    from lancemem import Memory


def settled(memory: Memory) -> Store:
    """``memory``'s store once the history rows it handed to its background
    writer are committed: the state the invariants below are about."""
    memory.history_log.flush()
    memory.relation_log.flush()
    return memory.store


def check_store(store: Store) -> dict[str, dict[str, Any]]:
    """Assert memories and history agree; return the memories by id."""
    memories = store.select(MEMORIES, None, columns=["id", "memory", "updated_at"])
    counts = Counter(row["id"] for row in memories)
    assert not [i for i, n in counts.items() if n > 1], "a memory id is stored twice"
    assert missing_history(store) == [], "history disagrees with memories"
    by_memory: dict[str, list[dict[str, Any]]] = {}
    for row in hist.ordered(store.select(HISTORY, None)):
        by_memory.setdefault(row["memory_id"], []).append(row)
    for row in memories:
        events = by_memory[row["id"]]
        assert events[0]["event"] == hist.ADD, events
        assert events[-1]["event"] != hist.DELETE, events
        assert events[-1]["new_memory"] == row["memory"], (events, row)
    live = {row["id"] for row in memories}
    for memory_id, events in by_memory.items():
        if memory_id not in live:
            assert events[-1]["event"] == hist.DELETE, events
    return {row["id"]: row for row in memories}


def check_relations(store: Store) -> dict[str, dict[str, Any]]:
    """Assert relations, their entities and their history agree; return the relations by id.

    No id is stored twice; relation history has no gap (``missing_history``);
    each relation's history starts with ADD and ends with the event its state
    implies (ADD valid, INVALIDATE invalidated) on its own triple, in its own
    scope; a relation that is gone has a history ending in DELETE; both ends
    of each relation are entities of its exact scope, spelled as they are.
    """
    relations = store.select(RELATIONS, None, columns=relation_columns(vector=False))
    counts = Counter(row["id"] for row in relations)
    assert not [i for i, n in counts.items() if n > 1], "a relation id is stored twice"
    entity_rows = store.select(ENTITIES, None, columns=["id", "name", "name_key", *SCOPE_KEYS])
    entity_counts = Counter(row["id"] for row in entity_rows)
    assert not [i for i, n in entity_counts.items() if n > 1], "an entity id is stored twice"
    entities = {(*(row[k] for k in SCOPE_KEYS), row["name_key"]): row for row in entity_rows}
    assert len(entities) == len(entity_rows), "one name key twice in one scope"
    assert relation_consistency.missing_history(store) == [], \
        "relation history disagrees with relations"
    by_relation: dict[str, list[dict[str, Any]]] = {}
    for row in rh.ordered(store.select(RELATION_HISTORY, None)):
        assert row["event"] in (rel.ADD, rel.INVALIDATE, rel.DELETE), row
        by_relation.setdefault(row["relation_id"], []).append(row)
    for row in relations:
        relation = rel.Relation.from_row(row)
        scope = tuple(row[k] for k in SCOPE_KEYS)
        assert row["id"] == rel.relation_id(relation.scope, relation.key), row
        assert (row["source_key"], row["target_key"]) == (relation.key[0], relation.key[2]), row
        assert relation.valid == (relation.invalidated_at is None), row
        events = by_relation.get(row["id"], [])
        assert events and events[0]["event"] == rel.ADD, (events, row)
        assert all(tuple(e[k] for k in SCOPE_KEYS) == scope for e in events), (events, row)
        last = events[-1]
        if relation.valid:
            assert last["event"] == rel.ADD and last["new_relation"] == relation.triple, \
                (events, row)
        else:
            assert last["event"] == rel.INVALIDATE and last["old_relation"] == relation.triple, \
                (events, row)
        assert last["created_at"] >= relation.updated_at, (events, row)
        assert last["actor_id"] == relation.actor_id, (events, row)
        for name, key in ((relation.source, relation.key[0]), (relation.target, relation.key[2])):
            entity = entities.get((*scope, key))
            assert entity is not None, f"{name!r} of {relation.triple} is no entity of {scope}"
            assert entity["name"] == name, (entity, row)
    live = {row["id"] for row in relations}
    for relation_id, events in by_relation.items():
        if relation_id not in live:
            assert events[-1]["event"] == rel.DELETE, events
    return {row["id"]: row for row in relations}
