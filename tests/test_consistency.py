"""Repair on open: every gap a crash can leave between memories and history is filled."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lancemem.memory.facade import Memory
from lancemem.storage import history as hist
from lancemem.storage.consistency import missing_history, repair
from lancemem.storage.store import HISTORY, MEMORIES, Store
from tests.embedders import HashEmbedder
from tests.invariants import check_store, settled


def reopen(db: Path, embedder: Any) -> Memory:
    memory = Memory(store=Store(str(db)), embedder=embedder)
    memory.ensure_open()
    return memory


def test_add_without_history_gets_its_add(db_path: Path, real_embedder: Any) -> None:
    memory = reopen(db_path, real_embedder)
    added = memory.add("crashed right after the write", user_id="u")["results"][0]
    memory.history_log.flush()  # its history row is written in the background
    memory.store.delete(HISTORY, f"memory_id = '{added['id']}'")  # the crash's gap
    assert len(missing_history(memory.store)) == 1
    fresh = reopen(db_path, real_embedder)
    events = fresh.history(added["id"], user_id="u")["results"]
    assert [(e["event"], e["new_memory"]) for e in events] == [
        ("ADD", "crashed right after the write")]
    check_store(settled(fresh))


def test_update_without_history_gets_its_update(db_path: Path, real_embedder: Any) -> None:
    memory = reopen(db_path, real_embedder)
    added = memory.add("old text", user_id="u")["results"][0]
    memory.history_log.flush()
    row = memory.store.select(MEMORIES, f"id = '{added['id']}'")[0]
    row.update(memory="new text", updated_at=datetime.now(UTC))
    memory.store.upsert(MEMORIES, [row], memory._schema)  # written, history not yet
    fresh = reopen(db_path, real_embedder)
    events = fresh.history(added["id"], user_id="u")["results"]
    assert [(e["event"], e["old_memory"], e["new_memory"]) for e in events] == [
        ("ADD", None, "old text"), ("UPDATE", "old text", "new text")]
    check_store(settled(fresh))


def test_delete_without_history_gets_its_delete(db_path: Path, real_embedder: Any) -> None:
    memory = reopen(db_path, real_embedder)
    added = memory.add("deleted mid-way", user_id="u")["results"][0]
    memory.history_log.flush()
    memory.store.delete(MEMORIES, f"id = '{added['id']}'")  # deleted, history not yet
    fresh = reopen(db_path, real_embedder)
    events = fresh.history(added["id"], user_id="u")["results"]
    assert [(e["event"], e["old_memory"], e["is_deleted"]) for e in events] == [
        ("ADD", None, False), ("DELETE", "deleted mid-way", True)]
    check_store(settled(fresh))


def test_repair_is_idempotent_and_races_collapse(db_path: Path, real_embedder: Any) -> None:
    memory = reopen(db_path, real_embedder)
    added = memory.add("written twice", user_id="u")["results"][0]
    memory.history_log.flush()
    rows = memory.store.select(HISTORY, None)
    memory.store.delete(HISTORY, "true")
    assert repair(memory.store) == 1
    assert repair(memory.store) == 0
    # The slow writer's own row lands after the repair: the same id, read once.
    hist.History(memory.store).record(rows)
    assert len(memory.store.select(HISTORY, None)) == 2
    events = memory.history(added["id"], user_id="u")["results"]
    assert [e["event"] for e in events] == ["ADD"]
    check_store(settled(memory))


def test_a_healthy_store_needs_no_repair(db_path: Path, real_embedder: Any) -> None:
    memory = reopen(db_path, real_embedder)
    ids = [r["id"] for r in memory.add(["a", "b", "c"], user_id="u")["results"]]
    memory.update(ids[0], text="a2", user_id="u")
    memory.update(ids[0], metadata={"k": 1}, user_id="u")
    memory.delete(ids[1], user_id="u")
    memory.history_log.flush()
    assert missing_history(memory.store) == []
    assert set(check_store(settled(memory))) == {ids[0], ids[2]}


def test_history_is_readable_at_once_and_written_before_exit(db_path: Path,
                                                            real_embedder: Any) -> None:
    """History rows commit after the call returns: the process's own reads wait
    for them, and a process that exits right after a write still leaves them."""
    memory = reopen(db_path, real_embedder)
    memory_id = memory.add("remembered", user_id="u")["results"][0]["id"]
    memory.update(memory_id, text="remembered again", user_id="u")
    assert [e["event"] for e in memory.history(memory_id, user_id="u")["results"]] == [
        "ADD", "UPDATE"]
    writer = ("import sys\nfrom lancemem.core.config import load_settings\n"
              "from lancemem.memory.facade import Memory\n"
              "memory = Memory.from_settings(load_settings({'db': sys.argv[1]}))\n"
              "memory.delete(sys.argv[2], user_id='u')\n")
    subprocess.run([sys.executable, "-c", writer, str(db_path), memory_id], check=True)
    events = memory.store.select(HISTORY, f"memory_id = '{memory_id}'")
    assert sorted(e["event"] for e in events) == ["ADD", "DELETE", "UPDATE"]
    check_store(settled(memory))


def test_gaps_are_found_among_many_healthy_memories(db_path: Path) -> None:
    """The gap search runs in Arrow over the whole store; every kind of gap is
    found exactly once among hundreds of healthy memories."""
    memory = Memory(store=Store(str(db_path)), embedder=HashEmbedder())
    added = memory.add_many({"text": f"fact {n}", "user_id": f"u{n % 9}"} for n in range(300))
    assert added["added"] == 300
    ids = {item["memory"]: item["id"] for item in
           memory.store.select(MEMORIES, None, columns=["memory", "id"])}
    for n in (3, 30, 31):
        memory.update(ids[f"fact {n}"], text=f"fact {n} revised", user_id=f"u{n % 9}")
    memory.delete(ids["fact 40"], user_id="u4")
    memory.history_log.flush()
    # The gaps: no ADD for two, a lost UPDATE for one, a lost DELETE for two.
    for n in (7, 8):
        memory.store.delete(HISTORY, f"memory_id = '{ids[f'fact {n}']}'")
    memory.store.delete(HISTORY, f"memory_id = '{ids['fact 30']}' AND event = 'UPDATE'")
    memory.store.delete(MEMORIES, f"id IN ('{ids['fact 50']}', '{ids['fact 51']}')")
    found = {(row["memory_id"], row["event"]) for row in missing_history(memory.store)}
    assert found == {(ids["fact 7"], "ADD"), (ids["fact 8"], "ADD"),
                     (ids["fact 30"], "UPDATE"), (ids["fact 50"], "DELETE"),
                     (ids["fact 51"], "DELETE")}
    assert repair(memory.store) == 5
    assert missing_history(memory.store) == []
