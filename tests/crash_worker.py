"""A writer that runs random operations until it is killed (see test_crash.py).

Memories are added, updated, deleted, imported; relations from a small
vocabulary are added (so a triple comes again, NONE; an invalidated one is
valid again, ADD; ``replace`` invalidates) and deleted by id or by triple;
delete_all (which takes a run's relations too) and reindex (which re-embeds
entities and relations too) now and then.

Before each operation it journals an intent, after it an acknowledgement,
each fsync'd, so the killer knows what was acknowledged and what was in flight.
Run as: python -m tests.crash_worker DB JOURNAL SEED
"""

from __future__ import annotations

import json
import os
import random
import sys
from pathlib import Path
from typing import Any

import lancemem
from lancemem.core.config import load_settings
from lancemem.memory.facade import Memory
from lancemem.memory.reindex import reindex

USER = "crash-user"
RUNS = ("r1", "r2", "r3")
SOURCES = ("Alice", "Bob", "Carol")
TARGETS = {"works at": ("Acme", "Globex", "Initech"), "lives in": ("Paris", "Berlin", "Oslo")}


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


def live_relations(memory: Memory) -> dict[str, dict[str, Any]]:
    items = memory.list_relations(user_id=USER, show_invalid=True, limit=1000)["results"]
    return {item["id"]: item for item in items}


def spelled(rng: random.Random, name: str) -> str:
    """The name as another caller may write it: the same entity."""
    return rng.choice((name, name, f"{name.lower()} ", name.upper(), f"  {name}"))


def spelled_relationship(rng: random.Random, words: str) -> str:
    """``works at``, ``WorksAt`` or ``works-at``: all ``works_at``."""
    return rng.choice((words, words, "".join(w.title() for w in words.split()),
                       "-".join(words.split())))


def random_triple(rng: random.Random) -> dict[str, str]:
    relationship = rng.choice(sorted(TARGETS))
    return {"source": spelled(rng, rng.choice(SOURCES)),
            "relationship": spelled_relationship(rng, relationship),
            "target": spelled(rng, rng.choice(TARGETS[relationship]))}


def slim(item: dict[str, Any]) -> dict[str, Any]:
    """What the journal keeps of a relation returned by add_relations."""
    return {key: item.get(key) for key in ("id", "event", "source", "relationship", "target",
                                           "valid", "run_id")}


def relate(memory: Memory, rng: random.Random, run: str, journal: Journal) -> None:
    triples = [random_triple(rng) for _ in range(rng.randint(1, 3))]
    replace = rng.random() < 0.3
    entry: dict[str, Any] = {"op": "add_relations", "relations": triples, "replace": replace,
                             "run": run}
    journal.write("intent", entry)
    results = memory.add_relations(triples, user_id=USER, run_id=run, replace=replace)
    journal.write("ack", {**entry, "results": [slim(item) for item in results["results"]]})


def unrelate(memory: Memory, rng: random.Random, relations: dict[str, dict[str, Any]],
             journal: Journal) -> None:
    entry: dict[str, Any] = {"op": "delete_relations"}
    if rng.random() < 0.5:  # by id, across the user's runs; now and then one that is gone
        ids = rng.sample(sorted(relations), min(len(relations), rng.randint(1, 2)))
        if rng.random() < 0.2:
            ids.append("00000000-0000-5000-8000-000000000000")
        entry["ids"] = ids
        journal.write("intent", entry)
        result = memory.delete_relations(relation_ids=ids, user_id=USER)
    else:  # by triple, spelled another way, in its run or in all the user's runs
        chosen = relations[rng.choice(sorted(relations))]
        triple = {"source": spelled(rng, chosen["source"]),
                  "relationship": spelled_relationship(rng, chosen["relationship"].replace("_",
                                                                                            " ")),
                  "target": spelled(rng, chosen["target"])}
        entry.update(triple=triple, run=rng.choice([chosen["run_id"], None]))
        journal.write("intent", entry)
        result = memory.delete_relations(relations=[triple], user_id=USER, run_id=entry["run"])
    journal.write("ack", {**entry, "deleted": result["deleted"],
                          "not_found": result["not_found"]})


def step(memory: Memory, rng: random.Random, live: dict[str, str], tag: str,
         journal: Journal) -> None:
    ops = ["add", "add", "add", "update", "update", "delete", "import", "delete_all",
           "relate", "relate", "relate", "unrelate"]
    if rng.random() < 0.05:
        ops = ["reindex"]
    op = rng.choice(ops if live else ["add", "import", "relate"])
    run = rng.choice(RUNS)
    if op in ("relate", "unrelate"):
        relations = live_relations(memory)
        if op == "relate" or not relations:
            relate(memory, rng, run, journal)
        else:
            unrelate(memory, rng, relations, journal)
    elif op == "add":
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
    print("READY", Path(lancemem.__file__).resolve().parent.parent, flush=True)
    for number in range(10_000):
        step(memory, rng, live, f"s{seed}n{number}", journal)


if __name__ == "__main__":
    main()
