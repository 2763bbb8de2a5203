"""Resolving the names of an add_relations call to the entities of its scope.

A name is the entity with the same key in the exact scope (case, width and
whitespace ignored), else the one whose name is closest in meaning if that
is at least ENTITY_MATCH and both names carry the same numbers
(``"Acme Corporation"`` is ``"Acme Corp"``; ``"Sven Lindqvist"`` is not
``"Bjorn Lindqvist"``), else a new entity. Names new in the same call are
compared with each other too. The caller holds the store's relation write
lock (storage/write_lock.py), so a second writer of one new entity finds the
first one's spelling stored and gets it back.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from ..core.relations import Entity, Triple, entity_id, name_key
from ..core.scoping import Scope, exact_scope_where
from ..search.relation_ranking import ENTITY_MATCH, closest, same_numbers
from ..search.retrieval import cosine_scores
from ..storage.relation_table import EntityTable


def _wanted(triples: Sequence[Triple]) -> dict[str, tuple[str, str | None]]:
    """Each end's key with its first spelling in the call and the first type given."""
    wanted: dict[str, tuple[str, str | None]] = {}
    for triple in triples:
        for name, kind in ((triple.source, triple.source_type),
                           (triple.target, triple.target_type)):
            spelling, known_kind = wanted.get(name_key(name), (name, None))
            wanted[name_key(name)] = (spelling, known_kind or kind)
    return wanted


def _same(name: str, candidate: Entity, cosine: float) -> bool:
    """Whether a name is ``candidate`` by meaning (ENTITY_MATCH, same numbers)."""
    return cosine >= ENTITY_MATCH and same_numbers(name, candidate.name)


def _closest_new(name: str, vector: Sequence[float], new: list[Entity]) -> Entity | None:
    """Of the entities new in this call, one whose name means the same, if any."""
    if not new:
        return None
    scores = cosine_scores([entity.vector or [] for entity in new], vector)
    best = max(range(len(new)), key=scores.__getitem__)
    return new[best] if _same(name, new[best], scores[best]) else None


def resolve_entities(table: EntityTable, triples: Sequence[Triple],
                     vectors: Mapping[str, Sequence[float]], scope: Scope,
                     now: datetime) -> dict[str, Entity]:
    """The entity of every end of ``triples``, by the key of the name given
    (``vectors``: each given name's embedding); new ones are stored."""
    exact = exact_scope_where(scope)
    wanted = _wanted(triples)
    resolved = table.by_keys(wanted, exact)
    stored = table.index(exact) if len(resolved) < len(wanted) else None
    new: list[Entity] = []
    for key, (spelling, kind) in wanted.items():
        if key in resolved:
            continue
        vector = vectors[spelling]
        near = closest(stored, vector) if stored is not None else None
        if near is not None and _same(spelling, *near):
            resolved[key] = near[0]
            continue
        same = _closest_new(spelling, vector, new)
        if same is None:
            same = Entity(id=entity_id(scope.ids(), key), name=spelling, scope=scope.ids(),
                          entity_type=kind, created_at=now, vector=vector)
            new.append(same)
        resolved[key] = same
    if new:
        table.insert_new(new)
        kept = table.by_ids(entity.id for entity in new)
        resolved = {key: kept.get(entity.id, entity) for key, entity in resolved.items()}
    return resolved
