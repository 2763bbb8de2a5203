"""Authenticated HTTP as users run it: `lancemem serve --auth token` as a subprocess,
tokens from the store, real clients (the SDK over streamable HTTP and SSE, the
MCP Inspector CLI with --header, raw httpx), checked against the store itself."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from mcp import Client
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from lancemem.storage.store import HISTORY, MEMORIES, Store
from lancemem.storage.tokens import TokenTable
from tests.test_mcp_transports import HEADERS, INITIALIZE, INSPECTOR, http_server, inspector

pytestmark = pytest.mark.anyio
TIMEOUT = 120


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def make_token(tmp_path: Path, **binding: Any) -> tuple[str, str]:
    """(id, secret) of a new token in the test's store."""
    record, secret = TokenTable(Store(str(tmp_path / "db"))).create(**binding)
    return record.id, secret


@asynccontextmanager
async def client_for(url: str, token: str | None, *,
                     mode: str = "auto") -> AsyncIterator[Client]:
    """An SDK client sending ``Authorization: Bearer token`` on every request."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if url.endswith("/sse"):
        transport: Any = sse_client(url, headers=headers)
        mode = "legacy"
    else:
        transport = streamable_http_client(url, http_client=create_mcp_http_client(
            headers=headers))
    async with Client(transport, mode=mode) as client:
        yield client


async def call(client: Client, tool: str, **args: Any) -> tuple[bool, Any]:
    """(is_error, structured content or error text)."""
    result = await client.call_tool(tool, args)
    if result.is_error:
        return True, result.content[0].text
    return False, result.structured_content


def stored(tmp_path: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Memories (without vectors) and history, read from the store directly (none
    when the server never opened the store)."""
    store = Store(str(tmp_path / "db"))
    if not store.exists():
        return [], []
    memories = store.select(MEMORIES, None, columns=["id", "memory", "user_id", "agent_id",
                                                     "run_id", "metadata", "updated_at"])
    history = store.select(HISTORY, None)
    key = lambda row: row["id"]  # noqa: E731
    return sorted(memories, key=key), sorted(history, key=key)


def settled(tmp_path: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The store once the server's history writer has caught up."""
    from lancemem.storage.consistency import missing_history

    deadline = time.monotonic() + 10
    store = Store(str(tmp_path / "db"))
    while store.exists() and missing_history(store) and time.monotonic() < deadline:
        time.sleep(0.05)
    return stored(tmp_path)


def status_of(url: str, token: str | None) -> int:
    headers = {**HEADERS, **({"Authorization": f"Bearer {token}"} if token else {})}
    if url.endswith("/sse"):
        with httpx.stream("GET", url, headers=headers, timeout=10) as response:
            return response.status_code
    return httpx.post(url, json=INITIALIZE, headers=headers, timeout=10).status_code


@pytest.mark.parametrize("transport", ["streamable-http", "sse"])
def test_requests_without_a_valid_token_get_401_and_run_nothing(tmp_path: Path,
                                                                transport: str) -> None:
    _, good = make_token(tmp_path, user_id="alice")
    revoked_id, revoked = make_token(tmp_path, user_id="alice")
    TokenTable(Store(str(tmp_path / "db"))).revoke(revoked_id)
    _, expired = make_token(tmp_path, user_id="alice", expires_in_days=1e-9)
    with http_server(tmp_path, transport, "--auth", "token") as url:
        for token in (None, "lmk_unknown", revoked, expired, "", "x" * 5000, good + "x"):
            headers = {**HEADERS, **({"Authorization": f"Bearer {token}"} if token else {})}
            if url.endswith("/sse"):
                response = httpx.get(url, headers=headers, timeout=10)
                post = httpx.post(url.replace("/sse", "/messages/?session_id=x"),
                                  json=INITIALIZE, headers=headers, timeout=10)
                assert post.status_code == 401
            else:
                response = httpx.post(url, json={"jsonrpc": "2.0", "id": 1,
                                                 "method": "tools/call", "params": {
                                                     "name": "add_memory", "arguments": {
                                                         "text": "sneaked in"}}},
                                      headers=headers, timeout=10)
            assert response.status_code == 401, (token, response.text)
            assert response.headers["www-authenticate"].startswith("Bearer ")
        assert status_of(url, good) == 200
    memories, history = stored(tmp_path)
    assert memories == [] and history == []


@pytest.mark.parametrize(("transport", "mode"), [
    ("streamable-http", "auto"), ("streamable-http", "legacy"), ("sse", "legacy")])
async def test_tenants_never_reach_each_other_on_any_tool(tmp_path: Path, transport: str,
                                                          mode: str) -> None:
    _, alice = make_token(tmp_path, user_id="alice", label="alice-laptop")
    _, bob = make_token(tmp_path, user_id="bob")
    _, star = make_token(tmp_path, user_id="*")
    with http_server(tmp_path, transport, "--auth", "token") as url:
        with anyio.fail_after(TIMEOUT):
            async with client_for(url, alice, mode=mode) as client:
                ids = []
                for text in ("likes green tea", "moved to Lisbon", "works at Acme"):
                    error, added = await call(client, "add_memory", text=text,
                                              metadata={"category": "fact"})
                    assert not error, added
                    ids.append(added["results"][0]["id"])
                error, added = await call(client, "add_memory", text="helper note",
                                          agent_id="helper")
                ids.append(added["results"][0]["id"])
            before = settled(tmp_path)
            assert {row["user_id"] for row in before[0]} == {"alice"}
            for token in (bob, star):
                async with client_for(url, token, mode=mode) as intruder:
                    await _attempt_every_tool(intruder, ids)
                after = settled(tmp_path)
                assert [r for r in after[0] if r["user_id"] == "alice"] == before[0]
                assert [h for h in after[1] if h["user_id"] == "alice"] == before[1]


async def _attempt_every_tool(client: Client, alice_ids: list[str]) -> None:
    """Every tool, aimed at alice's memories from another tenant's token."""
    refused = [
        ("search_memories", {"query": "tea", "user_id": "alice"}),
        ("search_memories", {"query": "tea", "filters": {"user_id": "alice"}}),
        ("list_memories", {"user_id": "alice"}),
        ("list_memories", {"filters": {"user_id": "alice"}}),
        ("list_memories", {"user_id": "alice", "agent_id": "helper"}),
        ("get_memory", {"memory_id": alice_ids[0], "user_id": "alice"}),
        ("update_memory", {"memory_id": alice_ids[0], "text": "hacked", "user_id": "alice"}),
        ("delete_memory", {"memory_id": alice_ids[0], "user_id": "alice"}),
        ("delete_all_memories", {"user_id": "alice"}),
        ("delete_all_memories", {"filters": {"user_id": "alice"}}),
        ("memory_history", {"memory_id": alice_ids[0], "user_id": "alice"}),
        ("add_memory", {"text": "planted", "user_id": "alice"}),
    ]
    for tool, args in refused:
        error, text = await call(client, tool, **args)
        assert error and text.startswith("AUTH_002: "), (tool, args, text)
    for memory_id in alice_ids:  # alice's ids, the caller's own scope: missing
        for tool, args in (("get_memory", {}), ("update_memory", {"text": "hacked"}),
                           ("delete_memory", {}), ("memory_history", {}),
                           ("get_memory", {"agent_id": "helper"})):
            error, text = await call(client, tool, memory_id=memory_id, **args)
            assert error and text.startswith("NOT_FOUND_001: "), (tool, text)
    for tool, args in (("search_memories", {"query": "tea"}), ("list_memories", {}),
                       ("list_memories", {"filters": {"user_id": {"in": ["alice", "bob"]}}}),
                       ("list_memories", {"agent_id": "helper"}),
                       ("search_memories", {"query": "Lisbon", "mode": "keyword"})):
        error, found = await call(client, tool, **args)
        assert not error and found["results"] == [], (tool, found)
    error, deleted = await call(client, "delete_all_memories")
    assert not error and deleted == {"deleted": 0, "relations_deleted": 0}


async def test_agent_bound_and_read_only_tokens(tmp_path: Path) -> None:
    _, alice = make_token(tmp_path, user_id="alice")
    helper_id, helper = make_token(tmp_path, user_id="alice", agent_id="helper")
    _, reader = make_token(tmp_path, user_id="alice", read_only=True)
    with http_server(tmp_path, "sse", "--auth", "token") as url:
        with anyio.fail_after(TIMEOUT):
            async with client_for(url, alice) as client:
                _, own = await call(client, "add_memory", text="alice's own note")
                _, other = await call(client, "add_memory", text="coder note", agent_id="coder")
            async with client_for(url, helper) as client:
                error, added = await call(client, "add_memory", text="helper's note")
                assert not error and added["results"][0]["agent_id"] == "helper"
                error, text = await call(client, "list_memories", agent_id="coder")
                assert error and "agent_id 'helper'" in text
                _, listed = await call(client, "list_memories")
                assert [r["memory"] for r in listed["results"]] == ["helper's note"]
                error, text = await call(client, "get_memory",
                                         memory_id=own["results"][0]["id"])
                assert error and text.startswith("NOT_FOUND_001")
                _, history = await call(client, "memory_history",
                                        memory_id=added["results"][0]["id"])
                assert history["results"][0]["principal"] == f"token:{helper_id}"
            before = settled(tmp_path)
            async with client_for(url, reader) as client:
                for tool, args in (
                        ("add_memory", {"text": "new"}),
                        ("update_memory", {"memory_id": own["results"][0]["id"], "text": "x"}),
                        ("delete_memory", {"memory_id": own["results"][0]["id"]}),
                        ("delete_all_memories", {})):
                    error, text = await call(client, tool, **args)
                    assert error and "read-only" in text and text.startswith("AUTH_002"), text
                _, listed = await call(client, "list_memories")
                assert len(listed["results"]) == 3  # alice's: own, coder's, helper's
                _, found = await call(client, "search_memories", query="coder",
                                      agent_id="coder")
                assert [r["id"] for r in found["results"]] == [other["results"][0]["id"]]
            assert settled(tmp_path) == before


async def test_revoking_stops_a_token_on_every_server_of_the_store(tmp_path: Path) -> None:
    token_id, token = make_token(tmp_path, user_id="alice")
    with (http_server(tmp_path, "streamable-http", "--auth", "token") as first,
          http_server(tmp_path, "streamable-http", "--auth", "token") as second):
        with anyio.fail_after(TIMEOUT):
            async with client_for(first, token) as client:
                error, _ = await call(client, "add_memory", text="before the revoke")
                assert not error
        assert status_of(second, token) == 200
        revoked = subprocess.run(
            [sys.executable, "-m", "lancemem", "token", "revoke", token_id, "--db",
             str(tmp_path / "db")], capture_output=True, text=True, timeout=60)
        assert revoked.returncode == 0, revoked.stderr
        deadline = time.monotonic() + 3  # the contract is 1 s; the margin is for CI noise
        pending = {first, second}
        while pending and time.monotonic() < deadline:
            pending = {url for url in pending if status_of(url, token) != 401}
            time.sleep(0.05)
        assert not pending, "a revoked token still works"


def run_inspector(*args: str) -> subprocess.CompletedProcess[str]:
    """The MCP Inspector CLI, whatever its exit status (5: the tool returned an error)."""
    assert INSPECTOR.exists(), "run `make test` (it installs the inspector into tests/inspector)"
    return subprocess.run([str(INSPECTOR), "--cli", *args], capture_output=True, text=True,
                          timeout=180, stdin=subprocess.DEVNULL)


def test_the_inspector_cli_sends_the_token_header(tmp_path: Path) -> None:
    _, token = make_token(tmp_path, user_id="inspector-user")
    with http_server(tmp_path, "streamable-http", "--auth", "token") as url:
        base = [url, "--transport", "http", "--header", f"Authorization: Bearer {token}"]
        added = inspector(*base, "--method", "tools/call", "--tool-name", "add_memory",
                          "--tool-arg", "text=from the inspector")
        assert added["structuredContent"]["results"][0]["user_id"] == "inspector-user"
        refused = run_inspector(*base, "--method", "tools/call", "--tool-name",
                                "list_memories", "--tool-arg", "user_id=someone-else")
        assert json.loads(refused.stdout)["content"][0]["text"].startswith("AUTH_002")
        without = run_inspector(url, "--transport", "http", "--method", "tools/list")
        assert without.returncode != 0 and "auth_required" in without.stdout + without.stderr
    memories, _ = stored(tmp_path)
    assert [(m["memory"], m["user_id"]) for m in memories] == [
        ("from the inspector", "inspector-user")]


def test_the_token_cli_creates_lists_and_revokes(tmp_path: Path) -> None:
    db = ["--db", str(tmp_path / "db")]

    def lancemem(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "lancemem", "token", *args, *db],
                              capture_output=True, text=True, timeout=60)

    made = lancemem("create", "--user-id", "alice", "--agent-id", "helper", "--read-only",
                    "--label", "support bot", "--expires-in", "30", "--json")
    assert made.returncode == 0, made.stderr
    created = json.loads(made.stdout)
    assert created["token"].startswith("lmk_") and created["id"].startswith("tk_")
    assert (created["user_id"], created["agent_id"], created["read_only"]) == (
        "alice", "helper", True)
    plain = lancemem("create", "--user-id", "bob")
    assert plain.returncode == 0 and plain.stdout.strip().startswith("lmk_")
    assert "shown only now" in plain.stderr and plain.stdout.count("\n") == 1
    listed = lancemem("list", "--json")
    items = json.loads(listed.stdout)["results"]
    assert [i["user_id"] for i in items] == ["alice", "bob"]
    assert created["token"] not in listed.stdout and plain.stdout.strip() not in listed.stdout
    assert lancemem("revoke", created["id"]).returncode == 0
    twice = lancemem("revoke", created["id"])
    assert twice.returncode == 0 and "already revoked" in twice.stdout
    text = lancemem("list").stdout
    assert f"{created['id']}  revoked" in text and "'support bot'" in text
    unknown = lancemem("revoke", "tk_nope")
    assert unknown.returncode == 1 and "NOT_FOUND_001" in unknown.stderr
    missing = lancemem("create")
    assert missing.returncode == 2 and "--user-id" in missing.stderr
    bad = lancemem("create", "--user-id", "x", "--expires-in", "soon")
    assert bad.returncode == 1 and "VALIDATION_005" in bad.stderr and "number of days" in bad.stderr


def test_a_flood_is_slowed_with_429_while_other_clients_are_served(tmp_path: Path) -> None:
    _, token = make_token(tmp_path, user_id="alice")
    _, second = make_token(tmp_path, user_id="bob")
    _, third = make_token(tmp_path, user_id="carol")
    with http_server(tmp_path, "streamable-http", "--auth", "token",
                     "--rate-limit", "50") as url:
        headers = {**HEADERS, "Authorization": f"Bearer {token}"}
        statuses: list[int] = []

        async def flood() -> None:
            async with httpx.AsyncClient(timeout=30) as client:
                async def one() -> None:
                    response = await client.post(url, json=INITIALIZE, headers=headers)
                    statuses.append(response.status_code)
                    if response.status_code == 429:
                        assert int(response.headers["retry-after"]) >= 1
                for _ in range(10):
                    async with anyio.create_task_group() as group:
                        for _ in range(100):
                            group.start_soon(one)

        started = time.monotonic()
        anyio.run(flood)
        elapsed = time.monotonic() - started
        assert len(statuses) == 1000
        assert set(statuses) <= {200, 429}
        # At most the burst plus 50 per second got through; the rest were refused.
        assert statuses.count(200) <= 100 + 50 * elapsed + 5, (statuses.count(200), elapsed)
        assert statuses.count(429) >= 1000 - (100 + 50 * elapsed) - 5
        # Another client (its own address and token) is served meanwhile; the flood's
        # address is served again a second later. (The flood's own token has used up
        # its 64 sessions: tested on its own below.)
        other = httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.2"),
                             timeout=10)
        assert other.post(url, json=INITIALIZE, headers={
            **HEADERS, "Authorization": f"Bearer {second}"}).status_code == 200
        time.sleep(1.1)
        assert httpx.post(url, json=INITIALIZE, timeout=10, headers={
            **HEADERS, "Authorization": f"Bearer {third}"}).status_code == 200


def test_a_body_over_the_bound_is_refused(tmp_path: Path) -> None:
    _, token = make_token(tmp_path, user_id="alice")
    with http_server(tmp_path, "streamable-http", "--auth", "token") as url:
        body = b'{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"x": "' + (
            b"a" * (5 * 2**20)) + b'"}}'
        headers = {**HEADERS, "Authorization": f"Bearer {token}"}
        assert httpx.post(url, content=body, headers=headers, timeout=30).status_code == 413
        no_token = {k: v for k, v in headers.items() if k != "Authorization"}
        assert httpx.post(url, content=body, headers=no_token, timeout=30).status_code == 401


# ---------------------------------------------------------------- what an attack found


async def test_a_servers_pins_refuse_a_credentials_other_ids(tmp_path: Path) -> None:
    _, alice = make_token(tmp_path, user_id="alice")
    with http_server(tmp_path, "streamable-http", "--auth", "token", "--pin-user-id", "alice",
                     "--pin-agent-id", "other-bot") as url:
        with anyio.fail_after(TIMEOUT):
            async with client_for(url, alice) as client:
                tools = {t.name: t for t in (await client.list_tools()).tools}
                assert "user_id" not in tools["delete_all_memories"].input_schema["properties"]
                error, _ = await call(client, "add_memory", text="likes tea")
                assert not error
                before = settled(tmp_path)
                for args in ({"user_id": "bob"}, {"agent_id": "triage-bot"},
                             {"user_id": "bob", "filters": {"category": "food"}}):
                    error, text = await call(client, "delete_all_memories", **args)
                    assert error and text.startswith("AUTH_002: ") and "pins" in text, text
                assert settled(tmp_path) == before
                error, listed = await call(client, "list_memories", user_id=" alice ")
                assert not error and len(listed["results"]) == 1


def test_x_forwarded_for_does_not_pick_the_rate_limited_address(tmp_path: Path) -> None:
    _, token = make_token(tmp_path, user_id="alice")
    with http_server(tmp_path, "streamable-http", "--auth", "token",
                     "--rate-limit", "5") as url:
        headers = {**HEADERS, "Authorization": f"Bearer {token}"}
        started = time.monotonic()
        statuses = [httpx.post(url, json=INITIALIZE, timeout=10, headers={
            **headers, "X-Forwarded-For": f"10.0.{i // 256}.{i % 256}",
            "Forwarded": f"for=10.1.0.{i % 256}"}).status_code for i in range(60)]
        elapsed = time.monotonic() - started
    # One bucket for all of them (10 at once, then 5 a second), not one per claimed address.
    assert statuses.count(200) <= 10 + 5 * elapsed + 2, (statuses, elapsed)
    assert statuses.count(429) > 0


def test_one_credential_cannot_hold_every_session(tmp_path: Path) -> None:
    _, greedy = make_token(tmp_path, user_id="mallory", read_only=True)
    _, other = make_token(tmp_path, user_id="bob")
    with http_server(tmp_path, "streamable-http", "--auth", "token",
                     "--rate-limit", "0") as url:
        def initialize(token: str) -> httpx.Response:
            return httpx.post(url, json=INITIALIZE, timeout=10, headers={
                **HEADERS, "Authorization": f"Bearer {token}"})

        answers = [initialize(greedy) for _ in range(70)]
        assert [a.status_code for a in answers[:64]] == [200] * 64
        assert {a.status_code for a in answers[64:]} == {429}
        assert "sessions" in answers[-1].json()["error_description"]
        session = answers[0].headers["mcp-session-id"]
        assert httpx.delete(url, timeout=10, headers={
            **HEADERS, "Authorization": f"Bearer {greedy}", "mcp-session-id": session,
            "mcp-protocol-version": "2025-11-25"}).status_code in (200, 204)
        assert initialize(greedy).status_code == 200  # ending a session frees its place
        assert initialize(other).status_code == 200  # other tenants were never locked out
