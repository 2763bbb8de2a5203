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

from collections.abc import Iterable, Mapping, Sequence

from ..core.relations import Relation, mentions, name_key

ANCHOR_WEIGHT = 0.5
NAMED = 1.0
IN_RESULTS = 0.8
HOP = 0.8
ENTITY_QUERY_MIN = 0.5
RELATION_QUERY_MIN = 0.5
ENTITY_MATCH = 0.9  # an added name this close to a stored entity's name is that entity
ENTITY_CANDIDATES = 10  # entities matched by meaning, at most
CANDIDATES = 50  # relations read per anchor set before ranking


def named(entities: Iterable[tuple[str, str]], texts: Sequence[str],
          weight: float) -> dict[str, float]:
    """Keys of the entities (key, match key) whose words appear in ``texts``."""
    if not texts:
        return {}
    words = mentions(texts)
    return {key: weight for key, match in entities if match and match in words}


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


def best_first(ranked: Mapping[str, tuple[Relation, float]],
               limit: int) -> list[tuple[Relation, float]]:
    """The ``limit`` best, highest score first, then newest, then by id."""
    order = sorted(ranked.values(), key=lambda pair: (-pair[1], -pair[0].updated_at.timestamp(),
                                                      pair[0].id))
    return order[:limit]
