"""Object storage against local disk, in one run (issue 15).

    python -m benchmarks.object_storage --json benchmarks/results/object-storage.json
    python -m benchmarks.object_storage --quick      # small sizes, a smoke run

Starts its own SeaweedFS (S3, with the conditional writes Lance commits
``s3://`` tables with) and moto (DynamoDB, the commit store of ``s3+ddb://``)
on 127.0.0.1, from tests/object_store.py. Then, per store size and per
backend (local disk, ``s3://``, ``s3+ddb://`` up to ``--ddb-max``
memories): a bulk fill as benchmarks/speed.py does it (random vectors
through ``Memory.add_many``), start-up to an answered tools/list, and
single adds and searches in every mode through ``lancemem serve`` over
stdio. Last, throughput: 1, 2 and 3 ``lancemem serve --transport
streamable-http`` servers on one fresh store, each fed by concurrent MCP
SDK clients adding memories for a fixed time; the store is counted at the
end against the adds the servers acknowledged.

SeaweedFS runs on this machine, so S3 here has loopback latency (a PUT in
a few ms, not the tens of ms of a real S3 region): the S3 numbers are a
lower bound on S3's cost, and the ratios are what to compare.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import AsyncExitStack, ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
from mcp import Client
from tests.object_store import S3Server, moto, seaweedfs
from tests.processes import announced, child_env

from benchmarks import speed
from benchmarks.soak import WORDS
from lancemem.memory.facade import Memory
from lancemem.storage.schema import HISTORY, MEMORIES
from lancemem.storage.store import Store

SERVERS = (1, 2, 3)


@dataclass
class Backend:
    """Where stores go: a name, how to make a fresh store, and what a process needs."""

    name: str
    new_db: Callable[[], str]
    env: dict[str, str]  # for a child `lancemem serve`
    options: dict[str, str] | None  # for an in-process Store

    def store(self, db: str) -> Store:
        return Store(db, storage_options=self.options, read_consistency=0)


def backends(server: S3Server, work: Path) -> list[Backend]:
    def local() -> str:
        return tempfile.mkdtemp(prefix="lancemem-os-", dir=work)

    remote_env = {**child_env(), **server.env()}
    return [Backend("local", local, child_env(), None),
            Backend("s3", server.new_uri, remote_env, server.storage_options()),
            Backend("s3+ddb", lambda: server.new_uri(ddb=True), remote_env,
                    server.storage_options())]


def latency(backend: Backend, memories: int, args: argparse.Namespace) -> dict[str, Any]:
    """Fill a fresh store, then start-up, searches and adds through the real server."""
    db = backend.new_db()
    out: dict[str, Any] = {"fill_s": round(speed.fill(db, memories, args.users,
                                                      storage_options=backend.options), 1)}
    print(f"  {backend.name}: filled {memories:,} in {out['fill_s']} s", file=sys.stderr)
    out["startup"] = speed.startup(db, args.startup_runs, backend.env)
    out.update(anyio.run(speed.through_server, db, args.users, args.searches, args.adds,
                         None, backend.env))
    out["counted"] = backend.store(db).count(MEMORIES)
    return out


@contextmanager
def http_server(db: str, env: dict[str, str], log: Path) -> Iterator[str]:
    """`lancemem serve --transport streamable-http` on an ephemeral port; yields its URL."""
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "lancemem", "serve", "--db", db,
             "--transport", "streamable-http", "--port", "0"],
            env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=out)
    with announced(proc, log, r"serving \S+ at (http://\S+)") as url:
        yield url


@dataclass
class Tally:
    """What one throughput run's clients saw."""

    acknowledged: int = 0
    failed: int = 0
    first_error: str = ""

    def __post_init__(self) -> None:
        self.ms: list[float] = []
        self.ids: set[str] = set()  # of the memories the servers said they added

    def took(self, result: Any) -> bool:
        """Count one add_memory result; returns whether it was acknowledged."""
        if result.is_error:
            self.fail(result.content[0].text)
            return False
        self.acknowledged += 1
        self.ids.update(r["id"] for r in (result.structured_content or {}).get("results", [])
                        if r.get("event") == "ADD")
        return True

    def fail(self, error: str) -> None:
        self.failed += 1
        self.first_error = self.first_error or error[:300]


async def adder(client: Client, name: str, deadline: float, tally: Tally) -> None:
    """Add memories through ``client`` until ``deadline``; each text is new."""
    rng = random.Random(name)
    number = 0
    while time.perf_counter() < deadline:
        words = " ".join(rng.choice(WORDS) for _ in range(10))
        started = time.perf_counter()
        try:
            result = await client.call_tool("add_memory", {
                "text": f"{name} fact {number}: {words}", "user_id": f"user-{number % 50}"})
        except Exception as exc:  # a dropped connection counts as a failed add
            tally.fail(repr(exc))
            continue
        finally:
            number += 1
        if tally.took(result):
            tally.ms.append((time.perf_counter() - started) * 1000)


async def feed(urls: list[str], clients: int, seconds: float) -> tuple[Tally, float]:
    """``clients`` SDK clients per server, adding for ``seconds``; one warm-up add
    per server first (the model loads), counted as acknowledged but not timed."""
    tally = Tally()
    async with AsyncExitStack() as stack:
        connected = [(await stack.enter_async_context(Client(url)), f"s{s}c{c}")
                     for s, url in enumerate(urls) for c in range(clients)]
        for client, name in connected[::clients]:
            tally.took(await client.call_tool("add_memory", {"text": f"{name} warm up",
                                                             "user_id": "user-0"}))
        started = time.perf_counter()
        async with anyio.create_task_group() as group:
            for client, name in connected:
                group.start_soon(adder, client, name, started + seconds, tally)
        return tally, time.perf_counter() - started


def throughput(backend: Backend, servers: int, args: argparse.Namespace,
               log_dir: Path) -> dict[str, Any]:
    """``servers`` streamable-http servers on one fresh store, fed for a fixed time."""
    db = backend.new_db()
    store = backend.store(db)
    Memory(store=store, embedder=speed.RandomVectors()).ensure_open()  # type: ignore[arg-type]
    logs = [log_dir / f"{backend.name}-x{servers}-{n}.log" for n in range(servers)]
    with ExitStack() as stack:
        urls = [stack.enter_context(http_server(db, backend.env, log)) for log in logs]
        tally, elapsed = anyio.run(feed, urls, args.clients, args.seconds)
    final = backend.store(db)
    counted = final.count(MEMORIES)
    stored = set(final.arrow(MEMORIES, None, columns=["id"]).column("id").to_pylist())
    recorded = set(final.arrow(HISTORY, None, columns=["memory_id"])
                   .column("memory_id").to_pylist())
    lost = sorted(tally.ids - stored)
    if lost:  # a stale read, or gone? Look again from a new process's view, later
        time.sleep(3)
        again = set(backend.store(db).arrow(MEMORIES, None, columns=["id"])
                    .column("id").to_pylist())
        print(f"  LOST {len(lost)} acknowledged adds; 3 s later "
              f"{len(set(lost) - again)} still missing: {lost[:5]}", file=sys.stderr)
        lost_later = len(set(lost) - again)
    else:
        lost_later = 0
    out = {"servers": servers, "clients": servers * args.clients,
           "seconds": round(elapsed, 1), "adds_per_s": round(len(tally.ms) / elapsed, 1),
           "acknowledged": tally.acknowledged, "failed": tally.failed,
           "counted": counted, "lost": len(lost), "lost_ids": lost[:10],
           "lost_but_in_history": len(set(lost) & recorded),
           "still_lost_3s_later": lost_later,
           "unacknowledged_stored": len(stored - tally.ids),
           "logs": [str(log) for log in logs],
           "add": speed.summary(tally.ms) if tally.ms else {}}
    if tally.first_error:
        out["first_error"] = tally.first_error
    print(f"  {backend.name} x{servers}: {out['adds_per_s']} adds/s, "
          f"{tally.acknowledged} acknowledged, {counted} counted, {len(lost)} lost, "
          f"{tally.failed} failed", file=sys.stderr)
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    report: dict[str, Any] = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
                   f"Python {platform.python_version()}",
        "users": args.users, "searches_per_mode": args.searches, "adds": args.adds,
        "sizes": {}, "throughput": {}}
    logs = Path(tempfile.mkdtemp(prefix="lancemem-objbench-logs-"))  # kept: failures
    print(f"server logs in {logs}", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="lancemem-objbench-") as tmp:
        work = Path(tmp)
        with seaweedfs(work / "weed") as s3, moto(work / "moto") as ddb:
            chosen = [b for b in backends(S3Server(s3, dynamodb=ddb), work)
                      if b.name in args.backends]
            for size in args.sizes:
                print(f"{size:,} memories", file=sys.stderr)
                report["sizes"][str(size)] = {
                    b.name: latency(b, size, args) for b in chosen
                    if b.name != "s3+ddb" or size <= args.ddb_max}
            print("throughput", file=sys.stderr)
            for b in chosen:
                report["throughput"][b.name] = [throughput(b, n, args, logs)
                                                for n in args.servers]
    return report


LATENCY_ROWS = (("add", "single add"), ("search_hybrid", "search, hybrid"),
                ("search_vector", "search, vector"), ("search_keyword", "search, keyword"))


def latency_table(size: str, results: dict[str, dict[str, Any]]) -> list[str]:
    names = list(results)
    lines = [f"{int(size):,} memories: p50 / p95 ms (start-up and fill in s)", "",
             "| measurement | " + " | ".join(names) + " | " +
             " | ".join(f"{n} / local" for n in names[1:]) + " |",
             "| --- |" + " ---: |" * (2 * len(names) - 1)]
    for key, label in LATENCY_ROWS:
        cells = [f"{results[n][key]['p50_ms']} / {results[n][key]['p95_ms']}" for n in names]
        ratios = [f"{results[n][key]['p50_ms'] / results[names[0]][key]['p50_ms']:.2f}x"
                  for n in names[1:]]
        lines.append(f"| {label} | " + " | ".join(cells + ratios) + " |")
    for label, get in (("start-up to tools/list", lambda r: r["startup"]["tools_list_s"]),
                       ("bulk fill", lambda r: r["fill_s"])):
        values = [get(results[n]) for n in names]
        ratios = [f"{v / values[0]:.2f}x" for v in values[1:]]
        lines.append(f"| {label} | " + " | ".join([str(v) for v in values] + ratios) + " |")
    return lines


def throughput_table(results: dict[str, list[dict[str, Any]]]) -> list[str]:
    names = list(results)
    lines = ["Throughput: adds/s (acknowledged / counted at the end), add p50 ms under load",
             "",
             "| servers | " + " | ".join(names) + " |", "| ---: |" + " ---: |" * len(names)]
    for row in range(len(results[names[0]])):
        cells = [f"{r['adds_per_s']} ({r['acknowledged']} / {r['counted']}), "
                 f"{r['add'].get('p50_ms', '-')}"
                 + (f", {r['failed']} failed" if r["failed"] else "")
                 + (f", **{r['lost']} lost**" if r["lost"] else "")
                 for r in (results[n][row] for n in names)]
        lines.append(f"| {results[names[0]][row]['servers']} | " + " | ".join(cells) + " |")
    return lines


def markdown(report: dict[str, Any]) -> str:
    lines: list[str] = []
    for size, results in report["sizes"].items():
        lines += [*latency_table(size, results), ""]
    if report["throughput"]:
        lines += throughput_table(report["throughput"])
    return "\n".join(lines)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="small sizes and short runs: a smoke run")
    parser.add_argument("--sizes", type=int, nargs="*", default=[10_000, 100_000],
                        help="store sizes for latency (none: throughput only)")
    parser.add_argument("--users", type=int, default=1_000)
    parser.add_argument("--backends", nargs="+", default=["local", "s3", "s3+ddb"],
                        choices=["local", "s3", "s3+ddb"])
    parser.add_argument("--ddb-max", type=int, default=100_000,
                        help="largest store measured on s3+ddb (moto is slow)")
    parser.add_argument("--searches", type=int, default=100, help="per mode")
    parser.add_argument("--adds", type=int, default=60)
    parser.add_argument("--startup-runs", type=int, default=5)
    parser.add_argument("--servers", type=int, nargs="+", default=list(SERVERS))
    parser.add_argument("--clients", type=int, default=4, help="per server")
    parser.add_argument("--seconds", type=float, default=30.0, help="per throughput run")
    parser.add_argument("--json", type=Path, help="also write the report here")
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes, args.ddb_max, args.searches, args.adds = [500, 2_000], 2_000, 10, 10
        args.startup_runs, args.seconds, args.users = 2, 5.0, 100
    return args


def main() -> None:
    args = parse()
    started = time.perf_counter()
    report = run(args)
    report["wall_s"] = round(time.perf_counter() - started, 1)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(markdown(report))
    print(f"\n(whole run {report['wall_s']} s)", file=sys.stderr)


if __name__ == "__main__":
    main()
