"""The MCP tools through the SDK's in-process client, on real LanceDB and the real model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from lancemem.core.config import load_settings
from lancemem.mcp.server import build_server
from lancemem.memory.facade import Memory
from lancemem.storage.store import Store
from tests.mcp_scenario import TOOLS, call, exercise_all_tools, fails

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def make_server(db: Path, embedder: Any, **overrides: Any) -> Any:
    settings = load_settings({"db": str(db), **overrides})
    memory = Memory(store=Store(str(db)), embedder=embedder,
                    defaults=settings.scope_defaults())
    return build_server(settings, memory=memory)


def pinned_to_alice(db: Path, embedder: Any) -> Any:
    """A server that pins user_id to 'alice'."""
    return make_server(db, embedder, user_id="alice", pinned=frozenset({"user_id"}))


async def test_every_tool_in_process(db_path: Path, real_embedder: Any) -> None:
    async with Client(make_server(db_path, real_embedder)) as client:
        await exercise_all_tools(client)


async def test_every_tool_and_argument_is_described(db_path: Path, real_embedder: Any) -> None:
    async with Client(make_server(db_path, real_embedder)) as client:
        tools = (await client.list_tools()).tools
    assert {tool.name for tool in tools} == TOOLS
    for tool in tools:
        assert tool.description and len(tool.description) > 40, tool.name
        assert tool.output_schema and tool.output_schema.get("type") == "object", tool.name
        for name, schema in tool.input_schema["properties"].items():
            assert schema.get("description"), f"{tool.name}.{name} has no description"
        read_only = tool.name in {"search_memories", "list_memories", "get_memory",
                                  "memory_history", "export_memories", "search_relations",
                                  "list_relations"}
        assert tool.annotations.read_only_hint is read_only, tool.name
        assert tool.annotations.destructive_hint is (tool.name in {
            "delete_memory", "delete_all_memories", "delete_relations"}), tool.name
    search = next(t for t in tools if t.name == "search_memories")
    assert search.description.count("{") >= 2  # the filter language, by example


async def test_defaults_fill_missing_ids(db_path: Path, real_embedder: Any) -> None:
    server = make_server(db_path, real_embedder, user_id="alice", agent_id="helper")
    async with Client(server) as client:
        added = await call(client, "add_memory", text="likes tea")
        assert (added["results"][0]["user_id"], added["results"][0]["agent_id"]) == (
            "alice", "helper")
        other = await call(client, "add_memory", text="likes coffee", user_id="bob")
        assert (other["results"][0]["user_id"], other["results"][0]["agent_id"]) == (
            "bob", "helper")
        listed = await call(client, "list_memories")
        assert [r["memory"] for r in listed["results"]] == ["likes tea"]


async def test_pinned_ids_are_hidden_and_cannot_be_overridden(
    db_path: Path, real_embedder: Any
) -> None:
    async with Client(pinned_to_alice(db_path, real_embedder)) as client:
        for tool in (await client.list_tools()).tools:
            assert "user_id" not in tool.input_schema["properties"], tool.name
            assert "agent_id" in tool.input_schema["properties"] or tool.name == "update_memory"
        added = await call(client, "add_memory", text="alice's secret", user_id="mallory")
        assert added["results"][0]["user_id"] == "alice"
        listed = await call(client, "list_memories", user_id="mallory")
        assert [r["memory"] for r in listed["results"]] == ["alice's secret"]
    async with Client(make_server(db_path, real_embedder)) as client:
        assert (await call(client, "list_memories", user_id="mallory"))["results"] == []
        alice = await call(client, "list_memories", user_id="alice")
        assert [r["memory"] for r in alice["results"]] == ["alice's secret"]


async def test_model_not_loaded_to_list_tools(db_path: Path, model_cache: Path) -> None:
    from lancemem.search.embeddings import FastEmbedder

    embedder = FastEmbedder(cache_dir=model_cache)
    async with Client(make_server(db_path, embedder)) as client:
        assert len((await client.list_tools()).tools) == len(TOOLS)
        assert not embedder.loaded
        await fails(client, "list_memories", "VALIDATION_001")
        assert not embedder.loaded


async def test_a_filter_naming_another_user_than_the_pin_says_the_server_pins_it(
    db_path: Path, real_embedder: Any
) -> None:
    async with Client(pinned_to_alice(db_path, real_embedder)) as client:
        await call(client, "add_memory", text="alice's note")
        for tool in ("list_memories", "delete_all_memories"):
            text = await fails(client, tool, "VALIDATION_004", filters={"user_id": "bob"})
            assert "this server pins 'user_id' to 'alice'" in text and "'bob'" in text
            assert "as an argument" not in text
        same = await call(client, "list_memories", filters={"user_id": " alice "})
        assert [r["memory"] for r in same["results"]] == ["alice's note"]
