"""lancemem on object storage: a real S3 server (SeaweedFS) and DynamoDB (moto).

What is proven here, each on its own fresh store of the session's servers
(conftest.py ``s3_server``), with the real model wherever a server serves:

- Scale-out (issue 15): three ``lancemem serve --transport streamable-http``
  processes on one ``s3://`` or ``s3+ddb://`` store, each fed concurrently by
  its own MCP client with adds, updates, deletes and searches. Afterwards each
  of the three servers lists every acknowledged write exactly once (no
  duplicate, no acknowledged add missing, no acknowledged delete present, the
  last acknowledged text of each update), every memory's history is exactly
  the acknowledged events, one text added through all three at once is stored
  once, and after a write is acknowledged by one server another sees it on
  its first read once the documented bound (1 s) has passed.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client

from tests.mcp_scenario import call, fails
from tests.object_store import S3Server
from tests.processes import announced, child_env

pytestmark = pytest.mark.anyio
READ_BOUND = 1.0  # LANCEMEM_READ_CONSISTENCY's default on object storage (README)
SERVERS = 3


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def s3_env(s3: S3Server, **extra: str) -> dict[str, str]:
    """The environment of a lancemem child process on ``s3``: this worktree's
    server, the AWS variables, and ``extra``."""
    return {**child_env(), **s3.env(), **extra}


@contextmanager
def serving(tmp_path: Path, s3: S3Server, uri: str, *extra: str,
            count: int = 1) -> Iterator[list[str]]:
    """Start ``count`` ``lancemem serve --transport streamable-http`` processes
    on ``uri`` at once (on 127.0.0.1, ephemeral ports); yield their MCP URLs
    and stop them afterwards."""
    with ExitStack() as stack:
        started = []
        for number in range(count):
            log = tmp_path / f"serve-{number}-{len(list(tmp_path.glob('serve-*')))}.log"
            with log.open("w") as out:
                proc = subprocess.Popen(
                    [sys.executable, "-m", "lancemem", "serve", "--db", uri, "--transport",
                     "streamable-http", "--port", "0", *extra],
                    env=s3_env(s3), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                    stderr=out)
            started.append((proc, log))
        yield [stack.enter_context(announced(proc, log, r"serving \S+ at (http://\S+)"))
               for proc, log in started]


# ---------------------------------------------------------------- scale-out

TOPICS = ["the heron nests by the northern lake", "invoices go out on the first Monday",
          "the staging database lives in Frankfurt", "Priya prefers tea to coffee",
          "the printer on floor two jams with thick paper", "backups run at 3 am UTC",
          "the API key rotates every ninety days", "lunch on Fridays is tacos"]
# 15 operations a client: 7 adds, 3 updates, 2 deletes, 3 searches.
PLAN = ["add", "add", "search", "update", "add", "delete", "add", "update", "search",
        "add", "delete", "update", "add", "search", "add"]
SHARED = "The team offsite is in Lisbon in May"


@dataclass
class Acked:
    """What one client's server acknowledged: each memory's events, in order,
    as (event, text) pairs, and which of them are still alive."""

    events: dict[str, list[tuple[str, str | None]]] = field(default_factory=dict)
    alive: dict[str, str] = field(default_factory=dict)


async def seen_by(other: Client, user: str, memory_id: str, text: str | None) -> None:
    """After the read bound, ``other`` (another server) must show ``memory_id``
    with ``text`` (or, for None, not at all) on its first read."""
    await anyio.sleep(READ_BOUND)
    if text is None:
        await fails(other, "get_memory", "NOT_FOUND_001", memory_id=memory_id, user_id=user)
    else:
        got = await call(other, "get_memory", memory_id=memory_id, user_id=user)
        assert got["memory"] == text, (memory_id, got["memory"], text)


async def feed(number: int, own: Client, other: Client, user: str, acked: Acked) -> None:
    """Run PLAN through ``own``, touching only the memories this client added
    (so the last acknowledged text of each is known), checking each write
    through ``other`` after the read bound."""
    for step, op in enumerate(PLAN):
        mine = sorted(acked.alive)
        if op == "add":
            text = f"client {number} note {step}: {TOPICS[(number + step) % len(TOPICS)]}"
            item = (await call(own, "add_memory", text=text, user_id=user))["results"][0]
            assert item["event"] == "ADD", item
            acked.events[item["id"]] = [("ADD", text)]
            acked.alive[item["id"]] = text
            await seen_by(other, user, item["id"], text)
        elif op == "update":
            target, text = mine[step % len(mine)], f"client {number} revised at step {step}"
            await call(own, "update_memory", memory_id=target, user_id=user, text=text)
            acked.events[target].append(("UPDATE", text))
            acked.alive[target] = text
            await seen_by(other, user, target, text)
        elif op == "delete":
            target = mine[step % len(mine)]
            assert (await call(own, "delete_memory", memory_id=target, user_id=user))["deleted"]
            acked.events[target].append(("DELETE", None))
            del acked.alive[target]
            await seen_by(other, user, target, None)
        else:
            target = mine[step % len(mine)]
            found = await call(own, "search_memories", query=acked.alive[target], user_id=user,
                               limit=5)
            assert found["results"][0]["id"] == target, (acked.alive[target], found)


async def check_everywhere(clients: list[Client], user: str, acked: list[Acked],
                           shared_id: str) -> None:
    """Each server lists exactly the acknowledged memories once, and every
    memory's history is exactly its acknowledged events."""
    expected = {shared_id: SHARED}
    events: dict[str, list[tuple[str, str | None]]] = {shared_id: [("ADD", SHARED)]}
    for one in acked:
        expected.update(one.alive)
        events.update(one.events)
    await anyio.sleep(READ_BOUND)  # the last writes of the other servers
    for number, client in enumerate(clients):
        listed = (await call(client, "list_memories", user_id=user, limit=1000))["results"]
        ids = [item["id"] for item in listed]
        assert len(ids) == len(set(ids)), f"server {number} lists a memory twice"
        assert {item["id"]: item["memory"] for item in listed} == expected, number
    for index, (memory_id, wanted) in enumerate(sorted(events.items())):
        client = clients[index % len(clients)]
        history = (await call(client, "memory_history", memory_id=memory_id,
                              user_id=user))["results"]
        assert [(h["event"], h["new_memory"]) for h in history] == wanted, memory_id


@pytest.mark.parametrize("ddb", [False, True], ids=["s3", "s3+ddb"])
async def test_three_servers_on_one_store_lose_nothing(
        tmp_path: Path, s3_server: S3Server, ddb: bool) -> None:
    user = "team"
    uri = s3_server.new_uri(ddb=ddb)
    acked = [Acked() for _ in range(SERVERS)]
    shared: list[dict[str, Any]] = []
    with serving(tmp_path, s3_server, uri, count=SERVERS) as urls, anyio.fail_after(150):
        async with Client(urls[0], mode="legacy") as first, \
                Client(urls[1], mode="legacy") as second, \
                Client(urls[2], mode="legacy") as third:
            clients = [first, second, third]

            async def add_shared(client: Client) -> None:
                shared.append((await call(client, "add_memory", text=SHARED,
                                          user_id=user))["results"][0])

            async with anyio.create_task_group() as group:  # the same text, at once
                for client in clients:
                    group.start_soon(add_shared, client)
            assert len({item["id"] for item in shared}) == 1, shared
            assert sorted(item["event"] for item in shared) == ["ADD", "NONE", "NONE"]
            async with anyio.create_task_group() as group:
                for number, client in enumerate(clients):
                    group.start_soon(feed, number, client, clients[(number + 1) % SERVERS],
                                     user, acked[number])
            await check_everywhere(clients, user, acked, shared[0]["id"])
