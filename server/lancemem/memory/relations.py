"""Memory's relations: add, search, list, delete, and the cascade of delete_all.

Relations live in the same scopes as memories: a call's ids resolve to one
Scope (scoping.py) exactly as for memories; an add stores the relation and
both its entities in that exact scope, and reads see every relation that
matches each id given. Entities are resolved per scope: by key (case and
whitespace ignored), else by the meaning of their name (search/
relation_ranking.ENTITY_MATCH). Each change is committed first and its
history row handed to the background writer second (relation_history.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from ..core.errors import ConflictError, NotFoundError, ValidationError
from ..core.messages import check_limit, check_text
from ..core.principal import Principal
from ..core.relations import (
    ADD,
    DELETE,
    INVALIDATE,
    MAX_RELATIONS,
    NONE,
    Relation,
    Triple,
    check_entity,
    check_relationship,
    check_triples,
    name_key,
    relation_id,
)
from ..core.scoping import Scope, exact_scope_where, scope_where
from ..search import relation_ranking as rr
from ..search.retrieval import cosine_scores
from ..storage import relation_history as rh
from ..storage import sql
from ..storage.relation_table import VALID, RelationTable, either_end
from ..storage.retries import backoff
from .context import Context, RelationTables
from .entities import resolve_entities

_ATTEMPTS = 8


class Relations:
    """Every relation operation of one Memory; its public methods are Memory's."""

    def __init__(self, context: Context) -> None:
        self._ctx = context

    def _graph(self) -> RelationTables:
        return self._ctx.tables().graph

    def _scope(self, ids: Mapping[str, Any], actor_id: Any = None) -> Scope:
        return self._ctx.scope(ids, actor_id=actor_id).scope

    def add(self, relations: Any, *, ids: Mapping[str, Any], actor_id: Any, replace: bool,
            principal: Principal | None) -> dict[str, Any]:
        """Memory.add_relations: each triple stored once per scope, ends resolved."""
        triples = check_triples(relations)
        if not isinstance(replace, bool):
            raise ValidationError("'replace' must be true or false.")
        scope = self._scope(ids, actor_id)
        graph = self._graph()
        now = datetime.now(UTC)
        vectors = self._ctx.embedder.embed_documents(
            [t.source for t in triples] + [t.target for t in triples]
            + [f"{t.source} {t.relationship.replace('_', ' ')} {t.target}" for t in triples])
        count = len(triples)
        names = {t.source: vectors[i] for i, t in enumerate(triples)}
        names.update({t.target: vectors[count + i] for i, t in enumerate(triples)})
        with graph.writing():
            ends = resolve_entities(graph.entities, triples, names, scope, now)
            planned = [self._relation(t, ends, scope, now, vectors[2 * count + i])
                       for i, t in enumerate(triples)]
            events = self._store(graph, planned, scope, now, principal)
            results = [relation.to_item(event=event) for relation, event in events]
            if replace:
                mine = {relation.id for relation in planned}
                for relation in self._replaced(graph, planned, scope, mine, principal):
                    results.append(relation.to_item(event=INVALIDATE))
        return {"results": results}

    @staticmethod
    def _relation(triple: Triple, ends: Mapping[str, Any], scope: Scope, now: datetime,
                  vector: Sequence[float]) -> Relation:
        source, target = ends[name_key(triple.source)], ends[name_key(triple.target)]
        key = (source.key, triple.relationship, target.key)
        return Relation(id=relation_id(scope.ids(), key), source=source.name,
                        relationship=triple.relationship, target=target.name,
                        source_type=triple.source_type or source.entity_type,
                        target_type=triple.target_type or target.entity_type,
                        scope=scope.ids(), actor_id=scope.actor_id, valid=True,
                        invalidated_at=None, created_at=now, updated_at=now, vector=vector)

    def _store(self, graph: RelationTables, planned: list[Relation], scope: Scope,
               now: datetime, principal: Principal | None) -> list[tuple[Relation, str]]:
        """Insert new triples, make invalidated ones valid again; (relation, event)
        per planned relation, in order."""
        unique = list({relation.id: relation for relation in planned}.values())
        stored = {r.id: r for r in graph.relations.by_ids([r.id for r in unique],
                                                           exact_scope_where(scope))}
        fresh = [relation for relation in unique if relation.id not in stored]
        inserted = graph.relations.insert_new(fresh)
        outcome: dict[str, tuple[Relation, str]] = {}
        for relation in fresh:
            outcome[relation.id] = (relation, ADD if relation.id in inserted else NONE)
        for relation in unique:
            if relation.id in stored:
                outcome[relation.id] = self._revalidate(graph, stored[relation.id], relation)
        changed = [relation for relation, event in outcome.values() if event == ADD]
        graph.log.record_soon([rh.history_row(r, ADD, now=now, principal=principal)
                               for r in changed])
        seen: set[str] = set()
        events = []
        for relation in planned:  # a triple given twice in one call: NONE the second time
            kept, event = outcome[relation.id]
            events.append((kept, NONE if relation.id in seen else event))
            seen.add(relation.id)
        return events

    def _swap(self, graph: RelationTables, relation: Relation, change: Any) -> Relation | None:
        """Apply ``change(relation, moment)`` with a compare-and-swap, re-reading
        while other writers win; None when the relation is gone."""
        current: Relation | None = relation
        for attempt in range(_ATTEMPTS):
            if attempt:
                backoff(attempt - 1)
                found = graph.relations.by_ids([relation.id], "true")
                current = found[0] if found else None
            if current is None:
                return None
            moment = max(datetime.now(UTC), current.updated_at + timedelta(microseconds=1))
            revised = change(current, moment)
            if revised is None or graph.relations.replace_if_unchanged(
                    revised, stored_at=current.updated_at):
                return revised
        raise ConflictError(f"relation {relation.id!r} kept changing; try again.")

    def _revalidate(self, graph: RelationTables, stored: Relation,
                    planned: Relation) -> tuple[Relation, str]:
        """A stored triple added again: ADD if this call made it valid again, NONE
        if it was valid (another writer may have just revalidated it); stored
        anew if another writer deleted it meanwhile."""
        if stored.valid:
            return stored, NONE
        kept = self._swap(graph, stored, lambda r, moment: None if r.valid else
                          r.revalidated(moment))
        if kept is not None:
            return kept, ADD
        found = graph.relations.by_ids([stored.id], "true")
        if found:
            return found[0], NONE
        return planned, ADD if graph.relations.insert_new([planned]) else NONE

    def _replaced(self, graph: RelationTables, planned: list[Relation], scope: Scope,
                  mine: set[str], principal: Principal | None) -> list[Relation]:
        """Invalidate the scope's valid relations that share a new relation's
        source and relationship but not its target (``replace=true``)."""
        exact = exact_scope_where(scope)
        done: list[tuple[Relation, Relation]] = []  # (invalidated, replaced by)
        for relation in {(name_key(r.source), r.relationship): r for r in planned}.values():
            where = " AND ".join([exact, VALID, sql.equals("source_key", name_key(relation.source)),
                                  sql.equals("relationship", relation.relationship)])
            for old in graph.relations.select(where):
                if old.id in mine:
                    continue
                changed = self._swap(graph, old, lambda r, moment: (
                    r.invalidated(moment) if r.valid else None))
                if changed is not None:
                    done.append((changed, relation))
        graph.log.record_soon([rh.history_row(old, INVALIDATE, now=old.updated_at,
                                              principal=principal, replaced_by=new)
                               for old, new in done])
        return [old for old, _ in done]

    def search(self, query: Any, *, ids: Mapping[str, Any], limit: int) -> dict[str, Any]:
        """Memory.search_relations: relations whose ends the query names or means,
        and their neighbours' relations, best first with a score."""
        text = check_text(query, field="query")
        limit = check_limit(limit, maximum=MAX_RELATIONS)
        where = scope_where(self._scope(ids).without_actor())
        graph = self._graph()
        if graph.relations.is_empty():
            return {"results": []}
        index = self._ctx.runtime.run_soon(graph.entities.index, where)
        vector = self._ctx.embedder.embed_query(text)
        entities = index.result()
        anchors = rr.merge(rr.named(entities, [text], rr.NAMED), rr.meant(entities, vector))
        live = sql.both(where, VALID)
        ranked = _touching(graph, vector, live, anchors, anchors, limit)
        hops = rr.neighbours(ranked.values(), anchors, limit=limit)
        reached = rr.merge(anchors, hops)
        for relation_id_, pair in _touching(graph, vector, live, hops, reached, limit).items():
            if relation_id_ not in ranked or pair[1] > ranked[relation_id_][1]:
                ranked[relation_id_] = pair
        return {"results": [relation.to_item(score=value)
                            for relation, value in rr.best_first(ranked, limit)]}

    def beside(self, query: str, vector: Sequence[float], where: str,
               memories: Sequence[str], limit: int) -> list[dict[str, Any]]:
        """The relations a memory search returns beside its results: those touching
        entities that the query or the returned memories name."""
        graph = self._graph()
        if graph.relations.is_empty():
            return []
        index = graph.entities.index(where)
        anchors = rr.merge(rr.named(index, list(memories), rr.IN_RESULTS),
                           rr.named(index, [query], rr.NAMED))
        if not anchors:
            return []
        ranked = _touching(graph, vector, sql.both(where, VALID), anchors, anchors, limit)
        return [relation.to_item(score=value) for relation, value in rr.best_first(ranked, limit)]

    def list(self, *, ids: Mapping[str, Any], entity: Any, relationship: Any, limit: int,
             show_invalid: bool) -> dict[str, Any]:
        """Memory.list_relations: newest first, at most ``limit``."""
        limit = check_limit(limit)
        clauses = [scope_where(self._scope(ids).without_actor())]
        if not show_invalid:
            clauses.append(VALID)
        if entity is not None:
            clauses.append(either_end([check_entity(entity)]))
        if relationship is not None:
            clauses.append(sql.equals("relationship", check_relationship(relationship)))
        found = self._graph().relations.select(" AND ".join(clauses))
        found.sort(key=lambda relation: (relation.created_at, relation.id), reverse=True)
        return {"results": [relation.to_item() for relation in found[:limit]]}

    def delete(self, *, relation_ids: Any, relations: Any, ids: Mapping[str, Any],
               principal: Principal | None) -> dict[str, Any]:
        """Memory.delete_relations: by id or by triple, within the caller's scope."""
        if (relation_ids is None) == (relations is None):
            raise ValidationError("give exactly one of 'relation_ids' or 'relations'.")
        where = scope_where(self._scope(ids).without_actor())
        wanted = _check_ids(relation_ids) if relation_ids is not None else None
        triples = check_triples(relations, types=False) if wanted is None else []
        graph = self._graph()
        with graph.writing():
            if wanted is not None:
                found = graph.relations.by_ids(wanted, where)
                missing = [i for i in wanted if i not in {r.id for r in found}]
            else:
                found, missing = _by_triples(graph.relations, triples, where)
            return {"deleted": self._delete(graph, found, principal), "not_found": missing}

    def delete_scope(self, scope: Scope, principal: Principal | None) -> int:
        """delete_all's cascade: every relation in the scope (by ``scope.actor_id``
        only, if set) and, without an actor, the scope's entities too."""
        graph = self._graph()
        where = scope_where(scope)
        with graph.writing():
            deleted = self._delete(graph, graph.relations.select(where), principal)
            if scope.actor_id is None:
                graph.entities.delete(where)
        return deleted

    @staticmethod
    def _delete(graph: RelationTables, found: list[Relation],
                principal: Principal | None) -> int:
        if not found:
            return 0
        count = graph.relations.delete_ids(relation.id for relation in found)
        if count:
            now = datetime.now(UTC)
            graph.log.record_soon([rh.history_row(r, DELETE, now=now, principal=principal)
                                   for r in found])
        return count

    def history(self, relation_id_: Any, *, ids: Mapping[str, Any]) -> dict[str, Any]:
        """Memory.relation_history: one relation's changes, oldest first."""
        if not isinstance(relation_id_, str) or not relation_id_.strip():
            raise ValidationError("'relation_id' must be a non-empty string.")
        where = scope_where(self._scope(ids).without_actor())
        graph = self._graph()
        graph.log.flush()
        rows = graph.history.of_relation(relation_id_.strip(), where)
        if not rows:
            raise NotFoundError(f"no relation with id {relation_id_!r} in this scope; "
                                "list or search relations to find the right id.")
        return {"results": [rh.entry(row) for row in rows]}


def _touching(graph: RelationTables, vector: Sequence[float], live: str,
              ends: Iterable[str], anchors: Mapping[str, float],
              limit: int) -> dict[str, tuple[Relation, float]]:
    """The ``limit`` best relations touching the entities ``ends`` (ties at the
    cut too), scored with ``anchors``. Ranked on their ids, ends and vectors
    first, so that only those are read whole."""
    keys = list(ends)
    if not keys:
        return {}
    found = graph.relations.touching(live, keys)
    if found.matrix is None:
        return {}
    cosines = cosine_scores(found.matrix, vector)
    best = rr.shortlist(found.row_ids, found.source_keys, found.target_keys, cosines, anchors,
                        limit)
    return rr.rank(zip(found.relations(list(best)), best.values(), strict=True), anchors)


def _check_ids(values: Any) -> list[str]:
    if (not isinstance(values, Sequence) or isinstance(values, str | bytes) or not values
            or not all(isinstance(v, str) and v.strip() for v in values)):
        raise ValidationError("'relation_ids' must be a non-empty list of relation ids, "
                              "as returned by add, search or list.")
    if len(values) > MAX_RELATIONS:
        raise ValidationError(f"'relation_ids' has {len(values)} items; at most "
                              f"{MAX_RELATIONS} per call: split it.")
    return list(dict.fromkeys(value.strip() for value in values))


_TRIPLES_PER_QUERY = 50  # three conditions each: well under Lance's 500 per filter


def _by_triples(table: RelationTable, triples: list[Triple],
                where: str) -> tuple[list[Relation], list[str]]:
    """The relations in scope matching these triples, and the triples matching none."""
    found: dict[str, Relation] = {}
    for start in range(0, len(triples), _TRIPLES_PER_QUERY):
        clauses = [" AND ".join([sql.equals("source_key", s), sql.equals("relationship", r),
                                 sql.equals("target_key", t)])
                   for s, r, t in (triple.key for triple in
                                   triples[start:start + _TRIPLES_PER_QUERY])]
        for relation in table.select(sql.both(where, "(" + " OR ".join(
                f"({clause})" for clause in clauses) + ")")):
            found[relation.id] = relation
    keys = {relation.key for relation in found.values()}
    missing = [f"{t.source} -[{t.relationship}]-> {t.target}" for t in triples
               if t.key not in keys]
    return list(found.values()), missing
