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
    assert clients == {"claude_desktop", "vscode", "cursor", "http"}
    [(_, http)] = [e for e in entries() if e[0] == "http"]
    assert http["url"] == "http://127.0.0.1:8765/mcp"


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
