"""Adversarial tool input never crashes the server or corrupts the store."""

from __future__ import annotations

import math
import re
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mcp import Client

from lancemem.core.config import load_settings
from lancemem.mcp.server import build_server
from lancemem.memory.facade import Memory
from lancemem.storage.store import Store
from tests.invariants import check_store, settled
from tests.mcp_scenario import TOOLS

CODED = re.compile(r"^(VALIDATION|FILTER|NOT_FOUND|EMBEDDING|STORAGE)_\d{3}: \S")
ADVERSARY = "adversary-7f3a"
ARGUMENTS = ["text", "messages", "query", "memory_id", "user_id", "agent_id", "run_id",
             "actor_id", "metadata", "filters", "limit", "threshold", "mode"]


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory, real_embedder: Any) -> Any:
    db = tmp_path_factory.mktemp("fuzz") / "db"
    memory = Memory(store=Store(str(db)), embedder=real_embedder)
    memory.add("a memory that must survive the fuzzing", user_id="fuzz")
    return build_server(load_settings({"db": str(db)}), memory=memory), memory


def deep(levels: int, leaf: Any = "x") -> Any:
    value = leaf
    for _ in range(levels):
        value = {"AND": [value]} if levels % 2 else [value]
    return value


leaves = (st.none() | st.booleans() | st.integers() | st.floats()
          | st.text(max_size=40) | st.sampled_from(
              ["\ud800", "x" * 50_000, "", " ", "*", "x' OR '1'='1", "\x00", "fuzz",
               math.nan, math.inf, -math.inf, 10**40, -(2**63)]))
json_values = st.recursive(
    leaves, lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(max_size=8) | st.sampled_from(
        ["AND", "OR", "NOT", "eq", "in", "contains", "role", "content", "name"]), inner,
        max_size=4), max_leaves=12) | st.sampled_from([deep(40), deep(120), deep(41, {})])


async def _call(server: Any, tool: str, arguments: dict[str, Any]) -> Any:
    async with Client(server) as client:
        return await client.call_tool(tool, arguments)


@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(tool=st.sampled_from(sorted(TOOLS)),
       arguments=st.dictionaries(st.sampled_from(ARGUMENTS) | st.text(max_size=6),
                                 json_values, max_size=6))
def test_random_arguments_get_a_result_or_a_coded_error(
    fuzz_server: Any, tool: str, arguments: dict[str, Any]
) -> None:
    server, _ = fuzz_server
    result = anyio.run(_call, server, tool, arguments)
    if result.is_error:
        text = result.content[0].text
        assert CODED.match(text), text[:300]


def test_store_survives_the_fuzzing(fuzz_server: Any) -> None:
    _, memory = fuzz_server
    check_store(settled(memory))
    survivor = memory.search("survive", user_id="fuzz")["results"]
    assert survivor and survivor[0]["memory"] == "a memory that must survive the fuzzing"


# NaN and infinities are not here: JSON cannot carry them, and the SDK client sends
# them as null. The API-level tests (test_memory, test_filters) cover them.
ADVERSARIAL = [
    ("add_memory", {"user_id": ADVERSARY, "text": "x" * 1_000_000}, "VALIDATION_005"),
    ("add_memory", {"user_id": ADVERSARY, "text": "ok", "metadata": {"a": deep(120)}},
     "VALIDATION_005"),
    ("add_memory", {"user_id": ADVERSARY, "text": "ok", "metadata": {"v": "x" * 20_000}},
     "VALIDATION_005"),
    ("add_memory", {"user_id": ADVERSARY, "messages": [{"role": "user", "content": "m"}] * 1001},
     "VALIDATION_005"),
    ("add_memory", {"user_id": ADVERSARY, "text": "bad \ud800 surrogate"}, "VALIDATION_005"),
    ("add_memory", {"user_id": "\ud800", "text": "ok"}, "VALIDATION_002"),
    ("add_memory", {"user_id": 12, "text": "ok"}, "VALIDATION_005"),
    ("search_memories", {"user_id": ADVERSARY, "query": "q", "filters": deep(121)}, "FILTER_001"),
    ("search_memories", {"user_id": ADVERSARY, "query": "q", "limit": 10**9}, "VALIDATION_005"),
    ("list_memories", {"user_id": ADVERSARY, "limit": -1}, "VALIDATION_005"),
    ("list_memories", {"user_id": ADVERSARY, "filters": {"k": {"in": list(range(2000))}}},
     "FILTER_001"),
    ("list_memories", {"user_id": ADVERSARY, "filters": "{not json"}, "VALIDATION_005"),
    ("get_memory", {"user_id": ADVERSARY, "memory_id": "x" * 100_000}, "NOT_FOUND_001"),
]


@pytest.mark.parametrize(("tool", "arguments", "code"), ADVERSARIAL,
                         ids=[f"{t}-{i}" for i, (t, _, _) in enumerate(ADVERSARIAL)])
def test_adversarial_input_gets_its_documented_error(
    fuzz_server: Any, tool: str, arguments: dict[str, Any], code: str
) -> None:
    server, memory = fuzz_server
    result = anyio.run(_call, server, tool, arguments)
    assert result.is_error
    assert result.content[0].text.startswith(f"{code}: "), result.content[0].text[:300]
    assert memory.get_all(user_id=ADVERSARY)["results"] == []


def test_nesting_beyond_what_clients_send_is_refused_by_the_api(fuzz_server: Any) -> None:
    from lancemem.core.errors import FilterError, ValidationError

    _, memory = fuzz_server
    with pytest.raises(FilterError, match="nest deeper than 32"):
        memory.get_all(user_id="u", filters=deep(3001))
    with pytest.raises(ValidationError, match="nests deeper than 32"):
        memory.add("x", user_id="u", metadata={"a": deep(5000)})
