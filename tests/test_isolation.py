"""What the isolation attack found, each through a real MCP client, checked against the store."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client

from lancemem.core.filters import MAX_TEXT, text_size
from lancemem.storage.store import MEMORIES, Store
from tests.attack import ATTACK_IDS
from tests.mcp_scenario import call, fails
from tests.test_mcp_tools import make_server
from tests.test_mcp_transports import stdio_params

pytestmark = pytest.mark.anyio
SCOPE_ARGS = ("user_id", "agent_id", "run_id")
HOSTILE_IDS = [h for h in ATTACK_IDS if h != "alice"]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def stored(db: Path | str, storage_options: Mapping[str, str] | None = None
           ) -> dict[str, dict[str, Any]]:
    """Every memory row, read from the store directly (not through the server)."""
    rows = Store(str(db), storage_options=storage_options).select(
        MEMORIES, None, columns=["id", "memory", *SCOPE_ARGS, "actor_id"])
    return {row["id"]: row for row in rows}


async def seed_victims(client: Client) -> set[str]:
    """Memories of two users, each with an agent and a run, that attacks must not reach."""
    ids = set()
    for user in ("alice", "bob"):
        added = await call(client, "add_memory", text=f"{user}'s bank PIN is 1234",
                           user_id=user, agent_id="helper", run_id="r1")
        ids.add(added["results"][0]["id"])
    return ids


async def star_is_literal(client: Client, victims: set[str], key: str) -> None:
    """A ``*`` id in ``key`` reaches only the memory stored under the literal
    id ``*``, in every tool; ``victims`` are never touched (the caller checks
    the store). Leaves the store as it found it."""
    star = (await call(client, "add_memory", text="star's own note", **{key: "*"}))
    star_id = star["results"][0]["id"]
    assert star["results"][0][key] == "*"
    for scope in ({key: "*"}, {"filters": {key: "*"}}):
        listed = await call(client, "list_memories", **scope)
        assert [r["id"] for r in listed["results"]] == [star_id]
        found = await call(client, "search_memories", query="bank PIN", limit=50, **scope)
        assert [r["id"] for r in found["results"]] == [star_id]
    for victim in victims:
        for tool, extra in (("get_memory", {}), ("update_memory", {"text": "pwned"}),
                            ("delete_memory", {}), ("memory_history", {})):
            await fails(client, tool, "NOT_FOUND_001", memory_id=victim, **{key: "*"},
                        **extra)
    assert await call(client, "delete_all_memories", **{key: "*"}) == {
        "deleted": 1, "relations_deleted": 0}
    assert await call(client, "delete_all_memories", filters={key: "*"}) == {
        "deleted": 0, "relations_deleted": 0}


async def hostile_id_is_literal(client: Client, hostile: str) -> None:
    """An attack id as user, agent and run reaches only its own memory, which
    delete_all by that run removes (leaving the store as it found it)."""
    own = await call(client, "add_memory", text="hostile note", user_id=hostile,
                     agent_id=hostile, run_id=hostile)
    own_id = own["results"][0]["id"]
    for args in ({"user_id": hostile}, {"agent_id": hostile}, {"run_id": hostile},
                 {"user_id": hostile, "filters": {"agent_id": hostile}}):
        listed = await call(client, "list_memories", **args)
        assert [r["id"] for r in listed["results"]] == [own_id], args
    assert await call(client, "delete_all_memories", run_id=hostile) == {
        "deleted": 1, "relations_deleted": 0}


VICTIM_TEXTS = {"alice's bank PIN is 1234", "bob's bank PIN is 1234"}


@pytest.mark.parametrize("key", SCOPE_ARGS)
async def test_a_star_id_is_the_literal_id_star_in_every_tool(
    db_path: Path, real_embedder: Any, key: str
) -> None:
    async with Client(make_server(db_path, real_embedder)) as client:
        victims = await seed_victims(client)
        await star_is_literal(client, victims, key)
    rows = stored(db_path)
    assert set(rows) == victims
    assert {row["memory"] for row in rows.values()} == VICTIM_TEXTS


@pytest.mark.parametrize("hostile", HOSTILE_IDS)
async def test_attack_ids_reach_only_their_own_literal_scope(
    db_path: Path, real_embedder: Any, hostile: str
) -> None:
    async with Client(make_server(db_path, real_embedder)) as client:
        victims = await seed_victims(client)
        await hostile_id_is_literal(client, hostile)
    assert set(stored(db_path)) == victims


async def test_an_actor_filter_is_anded_with_the_actor_argument(
    db_path: Path, real_embedder: Any
) -> None:
    async with Client(make_server(db_path, real_embedder)) as client:
        await call(client, "add_memory", user_id="carol", actor_id="dave",
                   text="Dave said the launch is on Friday")
        await call(client, "add_memory", user_id="carol", actor_id="erin",
                   text="Erin said the launch slipped")
        args = {"user_id": "carol", "actor_id": "dave", "filters": {"actor_id": {"ne": "dave"}}}
        assert (await call(client, "list_memories", **args))["results"] == []
        assert (await call(client, "search_memories", query="launch", **args))["results"] == []
        assert await call(client, "delete_all_memories", **args) == {
            "deleted": 0, "relations_deleted": 0}
        conflict = await fails(client, "list_memories", "VALIDATION_004", user_id="carol",
                               actor_id="dave", filters={"actor_id": "erin"})
        assert "erin" in conflict and "dave" in conflict
        await fails(client, "delete_all_memories", "VALIDATION_004", user_id="carol",
                    actor_id="dave", filters={"actor_id": "erin"})
    assert {row["actor_id"] for row in stored(db_path).values()} == {"dave", "erin"}


async def test_dates_outside_what_lance_parses_are_clear_filter_errors(
    db_path: Path, real_embedder: Any
) -> None:
    async with Client(make_server(db_path, real_embedder)) as client:
        await call(client, "add_memory", user_id="u", text="a dated memory")
        text = await fails(client, "list_memories", "FILTER_001", user_id="u",
                           filters={"created_at": {"gt": "9999-12-31T23:59:59-23:59"}})
        assert "0001-9999" in text
        await fails(client, "list_memories", "FILTER_001", user_id="u",
                    filters={"created_at": {"lt": "0001-01-01T00:00:00+23:59"}})
        early = await call(client, "list_memories", user_id="u",
                           filters={"created_at": {"gt": "0999-06-01"}})
        assert [r["memory"] for r in early["results"]] == ["a dated memory"]
        none = await call(client, "list_memories", user_id="u",
                          filters={"created_at": {"lt": "0999-06-01"}})
        assert none["results"] == []


def text_filter(size: int) -> dict[str, Any]:
    """500 substring tests holding exactly ``size`` characters of text; only the
    last ("foo") matches the seeded memories (their "cat" is "food")."""
    conditions: list[dict[str, Any]] = [{"cat": {"icontains": f"zz{i}"}} for i in range(499)]
    conditions.append({"cat": {"icontains": "foo"}})
    built: dict[str, Any] = {"OR": conditions}
    missing = size - text_size(built)
    for i in range(499):  # spread: no one string may pass 10,000 characters
        conditions[i]["cat"]["icontains"] += "z" * (missing // 499 + (i < missing % 499))
    assert text_size(built) == size
    return built


def _at_bound_filters() -> list[tuple[str, dict[str, Any], int]]:
    """Filters at the README's bounds, with how many of the three seeded memories match."""
    items = list(range(1000))
    strings = [f"s{i}" for i in range(1000)]
    # 493 conditions matching n=2 and n=5000, under seven NOTs: depth 8 of logic.
    nested: dict[str, Any] = {"OR": [{"n": i} for i in range(2, 494)]
                              + [{"n": {"in": list(range(5000, 6000))}}]}
    for _ in range(7):
        nested = {"NOT": [nested]}
    return [
        ("nin-1000-numbers", {"n": {"nin": items}}, 1),  # only n=5000 is outside the list
        ("nin-1000-strings", {"cat": {"nin": strings}}, 3),
        ("not-in-1000", {"NOT": [{"n": {"in": items}}]}, 1),
        ("in-1000", {"n": {"in": items}}, 2),
        ("ten-lists-of-1000", {"AND": [{"n": {"nin": [i + 10_000 * k for i in items]}}
                                       for k in range(1, 11)]}, 3),
        ("500-conditions", {"AND": [{"cat": {"ne": f"x{i}"}} for i in range(500)]}, 3),
        ("500-or", {"OR": [{"n": i} for i in range(500)]}, 2),
        ("depth-8-with-493-conditions", nested, 1),
        ("100000-characters-of-text", text_filter(MAX_TEXT), 3),
    ]


async def test_filters_at_every_documented_bound_work_on_a_real_server(tmp_path: Path) -> None:
    """Through a stdio subprocess: a crash here (SIGSEGV at 850 nin items) kills the server."""
    with anyio.fail_after(240):
        async with Client(stdio_params(tmp_path / "db")) as client:
            for n in (1, 2, 5000):
                await call(client, "add_memory", user_id="u", text=f"memory number {n}",
                           metadata={"n": n, "cat": "food"})
            for name, filters, expected in _at_bound_filters():
                for tool, extra in (("list_memories", {}), ("search_memories",
                                                            {"query": "memory"})):
                    found = await call(client, tool, user_id="u", filters=filters, **extra)
                    assert len(found["results"]) == expected, (name, tool)
            past = [
                {"n": {"nin": list(range(1001))}},
                {"AND": [{"n": {"in": list(range(1000))}} for _ in range(10)]
                 + [{"n": {"in": [1]}}]},
                {"AND": [{"cat": {"ne": f"x{i}"}} for i in range(501)]},
                text_filter(MAX_TEXT + 1),
            ]
            for filters in past:
                await fails(client, "list_memories", "FILTER_001", user_id="u", filters=filters)
            assert await call(client, "delete_all_memories", user_id="u",
                              filters={"n": {"nin": list(range(1000))}}) == {
                                  "deleted": 1, "relations_deleted": 0}
            alive = await call(client, "list_memories", user_id="u")
            assert len(alive["results"]) == 2


def test_star_through_the_cli_is_literal_too(tmp_path: Path) -> None:
    import subprocess

    db = str(tmp_path / "db")
    base = [sys.executable, "-m", "lancemem"]
    for user in ("alice", "*"):
        subprocess.run([*base, "add", f"{user} note", "--db", db, "--user-id", user],
                       check=True, capture_output=True, timeout=120)
    listed = subprocess.run([*base, "list", "--db", db, "--user-id", "*", "--json"],
                            check=True, capture_output=True, text=True, timeout=120)
    assert '"alice note"' not in listed.stdout and '"* note"' in listed.stdout
