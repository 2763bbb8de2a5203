"""Adds of one text and deletes of one memory, raced by threads and by processes."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lancemem.core.errors import NotFoundError
from lancemem.memory.facade import Memory
from lancemem.storage import history as hist
from lancemem.storage.store import HISTORY, MEMORIES, Store
from tests.invariants import check_store

THREADS = 6
ROUNDS = 5


def race(action: Callable[[int], Any], count: int) -> list[Any]:
    """Run ``action(i)`` in ``count`` threads released together; results or exceptions."""
    barrier = threading.Barrier(count)
    outcome: list[Any] = [None] * count

    def run(i: int) -> None:
        barrier.wait()
        try:
            outcome[i] = action(i)
        except Exception as exc:
            outcome[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcome


def rows_with_text(store: Store, text: str) -> list[dict[str, Any]]:
    return [row for row in store.select(MEMORIES, None, columns=["id", "memory", "user_id"])
            if row["memory"] == text]


def test_threads_adding_one_text_to_one_scope_store_it_once(memory: Memory) -> None:
    memory.ensure_open()
    for round_ in range(ROUNDS):
        text = f"The deploy key rotates every {round_ + 30} days"
        outcome = race(lambda _, t=text: memory.add(t, user_id="u", agent_id="a")["results"][0],
                       THREADS)
        assert not [o for o in outcome if isinstance(o, Exception)], outcome
        assert Counter(o["event"] for o in outcome) == {"ADD": 1, "NONE": THREADS - 1}
        kept = rows_with_text(memory.store, text)
        assert len(kept) == 1 and {o["id"] for o in outcome} == {kept[0]["id"]}
        other_scope = memory.add(text, user_id="u")["results"][0]  # another scope: its own copy
        assert other_scope["event"] == "ADD" and other_scope["id"] != kept[0]["id"]
    memory.history_log.flush()
    adds = [row for row in memory.store.select(HISTORY, None) if row["event"] == hist.ADD]
    assert len(adds) == 2 * ROUNDS
    check_store(memory.store)


def test_threads_deleting_one_memory_report_it_deleted_once(memory: Memory) -> None:
    for round_ in range(ROUNDS):
        memory_id = memory.add(f"short-lived fact {round_}", user_id="u")["results"][0]["id"]
        outcome = race(lambda _, m=memory_id: memory.delete(m, user_id="u"), THREADS)
        deleted = [o for o in outcome if isinstance(o, dict)]
        missing = [o for o in outcome if isinstance(o, NotFoundError)]
        assert deleted == [{"id": memory_id, "deleted": True}], outcome
        assert len(missing) == THREADS - 1, outcome
    check_store(memory.store)


ADDER = """
import sys
from lancemem.memory.facade import Memory
from lancemem.storage.store import Store
from lancemem.search.embeddings import FastEmbedder
m = Memory(store=Store(sys.argv[1]), embedder=FastEmbedder(cache_dir=sys.argv[2]))
m.ensure_open()
m.embedder.load()
print("READY", flush=True)
sys.stdin.readline()
for i in range(8):
    result = m.add(f"shared fact {i}", user_id="team", run_id="standup")["results"][0]
    print(result["event"], result["id"], flush=True)
m.history_log.flush()
"""


def test_processes_adding_the_same_texts_store_each_once(tmp_path: Path, model_cache: Path,
                                                          real_embedder: Any) -> None:
    db = tmp_path / "db"
    Memory(store=Store(str(db)), embedder=real_embedder).ensure_open()
    procs = [subprocess.Popen([sys.executable, "-c", ADDER, str(db), str(model_cache)],
                              cwd=Path(__file__).parent.parent, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True) for _ in range(3)]
    for proc in procs:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "READY"
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    outputs = [proc.communicate(timeout=180)[0] for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0, 0]
    results = [line.split() for out in outputs for line in out.splitlines()]
    store = Store(str(db))
    for i in range(8):
        kept = rows_with_text(store, f"shared fact {i}")
        assert len(kept) == 1, kept
    by_event = Counter(event for event, _ in results)
    assert by_event == {"ADD": 8, "NONE": 16}
    kept_ids = {row["id"] for row in store.select(MEMORIES, None, columns=["id"])}
    assert {memory_id for _, memory_id in results} == kept_ids
    check_store(store)
