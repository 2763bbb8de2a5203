"""Relations through Memory: real LanceDB in a temporary directory, the real model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from lancemem.core.errors import NotFoundError, ScopeRequiredError, ValidationError
from lancemem.core.principal import Principal
from lancemem.memory.facade import Memory
from lancemem.search import relation_ranking as rr
from lancemem.search.retrieval import cosine_scores
from lancemem.storage import relation_consistency
from lancemem.storage.relation_schema import ENTITIES, RELATION_HISTORY, RELATIONS
from lancemem.storage.store import Store
from tests.attack import ATTACK_IDS

ALICE = {"user_id": "alice"}


def triple(source: str, relationship: str, target: str, **types: str) -> dict[str, str]:
    return {"source": source, "relationship": relationship, "target": target, **types}


def events(result: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    return [(r["event"], r["source"], r["relationship"], r["target"])
            for r in result["results"]]


def fullwidth(text: str) -> str:
    """``text`` in fullwidth letters (the same name key, other characters)."""
    return "".join(chr(ord(ch) + 0xFEE0) if "!" <= ch <= "~" else ch for ch in text)


def rows(memory: Memory, table: str) -> list[dict[str, Any]]:
    return memory.store.select(table, None)


def test_add_normalises_resolves_and_stores_a_triple_once(memory: Memory) -> None:
    first = memory.add_relations([triple("Alice", "works at", "Acme", source_type="Person"),
                                  triple("acme ", "Headquartered In", "Berlin")], **ALICE)
    assert events(first) == [("ADD", "Alice", "works_at", "Acme"),
                             ("ADD", "Acme", "headquartered_in", "Berlin")]
    item = first["results"][0]
    assert item["source_type"] == "person" and item["user_id"] == "alice"
    assert item["valid"] is True and "invalidated_at" not in item
    again = memory.add_relations([triple(" ALICE", "WorksAt", "acme"),
                                  triple("Alice", "works at", "Acme")], **ALICE)
    assert [(r["event"], r["id"]) for r in again["results"]] == [
        ("NONE", item["id"]), ("NONE", item["id"])]
    assert len(rows(memory, RELATIONS)) == 2
    assert sorted(r["name"] for r in rows(memory, ENTITIES)) == ["Acme", "Alice", "Berlin"]
    twice = memory.add_relations([triple("Bob", "likes", "tea"), triple("bob", "likes", "Tea")],
                                 **ALICE)
    assert [r["event"] for r in twice["results"]] == ["ADD", "NONE"]


def test_names_meaning_the_same_are_one_entity_and_others_are_not(memory: Memory) -> None:
    memory.add_relations([triple("Alice", "works at", "Acme Corp")], **ALICE)
    same = memory.add_relations([triple("Bob", "works at", "Acme Corporation"),
                                 triple("Carol", "works at", "Globex Corp"),
                                 triple("Dave", "works at", "Globex Corporation")], **ALICE)
    assert [r["target"] for r in same["results"]] == ["Acme Corp", "Globex Corp",
                                                      "Globex Corp"]
    # Close in meaning is not the same: other people, other numbers (0.92-0.96).
    other = memory.add_relations([triple("Sven Lindqvist", "knows", "Bjorn Lindqvist"),
                                  triple("Alice", "visited", "Museum 33"),
                                  triple("Alice", "visited", "Museum 34"),
                                  triple("Alice", "likes", "Alice Smith")], **ALICE)
    assert [(r["source"], r["target"]) for r in other["results"]] == [
        ("Sven Lindqvist", "Bjorn Lindqvist"), ("Alice", "Museum 33"), ("Alice", "Museum 34"),
        ("Alice", "Alice Smith")]


def test_every_relation_read_is_scoped_like_memories(memory: Memory) -> None:
    memory.add_relations([triple("Alice", "works at", "Acme")], user_id="alice",
                         agent_id="helper")
    memory.add_relations([triple("Alice", "works at", "Acme")], user_id="alice")
    memory.add_relations([triple("Alice", "works at", "Initech")], user_id="bob")
    assert len(memory.list_relations(user_id="alice")["results"]) == 2
    assert len(memory.list_relations(user_id="alice", agent_id="helper")["results"]) == 1
    assert [r["target"] for r in memory.list_relations(user_id="bob")["results"]] == [
        "Initech"]
    found = memory.search_relations("Where does Alice work?", user_id="bob")
    assert [r["target"] for r in found["results"]] == ["Initech"]
    for hostile in [value for value in ATTACK_IDS if value != "alice"]:
        assert memory.list_relations(user_id=hostile)["results"] == []
        assert memory.search_relations("Alice", user_id=hostile)["results"] == []
    with pytest.raises(ScopeRequiredError):
        memory.list_relations()
    with pytest.raises(ScopeRequiredError):
        memory.add_relations([triple("a", "b", "c")])


def test_search_reaches_one_hop_best_first(memory: Memory) -> None:
    added = memory.add_relations([
        triple("Alice", "works at", "Acme"), triple("Acme", "headquartered in", "Berlin"),
        triple("Alice", "likes", "pizza"), triple("Berlin", "capital of", "Germany"),
        triple("Bob", "lives in", "Paris")], **ALICE)
    ids = {r["relationship"]: r["id"] for r in added["results"]}
    found = memory.search_relations("Where is Alice's employer based?", **ALICE)["results"]
    got = [r["id"] for r in found]
    assert got[0] == ids["works_at"] and ids["headquartered_in"] in got
    assert ids["lives_in"] not in got  # Bob and Paris are neither named nor one hop away
    assert ids["capital_of"] not in got  # two hops from Alice
    scores = [r["score"] for r in found]
    assert scores == sorted(scores, reverse=True) and all(0 <= s <= 1 for s in scores)
    # No name in the query: the entity is found by the meaning of its name.
    by_meaning = memory.search_relations("pepperoni", **ALICE)["results"]
    assert by_meaning and by_meaning[0]["id"] == ids["likes"]
    assert len(memory.search_relations("Alice", limit=1, **ALICE)["results"]) == 1
    with pytest.raises(ValidationError):
        memory.search_relations("Alice", limit=101, **ALICE)


def test_memory_search_returns_relations_beside_results(memory: Memory) -> None:
    memory.add("I had lunch with Bob today", **ALICE)
    memory.add("The weather is nice", **ALICE)
    assert memory.search("lunch", **ALICE)["relations"] == []  # no relations at all yet
    memory.add_relations([triple("Bob", "works at", "Initech"),
                          triple("Alice", "likes", "tea"),
                          triple("Carol", "lives in", "Rome")], **ALICE)
    found = memory.search("who did I have lunch with?", limit=1, **ALICE)
    assert "Bob" in found["results"][0]["memory"]
    assert [(r["source"], r["target"]) for r in found["relations"]] == [("Bob", "Initech")]
    named = memory.search("does Alice like tea?", **ALICE)["relations"]
    assert ("Alice", "tea") in [(r["source"], r["target"]) for r in named]
    assert all(0 <= r["score"] <= 1 for r in named)
    assert ("Carol", "Rome") not in [(r["source"], r["target"]) for r in named]
    assert memory.search("Bob", user_id="bob")["relations"] == []


def test_a_hub_entity_is_ranked_as_reading_every_relation_would(
        db_path: Path, real_embedder: Any) -> None:
    # 150 relations on one entity, in chunks and across writes: only the best
    # few are read whole, vectors come from a per-process cache. The scores
    # must be exactly what each stored vector gives, cold or warm.
    foods = [f"dish number {i}" for i in range(150)]
    with Memory(store=Store(str(db_path)), embedder=real_embedder) as memory:
        for start in range(0, len(foods), 50):
            memory.add_relations([triple("Alice", "likes", food)
                                  for food in foods[start:start + 50]], **ALICE)
        memory.add_relations([triple("Alice", "likes", f"dish number {i}")
                              for i in range(3)], user_id="bob")  # another scope
        memory.add("Alice cooks on Sundays", **ALICE)
        query = "Does Alice like dish number 42?"
        vector = real_embedder.embed_query(query)
        stored = memory.store.select(RELATIONS, "user_id = 'alice'",
                                     columns=["id", "vector"])
        cosine = dict(zip([row["id"] for row in stored],
                          cosine_scores([row["vector"] for row in stored], vector),
                          strict=True))
        expected = sorted(((rr.score(rr.NAMED, c), i) for i, c in cosine.items()),
                          key=lambda pair: -pair[0])[:5]
        runs = [memory.search_relations(query, limit=5, **ALICE)["results"],
                memory.search_relations(query, limit=5, **ALICE)["results"],
                memory.search(query, limit=5, **ALICE)["relations"]]
    with Memory(store=Store(str(db_path)), embedder=real_embedder) as cold:
        runs.append(cold.search_relations(query, limit=5, **ALICE)["results"])
    for found in runs:
        assert [r["id"] for r in found] == [i for _, i in expected]
        assert [r["score"] for r in found] == pytest.approx([s for s, _ in expected], abs=1e-6)
        assert all(r["user_id"] == "alice" for r in found)
    assert runs[0][0]["target"] == "dish number 42"


def test_a_triple_added_again_in_another_spelling_is_ranked_on_its_new_vector(
        memory: Memory, real_embedder: Any) -> None:
    # Same keys, so the same relation id; other characters, so another sentence
    # and vector. A vector kept from the first life must not be used.
    memory.add_relations([triple("Alice", "likes", "green tea")], **ALICE)
    query = "Does Alice like green tea?"
    first = memory.search_relations(query, **ALICE)["results"][0]
    memory.delete_all(**ALICE)  # the relation and its entities
    again = memory.add_relations([triple(fullwidth("ALICE"), "likes", fullwidth("GREEN TEA"))],
                                 **ALICE)["results"][0]
    assert again["id"] == first["id"] and again["source"] == fullwidth("ALICE")
    [row] = memory.store.select(RELATIONS, None, columns=["vector"])
    cosine = cosine_scores([row["vector"]], real_embedder.embed_query(query))[0]
    found = memory.search_relations(query, **ALICE)["results"][0]
    assert found["score"] == pytest.approx(rr.score(rr.NAMED, cosine), abs=1e-6)
    assert found["score"] != pytest.approx(first["score"], abs=1e-4)


def test_list_filters_by_entity_and_relationship_newest_first(memory: Memory) -> None:
    for target in ("Acme", "Initech", "Globex"):
        memory.add_relations([triple("Alice", "worked at", target)], **ALICE)
    memory.add_relations([triple("Bob", "likes", "Acme")], **ALICE)
    listed = memory.list_relations(entity="ACME ", **ALICE)["results"]
    assert [(r["source"], r["target"]) for r in listed] == [("Bob", "Acme"), ("Alice", "Acme")]
    assert [r["target"] for r in memory.list_relations(relationship="Worked At", **ALICE)[
        "results"]] == ["Globex", "Initech", "Acme"]
    assert len(memory.list_relations(limit=2, **ALICE)["results"]) == 2
    assert memory.list_relations(entity="nobody", **ALICE)["results"] == []


def test_replace_invalidates_and_re_adding_makes_valid_again(memory: Memory) -> None:
    acme = memory.add_relations([triple("Alice", "works at", "Acme"),
                                 triple("Alice", "likes", "tea")], **ALICE)["results"][0]
    moved = memory.add_relations([triple("Alice", "works at", "Globex")], replace=True,
                                 actor_id="alice", **ALICE)
    assert events(moved) == [("ADD", "Alice", "works_at", "Globex"),
                             ("INVALIDATE", "Alice", "works_at", "Acme")]
    old = moved["results"][1]
    assert old["id"] == acme["id"] and old["valid"] is False and old["invalidated_at"]
    current = memory.list_relations(**ALICE)["results"]
    assert {r["target"] for r in current} == {"Globex", "tea"}
    every = memory.list_relations(show_invalid=True, **ALICE)["results"]
    assert {(r["target"], r["valid"]) for r in every} == {
        ("Globex", True), ("tea", True), ("Acme", False)}
    assert acme["id"] not in [r["id"] for r in memory.search_relations(
        "Where does Alice work?", **ALICE)["results"]]
    back = memory.add_relations([triple("Alice", "works at", "Acme")], **ALICE)
    assert events(back) == [("ADD", "Alice", "works_at", "Acme")]
    assert back["results"][0]["valid"] is True
    history = memory.relation_history(acme["id"], **ALICE)["results"]
    assert [(h["event"], h["old_relation"], h["new_relation"]) for h in history] == [
        ("ADD", None, "Alice -[works_at]-> Acme"),
        ("INVALIDATE", "Alice -[works_at]-> Acme", "Alice -[works_at]-> Globex"),
        ("ADD", None, "Alice -[works_at]-> Acme")]
    # Relations added in one call never invalidate each other.
    both = memory.add_relations([triple("Bob", "lives in", "Rome"),
                                 triple("Bob", "lives in", "Oslo")], replace=True, **ALICE)
    assert [r["event"] for r in both["results"]] == ["ADD", "ADD"]


def test_delete_by_id_or_triple_within_the_scope(memory: Memory) -> None:
    added = memory.add_relations([triple("Alice", "works at", "Acme"),
                                  triple("Alice", "likes", "tea")], **ALICE)["results"]
    other = memory.add_relations([triple("Alice", "works at", "Acme")], user_id="bob")
    bob_id = other["results"][0]["id"]
    assert memory.delete_relations(relation_ids=[bob_id, "x' OR '1'='1", "*"], **ALICE) == {
        "deleted": 0, "not_found": [bob_id, "x' OR '1'='1", "*"]}
    assert memory.delete_relations(relations=[triple("alice", "Likes", "TEA"),
                                              triple("a", "b", "c")], **ALICE) == {
        "deleted": 1, "not_found": ["a -[b]-> c"]}
    assert memory.delete_relations(relation_ids=[added[0]["id"]], **ALICE) == {
        "deleted": 1, "not_found": []}
    assert memory.list_relations(**ALICE)["results"] == []
    assert [r["id"] for r in memory.list_relations(user_id="bob")["results"]] == [bob_id]
    for bad in ({}, {"relation_ids": [], "relations": None},
                {"relation_ids": ["a"], "relations": [triple("a", "b", "c")]},
                {"relation_ids": [""]}, {"relation_ids": "abc"}):
        with pytest.raises(ValidationError):
            memory.delete_relations(**bad, **ALICE)
    with pytest.raises(ValidationError):
        memory.delete_relations(relations=[triple("a", "b", "c", source_type="x")], **ALICE)
    history = memory.relation_history(added[0]["id"], **ALICE)["results"]
    assert [(h["event"], h["old_relation"], h["new_relation"]) for h in history] == [
        ("ADD", None, "Alice -[works_at]-> Acme"), ("DELETE", "Alice -[works_at]-> Acme", None)]
    with pytest.raises(NotFoundError):
        memory.relation_history(added[0]["id"], user_id="bob")


def test_delete_all_cascades_to_the_scope_relations(memory: Memory) -> None:
    memory.add("Alice works at Acme", **ALICE)
    memory.add_relations([triple("Alice", "works at", "Acme")], actor_id="sam", **ALICE)
    memory.add_relations([triple("Alice", "likes", "tea")], run_id="r1", **ALICE)
    memory.add_relations([triple("Alice", "likes", "tea")], user_id="bob")
    assert memory.delete_all(filters={"topic": "x"}, **ALICE) == {
        "deleted": 0, "relations_deleted": 0}
    assert memory.delete_all(actor_id="sam", **ALICE) == {"deleted": 0, "relations_deleted": 1}
    assert memory.delete_all(**ALICE) == {"deleted": 1, "relations_deleted": 1}
    assert memory.list_relations(show_invalid=True, **ALICE)["results"] == []
    assert {r["user_id"] for r in rows(memory, ENTITIES)} == {"bob"}
    assert len(memory.list_relations(user_id="bob")["results"]) == 1


def test_history_records_scope_actor_and_principal(memory: Memory) -> None:
    caller = Principal(kind="token", id="tk_1", user_id="alice", label="bot")
    added = memory.add_relations([triple("Alice", "works at", "Acme")], actor_id="sam",
                                 principal=caller, run_id="r1", **ALICE)["results"][0]
    [row] = memory.relation_history(added["id"], **ALICE)["results"]
    assert (row["user_id"], row["run_id"], row["actor_id"], row["principal"],
            row["principal_label"]) == ("alice", "r1", "sam", "token:tk_1", "bot")
    assert (row["source"], row["relationship"], row["target"]) == ("Alice", "works_at", "Acme")


def test_a_crash_before_history_is_repaired_on_open(db_path: Path, real_embedder: Any) -> None:
    with Memory(store=Store(str(db_path)), embedder=real_embedder) as memory:
        kept = memory.add_relations([triple("Alice", "works at", "Acme"),
                                     triple("Alice", "likes", "tea")], **ALICE)["results"]
        memory.add_relations([triple("Alice", "works at", "Globex")], replace=True, **ALICE)
        memory.delete_relations(relation_ids=[kept[1]["id"]], **ALICE)
    store = Store(str(db_path))
    store.delete(RELATION_HISTORY, "event <> 'ADD' OR relation_id = "
                 f"'{kept[0]['id']}'")  # as if each process died after committing
    # The repair writes each relation's last event (as for memories): Acme's
    # INVALIDATE, tea's DELETE; Acme's lost ADD stays lost.
    assert len(relation_consistency.missing_history(store)) == 2
    with Memory(store=Store(str(db_path)), embedder=real_embedder) as memory:
        memory.ensure_open()
        assert relation_consistency.missing_history(memory.store) == []
        history = memory.relation_history(kept[0]["id"], **ALICE)["results"]
        assert [h["event"] for h in history] == ["INVALIDATE"]
        assert [h["event"] for h in memory.relation_history(kept[1]["id"], **ALICE)[
            "results"]] == ["ADD", "DELETE"]


def test_attack_strings_are_plain_names(memory: Memory) -> None:
    names = ["*", "%", "_", "o'brien", "x' OR '1'='1", "\\", "50%_off"]
    added = memory.add_relations([triple(name, "is", "thing") for name in names], **ALICE)
    assert [r["source"] for r in added["results"]] == names
    for name in names:
        listed = memory.list_relations(entity=name, **ALICE)["results"]
        assert [r["source"] for r in listed] == [name], name
    assert memory.list_relations(relationship="is", **ALICE)["results"] != []
    with pytest.raises(ValidationError):
        memory.list_relations(relationship="*", **ALICE)  # no letters: not a relationship


def test_a_hundred_relations_in_one_call_and_not_one_more(memory: Memory) -> None:
    many = [triple(f"Person {i}", "works at", f"Company {i % 7}") for i in range(100)]
    added = memory.add_relations(many, **ALICE)["results"]
    assert [r["event"] for r in added] == ["ADD"] * 100
    assert len({r["id"] for r in added}) == 100  # "Person 1" and "Person 2" stay apart
    assert len(rows(memory, ENTITIES)) == 107
    with pytest.raises(ValidationError, match="at most 100"):
        memory.add_relations([*many, triple("x", "y", "z")], **ALICE)
    gone = memory.delete_relations(relation_ids=[r["id"] for r in added], **ALICE)
    assert gone == {"deleted": 100, "not_found": []}
    with pytest.raises(ValidationError, match="at most 100"):
        memory.delete_relations(relation_ids=[f"id-{i}" for i in range(101)], **ALICE)
