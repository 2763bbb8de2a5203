"""The pure rules of relations: normalisation, input checks, ids, ranking."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from lancemem.core.errors import ValidationError
from lancemem.core.relations import (
    MAX_NAME,
    MAX_RELATIONS,
    Relation,
    check_triples,
    entity_id,
    match_key,
    mentions,
    name_key,
    relation_id,
    snake_case,
)
from lancemem.search import relation_ranking as rr
from tests.attack import LOOKALIKES


@pytest.mark.parametrize(("given", "expected"), [
    ("works at", "works_at"), ("Works At", "works_at"), ("WorksAt", "works_at"),
    ("works-at", "works_at"), ("  works   at  ", "works_at"), ("HEADQUARTERED IN",
                                                             "headquartered_in"),
    ("is_married_to", "is_married_to"), ("lives in (since 2020)", "lives_in_since_2020"),
    ("\uff57\uff4f\uff52\uff4b\uff53 \uff41\uff54", "works_at"), ("vit à", "vit_à"), ("__x__", "x"),
])
def test_relationships_become_lower_snake_case(given: str, expected: str) -> None:
    assert snake_case(given) == expected


def test_entity_keys_ignore_case_width_and_spacing_only() -> None:
    assert name_key("Alice") == name_key(" alice ") == name_key("ALICE") == "alice"
    assert name_key("New  York") == name_key("new york") != name_key("NewYork")
    assert name_key(LOOKALIKES[0]) == "alice"  # full-width letters are the same name
    assert name_key(LOOKALIKES[1]) != "alice"  # a Cyrillic letter makes another name
    assert match_key("Acme, Inc.") == "acme inc"
    assert "acme inc" in mentions(["We met at ACME Inc. yesterday"])
    assert "alice" in mentions(["Where is Alice's employer based?"])


def test_mentions_are_runs_of_up_to_eight_words() -> None:
    words = mentions(["one two three four five six seven eight nine"])
    assert "one two three four five six seven eight" in words
    assert "one two three four five six seven eight nine" not in words
    assert mentions([""]) == set()


def _triple(**overrides: object) -> dict[str, object]:
    return {"source": "Alice", "relationship": "works at", "target": "Acme", **overrides}


@pytest.mark.parametrize(("items", "says"), [
    ([], "non-empty list"),
    ("Alice works at Acme", "non-empty list"),
    ([_triple()] * (MAX_RELATIONS + 1), f"at most {MAX_RELATIONS}"),
    (["x"], "relations[0] must be an object"),
    ([_triple(), _triple(taget="x")], "relations[1] has unknown keys ['taget']"),
    ([{"source": "a", "target": "b"}], "lacks 'relationship'"),
    ([_triple(source="  ")], "'relations[0].source' is empty"),
    ([_triple(target=5)], "'relations[0].target' must be a string"),
    ([_triple(source="a\nb")], "control character"),
    ([_triple(source="x" * (MAX_NAME + 1))], f"at most {MAX_NAME}"),
    ([_triple(relationship="!!!")], "no letters or digits"),
    ([_triple(relationship="x" * 65)], "at most 64"),
    ([_triple(source_type="")], "'relations[0].source_type' is empty"),
])
def test_bad_relations_are_refused_with_the_place_and_the_fix(items: object,
                                                              says: str) -> None:
    with pytest.raises(ValidationError) as caught:
        check_triples(items)
    assert says in caught.value.message


def test_a_checked_triple_is_stripped_and_normalised() -> None:
    [triple] = check_triples([_triple(source=" Alice ", source_type="Person Type")])
    assert (triple.source, triple.relationship, triple.target, triple.source_type) == (
        "Alice", "works_at", "Acme", "person_type")
    assert check_triples([_triple()] * MAX_RELATIONS)[-1].key == ("alice", "works_at", "acme")
    with pytest.raises(ValidationError, match="unknown keys"):
        check_triples([_triple(source_type="x")], types=False)


def test_ids_depend_on_the_exact_scope_and_the_keys() -> None:
    alice = {"user_id": "alice", "agent_id": None, "run_id": None}
    with_agent = {**alice, "agent_id": "helper"}
    key = ("alice", "works_at", "acme")
    assert relation_id(alice, key) == relation_id(dict(alice), key)
    assert relation_id(alice, key) != relation_id(with_agent, key)
    assert relation_id(alice, key) != relation_id({"user_id": "alice'", "agent_id": None,
                                                   "run_id": None}, key)
    # A separator inside a value cannot make two scopes collide.
    assert entity_id({"user_id": "a", "agent_id": "b"}, "x") != entity_id(
        {"user_id": "a\", \"b", "agent_id": None}, "x")


def _relation(source: str, target: str, moment: float = 0.0) -> Relation:
    when = datetime.fromtimestamp(1_700_000_000 + moment, UTC)
    return Relation(id=f"{source}-{target}", source=source, relationship="knows",
                    target=target, source_type=None, target_type=None,
                    scope={"user_id": "u"}, actor_id=None, valid=True, invalidated_at=None,
                    created_at=when, updated_at=when)


def test_scores_stay_in_zero_one_and_order_by_anchor_then_meaning() -> None:
    assert rr.score(1.0, 1.0) == 1.0 and rr.score(0.0, -0.4) == 0.0
    assert rr.score(1.0, 2.0) == 1.0
    anchors = {"alice": rr.NAMED}
    ranked = rr.rank([(_relation("Alice", "Acme"), 0.2), (_relation("Bob", "Carol"), 0.9)],
                     anchors)
    order = [relation.id for relation, _ in rr.best_first(ranked, 10)]
    assert order == ["Alice-Acme", "Bob-Carol"]  # 0.5 + 0.1 against 0 + 0.45
    hops = rr.neighbours(ranked.values(), anchors, limit=10)
    assert hops == {"acme": rr.HOP * rr.NAMED}
    assert rr.merge({"a": 0.3}, {"a": 0.7, "b": 0.1}) == {"a": 0.7, "b": 0.1}


def test_ties_keep_the_newest_first() -> None:
    ranked = rr.rank([(_relation("A", "B", 1), 0.5), (_relation("A", "C", 2), 0.5)],
                     {"a": 1.0})
    assert [r.id for r, _ in rr.best_first(ranked, 10)] == ["A-C", "A-B"]


def test_shortlist_keeps_exactly_what_ranking_everything_would_return() -> None:
    import random

    rng = random.Random(5)
    names = ["Alice", "Bob", "Carol", "Dave", "Erin", "Frank"]
    anchors = {"alice": rr.NAMED, "bob": rr.IN_RESULTS, "carol": rr.HOP * rr.NAMED}
    for case in range(200):
        candidates = []
        for i in range(rng.randrange(0, 60)):
            source, target = rng.sample(names, 2)
            cosine = rng.choice([0.1, 0.3, 0.3, 0.5, -0.2, 1.2, rng.uniform(-1, 1)])
            candidates.append((_relation(source, f"{target}{i}", i), cosine))
        candidates += candidates[:rng.randrange(0, 5)]  # read twice (two key chunks)
        limit = rng.randrange(1, 12)
        everything = rr.best_first(rr.rank(candidates, anchors), limit)
        short = rr.shortlist([r.id for r, _ in candidates],
                             [name_key(r.source) for r, _ in candidates],
                             [name_key(r.target) for r, _ in candidates],
                             [c for _, c in candidates], anchors, limit)
        by_id = {r.id: r for r, _ in candidates}
        kept = rr.best_first(rr.rank([(by_id[i], c) for i, c in short.items()], anchors), limit)
        assert [(r.id, s) for r, s in kept] == [(r.id, s) for r, s in everything], case
        assert len(short) <= len(by_id)


def test_shortlist_keeps_every_tie_at_the_cut() -> None:
    short = rr.shortlist(["a", "b", "c", "d"], ["x", "x", "x", "y"], ["z"] * 4,
                         [0.4, 0.4, 0.9, 0.4], {"x": rr.NAMED}, 2)
    assert short == {"a": 0.4, "b": 0.4, "c": 0.9}
    assert rr.shortlist([], [], [], [], {"x": 1.0}, 5) == {}
