"""What hiding expired memories costs a search: the same searches with and without it.

    python -m benchmarks.expiry --memories 100000 --users 1000 --runs 5

Fills a store as benchmarks.speed does (``Memory.add_many`` with random unit
vectors; ``--expiring F`` gives that fraction of the memories an expiration
date a year ahead), then times ``Memory.search`` in every mode, each query
three times in rotating order: with ``show_expired=True`` (``shown``: no
clause), as a normal call (``hidden``: the clause only if the store was ever
given an expiration date) and as a normal call with the clause forced
(``forced``: what every search would pay without the store's mark). Queries
get random vectors too: the model embeds a query in the same time either way
and would only add noise. Prints each run's p50 per mode and side and, over
the runs, the median p50 and the median of the per-run differences to
``shown``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from unittest import mock

from benchmarks.soak import WORDS, sentence
from benchmarks.speed import RandomVectors
from lancemem.memory.facade import Memory
from lancemem.storage.meta import MetaTable
from lancemem.storage.store import Store

MODES = ("vector", "keyword", "hybrid")
SIDES = ("shown", "hidden", "forced")


def fill(db: str, memories: int, users: int, expiring: float) -> float:
    """``memories`` over ``users`` through the batch path; returns seconds."""
    rng = random.Random(3)
    ahead = (datetime.now(UTC) + timedelta(days=365)).date().isoformat()
    memory = Memory(store=Store(db), embedder=RandomVectors())  # type: ignore[arg-type]
    started = time.perf_counter()
    records = ({"text": sentence(rng, n), "user_id": f"user-{n % users}",
                **({"expiration_date": ahead} if rng.random() < expiring else {})}
               for n in range(memories))
    memory.add_many(records, batch_size=20_000)
    memory.store.optimize()
    memory.close()
    return time.perf_counter() - started


def timed_search(memory: Memory, side: str, query: str, user: str, mode: str) -> float:
    """Milliseconds of one search as ``side`` (SIDES) makes it."""
    forced = mock.patch.object(MetaTable, "uses_expirations", return_value=True)
    with forced if side == "forced" else contextlib.nullcontext():
        started = time.perf_counter()
        memory.search(query, user_id=user, mode=mode, show_expired=side == "shown")
        return (time.perf_counter() - started) * 1000


def one_run(memory: Memory, users: int, searches: int, seed: int) -> dict[str, dict[str, float]]:
    """p50 (ms) per mode and side."""
    rng = random.Random(seed)
    times: dict[str, dict[str, list[float]]] = {m: {s: [] for s in SIDES} for m in MODES}
    for number in range(searches):
        query = " ".join(rng.choice(WORDS) for _ in range(4))
        user = f"user-{rng.randrange(users)}"
        for mode in MODES:
            for side in SIDES[number % 3:] + SIDES[:number % 3]:
                times[mode][side].append(timed_search(memory, side, query, user, mode))
    return {mode: {side: statistics.median(values) for side, values in by_side.items()}
            for mode, by_side in times.items()}


def report(runs: list[dict[str, dict[str, float]]]) -> dict[str, Any]:
    """Median over runs of each p50, and of the per-run cost of each side over shown."""
    out: dict[str, Any] = {}
    for mode in MODES:
        out[mode] = {f"{side}_p50_ms": round(statistics.median(r[mode][side] for r in runs), 3)
                     for side in SIDES}
        for side in ("hidden", "forced"):
            costs = [run[mode][side] - run[mode]["shown"] for run in runs]
            out[mode][f"{side}_cost_ms"] = round(statistics.median(costs), 3)
            out[mode][f"{side}_cost_per_run_ms"] = [round(c, 3) for c in costs]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--memories", type=int, default=100_000)
    parser.add_argument("--users", type=int, default=1_000)
    parser.add_argument("--expiring", type=float, default=0.0,
                        help="fraction of memories with an expiration date (a year ahead)")
    parser.add_argument("--searches", type=int, default=200, help="per mode and run")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--db", help="reuse a filled store instead of a new one")
    args = parser.parse_args()
    db = args.db or tempfile.mkdtemp(prefix="lancemem-expiry-")
    if not Store(db).exists():
        seconds = fill(db, args.memories, args.users, args.expiring)
        print(f"filled {args.memories:,} memories in {seconds:.0f} s ({db})")
    with Memory(store=Store(db), embedder=RandomVectors()) as memory:  # type: ignore[arg-type]
        memory.search("warm up", user_id="user-0")
        runs = []
        for number in range(args.runs):
            runs.append(one_run(memory, args.users, args.searches, seed=number))
            print(f"run {number + 1} (shown/hidden/forced): " + ", ".join(
                f"{mode} {r['shown']:.2f}/{r['hidden']:.2f}/{r['forced']:.2f} ms"
                for mode, r in runs[-1].items()))
    print(json.dumps({"memories": args.memories, "users": args.users,
                      "expiring": args.expiring, "runs": args.runs, "searches": args.searches,
                      **report(runs)}, indent=2))


if __name__ == "__main__":
    main()
