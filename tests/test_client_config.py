"""mcp.json.example holds working entries: each stdio entry starts a server that answers."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import anyio
import pytest
from mcp import Client, StdioServerParameters

pytestmark = pytest.mark.anyio
EXAMPLE = Path(__file__).parent.parent / "mcp.json.example"
PLACEHOLDER = "/path/to/lancemem/.venv/bin/lancemem"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def entries() -> list[tuple[str, dict]]:
    config = json.loads(EXAMPLE.read_text())
    found = []
    for client, block in config.items():
        servers = block.get("mcpServers") or block.get("servers")
        found.extend((client, entry) for entry in servers.values())
    return found


def test_every_client_has_an_entry() -> None:
    clients = {client for client, _ in entries()}
    assert clients == {"claude_desktop", "vscode", "cursor", "http", "http_with_token"}
    [(_, http)] = [e for e in entries() if e[0] == "http"]
    assert http["url"] == "http://127.0.0.1:8765/mcp"


async def test_the_token_entry_reaches_a_server_with_auth(tmp_path: Path) -> None:
    """The http_with_token block, pointed at a local `serve --auth token`, works as written."""
    from mcp.client.streamable_http import streamable_http_client
    from mcp.shared._httpx_utils import create_mcp_http_client

    from lancemem.storage.store import Store
    from lancemem.storage.tokens import TokenTable
    from tests.test_mcp_transports import http_server

    [(_, entry)] = [e for e in entries() if e[0] == "http_with_token"]
    assert entry["url"].endswith("/mcp") and entry["type"] == "http"
    _, token = TokenTable(Store(str(tmp_path / "db"))).create(user_id="configured")
    headers = {name: value.replace("lmk_YOUR_TOKEN", token)
               for name, value in entry["headers"].items()}
    with http_server(tmp_path, "streamable-http", "--auth", "token") as url:
        transport = streamable_http_client(url, http_client=create_mcp_http_client(
            headers=headers))
        with anyio.fail_after(120):
            async with Client(transport) as session:
                result = await session.call_tool("add_memory", {"text": "configured right"})
                assert not result.is_error, result.content[0].text
                assert result.structured_content["results"][0]["user_id"] == "configured"


@pytest.mark.parametrize("client", ["claude_desktop", "vscode", "cursor"])
async def test_stdio_entry_starts_a_working_server(tmp_path: Path, client: str) -> None:
    [(_, entry)] = [e for e in entries() if e[0] == client]
    assert entry["command"] == PLACEHOLDER
    script = Path(sys.executable).parent / "lancemem"
    assert script.exists(), "install lancemem into this environment (make test does)"
    params = StdioServerParameters(
        command=str(script), args=entry["args"],
        env={**os.environ, "LANCEMEM_DB": str(tmp_path / "db")})
    with anyio.fail_after(120):
        async with Client(params) as session:
            result = await session.call_tool("add_memory", {"text": "configured right"})
            assert not result.is_error, result.content[0].text
            assert result.structured_content["results"][0]["user_id"] == "your-name"


def test_make_serve_speaks_only_the_protocol_on_stdout(tmp_path: Path) -> None:
    """The README's serve command: stdout must carry nothing but JSON-RPC."""
    import shutil
    import subprocess

    root = EXAMPLE.parent
    if not (root / ".venv" / ".installed").exists() or not shutil.which("make"):
        pytest.skip("runs where `make test` has built .venv (as in CI)")
    request = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {},
        "clientInfo": {"name": "probe", "version": "0"}}})
    # As a person types it: not inside `make test` (which sets MAKELEVEL/MAKEFLAGS).
    env = {k: v for k, v in os.environ.items() if k not in ("MAKELEVEL", "MAKEFLAGS", "MFLAGS")}
    result = subprocess.run(["make", "serve"], cwd=root, input=request + "\n",
                            capture_output=True, text=True, timeout=300,
                            env={**env, "LANCEMEM_DB": str(tmp_path / "db")})
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines and all(json.loads(line)["jsonrpc"] == "2.0" for line in lines), result.stdout
    assert json.loads(lines[0])["result"]["serverInfo"]["name"] == "lancemem"
