"""How relations are ranked against a query: pure functions.

A relation's score is a relevance in [0, 1], half from its *anchor* and
half from its own meaning:

    score = ANCHOR_WEIGHT * anchor + (1 - ANCHOR_WEIGHT) * max(0, cosine)

``cosine`` compares the query with the relation's sentence ("Alice works at
Acme"). ``anchor`` says how the relation was reached, through the best of
its two ends: an entity the query names (NAMED, 1.0), one whose name is
close in meaning to the query (its cosine, at least ENTITY_QUERY_MIN), one
named by a memory that the same search returned (IN_RESULTS), or, one hop
further, a neighbour of such an entity (HOP times that entity's anchor). A
relation found by its sentence alone (cosine at least RELATION_QUERY_MIN)
has anchor 0. Chosen by hand on the README's examples: the numbers are
documented there, and the tests pin the orderings they imply.
"""

from __future__ import annotations

import re
from collections.abc import Hashable, Iterable, Mapping, Sequence

from ..core.relations import Entity, EntityIndex, Relation, mentions, name_key
from .retrieval import cosine_array

ANCHOR_WEIGHT = 0.5
NAMED = 1.0
IN_RESULTS = 0.8
HOP = 0.8
ENTITY_QUERY_MIN = 0.5
RELATION_QUERY_MIN = 0.5
# An added name this close in meaning to a stored entity's name is that entity
# (and only if both carry the same numbers). Names are a weak signal for the
# model: among 1,200 made-up people, 90 place names and 50 numbered museums,
# 212 pairs of different entities scored 0.90 or more ("Sven Lindqvist" and
# "Bjorn Lindqvist" 0.918, "Museum 33" and "Museum 34" 0.962), none 0.97;
# "Acme Corp" and "Acme Corporation" score 0.984, "New York" and "NYC" 0.937.
ENTITY_MATCH = 0.97
ENTITY_CANDIDATES = 10  # entities matched by meaning, at most


_NUMBER = re.compile(r"\d+")


def same_numbers(first: str, second: str) -> bool:
    """Whether two names carry the same numbers ("Room 101" is not "Room 102")."""
    return _NUMBER.findall(first) == _NUMBER.findall(second)


def named(index: EntityIndex, texts: Sequence[str], weight: float) -> dict[str, float]:
    """Keys of the scope's entities whose words appear in ``texts``, each with ``weight``."""
    if not texts or not index.entities:
        return {}
    words = mentions(texts)
    return {entity.key: weight for entity, match in zip(index.entities, index.match_keys,
                                                        strict=True)
            if match and match in words}


def meant(index: EntityIndex, vector: Sequence[float]) -> dict[str, float]:
    """Keys of the ENTITY_CANDIDATES entities whose names are closest in meaning
    to the query, if at least ENTITY_QUERY_MIN, each with its cosine."""
    if index.matrix is None or not index.entities:
        return {}
    import numpy as np

    scores = cosine_array(index.matrix, vector)
    best = np.argsort(-scores, kind="stable")[:ENTITY_CANDIDATES]
    return merge(*({index.entities[i].key: float(scores[i])} for i in best
                   if scores[i] >= ENTITY_QUERY_MIN))


def closest(index: EntityIndex, vector: Sequence[float]) -> tuple[Entity, float] | None:
    """The entity whose name is closest in meaning to ``vector``, with its cosine."""
    if index.matrix is None or not index.entities:
        return None
    scores = cosine_array(index.matrix, vector)
    best = int(scores.argmax())
    return index.entities[best], float(scores[best])


def merge(*anchors: Mapping[str, float]) -> dict[str, float]:
    """Anchor maps combined, each key keeping its best weight."""
    merged: dict[str, float] = {}
    for anchor in anchors:
        for key, weight in anchor.items():
            merged[key] = max(weight, merged.get(key, 0.0))
    return merged


def anchor_of(relation: Relation, anchors: Mapping[str, float]) -> float:
    """The best anchor weight of a relation's two ends."""
    return max(anchors.get(name_key(relation.source), 0.0),
               anchors.get(name_key(relation.target), 0.0))


def score(anchor: float, cosine: float) -> float:
    """A relation's relevance in [0, 1] (module docstring)."""
    return ANCHOR_WEIGHT * anchor + (1.0 - ANCHOR_WEIGHT) * max(0.0, min(1.0, cosine))


def rank(candidates: Iterable[tuple[Relation, float]],
         anchors: Mapping[str, float]) -> dict[str, tuple[Relation, float]]:
    """Each candidate (relation, cosine) with its score, by relation id (the best
    score where a relation was reached twice)."""
    best: dict[str, tuple[Relation, float]] = {}
    for relation, cosine in candidates:
        value = score(anchor_of(relation, anchors), cosine)
        if relation.id not in best or value > best[relation.id][1]:
            best[relation.id] = (relation, value)
    return best


def neighbours(ranked: Iterable[tuple[Relation, float]], anchors: Mapping[str, float],
               *, limit: int) -> dict[str, float]:
    """The far ends of the ``limit`` best anchored relations, one hop from an
    anchor, with HOP times that anchor's weight."""
    hops: dict[str, float] = {}
    best = sorted(ranked, key=lambda pair: -pair[1])[:limit]
    for relation, _ in best:
        for near, far in ((relation.source, relation.target),
                          (relation.target, relation.source)):
            weight = anchors.get(name_key(near), 0.0)
            if weight and name_key(far) not in anchors:
                hops[name_key(far)] = max(HOP * weight, hops.get(name_key(far), 0.0))
    return hops


def shortlist(ids: Sequence[Hashable], source_keys: Sequence[str], target_keys: Sequence[str],
              cosines: Sequence[float], anchors: Mapping[str, float],
              limit: int) -> dict[Hashable, float]:
    """Of candidate relations given as columns (an id, both ends' keys, the
    cosine to the query), those whose score is among the ``limit`` best, ties
    at the cut included, each with its cosine: the only ones worth reading
    whole (``rank`` then scores them as they are). An id given twice is kept once.
    """
    import numpy as np

    first: dict[Hashable, int] = {}
    for position, id_ in enumerate(ids):
        first.setdefault(id_, position)
    if not first:
        return {}
    at = list(first.values())
    anchor = np.fromiter((max(anchors.get(source_keys[i], 0.0), anchors.get(target_keys[i], 0.0))
                          for i in at), dtype=np.float64, count=len(at))
    meaning = np.clip(np.asarray([cosines[i] for i in at], dtype=np.float64), 0.0, 1.0)
    values = ANCHOR_WEIGHT * anchor + (1.0 - ANCHOR_WEIGHT) * meaning
    if len(values) > limit:
        cut = np.partition(values, len(values) - limit)[len(values) - limit]
        at = [at[k] for k in np.flatnonzero(values >= cut).tolist()]
    return {ids[i]: float(cosines[i]) for i in at}


def best_first(ranked: Mapping[str, tuple[Relation, float]],
               limit: int) -> list[tuple[Relation, float]]:
    """The ``limit`` best, highest score first, then newest, then by id."""
    order = sorted(ranked.values(), key=lambda pair: (-pair[1], -pair[0].updated_at.timestamp(),
                                                      pair[0].id))
    return order[:limit]
