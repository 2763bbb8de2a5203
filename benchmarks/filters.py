"""The heaviest filters the bounds allow, timed over one scope of real memories.

    python -m benchmarks.filters --memories 3000

Every filter here sits at the bounds of README "Filters" (500 conditions,
1,000 items a list and 10,000 in all, 100,000 characters of text, NOT nested
8 deep) and runs through ``Memory`` on a store filled with the real model.
Prints the median of ``--runs`` runs per filter.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from typing import Any

from lancemem.core.config import load_settings
from lancemem.core.filters import MAX_TEXT, text_size
from lancemem.memory.facade import Memory
from lancemem.search.embeddings import FastEmbedder
from lancemem.storage.store import Store

USER = "heavy"


def fill(memory: Memory, count: int) -> None:
    """``count`` memories in one scope, each with seven string keys and tags."""
    memory.add_many({
        "text": f"memory {i} about things and tea", "user_id": USER,
        "metadata": {**{f"k{j}": f"value {i} {j}" for j in range(7)}, "tags": [f"t{i}", "x"]},
    } for i in range(count))


def pattern(conditions: int, overhead: int) -> str:
    """A substring pattern long enough to bring a filter to MAX_TEXT characters."""
    return "ab%" * ((MAX_TEXT - overhead) // (3 * conditions))


def cases() -> dict[str, tuple[str, dict[str, Any]]]:
    """Name -> (how it runs, filter), all within the bounds."""
    long = pattern(500, 6_000)
    nested: dict[str, Any] = {"OR": [{"k0": {"ne": f"x{i}"}} for i in range(500)]}
    for _ in range(7):
        nested = {"NOT": [nested]}
    return {
        "500 icontains, 100k chars (list)": (
            "list", {"OR": [{f"k{i % 7}": {"icontains": long}} for i in range(500)]}),
        "NOT of 500 icontains, 100k chars (hybrid search)": (
            "search", {"NOT": [{"OR": [{f"k{i % 7}": {"icontains": long}}
                                       for i in range(500)]}]}),
        "10 in-lists of 1,000 (list)": (
            "list", {"OR": [{f"k{j}": {"in": [f"v{i + 1000 * j:06}" for i in range(1000)]}}
                            for j in range(10)]}),
        "nin of 1,000 numbers (hybrid search)": (
            "search", {"k0": {"nin": list(range(1000))}}),
        "500 ne under 7 NOTs (list)": ("list", nested),
        "NOT of 500 tag contains (list)": (
            "list", {"NOT": [{"OR": [{"tags": {"contains": f"t{i}"}} for i in range(500)]}]}),
    }


def timed(action: Callable[[], Any], runs: int) -> float:
    values = []
    for _ in range(runs):
        started = time.perf_counter()
        action()
        values.append(time.perf_counter() - started)
    return statistics.median(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--memories", type=int, default=3000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    embedder = FastEmbedder(cache_dir=load_settings({}).model_cache_dir)
    memory = Memory(store=Store(tempfile.mkdtemp(prefix="lancemem-filters-")), embedder=embedder)
    fill(memory, args.memories)
    print(f"{args.memories:,} memories in one scope; median of {args.runs} runs")
    for name, (how, filters) in cases().items():
        def run(f: dict[str, Any] = filters, h: str = how) -> Any:
            if h == "list":
                return memory.get_all(user_id=USER, filters=f, limit=1000)
            return memory.search("tea things", user_id=USER, filters=f, mode="hybrid")
        print(f"- {name}: {text_size(filters):,} chars, {timed(run, args.runs):.2f} s")


if __name__ == "__main__":
    main()
