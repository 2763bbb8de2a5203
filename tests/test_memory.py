"""The Memory API on real LanceDB in tmp dirs, with the real default model."""

from __future__ import annotations

import math

import pytest

from lancemem.core.errors import NotFoundError, ScopeRequiredError, ValidationError
from lancemem.core.records import text_hash
from lancemem.memory.facade import Memory

HOSTILE_IDS = [
    "x' OR '1'='1",
    "o'brien",
    "50%_off",
    "a\\' OR 1=1) --",
    "'; DROP TABLE memories; --",
    "%",
    "_",
    "\\",
    "ユーザー日本",
    "Zoë \"quoted\"",
]


def test_add_returns_ids_and_get_reads_back(memory: Memory) -> None:
    result = memory.add("I love pizza with olives", user_id="alice", metadata={"topic": "food"})
    [added] = result["results"]
    assert added["event"] == "ADD"
    assert added["user_id"] == "alice"
    assert added["role"] == "user"
    item = memory.get(added["id"], user_id="alice")
    assert item["memory"] == "I love pizza with olives"
    assert item["hash"] == text_hash("I love pizza with olives")
    assert item["metadata"] == {"topic": "food"}
    assert item["user_id"] == "alice"
    assert "agent_id" not in item and "actor_id" not in item
    assert item["created_at"] == item["updated_at"]
    assert item["created_at"].endswith("+00:00")


def test_messages_attribute_actor_and_role_and_skip_system(memory: Memory) -> None:
    messages = [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "My sister Ana lives in Lisbon", "name": "dave"},
        {"role": "assistant", "content": "Noted that Ana lives in Lisbon"},
    ]
    result = memory.add(messages, user_id="dave", agent_id="helper", actor_id="fallback")
    added = result["results"]
    assert [r["memory"] for r in added] == [
        "My sister Ana lives in Lisbon", "Noted that Ana lives in Lisbon"]
    assert [(r["actor_id"], r["role"]) for r in added] == [("dave", "user"),
                                                          ("fallback", "assistant")]
    listed = memory.get_all(user_id="dave", agent_id="helper")["results"]
    assert {(i["memory"], i["actor_id"], i["role"]) for i in listed} == {
        ("My sister Ana lives in Lisbon", "dave", "user"),
        ("Noted that Ana lives in Lisbon", "fallback", "assistant"),
    }
    by_actor = memory.get_all(user_id="dave", actor_id="dave")["results"]
    assert [i["memory"] for i in by_actor] == ["My sister Ana lives in Lisbon"]


def test_exact_duplicate_in_same_scope_is_not_stored_twice(memory: Memory) -> None:
    first = memory.add("Allergic to peanuts", user_id="alice")["results"][0]
    again = memory.add("  Allergic to peanuts ", user_id="alice")["results"][0]
    assert again == {"id": first["id"], "memory": "Allergic to peanuts", "event": "NONE",
                     "user_id": "alice"}
    other_scope = memory.add("Allergic to peanuts", user_id="alice", agent_id="x")["results"][0]
    assert other_scope["event"] == "ADD" and other_scope["id"] != first["id"]
    assert len(memory.get_all(user_id="alice")["results"]) == 2
    # The same text in a narrower scope only is not a duplicate in the broader one.
    memory.add("Walks the dog at six", user_id="alice", agent_id="x", run_id="r")
    broader = memory.add("Walks the dog at six", user_id="alice")["results"][0]
    assert broader["event"] == "ADD"
    assert memory.add("Walks the dog at six", user_id="alice")["results"][0]["id"] == (
        broader["id"])
    twice_in_one_call = memory.add(["Likes tea", "Likes tea"], user_id="bob")["results"]
    assert [r["event"] for r in twice_in_one_call] == ["ADD", "NONE"]


def test_search_ranks_by_meaning_with_scores(memory: Memory) -> None:
    memory.add(["I love pizza with olives", "My car is a red Toyota",
                "I work as a nurse in Porto"], user_id="alice")
    results = memory.search("what food does she like?", user_id="alice")["results"]
    assert results[0]["memory"] == "I love pizza with olives"
    scores = [r["score"] for r in results]
    assert scores == sorted(scores, reverse=True)
    assert all(0.0 <= s <= 1.0 for s in scores)
    top = memory.search("what food does she like?", user_id="alice", limit=1)["results"]
    assert len(top) == 1
    strict = memory.search("what food does she like?", user_id="alice",
                           threshold=scores[0] - 1e-6)["results"]
    assert [r["memory"] for r in strict] == ["I love pizza with olives"]


def test_list_is_newest_first_with_limit(memory: Memory) -> None:
    for text in ["first fact", "second fact", "third fact"]:
        memory.add(text, user_id="alice")
    listed = memory.get_all(user_id="alice")["results"]
    assert [i["memory"] for i in listed] == ["third fact", "second fact", "first fact"]
    assert [i["memory"] for i in memory.get_all(user_id="alice", limit=2)["results"]] == [
        "third fact", "second fact"]


def test_equality_filters_on_metadata_and_actor(memory: Memory) -> None:
    memory.add("Pizza on Fridays", user_id="u", metadata={"topic": "food", "stars": 5,
                                                         "fav": True})
    memory.add("Runs on Sundays", user_id="u", metadata={"topic": "sport", "stars": 3,
                                                        "fav": False})
    memory.add("Eats at 7", user_id="u", actor_id="nurse", metadata={"topic": "food"})

    def texts(filters: dict) -> set[str]:
        return {i["memory"] for i in memory.get_all(user_id="u", filters=filters)["results"]}

    assert texts({"topic": "food"}) == {"Pizza on Fridays", "Eats at 7"}
    assert texts({"metadata.stars": 5}) == {"Pizza on Fridays"}
    assert texts({"stars": "5"}) == set()
    assert texts({"fav": False}) == {"Runs on Sundays"}
    assert texts({"actor_id": "nurse"}) == {"Eats at 7"}
    found = memory.search("food", user_id="u", filters={"topic": "sport"})["results"]
    assert [i["memory"] for i in found] == ["Runs on Sundays"]


def test_update_changes_text_and_metadata_but_never_scope(memory: Memory) -> None:
    added = memory.add("Lives in Paris", user_id="alice", agent_id="a",
                       metadata={"k": 1})["results"][0]
    updated = memory.update(added["id"], text="Lives in Berlin", metadata={"k": 2},
                            user_id="alice")
    assert updated["memory"] == "Lives in Berlin"
    assert updated["hash"] == text_hash("Lives in Berlin")
    assert updated["metadata"] == {"k": 2}
    assert (updated["user_id"], updated["agent_id"]) == ("alice", "a")
    assert updated["updated_at"] > updated["created_at"]
    found = memory.search("which city in Germany?", user_id="alice")["results"]
    assert found[0]["id"] == added["id"] and found[0]["memory"] == "Lives in Berlin"
    only_meta = memory.update(added["id"], metadata={"k": 3}, user_id="alice")
    assert only_meta["memory"] == "Lives in Berlin" and only_meta["metadata"] == {"k": 3}
    with pytest.raises(ValidationError):
        memory.update(added["id"], user_id="alice")


def test_history_records_add_update_delete_with_actor(memory: Memory) -> None:
    added = memory.add({"role": "user", "content": "Owns a cat", "name": "maria"},
                       user_id="maria")["results"][0]
    memory.update(added["id"], text="Owns two cats", user_id="maria")
    memory.delete(added["id"], user_id="maria")
    entries = memory.history(added["id"], user_id="maria")["results"]
    assert [(e["event"], e["old_memory"], e["new_memory"], e["is_deleted"]) for e in entries] == [
        ("ADD", None, "Owns a cat", False),
        ("UPDATE", "Owns a cat", "Owns two cats", False),
        ("DELETE", "Owns two cats", None, True),
    ]
    assert {(e["actor_id"], e["role"], e["user_id"], e["memory_id"]) for e in entries} == {
        ("maria", "user", "maria", added["id"])}
    with pytest.raises(NotFoundError):
        memory.get(added["id"], user_id="maria")


def test_delete_all_has_no_row_cap_and_keeps_other_scopes(memory: Memory) -> None:
    memory.add([f"fact number {i}" for i in range(250)], user_id="bulk")
    memory.add("keep me", user_id="bulk-other")
    memory.add("keep me too", user_id="bulk", agent_id="x")
    assert memory.delete_all(user_id="bulk", agent_id="y") == {"deleted": 0, "relations_deleted": 0}
    assert memory.delete_all(user_id="bulk") == {"deleted": 251, "relations_deleted": 0}
    assert memory.get_all(user_id="bulk")["results"] == []
    assert [i["memory"] for i in memory.get_all(user_id="bulk-other")["results"]] == ["keep me"]
    with pytest.raises(ScopeRequiredError):
        memory.delete_all()


@pytest.mark.parametrize("hostile", HOSTILE_IDS)
def test_hostile_ids_never_reach_other_users(memory: Memory, hostile: str) -> None:
    victim = memory.add("The victim's secret code is 4711", user_id="victim",
                        metadata={"note": hostile})["results"][0]
    mine = memory.add(f"My own note about {hostile}", user_id=hostile)["results"][0]
    assert mine["user_id"] == hostile

    for result in (memory.search("secret code", user_id=hostile, limit=50),
                   memory.get_all(user_id=hostile),
                   memory.search("secret code", user_id=hostile, filters={"note": hostile}),
                   memory.get_all(user_id=hostile, actor_id=hostile)):
        assert all(item["user_id"] == hostile for item in result["results"])
        assert victim["id"] not in {item["id"] for item in result["results"]}
    for action in (
        lambda: memory.get(victim["id"], user_id=hostile),
        lambda: memory.update(victim["id"], text="pwned", user_id=hostile),
        lambda: memory.delete(victim["id"], user_id=hostile),
        lambda: memory.history(victim["id"], user_id=hostile),
        lambda: memory.get(victim["id"], user_id="victim", agent_id=hostile),
    ):
        with pytest.raises(NotFoundError) as info:
            action()
        assert info.value.code == "NOT_FOUND_001"
    assert memory.delete_all(user_id=hostile) == {"deleted": 1, "relations_deleted": 0}
    assert memory.get(victim["id"], user_id="victim")["memory"] == (
        "The victim's secret code is 4711")
    assert memory.get_all(user_id="victim", filters={"note": hostile})["results"][0]["id"] == (
        victim["id"])


def test_other_scope_is_reported_exactly_like_missing(memory: Memory) -> None:
    added = memory.add("private", user_id="alice")["results"][0]
    with pytest.raises(NotFoundError) as other:
        memory.get(added["id"], user_id="bob")
    with pytest.raises(NotFoundError) as missing:
        memory.get("00000000-0000-0000-0000-000000000000", user_id="bob")
    assert str(other.value).replace(added["id"], "X") == str(missing.value).replace(
        "00000000-0000-0000-0000-000000000000", "X")


@pytest.mark.parametrize(
    ("call", "fragment"),
    [
        (lambda m: m.add("", user_id="u"), "'text' is empty"),
        (lambda m: m.add([], user_id="u"), "'messages' is empty"),
        (lambda m: m.add({"role": "system", "content": "x"}, user_id="u"), "system messages"),
        (lambda m: m.add({"role": "boss", "content": "x"}, user_id="u"), "messages[0].role"),
        (lambda m: m.add("x", user_id="u", metadata={"n": math.nan}), "finite"),
        (lambda m: m.add("x", user_id="u", metadata={"id": 1}), "'id' is reserved"),
        (lambda m: m.add("x" * 40_000, user_id="u"), "at most 32000"),
        (lambda m: m.search("q", user_id="u", limit=0), "'limit' is 0"),
        (lambda m: m.search("q", user_id="u", threshold=2), "'threshold' is 2"),
        (lambda m: m.search("", user_id="u"), "'query' is empty"),
        (lambda m: m.get("", user_id="u"), "'memory_id'"),
    ],
)
def test_bad_input_gets_a_clear_error_and_stores_nothing(
    memory: Memory, call, fragment: str
) -> None:
    with pytest.raises(ValidationError) as info:
        call(memory)
    assert fragment in str(info.value)
    memory.ensure_open()
    assert memory.get_all(user_id="u")["results"] == []


def test_reset_empties_every_scope(memory: Memory) -> None:
    memory.add("a", user_id="alice")
    memory.add("b", agent_id="bot")
    memory.reset()
    assert memory.get_all(user_id="alice")["results"] == []
    assert memory.get_all(agent_id="bot")["results"] == []
    memory.add("after reset", user_id="alice")
    assert len(memory.get_all(user_id="alice")["results"]) == 1


def test_server_defaults_fill_missing_ids(db_path, real_embedder) -> None:
    from lancemem.storage.store import Store

    memory = Memory(store=Store(str(db_path)), embedder=real_embedder,
                    defaults={"user_id": "default-user"})
    added = memory.add("remember this")["results"][0]
    assert added["user_id"] == "default-user"
    assert memory.get(added["id"])["memory"] == "remember this"
    assert memory.get_all(user_id="someone-else")["results"] == []
