"""The pieces of a tool call's hop, each timed alone (in-process, no transport).

    python -m benchmarks.hop_pieces

For one ``search_memories`` answer (five memories) and one ``list_memories``
of an empty scope: the server's argument check (lancemem's strict check and
the SDK's own validation use the same validator), the result model, the SDK's
conversion to text and structured content, the JSON-RPC result's
serialisation, and on the client its parsing and the SDK client's
jsonschema check of the structured content against the output schema;
and the hand-off of the tool's Memory call to a worker thread.
Medians in microseconds.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from typing import Any

import anyio
import anyio.to_thread
from jsonschema.validators import validator_for
from mcp.types import CallToolResult

from benchmarks.hop import SEEDS
from lancemem.core.config import load_settings
from lancemem.mcp.models import MemoryPage
from lancemem.mcp.relation_models import SearchResult
from lancemem.mcp.server import build_server
from lancemem.memory.facade import Memory


def median_us(action: Callable[[], Any], runs: int = 500) -> float:
    for _ in range(20):
        action()
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        action()
        times.append((time.perf_counter() - started) * 1e6)
    return statistics.median(times)


def hand_off_us(runs: int = 500) -> float:
    """One round trip to a worker thread and back (``anyio.to_thread``, as each tool's
    Memory call makes), for a function that does nothing."""
    async def measure() -> float:
        times = []
        for number in range(runs + 20):
            started = time.perf_counter()
            await anyio.to_thread.run_sync(lambda: None)
            if number >= 20:
                times.append((time.perf_counter() - started) * 1e6)
        return statistics.median(times)

    return anyio.run(measure)


def pieces(server: Any, tool: str, arguments: dict[str, Any], model: Any,
           raw: dict[str, Any]) -> dict[str, float]:
    meta = server._tool_manager.get_tool(tool).fn_metadata
    result = model.model_validate(raw)
    converted = meta.convert_result(result)
    wire = converted.model_dump_json(by_alias=True, exclude_unset=True)
    schema = server._tool_manager.get_tool(tool).output_schema
    validator = validator_for(schema)(schema)
    return {
        "arguments validated (once; done twice)": median_us(
            lambda: meta.validate_arguments(dict(arguments))),
        "result model from Memory's dict": median_us(lambda: model.model_validate(raw)),
        "SDK: text + structured content": median_us(lambda: meta.convert_result(result)),
        "JSON-RPC result serialised": median_us(
            lambda: converted.model_dump_json(by_alias=True, exclude_unset=True)),
        "client: result parsed": median_us(lambda: CallToolResult.model_validate_json(wire)),
        "client: output schema check (jsonschema)": median_us(
            lambda: list(validator.iter_errors(converted.structured_content))),
        "thread hand-off (a no-op to a worker and back)": hand_off_us(),
        "bytes on the wire": float(len(wire)),
    }


def main() -> None:
    settings = load_settings({"db": tempfile.mkdtemp(prefix="lancemem-pieces-")})
    with Memory.from_settings(settings) as memory:
        for text in SEEDS:
            memory.add(text, user_id="alice")
        server = build_server(settings, memory=memory)
        query = {"query": "what does Alice drink", "user_id": "alice"}
        rows = {
            "search_memories (5 results)": pieces(
                server, "search_memories", query, SearchResult,
                memory.search(query["query"], user_id="alice")),
            "list_memories (empty scope)": pieces(
                server, "list_memories", {"user_id": "nobody"}, MemoryPage,
                memory.get_all(user_id="nobody")),
        }
    names = list(next(iter(rows.values())))
    print("| piece (µs, median of 500) | " + " | ".join(rows) + " |")
    print("| --- |" + " --- |" * len(rows))
    for name in names:
        print(f"| {name} | " + " | ".join(f"{row[name]:.0f}" for row in rows.values()) + " |")


if __name__ == "__main__":
    main()
