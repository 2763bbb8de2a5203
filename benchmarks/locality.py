"""Scope locality in-process: a scattered store against the same store sorted by scope.

    python -m benchmarks.locality --memories 100000 --users 1000 \\
        --json benchmarks/results/locality-100k.json

The store is filled as benchmarks/speed.py fills it (``Memory.add_many``,
random unit vectors, users' adds interleaved) but compacted in insertion order
(Lance's own compaction, as before issue 16), then copied and sorted by scope
(storage/locality.py, what ``optimize`` does now). The three reads a search
makes are timed on both copies, interleaved so that load on this machine falls
on both alike: a scope's vectors (Snapshot.scope_vectors), Lance's exact
nearest-neighbour scan within the scope (Snapshot.nearest) and the keyword
search (Snapshot.keyword). The sort's own cost is timed too.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.soak import WORDS
from benchmarks.speed import fill, summary
from lancemem.core.scoping import Scope, scope_where
from lancemem.storage import locality, maintenance
from lancemem.storage.schema import MEMORIES
from lancemem.storage.snapshot import Snapshot
from lancemem.storage.store import Store


def fill_scattered(db: str, memories: int, users: int) -> float:
    """benchmarks.speed.fill with the scope sort switched off: the large tier
    merges in insertion order (Lance's compaction), as before issue 16."""
    sort = maintenance.Maintenance._sort_by_scope

    def insertion_order(self: Any, *, force: bool, large_tier: bool) -> None:
        if large_tier:
            self._conn.open_dataset(MEMORIES).optimize.compact_files(
                target_rows_per_fragment=maintenance.LARGE_FRAGMENT)

    maintenance.Maintenance._sort_by_scope = insertion_order  # type: ignore[method-assign]
    try:
        return fill(db, memories, users)
    finally:
        maintenance.Maintenance._sort_by_scope = sort  # type: ignore[method-assign]


def sort_store(db: str) -> dict[str, float]:
    """Sort every fragment of the memories table by scope, timing the rewrite and indexing."""
    store = Store(db, auto_compact=False)
    started = time.perf_counter()
    rows = locality.sort_fragments(store, MEMORIES, select=locality.all_fragments,
                                   rows_per_fragment=maintenance.LARGE_FRAGMENT)
    return {"rows": rows, "sort_and_index_s": round(time.perf_counter() - started, 2)}


def timed_ms(action: Any) -> float:
    started = time.perf_counter()
    action()
    return (time.perf_counter() - started) * 1000


def measure(dbs: dict[str, str], users: int, queries: int) -> dict[str, Any]:
    """Each read on each store, per query, the stores' order alternating."""
    stores = {label: Store(db, auto_compact=False) for label, db in dbs.items()}
    rng = random.Random(5)
    times: dict[str, dict[str, list[float]]] = {
        label: {"scope_read": [], "exact": [], "keyword": []} for label in dbs}
    labels = list(dbs)
    for number in range(queries):
        user = f"user-{rng.randrange(users)}"
        where = scope_where(Scope(user_id=user))
        vector = np.asarray(rng.choices(range(-9, 10), k=384), dtype=np.float32)
        text = " ".join(rng.choice(WORDS) for _ in range(3))
        for label in labels if number % 2 else labels[::-1]:
            snap = Snapshot(stores[label].dataset(MEMORIES))
            reads = times[label]
            reads["scope_read"].append(timed_ms(lambda: snap.scope_vectors(where)))  # noqa: B023
            reads["exact"].append(timed_ms(
                lambda: snap.nearest(vector, where, limit=10)))  # noqa: B023
            reads["keyword"].append(timed_ms(
                lambda: snap.keyword(text, where, limit=10)))  # noqa: B023
    report: dict[str, Any] = {label: {read: summary(values) for read, values in reads.items()}
                              for label, reads in times.items()}
    for read in ("scope_read", "exact", "keyword"):
        report[f"{read}_ratio"] = round(report["scattered"][read]["p50_ms"]
                                        / report["sorted"][read]["p50_ms"], 2)
    return report


def run(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(args.db or tempfile.mkdtemp(prefix="lancemem-locality-"))
    scattered, ordered = str(work / "scattered"), str(work / "sorted")
    report: dict[str, Any] = {"memories": args.memories, "users": args.users}
    if not Store(scattered).exists():
        report["fill_s"] = round(fill_scattered(scattered, args.memories, args.users), 1)
    shutil.rmtree(ordered, ignore_errors=True)
    shutil.copytree(scattered, ordered)
    report["runs_before"] = locality.scope_runs(Store(ordered).dataset(MEMORIES))
    report["sort"] = sort_store(ordered)
    report["runs_after"] = locality.scope_runs(Store(ordered).dataset(MEMORIES))
    print(f"sorted: {report['sort']}", file=sys.stderr)
    report.update(measure({"scattered": scattered, "sorted": ordered}, args.users, args.queries))
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--memories", type=int, default=100_000)
    parser.add_argument("--users", type=int, default=1_000)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--db", help="a work directory to reuse (its scattered/ store)")
    parser.add_argument("--json", type=Path, help="also write the report here")
    args = parser.parse_args()
    text = json.dumps(run(args), indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
