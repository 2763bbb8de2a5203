"""Several servers behind a load balancer without sticky sessions (--stateless).

Two ``lancemem serve --transport streamable-http --stateless`` processes on
one store, behind a round-robin proxy (tests/http_proxy.py): every tool works
through the proxy although consecutive requests reach different servers.
Without --stateless the second server does not know the first's session.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import anyio
import pytest
from mcp import Client

from tests.http_proxy import forwarding
from tests.mcp_scenario import exercise_all_tools
from tests.test_mcp_transports import SCENARIO_TIMEOUT, http_server

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _origin(url: str) -> str:
    return url.removesuffix("/mcp")


async def test_every_tool_through_a_round_robin_balancer(tmp_path: Path) -> None:
    seen: list[tuple[str, int]] = []
    with http_server(tmp_path, "streamable-http", "--stateless") as first, \
            http_server(tmp_path, "streamable-http", "--stateless") as second, \
            forwarding([_origin(first), _origin(second)], seen=seen) as balancer:
        with anyio.fail_after(SCENARIO_TIMEOUT):
            async with Client(f"{balancer}/mcp", mode="legacy") as client:
                await exercise_all_tools(client)
    assert len(set(seen)) == 2 and len(seen) > 10  # both servers answered, in turn


async def test_without_stateless_a_balancer_needs_sticky_sessions(tmp_path: Path) -> None:
    refused = None
    with http_server(tmp_path, "streamable-http") as first, \
            http_server(tmp_path, "streamable-http") as second, \
            forwarding([_origin(first), _origin(second)]) as balancer, \
            anyio.fail_after(SCENARIO_TIMEOUT):
        try:
            async with Client(f"{balancer}/mcp", mode="legacy") as client:
                await client.list_tools()
        except BaseException as exc:  # the SDK raises it inside exception groups
            refused = repr(exc)
    assert refused is not None and "Session not found" in refused, refused


def test_stateless_is_only_for_streamable_http(tmp_path: Path) -> None:
    for transport in ("stdio", "sse"):
        done = subprocess.run(
            [sys.executable, "-m", "lancemem", "serve", "--db", str(tmp_path / "db"),
             "--transport", transport, "--stateless"],
            capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
        assert done.returncode == 1
        assert "VALIDATION_" in done.stderr and "--stateless" in done.stderr
        assert not (tmp_path / "db").exists()
