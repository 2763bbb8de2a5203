"""Long memories (issue 16): what passages cost a store of short memories.

    python -m benchmarks.long_memories --db /tmp/lm-store --memories 100000 \\
        --users 1000 --searches 300

Fills the store once (speed.fill: the batch path, random unit vectors) and
then times in-process vector searches (``Memory.search(mode="vector")``,
the query "embedded" as a random vector, so the time is the scope read and
ranking, not the model) over random users. Run it with the tree before and
after passages on PYTHONPATH, each with its own ``--db``, alternately, and
compare medians within one run of the machine.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from pathlib import Path

from benchmarks.speed import RandomVectors, fill
from lancemem.memory.facade import Memory
from lancemem.storage.store import Store


def searches(db: str, users: int, count: int) -> list[float]:
    """Milliseconds of ``count`` vector searches, each in a random user's scope."""
    rng = random.Random(7)
    memory = Memory(store=Store(db), embedder=RandomVectors(2))  # type: ignore[arg-type]
    memory.search("warm up", user_id="user-0", mode="vector")
    times = []
    for _ in range(count):
        user = f"user-{rng.randrange(users)}"
        started = time.perf_counter()
        memory.search("what did they say", user_id=user, mode="vector", limit=10)
        times.append((time.perf_counter() - started) * 1000)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--db", required=True)
    parser.add_argument("--memories", type=int, default=100_000)
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--searches", type=int, default=300)
    args = parser.parse_args()
    filled = None
    if not Path(args.db).exists():
        filled = fill(args.db, args.memories, args.users)
    times = searches(args.db, args.users, args.searches)
    ordered = sorted(times)
    print(json.dumps({"db": args.db, "filled_s": filled, "searches": len(times),
                      "p50_ms": round(statistics.median(times), 3),
                      "p95_ms": round(ordered[int(0.95 * (len(ordered) - 1))], 3)}))


if __name__ == "__main__":
    main()
