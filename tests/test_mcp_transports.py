"""The server as users run it: a subprocess, real MCP clients, 127.0.0.1 ephemeral ports."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import anyio
import httpx
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.sse import sse_client

from tests.mcp_scenario import TOOLS, call, exercise_all_tools
from tests.processes import announced

pytestmark = pytest.mark.anyio
INSPECTOR = Path(__file__).parent / "inspector" / "node_modules" / ".bin" / "mcp-inspector"
SCENARIO_TIMEOUT = 180


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def serve_args(db: Path, *extra: str) -> list[str]:
    return ["-m", "lancemem", "serve", "--db", str(db), *extra]


def stdio_params(db: Path, *extra: str) -> StdioServerParameters:
    return StdioServerParameters(command=sys.executable, args=serve_args(db, *extra),
                                 env=dict(os.environ))


@contextmanager
def http_server(tmp_path: Path, transport: str, *extra: str) -> Iterator[str]:
    """Run ``lancemem serve`` on an ephemeral port; yield the URL it announces."""
    log_path = tmp_path / f"{transport}-{time.monotonic_ns()}.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, *serve_args(tmp_path / "db", "--transport", transport,
                                         "--port", "0", *extra)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log)
    with announced(proc, log_path, r"serving \S+ at (http://\S+)") as url:
        yield url


async def test_stdio_every_tool(tmp_path: Path) -> None:
    with anyio.fail_after(SCENARIO_TIMEOUT):
        async with Client(stdio_params(tmp_path / "db")) as client:
            await exercise_all_tools(client)


@pytest.mark.parametrize("mode", ["2026-07-28", "legacy"])
async def test_streamable_http_every_tool(tmp_path: Path, mode: str) -> None:
    with http_server(tmp_path, "streamable-http") as url:
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/mcp", url)
        with anyio.fail_after(SCENARIO_TIMEOUT):
            async with Client(url, mode=mode) as client:
                await exercise_all_tools(client)


async def test_sse_every_tool(tmp_path: Path) -> None:
    with http_server(tmp_path, "sse") as url:
        assert url.endswith("/sse")
        with anyio.fail_after(SCENARIO_TIMEOUT):
            async with Client(sse_client(url), mode="legacy") as client:
                await exercise_all_tools(client)


INITIALIZE = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
    "protocolVersion": "2025-11-25", "capabilities": {},
    "clientInfo": {"name": "probe", "version": "0"}}}
HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


@pytest.mark.parametrize("transport", ["streamable-http", "sse"])
def test_foreign_origin_and_host_are_refused(tmp_path: Path, transport: str) -> None:
    with http_server(tmp_path, transport) as url:
        port = re.search(r":(\d+)/", url).group(1)
        # A fresh connection per probe: after refusing, the SDK's SSE endpoint drops it.
        if transport == "sse":
            evil_origin = httpx.get(url, headers={"Origin": "http://evil.example"}, timeout=10)
            evil_host = httpx.get(url, headers={"Host": "evil.example"}, timeout=10)
        else:
            evil_origin = httpx.post(url, json=INITIALIZE, timeout=10,
                                     headers={**HEADERS, "Origin": "http://evil.example"})
            evil_host = httpx.post(url, json=INITIALIZE, timeout=10,
                                   headers={**HEADERS, "Host": f"evil.example:{port}"})
            own = httpx.post(url, json=INITIALIZE, timeout=10,
                             headers={**HEADERS, "Origin": f"http://127.0.0.1:{port}"})
            assert own.status_code == 200, own.text
    assert evil_origin.status_code == 403
    assert evil_host.status_code == 421


def test_non_loopback_bind_is_refused_without_opt_in(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, *serve_args(tmp_path / "db", "--transport", "streamable-http",
                                     "--host", "0.0.0.0", "--port", "0")],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert result.returncode == 1
    assert "refusing to listen on 0.0.0.0" in result.stderr
    assert "--allow-remote" in result.stderr


async def test_two_stdio_servers_share_one_store(tmp_path: Path) -> None:
    db = tmp_path / "db"
    with anyio.fail_after(SCENARIO_TIMEOUT):
        async with Client(stdio_params(db)) as first, Client(stdio_params(db)) as second:
            written: dict[str, list[str]] = {"first": [], "second": []}

            async def writer(name: str, client: Client) -> None:
                for i in range(15):
                    result = await call(client, "add_memory", user_id="shared",
                                        text=f"{name} wrote fact number {i}")
                    written[name].extend(r["id"] for r in result["results"])

            async with anyio.create_task_group() as group:
                group.start_soon(writer, "first", first)
                group.start_soon(writer, "second", second)
            expected = set(written["first"]) | set(written["second"])
            assert len(expected) == 30
            for client in (first, second):
                listed = await call(client, "list_memories", user_id="shared")
                assert {r["id"] for r in listed["results"]} == expected
            late = await call(first, "add_memory", user_id="shared", text="written late")
            seen = await call(second, "get_memory", user_id="shared",
                              memory_id=late["results"][0]["id"])
            assert seen["memory"] == "written late"


def inspector(*args: str) -> dict:
    """Run the MCP Inspector CLI and parse its JSON answer."""
    node = shutil.which("node")
    assert node, "node is needed for the MCP Inspector test (make test installs it)"
    assert INSPECTOR.exists(), "run `make test` (it installs the inspector into tests/inspector)"
    result = subprocess.run([str(INSPECTOR), "--cli", *args], capture_output=True, text=True,
                            timeout=180, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr + result.stdout
    return json.loads(result.stdout)


def test_mcp_inspector_cli_over_stdio(tmp_path: Path) -> None:
    server = [sys.executable, *serve_args(tmp_path / "db")]
    tools = inspector(*server, "--method", "tools/list")
    assert {tool["name"] for tool in tools["tools"]} == TOOLS
    added = inspector(*server, "--method", "tools/call", "--tool-name", "add_memory",
                      "--tool-arg", "text=Inspector says hello", "--tool-arg", "user_id=insp")
    assert added["structuredContent"]["results"][0]["event"] == "ADD"
    listed = inspector(*server, "--method", "tools/call", "--tool-name", "list_memories",
                       "--tool-arg", "user_id=insp")
    assert [r["memory"] for r in listed["structuredContent"]["results"]] == [
        "Inspector says hello"]


def test_mcp_inspector_cli_over_http(tmp_path: Path) -> None:
    with http_server(tmp_path, "streamable-http") as url:
        tools = inspector(url, "--transport", "http", "--method", "tools/list")
        assert {t["name"] for t in tools["tools"]} >= {"add_memory", "list_memories"}
        inspector(url, "--transport", "http", "--method", "tools/call", "--tool-name",
                  "add_memory", "--tool-arg", "text=over http", "--tool-arg", "user_id=h")
        listed = inspector(url, "--transport", "http", "--method", "tools/call",
                           "--tool-name", "list_memories", "--tool-arg", "user_id=h")
    assert [r["memory"] for r in listed["structuredContent"]["results"]] == ["over http"]
