"""Expiring memories through the MCP tools, with the SDK's in-process client."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from tests.mcp_scenario import call, fails
from tests.test_expiry import days, midnight_after
from tests.test_mcp_tools import make_server

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def ids(result: dict[str, Any]) -> list[str]:
    return [item["id"] for item in result["results"]]


async def test_the_tools_take_and_describe_expiration(db_path: Path, real_embedder: Any) -> None:
    async with Client(make_server(db_path, real_embedder)) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
    for name in ("add_memory", "update_memory"):
        schema = tools[name].input_schema["properties"]["expiration_date"]
        assert "'2026-12-31'" in schema["description"] and "UTC" in schema["description"]
    assert "'' removes it" in tools["update_memory"].input_schema["properties"][
        "expiration_date"]["description"]
    for name in ("search_memories", "list_memories", "get_memory"):
        schema = tools[name].input_schema["properties"]["show_expired"]
        assert schema["type"] == "boolean" and schema["default"] is False
        assert "expir" in tools[name].description
    for name in ("delete_memory", "delete_all_memories", "memory_history"):
        assert "show_expired" not in tools[name].input_schema["properties"]
    assert "expiration_date" in tools["search_memories"].input_schema["properties"][
        "filters"]["description"]


async def test_expired_memories_are_hidden_unless_asked_for(db_path: Path,
                                                            real_embedder: Any) -> None:
    async with Client(make_server(db_path, real_embedder)) as client:
        live = (await call(client, "add_memory", text="Sam is staying in Lisbon this week",
                           user_id="sam", expiration_date=days(6)))["results"][0]
        assert live["expiration_date"] == midnight_after(days(6))
        past = datetime.now(UTC) - timedelta(hours=2)
        gone = (await call(client, "add_memory", text="Sam was staying in Porto",
                           user_id="sam", expiration_date=past.isoformat()))["results"][0]
        for mode in ("vector", "keyword", "hybrid"):
            found = await call(client, "search_memories", query="where is Sam staying",
                               user_id="sam", mode=mode)
            assert ids(found) == [live["id"]], mode
            every = await call(client, "search_memories", query="where is Sam staying",
                               user_id="sam", mode=mode, show_expired=True)
            assert set(ids(every)) == {live["id"], gone["id"]}, mode
        assert ids(await call(client, "list_memories", user_id="sam")) == [live["id"]]
        assert set(ids(await call(client, "list_memories", user_id="sam",
                                  show_expired=True))) == {live["id"], gone["id"]}
        hidden = await fails(client, "get_memory", "NOT_FOUND_001", memory_id=gone["id"],
                             user_id="sam")
        missing = await fails(client, "get_memory", "NOT_FOUND_001", memory_id="nope",
                              user_id="sam")
        assert hidden.replace(gone["id"], "X") == missing.replace("'nope'", "'X'")
        shown = await call(client, "get_memory", memory_id=gone["id"], user_id="sam",
                           show_expired=True)
        assert shown["expiration_date"] == past.isoformat()
        history = await call(client, "memory_history", memory_id=gone["id"], user_id="sam")
        assert [h["event"] for h in history["results"]] == ["ADD"]


async def test_update_and_re_add_bring_an_expired_memory_back(db_path: Path,
                                                              real_embedder: Any) -> None:
    async with Client(make_server(db_path, real_embedder)) as client:
        first = (await call(client, "add_memory", text="the spare key is under the mat",
                            user_id="u", expiration_date=days(-1)))["results"][0]
        again = (await call(client, "add_memory", text="the spare key is under the mat",
                            user_id="u", expiration_date=days(3)))["results"][0]
        assert (again["event"], again["id"]) == ("UPDATE", first["id"])
        assert again["expiration_date"] == midnight_after(days(3))
        ended = await call(client, "update_memory", memory_id=first["id"], user_id="u",
                           expiration_date=days(-5))
        assert ended["expiration_date"] == midnight_after(days(-5))
        assert (await call(client, "list_memories", user_id="u"))["results"] == []
        cleared = await call(client, "update_memory", memory_id=first["id"], user_id="u",
                             expiration_date="")
        assert cleared["expiration_date"] is None
        assert ids(await call(client, "list_memories", user_id="u")) == [first["id"]]
        history = await call(client, "memory_history", memory_id=first["id"], user_id="u")
        assert [h["event"] for h in history["results"]] == ["ADD", "UPDATE", "UPDATE", "UPDATE"]


async def test_bad_expirations_are_tool_errors_that_say_what_to_send(
        db_path: Path, real_embedder: Any) -> None:
    async with Client(make_server(db_path, real_embedder)) as client:
        text = await fails(client, "add_memory", "VALIDATION_005", text="x", user_id="u",
                           expiration_date="next friday")
        assert "'expiration_date' is 'next friday'" in text and "'2026-12-31'" in text
        memory_id = (await call(client, "add_memory", text="x", user_id="u"))["results"][0]["id"]
        text = await fails(client, "update_memory", "VALIDATION_005", memory_id=memory_id,
                           user_id="u", expiration_date="31.12.2026")
        assert "or '' to remove it" in text
        await fails(client, "add_memory", "VALIDATION_005", text="x", user_id="u",
                    expiration_date=20261231)
        await fails(client, "list_memories", "VALIDATION_005", user_id="u",
                    show_expired="sometimes")
        await fails(client, "add_memory", "VALIDATION_003", text="y", user_id="u",
                    metadata={"expiration_date": days(1)})
        narrowed = await call(client, "list_memories", user_id="u",
                              filters={"expiration_date": {"gt": days(0)}})
        assert narrowed["results"] == []
