"""Start-up: process start to an answered tools/list, and to a first tool call, over stdio.

    python -m benchmarks.startup --runs 5
    python -m benchmarks.startup --runs 7 --trivial --code before=/path/to/old/server

``--trivial`` also starts the SDK's trivial server (benchmarks.trivial_server:
the floor any server on this SDK starts from); each ``--code NAME=DIR`` also
starts ``lancemem serve`` from the source folder DIR (put first on
PYTHONPATH), e.g. another checkout's ``server/``. Runs are interleaved, so
load on a shared machine falls on every variant alike.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

import anyio
from mcp import Client, StdioServerParameters


async def once(args: list[str], env: dict[str, str], tool: str | None) -> tuple[float, float]:
    started = time.perf_counter()
    params = StdioServerParameters(command=sys.executable, args=args, env=env)
    async with Client(params) as client:
        await client.list_tools()
        listed = time.perf_counter() - started
        if tool:
            await client.call_tool(tool, {})
        called = time.perf_counter() - started
    return listed, called


def variants(db: str, codes: list[str], trivial: bool) -> dict[str, tuple[list[str], dict[str, str],
                                                                       str | None]]:
    """name -> (arguments, environment, tool to call first) of each server to start."""
    serve = ["-m", "lancemem", "serve", "--db", db, "--user-id", "u"]
    out = {"lancemem": (serve, dict(os.environ), "list_memories")}
    for spec in codes:
        name, _, folder = spec.partition("=")
        path = os.pathsep.join([folder, os.environ.get("PYTHONPATH", "")])
        out[name] = (serve, dict(os.environ, PYTHONPATH=path), "list_memories")
    if trivial:
        out["SDK trivial server"] = (["-m", "benchmarks.trivial_server"], dict(os.environ),
                                     "constant")
    return out


async def main(runs: int, codes: list[str], trivial: bool) -> None:
    db = tempfile.mkdtemp(prefix="lancemem-startup-")
    servers = variants(db, codes, trivial)
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in servers}
    for _ in range(runs):
        for name, (args, env, tool) in servers.items():
            results[name].append(await once(args, env, tool))
    for name, values in results.items():
        print(f"{name}: tools/list answered after "
              f"{statistics.median(r[0] for r in values):.2f} s, first tool call after "
              f"{statistics.median(r[1] for r in values):.2f} s (medians of {runs} runs; "
              f"tools/list {', '.join(f'{r[0]:.2f}' for r in values)})")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--code", action="append", default=[], metavar="NAME=DIR",
                        help="also lancemem from this source folder, e.g. before=../old/server")
    parser.add_argument("--trivial", action="store_true",
                        help="also the SDK's trivial server (the floor)")
    options = parser.parse_args()
    anyio.run(main, options.runs, options.code, options.trivial)
