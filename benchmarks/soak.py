"""Soak: many single adds, with disk use and search latency measured along the way.

Each add is one ``Memory.add`` call (one memory, two commits: the row and its
history), spread over 1,000 users; at every interval the script reports the
store's size on disk, its fragment count and the median of scoped searches.

    python -m benchmarks.soak --adds 100000 --every 10000
    python -m benchmarks.soak --adds 3000 --every 500 --no-compact   # the contrast

Prints a Markdown table; ``--json FILE`` also writes the raw rows.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from lancemem.core.config import load_settings
from lancemem.memory.facade import Memory
from lancemem.search.embeddings import FastEmbedder
from lancemem.storage.store import HISTORY, MEMORIES, Store

WORDS = ("coffee", "tea", "garden", "paris", "berlin", "piano", "guitar", "running",
         "swimming", "sister", "brother", "dog", "cat", "allergy", "peanuts", "birthday",
         "meeting", "project", "deadline", "vacation", "beach", "mountain", "book",
         "movie", "recipe", "pasta", "salad", "doctor", "dentist", "car", "bike", "train")


def sentence(rng: random.Random, number: int) -> str:
    return f"Note {number}: " + " ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 14)))


def search_p50(memory: Memory, rng: random.Random, users: int, samples: int) -> float:
    timings = []
    for _ in range(samples):
        query = " ".join(rng.choice(WORDS) for _ in range(4))
        started = time.perf_counter()
        memory.search(query, user_id=f"user-{rng.randrange(users)}", limit=10)
        timings.append((time.perf_counter() - started) * 1000)
    return statistics.median(timings)


def resident_mb() -> float | None:
    """This process's resident memory (Linux; None elsewhere)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


def fragments(store: Store) -> int:
    return sum(store.table(name).stats()["fragment_stats"]["num_fragments"]
               for name in (MEMORIES, HISTORY))


def soak(args: argparse.Namespace) -> list[dict[str, Any]]:
    db = args.db or tempfile.mkdtemp(prefix="lancemem-soak-")
    settings = load_settings({"db": db})
    if args.random_vectors:
        from benchmarks.speed import RandomVectors

        embedder: Any = RandomVectors()
    else:
        embedder = FastEmbedder(cache_dir=settings.model_cache_dir)
        embedder.load()
    memory = Memory(store=Store(db, auto_compact=not args.no_compact), embedder=embedder)
    memory.ensure_open()
    rng = random.Random(7)
    rows = []
    started = time.perf_counter()
    window = time.perf_counter()
    for number in range(1, args.adds + 1):
        memory.add(sentence(rng, number), user_id=f"user-{number % args.users}")
        if number % args.every == 0:
            memory.store.wait_for_compaction()
            elapsed = time.perf_counter() - window
            row = {"adds": number, "disk_mb": round(memory.store.disk_bytes() / 2**20, 1),
                   "fragments": fragments(memory.store),
                   "search_p50_ms": round(search_p50(memory, rng, args.users, args.samples), 2),
                   "adds_per_s": round(args.every / elapsed, 1), "rss_mb": resident_mb(),
                   "minutes": round((time.perf_counter() - started) / 60, 1)}
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
            if args.json:  # written as it goes, so a cut-short run still reports
                args.json.write_text(json.dumps(rows, indent=2))
            window = time.perf_counter()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--adds", type=int, default=100_000)
    parser.add_argument("--every", type=int, default=10_000)
    parser.add_argument("--users", type=int, default=1_000)
    parser.add_argument("--samples", type=int, default=50, help="searches per measurement")
    parser.add_argument("--db", help="store path (default: a new temporary directory)")
    parser.add_argument("--no-compact", action="store_true", help="turn compaction off")
    parser.add_argument("--random-vectors", action="store_true",
                        help="random unit vectors instead of the model (a faster storage "
                        "and memory soak; searches then skip the model too)")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args()
    rows = soak(args)
    print("| adds | disk (MB) | fragments | search p50 (ms) | adds/s in interval | RSS (MB) |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    for row in rows:
        print(f"| {row['adds']:,} | {row['disk_mb']} | {row['fragments']} | "
              f"{row['search_p50_ms']} | {row['adds_per_s']} | {row['rss_mb']} |")


if __name__ == "__main__":
    main()
