"""Start-up: process start to an answered tools/list, and to a first tool call, over stdio.

    python -m benchmarks.startup --runs 5
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


async def once(db: str) -> tuple[float, float]:
    started = time.perf_counter()
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "lancemem", "serve", "--db", db, "--user-id", "u"],
        env=dict(os.environ))
    async with Client(params) as client:
        await client.list_tools()
        listed = time.perf_counter() - started
        await client.call_tool("list_memories", {})
        called = time.perf_counter() - started
    return listed, called


async def main(runs: int) -> None:
    db = tempfile.mkdtemp(prefix="lancemem-startup-")
    results = [await once(db) for _ in range(runs)]
    print(f"tools/list answered after {statistics.median(r[0] for r in results):.2f} s, "
          f"first tool call after {statistics.median(r[1] for r in results):.2f} s "
          f"(medians of {runs} runs)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    anyio.run(main, parser.parse_args().runs)
