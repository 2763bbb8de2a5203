"""The MCP layer is strict about what callers send, through the SDK's in-process client.

Unknown tools are JSON-RPC errors; unknown arguments and message keys, and bad
values, are VALIDATION_005 tool errors in plain words that write nothing; only
tools are advertised and served.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from mcp import Client, MCPError
from mcp.server.mcpserver import MCPServer
from mcp.types import INVALID_PARAMS, METHOD_NOT_FOUND

from lancemem.core.config import load_settings
from lancemem.core.errors import ValidationError
from lancemem.mcp.server import build_server
from lancemem.memory.facade import Memory
from lancemem.storage.store import Store
from tests.mcp_scenario import TOOLS, call, fails

pytestmark = pytest.mark.anyio

ADD_ARGUMENTS = ("text, messages, user_id, agent_id, run_id, actor_id, metadata, "
                 "expiration_date")
PYDANTIC_TRACES = ("pydantic", "For further information visit", "input_value=", "input_type=",
                   "type=", "validation error", "Arguments\n", "\n")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def serve(db: Path, embedder: Any, **overrides: Any) -> tuple[MCPServer, Memory]:
    """A server and the Memory behind it, so tests can look at what was stored."""
    settings = load_settings({"db": str(db), **overrides})
    memory = Memory(store=Store(str(db)), embedder=embedder,
                    defaults=settings.scope_defaults())
    return build_server(settings, memory=memory), memory


def stored(memory: Memory, user_id: str) -> list[str]:
    return [r["memory"] for r in memory.get_all(user_id=user_id)["results"]]


# Requirement 1: unknown arguments.

async def test_a_misspelt_argument_is_refused_and_nothing_is_written(
    db_path: Path, real_embedder: Any
) -> None:
    server, memory = serve(db_path, real_embedder, user_id="alice")
    async with Client(server) as client:
        text = await fails(client, "add_memory", "VALIDATION_005", text="likes tea",
                           usr_id="oops")
    assert text == ("VALIDATION_005: add_memory has no argument 'usr_id'; its arguments are "
                    f"{ADD_ARGUMENTS}.")
    assert stored(memory, "alice") == [] and stored(memory, "oops") == []


async def test_every_tool_names_the_unknown_argument_and_its_own(
    db_path: Path, real_embedder: Any
) -> None:
    server, _ = serve(db_path, real_embedder, user_id="alice")
    async with Client(server) as client:
        tools = {tool.name: list(tool.input_schema["properties"])
                 for tool in (await client.list_tools()).tools}
        assert set(tools) == TOOLS
        for name, arguments in tools.items():
            text = await fails(client, name, "VALIDATION_005", bogus=1, limt=5)
            assert text == (f"VALIDATION_005: {name} has no arguments 'bogus', 'limt'; "
                            f"its arguments are {', '.join(arguments)}."), text


async def test_pinned_ids_stay_hidden_and_accepted_while_unknown_ones_are_refused(
    db_path: Path, real_embedder: Any
) -> None:
    server, memory = serve(db_path, real_embedder, user_id="alice",
                           pinned=frozenset({"user_id"}))
    async with Client(server) as client:
        text = await fails(client, "add_memory", "VALIDATION_005", text="x",
                           user_id="mallory", usr_id="mallory")
        assert text == ("VALIDATION_005: add_memory has no argument 'usr_id'; its arguments "
                        "are text, messages, agent_id, run_id, actor_id, metadata, "
                        "expiration_date.")
        assert stored(memory, "alice") == [] and stored(memory, "mallory") == []
        added = await call(client, "add_memory", text="alice's secret", user_id="mallory")
    assert added["results"][0]["user_id"] == "alice"
    assert stored(memory, "alice") == ["alice's secret"]


# Requirement 2: unknown keys in a chat message.

@pytest.mark.parametrize("as_json", [False, True], ids=["list", "json-string"])
async def test_an_unknown_message_key_is_refused_over_mcp_and_by_the_api(
    db_path: Path, real_embedder: Any, as_json: bool
) -> None:
    expected = "VALIDATION_005: messages[0] has no key 'nmae'; its keys are role, content, name."
    messages = [{"role": "user", "content": "my name is bob", "nmae": "bob"}]
    server, memory = serve(db_path, real_embedder)
    async with Client(server) as client:
        text = await fails(client, "add_memory", "VALIDATION_005", user_id="u",
                           messages=json.dumps(messages) if as_json else messages)
    assert text == expected
    with pytest.raises(ValidationError) as refused:
        memory.add(messages, user_id="u")
    assert str(refused.value) == expected
    assert stored(memory, "u") == []


# Requirement 3: bad values read as lancemem errors, one sentence per problem.

BAD_VALUES = [
    ("search_memories", {"query": "q", "limit": 0}, "'limit' is 0; it must be at least 1."),
    ("search_memories", {"query": "q", "limit": 5000},
     "'limit' is 5000; it must be at most 1000."),
    ("search_memories", {"query": "q", "limit": "many"},
     "'limit' must be a whole number, got 'many'."),
    ("search_memories", {"query": "q", "mode": "bm25"},
     "'mode' is 'bm25'; use 'hybrid', 'vector' or 'keyword'."),
    ("search_memories", {}, "search_memories needs 'query'."),
    ("search_memories", {"limit": "many"},
     "search_memories needs 'query'. 'limit' must be a whole number, got 'many'."),
    ("get_memory", {}, "get_memory needs 'memory_id'."),
    ("add_memory", {"text": "x", "agent_id": 12}, "'agent_id' must be a string, got 12."),
    ("add_memory", {"messages": [{"role": "user"}]}, "add_memory needs 'messages[0].content'."),
    ("add_memory", {"messages": ["hi"]}, "'messages[0]' must be an object, got 'hi'."),
    ("add_memory", {"text": "x", "metadata": [1, 2]}, "'metadata' must be an object, got a list."),
    ("list_memories", {"filters": "{not json"}, "'filters' must be an object, got '{not json'."),
    ("list_memories", {"limit": "x" * 5000},
     "'limit' must be a whole number, got '" + "x" * 35 + "...."),
]


@pytest.mark.parametrize(("tool", "arguments", "problem"), BAD_VALUES,
                         ids=[f"{t}-{i}" for i, (t, _, _) in enumerate(BAD_VALUES)])
async def test_bad_values_are_named_in_plain_words(
    db_path: Path, real_embedder: Any, tool: str, arguments: dict[str, Any], problem: str
) -> None:
    server, memory = serve(db_path, real_embedder, user_id="alice")
    async with Client(server) as client:
        text = await fails(client, tool, "VALIDATION_005", **arguments)
    assert text == f"VALIDATION_005: {problem}"
    assert not [trace for trace in PYDANTIC_TRACES if trace in text], text
    assert stored(memory, "alice") == []


# Requirement 4: an unknown tool is a protocol error, not a tool result.

async def test_an_unknown_tool_is_a_json_rpc_invalid_params_error(
    db_path: Path, real_embedder: Any
) -> None:
    server, memory = serve(db_path, real_embedder, user_id="alice")
    async with Client(server) as client:
        with pytest.raises(MCPError) as refused:
            await client.call_tool("add_memories", {"text": "likes tea"})
        assert refused.value.code == INVALID_PARAMS
        assert "'add_memories'" in refused.value.message
        assert "add_memory, search_memories" in refused.value.message
        assert (await call(client, "list_memories"))["results"] == []  # the session goes on
    assert stored(memory, "alice") == []


# Requirement 5: only tools are advertised and served.

@pytest.mark.parametrize("mode", ["legacy", "auto"], ids=["initialize", "discover"])
async def test_only_tools_are_advertised_and_served(
    db_path: Path, real_embedder: Any, mode: Any
) -> None:
    server, _ = serve(db_path, real_embedder)
    async with Client(server, mode=mode) as client:
        capabilities = client.server_capabilities
        assert capabilities.tools is not None
        assert capabilities.prompts is None and capabilities.resources is None
        assert {tool.name for tool in (await client.list_tools()).tools} == TOOLS
        unserved = [client.list_prompts, client.list_resources, client.list_resource_templates,
                    lambda: client.get_prompt("p"), lambda: client.read_resource("file:///x")]
        for request in unserved:
            with pytest.raises(MCPError) as refused:
                await request()
            assert refused.value.code == METHOD_NOT_FOUND
