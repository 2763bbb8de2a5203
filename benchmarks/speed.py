"""Speed through the real MCP server over stdio: search, single add, import, start-up.

    python -m benchmarks.speed --memories 100000 --users 1000 \\
        --json benchmarks/results/speed-100k.json

The store is filled through lancemem's own batch path (``Memory.add_many``:
rows, history, indexes, compaction) but with random unit vectors instead of
the model, because embedding 100,000 texts here takes most of an hour and a
flat scan within a scope costs the same whatever the numbers are. Everything
measured afterwards goes through ``lancemem serve`` and the real model.
Baselines are measured in the same run: the model embedding one text plus one
LanceDB append of one row, and fastembed's own batch throughput.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import anyio
import numpy as np
from mcp import Client, StdioServerParameters

from benchmarks.locomo_data import DEFAULT_DATA, turns
from benchmarks.soak import WORDS, sentence
from lancemem.core.config import DEFAULT_MODEL, load_settings
from lancemem.memory.facade import Memory
from lancemem.search.embeddings import FastEmbedder
from lancemem.storage.store import Store, memories_schema


class RandomVectors:
    """Stands in for the model while filling the store: random unit vectors, same name."""

    model_name = DEFAULT_MODEL
    dim = 384

    def __init__(self, seed: int = 1) -> None:
        self._rng = np.random.default_rng(seed)

    def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        vectors = self._rng.standard_normal((len(texts), self.dim)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors.tolist()

    def embed_query(self, text: str) -> list[float]:
        return self.embed_documents([text])[0]


def fill(db: str, memories: int, users: int, *,
         storage_options: Mapping[str, str] | None = None) -> float:
    """Write ``memories`` spread over ``users`` through the batch path; returns seconds.
    ``storage_options`` are for a store on object storage (``s3://``)."""
    rng = random.Random(3)
    memory = Memory(store=Store(db, storage_options=storage_options),
                    embedder=RandomVectors())  # type: ignore[arg-type]
    started = time.perf_counter()
    records = ({"text": sentence(rng, n), "user_id": f"user-{n % users}"}
               for n in range(memories))
    memory.add_many(records, batch_size=20_000)
    memory.store.optimize()
    return time.perf_counter() - started


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summary(values_ms: list[float]) -> dict[str, float]:
    return {"p50_ms": round(statistics.median(values_ms), 2),
            "p95_ms": round(percentile(values_ms, 0.95), 2), "n": len(values_ms)}


def server_params(db: str, env: Mapping[str, str] | None = None) -> StdioServerParameters:
    """`lancemem serve` over stdio on ``db``, with ``env`` (this process's by default)."""
    return StdioServerParameters(command=sys.executable,
                                 args=["-m", "lancemem", "serve", "--db", db],
                                 env=dict(os.environ if env is None else env))


def resident_mb(db: str) -> dict[str, float]:
    """Resident memory now and at its peak (VmRSS, VmHWM) of `lancemem serve` on ``db``."""
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
            if b"serve" in cmdline and db.encode() in cmdline:
                status = dict(line.split(":", 1)
                              for line in (proc / "status").read_text().splitlines())
                return {key: round(int(status[field].split()[0]) / 1024, 1)
                        for key, field in (("now", "VmRSS"), ("peak", "VmHWM"))}
        except (OSError, ValueError, KeyError):
            continue
    return {}


async def timed(client: Client, tool: str, arguments: dict[str, Any]) -> float:
    started = time.perf_counter()
    result = await client.call_tool(tool, arguments)
    elapsed = (time.perf_counter() - started) * 1000
    if result.is_error:
        raise RuntimeError(f"{tool} failed: {result.content[0].text}")
    return elapsed


class Baseline:
    """The single-add baseline: embed one text, append one row to a LanceDB table."""

    def __init__(self, embedder: FastEmbedder) -> None:
        import lancedb

        self.embedder = embedder
        self.schema = memories_schema(embedder.dim)
        self.table = lancedb.connect(tempfile.mkdtemp(prefix="lancemem-append-")).create_table(
            "t", schema=self.schema)

    def add(self, text: str) -> float:
        started = time.perf_counter()
        row = {name: None for name in self.schema.names}
        row.update(id=text, memory=text, user_id="u",
                   vector=self.embedder.embed_documents([text])[0])
        self.table.add([row])
        return (time.perf_counter() - started) * 1000


async def through_server(db: str, users: int, searches: int, adds: int,
                         baseline: Baseline | None,
                         env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Searches in every mode, then single adds, over stdio; plus the server's peak RSS.

    Measurements that are compared are interleaved (the three modes per query,
    a baseline add before each server add), so load on this noisy machine
    falls on both sides of each ratio alike. Without ``baseline`` only the
    server's adds are timed.
    """
    rng = random.Random(11)
    modes = ["hybrid", "vector", "keyword"]
    search_ms: dict[str, list[float]] = {mode: [] for mode in modes}
    add_ms: list[float] = []
    base_ms: list[float] = []
    async with Client(server_params(db, env)) as client:
        await client.call_tool("search_memories", {"query": "warm up", "user_id": "user-0"})
        for number in range(searches):
            query = " ".join(rng.choice(WORDS) for _ in range(4))
            user = f"user-{rng.randrange(users)}"
            for mode in modes[number % 3:] + modes[:number % 3]:
                search_ms[mode].append(await timed(client, "search_memories", {
                    "query": query, "user_id": user, "mode": mode}))
        for number in range(adds):
            words = " ".join(rng.choice(WORDS) for _ in range(10))
            if baseline is not None:
                base_ms.append(baseline.add(f"Baseline fact {number}: {words}"))
            add_ms.append(await timed(client, "add_memory", {
                "text": f"Fresh fact {number}: {words}",
                "user_id": f"user-{rng.randrange(users)}"}))
        out: dict[str, Any] = {f"search_{mode}": summary(v) for mode, v in search_ms.items()}
        out.update(add=summary(add_ms), server_rss_mb=resident_mb(db))
        if base_ms:
            out["add_baseline"] = summary(base_ms)
    return out


def startup(db: str, runs: int, env: Mapping[str, str] | None = None) -> dict[str, float]:
    """Process start to an answered tools/list over stdio (median of ``runs``)."""
    async def once() -> float:
        started = time.perf_counter()
        async with Client(server_params(db, env)) as client:
            await client.list_tools()
            return time.perf_counter() - started

    values = [anyio.run(once) for _ in range(runs)]
    return {"tools_list_s": round(statistics.median(values), 2), "runs": runs}


def bulk_import(embedder: FastEmbedder, data: Path, limit: int) -> dict[str, Any]:
    """`lancemem import` and Memory.add_many against fastembed alone, on LoCoMo turns."""
    samples = json.loads(data.read_text())
    texts = list(dict.fromkeys(r["text"] for s in samples for r in turns(s)))[:limit]
    model = embedder.load()
    started = time.perf_counter()
    list(model.passage_embed(texts))  # fastembed's defaults, in the given order
    plain = len(texts) / (time.perf_counter() - started)
    started = time.perf_counter()
    list(model.passage_embed(sorted(texts, key=len), batch_size=16))
    best = len(texts) / (time.perf_counter() - started)
    fastest = max(plain, best)

    memory = Memory(store=Store(tempfile.mkdtemp(prefix="lancemem-import-")), embedder=embedder)
    memory.ensure_open()
    started = time.perf_counter()
    memory.add_many({"text": text, "user_id": "import"} for text in texts)
    api = len(texts) / (time.perf_counter() - started)

    path = Path(tempfile.mkdtemp(prefix="lancemem-jsonl-")) / "memories.jsonl"
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    db = tempfile.mkdtemp(prefix="lancemem-cli-import-")
    env = {**os.environ, "LANCEMEM_MODEL_CACHE_DIR": load_settings({}).model_cache_dir}
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "lancemem", "import", str(path), "--db", db,
                    "--user-id", "import"], env=env, check=True, capture_output=True)
    cli = len(texts) / (time.perf_counter() - started)
    return {"texts": len(texts), "fastembed_default_per_s": round(plain, 1),
            "fastembed_sorted_per_s": round(best, 1), "api_per_s": round(api, 1),
            "cli_per_s": round(cli, 1), "api_ratio": round(api / fastest, 2),
            "cli_ratio": round(cli / fastest, 2)}


def run(args: argparse.Namespace) -> dict[str, Any]:
    embedder = FastEmbedder(cache_dir=load_settings({}).model_cache_dir)
    embedder.load()
    report: dict[str, Any] = {"memories": args.memories, "users": args.users}
    db = args.db or tempfile.mkdtemp(prefix="lancemem-speed-")
    if not Store(db).exists():
        report["fill_s"] = round(fill(db, args.memories, args.users), 1)
        print(f"filled {args.memories:,} memories in {report['fill_s']} s", file=sys.stderr)
    report["startup"] = startup(db, args.startup_runs)
    report.update(anyio.run(through_server, db, args.users, args.searches, args.adds,
                            Baseline(embedder)))
    report["add_ratio"] = round(report["add"]["p50_ms"] / report["add_baseline"]["p50_ms"], 2)
    if args.import_texts:
        report["import"] = bulk_import(embedder, args.data, args.import_texts)
    return report


def markdown(report: dict[str, Any]) -> str:
    lines = [f"{report['memories']:,} memories over {report['users']:,} users",
             "", "| measurement | p50 (ms) | p95 (ms) |", "| --- | ---: | ---: |"]
    for key in ("search_hybrid", "search_vector", "search_keyword", "add", "add_baseline"):
        lines.append(f"| {key} | {report[key]['p50_ms']} | {report[key]['p95_ms']} |")
    lines += ["", f"- single add / (embed + one append): {report['add_ratio']}x",
              f"- start-up to tools/list: {report['startup']['tools_list_s']} s",
              f"- server resident memory: {report['server_rss_mb']} MB"]
    if "import" in report:
        imp = report["import"]
        lines.append(f"- import of {imp['texts']:,} texts: API {imp['api_per_s']}/s "
                     f"({imp['api_ratio']} of fastembed), CLI {imp['cli_per_s']}/s "
                     f"({imp['cli_ratio']}); fastembed {imp['fastembed_sorted_per_s']}/s "
                     f"length-sorted, {imp['fastembed_default_per_s']}/s with its defaults")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--memories", type=int, default=100_000)
    parser.add_argument("--users", type=int, default=1_000)
    parser.add_argument("--searches", type=int, default=200, help="per mode")
    parser.add_argument("--adds", type=int, default=100)
    parser.add_argument("--startup-runs", type=int, default=5)
    parser.add_argument("--import-texts", type=int, default=2_000,
                        help="LoCoMo turns to import (0 skips the import measurement)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--db", help="reuse a filled store instead of a new one")
    parser.add_argument("--json", type=Path, help="also write the report here")
    args = parser.parse_args()
    report = run(args)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(markdown(report))


if __name__ == "__main__":
    main()
