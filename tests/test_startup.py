"""Start-up: the handshake needs neither LanceDB nor the model, and the stdio
server's warm-up waits for the first tools/list (serving.serve, mcp.listing)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from mcp import Client

from lancemem.core.config import load_settings
from lancemem.mcp.listing import after_first_listing
from lancemem.mcp.server import build_server
from lancemem.memory.facade import Memory
from lancemem.storage.store import Store
from tests.embedders import HashEmbedder

pytestmark = pytest.mark.anyio

HEAVY = ("lancedb", "lance", "pyarrow", "fastembed", "onnxruntime")
LIST_IN_A_FRESH_INTERPRETER = """
import sys, anyio
from mcp import Client
from lancemem.core.config import load_settings
from lancemem.mcp.server import build_server
import lancemem.serving.serve  # everything `lancemem serve` imports before serving

async def listed():
    async with Client(build_server(load_settings({"db": sys.argv[1]}))) as client:
        return [tool.name for tool in (await client.list_tools()).tools]

assert "list_memories" in anyio.run(listed)
print(" ".join(sorted({name.split(".")[0] for name in sys.modules})))
"""


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _server(db: Path):  # type: ignore[no-untyped-def]
    memory = Memory(store=Store(str(db)), embedder=HashEmbedder())
    return build_server(load_settings({"db": str(db)}), memory=memory)


def test_tools_list_is_answered_without_lancedb_or_the_model(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-c", LIST_IN_A_FRESH_INTERPRETER,
                           str(tmp_path / "db")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    imported = set(done.stdout.split())
    assert "mcp" in imported  # the probe saw the modules it imported
    assert imported.isdisjoint(HEAVY), sorted(imported & set(HEAVY))


async def test_the_first_listing_calls_back_once_and_lists_the_same_tools(
        tmp_path: Path) -> None:
    plain, hooked = _server(tmp_path / "a"), _server(tmp_path / "b")
    calls: list[int] = []
    after_first_listing(hooked, lambda: calls.append(len(calls)))
    async with Client(plain) as reference, Client(hooked) as client:
        expected = (await reference.list_tools()).tools
        assert calls == []  # connecting is not listing
        first = (await client.list_tools()).tools
        assert calls == [0]
        second = (await client.list_tools()).tools
        await client.call_tool("list_memories", {"user_id": "alice"})
        assert calls == [0]
    assert [t.model_dump() for t in first] == [t.model_dump() for t in expected]
    assert [t.model_dump() for t in second] == [t.model_dump() for t in expected]
