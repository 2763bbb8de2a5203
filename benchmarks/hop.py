"""The MCP hop: what a lancemem tool call costs over the SDK's trivial tool, same transport.

    python -m benchmarks.hop --json benchmarks/results/hop.json
    python -m benchmarks.hop --rounds 100 --transports stdio      # quicker

Two servers run side by side on each transport (stdio, streamable HTTP on
127.0.0.1): ``benchmarks.trivial_server`` (one tool returning a constant,
built with the same SDK) and ``lancemem serve`` on a fresh store holding a
few memories, each with the SDK's own client. Each round calls, in a rotating
order, the trivial tool and the cheap lancemem tools (``list_memories`` of an
empty scope, ``get_memory`` of a missing id: the error path,
``search_memories`` with the real model), and the same lancemem calls
in-process through ``Memory`` on the same store, so a tool's time splits into
its work (in-process) and its hop (the rest). Reported per tool: median and
p95, the median over the trivial tool's, and that again with the in-process
median taken off (the hop's extra cost, the figure issue 16 bounds by 1.5 ms).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
from mcp import Client, StdioServerParameters

from benchmarks.speed import percentile
from lancemem.core.config import load_settings
from lancemem.core.errors import NotFoundError
from lancemem.memory.facade import Memory
from lancemem.serving.serve import EMBEDDING_THREADS

MISSING = "00000000-0000-4000-8000-000000000000"
SEEDS = ["Alice likes green tea.", "Alice lives in Lisbon.", "Alice's dog is called Rex.",
         "Alice works at Acme on databases.", "Alice plays the cello on Sundays."]
# tool -> (arguments, whether the call is an error by design)
CALLS: dict[str, tuple[dict[str, Any], bool]] = {
    "list_memories": ({"user_id": "nobody"}, False),
    "get_memory": ({"memory_id": MISSING, "user_id": "alice"}, True),
    "search_memories": ({"query": "what does Alice drink", "user_id": "alice"}, False),
}


def in_process(memory: Memory) -> dict[str, Callable[[], Any]]:
    """The same calls as CALLS, through the Python API."""
    def get_missing() -> None:
        with contextlib.suppress(NotFoundError):
            memory.get(MISSING, user_id="alice")

    return {"list_memories": lambda: memory.get_all(user_id="nobody"),
            "get_memory": get_missing,
            "search_memories": lambda: memory.search("what does Alice drink", user_id="alice")}


def summary(values_ms: list[float]) -> dict[str, float]:
    return {"p50_ms": round(statistics.median(values_ms), 3),
            "p95_ms": round(percentile(values_ms, 0.95), 3), "n": len(values_ms)}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before listening")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listening on {port} after {timeout} s")


@contextlib.asynccontextmanager
async def connect(args: list[str], transport: str) -> AsyncIterator[Client]:
    """A client of ``python ARGS`` on ``transport``; the server is stopped afterwards."""
    if transport == "stdio":
        params = StdioServerParameters(command=sys.executable, args=args, env=dict(os.environ))
        async with Client(params) as client:
            yield client
        return
    port = free_port()
    proc = subprocess.Popen([sys.executable, *args, "--transport", "streamable-http",
                             "--port", str(port)], stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port, proc)
        async with Client(f"http://127.0.0.1:{port}/mcp") as client:
            yield client
    finally:
        proc.terminate()
        proc.wait(10)


async def timed(client: Client, tool: str, arguments: dict[str, Any], error: bool) -> float:
    started = time.perf_counter()
    result = await client.call_tool(tool, arguments)
    elapsed = (time.perf_counter() - started) * 1000
    if result.is_error != error:
        raise RuntimeError(f"{tool}: unexpected result {result.content}")
    return elapsed


def timed_locally(call: Callable[[], Any]) -> float:
    started = time.perf_counter()
    call()
    return (time.perf_counter() - started) * 1000


async def one_transport(db: str, transport: str, rounds: int) -> dict[str, Any]:
    """Interleaved rounds against both servers and in-process, on one transport."""
    serve = ["-m", "lancemem", "serve", "--db", db]
    samples: dict[str, list[float]] = {name: [] for name in
                                       ["trivial", *CALLS, *(f"{n}_in_process" for n in CALLS)]}
    async with connect(["-m", "benchmarks.trivial_server"], transport) as trivial, \
            connect(serve, transport) as lancemem:
        # The server's own thread count for the model, so the in-process work is the same.
        memory = Memory.from_settings(load_settings({"db": db}),
                                      embedding_threads=EMBEDDING_THREADS)
        local = in_process(memory)
        steps: list[Callable[[], Any]] = [
            lambda: timed(trivial, "constant", {}, False),
            *[(lambda n=name: timed(lancemem, n, *CALLS[n])) for name in CALLS],
        ]
        names = ["trivial", *CALLS]
        for _ in range(20):  # warm up: the model, the store's caches, both servers
            for step in steps:
                await step()
            for call in local.values():
                call()
        for number in range(rounds):
            shift = number % len(steps)
            for name, step in zip(names[shift:] + names[:shift],
                                  steps[shift:] + steps[:shift], strict=True):
                samples[name].append(await step())
                if name in local:
                    samples[f"{name}_in_process"].append(timed_locally(local[name]))
        memory.close()
    return report(samples)


def report(samples: dict[str, list[float]]) -> dict[str, Any]:
    out: dict[str, Any] = {name: summary(values) for name, values in samples.items()}
    trivial = out["trivial"]["p50_ms"]
    for name in CALLS:
        over = out[name]["p50_ms"] - trivial
        out[name]["over_trivial_ms"] = round(over, 3)
        out[name]["hop_over_trivial_ms"] = round(over - out[f"{name}_in_process"]["p50_ms"], 3)
    return out


def seed(db: str) -> None:
    memory = Memory.from_settings(load_settings({"db": db}))
    with memory:
        for text in SEEDS:
            memory.add(text, user_id="alice")


def markdown(results: dict[str, Any]) -> str:
    lines = ["| transport | call | p50 ms | p95 ms | in-process p50 | over trivial | "
             "hop over trivial |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for transport, out in results.items():
        lines.append(f"| {transport} | SDK trivial tool | {out['trivial']['p50_ms']:.2f} | "
                     f"{out['trivial']['p95_ms']:.2f} | | | |")
        for name in CALLS:
            row, local = out[name], out[f"{name}_in_process"]
            lines.append(f"| {transport} | {name} | {row['p50_ms']:.2f} | {row['p95_ms']:.2f} | "
                         f"{local['p50_ms']:.2f} | {row['over_trivial_ms']:+.2f} | "
                         f"{row['hop_over_trivial_ms']:+.2f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--transports", default="stdio,http",
                        help="comma-separated: stdio, http (streamable HTTP)")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    db = tempfile.mkdtemp(prefix="lancemem-hop-")
    seed(db)
    results: dict[str, Any] = {}
    for transport in args.transports.split(","):
        wire = "stdio" if transport == "stdio" else "streamable-http"
        results[transport] = anyio.run(one_transport, db, wire, args.rounds)
    print(markdown(results))
    if args.json:
        with open(args.json, "w") as out:
            json.dump({"rounds": args.rounds, "results": results}, out, indent=2)
            out.write("\n")


if __name__ == "__main__":
    main()
