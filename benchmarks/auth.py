"""Cost of authentication per tool call over streamable HTTP: no auth, --auth token, --auth jwt.

Three `lancemem serve` processes on one store (the JWT one trusting a local
issuer on 127.0.0.1), the same read (`get_memory` of a known id) through the
SDK client, rounds alternating between the servers so that machine noise
falls on all three alike. Prints p50/p95 per mode (medians over rounds) and
what auth adds to the p50.

    python -m benchmarks.auth --calls 300 --rounds 3
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import anyio
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from tests.jwt_issuer import JwtIssuer, rsa_key

from lancemem.storage.store import Store
from lancemem.storage.tokens import TokenTable


@contextmanager
def server(db: Path, log: Path, *extra: str) -> Iterator[str]:
    """``lancemem serve`` on an ephemeral port; yields its URL."""
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "lancemem", "serve", "--db", str(db), "--transport",
             "streamable-http", "--port", "0", "--rate-limit", "0", *extra],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=out)
    try:
        deadline = time.monotonic() + 120
        while not (found := re.search(r"serving \S+ at (http://\S+)", log.read_text())):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(log.read_text())
            time.sleep(0.05)
        yield found.group(1)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


async def timed_calls(url: str, token: str | None, memory_id: str, calls: int) -> list[float]:
    """Seconds per call of ``calls`` sequential get_memory calls (after a warm-up)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    transport = streamable_http_client(url, http_client=create_mcp_http_client(headers=headers))
    async with Client(transport) as client:
        args = {"memory_id": memory_id, "user_id": "alice"}
        for _ in range(20):
            assert not (await client.call_tool("get_memory", args)).is_error
        times = []
        for _ in range(calls):
            started = time.perf_counter()
            result = await client.call_tool("get_memory", args)
            times.append(time.perf_counter() - started)
            assert not result.is_error, result.content
    return times


async def seed(url: str, token: str) -> str:
    """Add a few memories for alice through the token server; returns one id."""
    headers = {"Authorization": f"Bearer {token}"}
    transport = streamable_http_client(url, http_client=create_mcp_http_client(headers=headers))
    async with Client(transport) as client:
        ids = []
        for i in range(20):
            result = await client.call_tool("add_memory", {"text": f"fact number {i}"})
            ids.append(result.structured_content["results"][0]["id"])
    return ids[0]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main(calls: int, rounds: int) -> None:
    work = Path(tempfile.mkdtemp(prefix="lancemem-auth-bench-"))
    db = work / "db"
    _, token = TokenTable(Store(str(db))).create(user_id="alice", label="bench")
    with ExitStack() as stack:
        issuer = stack.enter_context(JwtIssuer([rsa_key("bench")], audience="lancemem"))
        jwt = issuer.token(sub="alice", lifetime=3600)
        urls = {
            "none": stack.enter_context(server(db, work / "none.log")),
            "token": stack.enter_context(server(db, work / "token.log", "--auth", "token")),
            "jwt": stack.enter_context(server(
                db, work / "jwt.log", "--auth", "jwt", "--jwt-issuer", issuer.issuer,
                "--jwt-audience", "lancemem", "--jwt-jwks-url", issuer.jwks_url)),
        }
        credentials = {"none": None, "token": token, "jwt": jwt}
        memory_id = anyio.run(seed, urls["token"], token)
        stats: dict[str, list[tuple[float, float]]] = {mode: [] for mode in urls}
        for _ in range(rounds):
            for mode, url in urls.items():
                times = anyio.run(timed_calls, url, credentials[mode], memory_id, calls)
                stats[mode].append((percentile(times, 0.5), percentile(times, 0.95)))
    p50 = {mode: statistics.median(r[0] for r in rows) * 1000 for mode, rows in stats.items()}
    for mode, rows in stats.items():
        p95 = statistics.median(r[1] for r in rows) * 1000
        extra = "" if mode == "none" else f"  (+{p50[mode] - p50['none']:.2f} ms over none)"
        print(f"{mode:>5}: p50 {p50[mode]:.2f} ms, p95 {p95:.2f} ms{extra}")
    print(f"get_memory over streamable HTTP, {calls} calls x {rounds} rounds per mode, "
          "medians over rounds")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    options = parser.parse_args()
    main(options.calls, options.rounds)
