"""A writer that runs random operations until it is killed (see test_crash.py).

Before each operation it journals an intent, after it an acknowledgement,
each fsync'd, so the killer knows what was acknowledged and what was in flight.
Run as: python -m tests.crash_worker DB JOURNAL SEED
"""

from __future__ import annotations

import json
import os
import random
import sys
from typing import Any

from lancemem.core.config import load_settings
from lancemem.memory.facade import Memory
from lancemem.memory.reindex import reindex

USER = "crash-user"
RUNS = ("r1", "r2", "r3")


class Journal:
    def __init__(self, path: str) -> None:
        self._file = open(path, "a", encoding="utf-8")  # noqa: SIM115

    def write(self, kind: str, entry: dict[str, Any]) -> None:
        self._file.write(json.dumps({kind: entry}) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())


def live_ids(memory: Memory) -> dict[str, str]:
    items = memory.get_all(user_id=USER, limit=1000)["results"]
    return {item["id"]: item.get("run_id", "") for item in items}


def step(memory: Memory, rng: random.Random, live: dict[str, str], tag: str,
         journal: Journal) -> None:
    ops = ["add", "add", "add", "update", "update", "delete", "import", "delete_all"]
    if rng.random() < 0.05:
        ops = ["reindex"]
    op = rng.choice(ops if live else ["add", "import"])
    run = rng.choice(RUNS)
    if op == "add":
        texts = [f"{tag} added {i} {rng.random()}" for i in range(rng.randint(1, 3))]
        journal.write("intent", {"op": op, "texts": texts, "run": run})
        ids = [r["id"] for r in memory.add(texts, user_id=USER, run_id=run)["results"]]
        live.update(dict.fromkeys(ids, run))
        journal.write("ack", {"op": op, "ids": ids, "texts": texts, "run": run})
    elif op == "import":
        texts = [f"{tag} imported {i} {rng.random()}" for i in range(10)]
        journal.write("intent", {"op": op, "texts": texts, "run": run})
        memory.add_many([{"text": t, "user_id": USER, "run_id": run} for t in texts],
                        batch_size=4)
        by_text = {item["memory"]: item["id"] for item in
                   memory.get_all(user_id=USER, run_id=run, limit=1000)["results"]}
        ids = [by_text[t] for t in texts]
        live.update(dict.fromkeys(ids, run))
        journal.write("ack", {"op": op, "ids": ids, "texts": texts, "run": run})
    elif op == "update":
        memory_id = rng.choice(sorted(live))
        text = f"{tag} updated {rng.random()}"
        journal.write("intent", {"op": op, "id": memory_id, "text": text})
        memory.update(memory_id, text=text, user_id=USER)
        journal.write("ack", {"op": op, "id": memory_id, "text": text})
    elif op == "delete":
        memory_id = rng.choice(sorted(live))
        journal.write("intent", {"op": op, "id": memory_id})
        memory.delete(memory_id, user_id=USER)
        del live[memory_id]
        journal.write("ack", {"op": op, "id": memory_id})
    elif op == "delete_all":
        journal.write("intent", {"op": op, "run": run})
        memory.delete_all(user_id=USER, run_id=run)
        for memory_id in [i for i, r in live.items() if r == run]:
            del live[memory_id]
        journal.write("ack", {"op": op, "run": run})
    else:
        journal.write("intent", {"op": op})
        reindex(memory.store, memory.embedder, batch_size=16)
        journal.write("ack", {"op": op})


def main() -> None:
    db, journal_path, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
    rng = random.Random(seed)
    memory = Memory.from_settings(load_settings({"db": db}))
    memory.ensure_open()
    memory.embedder.load()  # type: ignore[attr-defined]
    live = live_ids(memory)
    journal = Journal(journal_path)
    print("READY", flush=True)
    for number in range(10_000):
        step(memory, rng, live, f"s{seed}n{number}", journal)


if __name__ == "__main__":
    main()
