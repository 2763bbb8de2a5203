"""One scenario that exercises every tool and its error paths through any MCP client."""

from __future__ import annotations

import json
import uuid
from typing import Any

from mcp.types import CallToolResult

MEMORY_TOOLS = {"add_memory", "search_memories", "list_memories", "get_memory", "export_memories",
                "update_memory", "delete_memory", "delete_all_memories", "memory_history"}
RELATION_TOOLS = {"add_relations", "search_relations", "list_relations", "delete_relations"}
TOOLS = MEMORY_TOOLS | RELATION_TOOLS


async def call(client: Any, tool: str, **arguments: Any) -> dict[str, Any]:
    """Call a tool that must succeed; its text rendering must match its structured content."""
    result: CallToolResult = await client.call_tool(tool, arguments)
    assert not result.is_error, result.content[0].text
    assert result.structured_content is not None
    assert json.loads(result.content[0].text) == result.structured_content
    return result.structured_content


async def fails(client: Any, tool: str, code: str, **arguments: Any) -> str:
    """Call a tool that must fail with a tool error whose text starts with ``code``."""
    result: CallToolResult = await client.call_tool(tool, arguments)
    assert result.is_error, result
    text = result.content[0].text
    assert text.startswith(f"{code}: "), text
    return text


async def exercise_all_tools(client: Any) -> None:
    """Every tool, success and failure, in one user's fresh scope."""
    user = f"user-{uuid.uuid4().hex[:8]}"
    names = {tool.name for tool in (await client.list_tools()).tools}
    assert names == TOOLS

    added = await call(client, "add_memory", text="I love pizza with olives", user_id=user,
                       metadata={"topic": "food"})
    pizza = added["results"][0]
    assert (pizza["event"], pizza["user_id"], pizza["memory"]) == (
        "ADD", user, "I love pizza with olives")
    again = await call(client, "add_memory", text="I love pizza with olives", user_id=user)
    assert again["results"][0]["event"] == "NONE" and again["results"][0]["id"] == pizza["id"]
    # Models often send objects as JSON strings: accepted.
    dog = (await call(client, "add_memory", user_id=user, metadata='{"topic": "pets"}',
                      messages='[{"role": "user", "content": "My dog is called Rex", '
                               '"name": "sam"}]'))["results"][0]
    assert dog["actor_id"] == "sam"

    found = await call(client, "search_memories", query="favourite food", user_id=user)
    assert found["results"][0]["id"] == pizza["id"] and found["results"][0]["score"] > 0
    pets = await call(client, "search_memories", query="food", user_id=user,
                      filters={"topic": "pets"})
    assert [r["id"] for r in pets["results"]] == [dog["id"]]
    by_word = await call(client, "search_memories", query="olives", user_id=user,
                         mode="keyword")
    assert [r["id"] for r in by_word["results"]] == [pizza["id"]]
    by_actor_name = await call(client, "search_memories", query="sam", user_id=user,
                               mode="keyword")
    assert [r["id"] for r in by_actor_name["results"]] == [dog["id"]]
    listed = await call(client, "list_memories", user_id=user)
    assert [r["id"] for r in listed["results"]] == [dog["id"], pizza["id"]]
    by_actor = await call(client, "list_memories", user_id=user, actor_id="sam", limit=5)
    assert [r["id"] for r in by_actor["results"]] == [dog["id"]]
    first = await call(client, "export_memories", user_id=user, limit=1, include_history=True)
    assert [(line["type"], line.get("memory_id", line["id"])) for line in first["lines"]] == [
        ("memory", dog["id"]), ("history", dog["id"])]
    assert first["total"] == 2 and first["next_cursor"]
    rest = await call(client, "export_memories", user_id=user, cursor=first["next_cursor"])
    assert [line["id"] for line in rest["lines"]] == [pizza["id"]]
    assert rest["next_cursor"] is None and rest["lines"][0]["user_id"] == user

    got = await call(client, "get_memory", memory_id=pizza["id"], user_id=user)
    assert got["metadata"] == {"topic": "food"}
    updated = await call(client, "update_memory", memory_id=pizza["id"], user_id=user,
                         text="I love pizza with mushrooms")
    assert updated["memory"] == "I love pizza with mushrooms"
    history = await call(client, "memory_history", memory_id=pizza["id"], user_id=user)
    assert [(h["event"], h["new_memory"]) for h in history["results"]] == [
        ("ADD", "I love pizza with olives"), ("UPDATE", "I love pizza with mushrooms")]

    missing = await fails(client, "get_memory", "NOT_FOUND_001",
                          memory_id=str(uuid.uuid4()), user_id=user)
    other = await fails(client, "get_memory", "NOT_FOUND_001", memory_id=pizza["id"],
                        user_id=f"{user}-other")
    assert other.replace(pizza["id"], "ID").count("ID") == 1 and missing.count("'") == other.count(
        "'")
    await fails(client, "update_memory", "NOT_FOUND_001", memory_id=pizza["id"],
                user_id="mallory", text="pwned")
    await fails(client, "delete_memory", "NOT_FOUND_001", memory_id=pizza["id"],
                user_id="mallory")
    await fails(client, "memory_history", "NOT_FOUND_001", memory_id=pizza["id"],
                user_id="mallory")
    await fails(client, "add_memory", "VALIDATION_001", text="no scope at all")
    await fails(client, "list_memories", "VALIDATION_001")
    await fails(client, "add_memory", "VALIDATION_003", text="x", user_id=user,
                metadata={"user_id": "mallory"})
    await fails(client, "add_memory", "VALIDATION_005", user_id=user)
    await fails(client, "search_memories", "VALIDATION_005", query="x", user_id=user, limit=0)
    await fails(client, "search_memories", "VALIDATION_005", query="x", user_id=user,
                limit="many")
    await fails(client, "search_memories", "VALIDATION_005", query="x", user_id=user,
                mode="bm25")
    await fails(client, "search_memories", "FILTER_001", query="x", user_id=user,
                filters={"topic": {"regex": ".*"}})
    await fails(client, "delete_all_memories", "VALIDATION_001")
    await fails(client, "update_memory", "VALIDATION_005", memory_id=pizza["id"], user_id=user)

    relations = await exercise_relation_tools(client, user)

    deleted = await call(client, "delete_memory", memory_id=dog["id"], user_id=user)
    assert deleted == {"id": dog["id"], "deleted": True}
    await fails(client, "get_memory", "NOT_FOUND_001", memory_id=dog["id"], user_id=user)
    assert await call(client, "delete_all_memories", user_id=user) == {
        "deleted": 1, "relations_deleted": relations}
    assert (await call(client, "list_memories", user_id=user))["results"] == []
    assert (await call(client, "list_relations", user_id=user,
                       show_invalid=True))["results"] == []


async def exercise_relation_tools(client: Any, user: str) -> int:
    """The four relation tools and relations beside a memory search, in ``user``'s
    scope; returns how many relations it leaves there."""
    added = await call(client, "add_relations", user_id=user, relations=[
        {"source": "Alice", "relationship": "works at", "target": "Acme",
         "source_type": "person"},
        {"source": "acme ", "relationship": "Headquartered in", "target": "Berlin"},
        {"source": "Alice", "relationship": "likes", "target": "pizza"}])
    assert [(r["event"], r["source"], r["relationship"], r["target"])
            for r in added["results"]] == [
        ("ADD", "Alice", "works_at", "Acme"), ("ADD", "Acme", "headquartered_in", "Berlin"),
        ("ADD", "Alice", "likes", "pizza")]
    works_at, based, likes = (r["id"] for r in added["results"])
    again = await call(client, "add_relations", user_id=user, relations=[
        {"source": "ALICE", "relationship": "worksAt", "target": " acme"}])
    assert [(r["event"], r["id"]) for r in again["results"]] == [("NONE", works_at)]

    found = await call(client, "search_relations", user_id=user,
                       query="Where is Alice's employer based?")
    ids = [r["id"] for r in found["results"]]
    assert works_at in ids and based in ids, found
    scores = [r["score"] for r in found["results"]]
    assert scores == sorted(scores, reverse=True) and all(0 <= v <= 1 for v in scores)
    assert (await call(client, "search_relations", user_id=f"{user}-other",
                       query="Where is Alice's employer based?"))["results"] == []
    beside = await call(client, "search_memories", query="what does Alice like?", user_id=user)
    assert likes in [r["id"] for r in beside["relations"]]
    listed = await call(client, "list_relations", user_id=user, entity="acme")
    assert {r["id"] for r in listed["results"]} == {works_at, based}

    moved = await call(client, "add_relations", user_id=user, replace=True, relations=[
        {"source": "Alice", "relationship": "works at", "target": "Globex"}])
    assert [(r["event"], r["target"], r["valid"]) for r in moved["results"]] == [
        ("ADD", "Globex", True), ("INVALIDATE", "Acme", False)]
    assert works_at not in [r["id"] for r in (await call(
        client, "list_relations", user_id=user))["results"]]

    await fails(client, "add_relations", "VALIDATION_001",
                relations=[{"source": "a", "relationship": "b", "target": "c"}])
    await fails(client, "add_relations", "VALIDATION_005", user_id=user,
                relations=[{"source": "a", "relationship": "b", "taget": "c"}])
    await fails(client, "add_relations", "VALIDATION_005", user_id=user,
                relations=[{"source": "a", "relationship": "!!", "target": "c"}])
    await fails(client, "delete_relations", "VALIDATION_005", user_id=user)
    nothing = await call(client, "delete_relations", user_id=f"{user}-other",
                         relation_ids=[likes])
    assert nothing == {"deleted": 0, "not_found": [likes]}
    gone = await call(client, "delete_relations", user_id=user, relations=[
        {"source": "alice", "relationship": "likes", "target": "Pizza"}])
    assert gone == {"deleted": 1, "not_found": []}
    return 3  # headquartered_in, works_at Globex, and works_at Acme (invalid)
