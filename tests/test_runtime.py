"""A Memory owns its threads: close() finishes their work and ends them."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from lancemem.core.errors import ClosedError, LanceMemError
from lancemem.memory.facade import Memory
from lancemem.storage.store import HISTORY, Store


def lancemem_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("lancemem-")]


def test_close_writes_pending_history_and_ends_every_thread(db_path: Path,
                                                           real_embedder: Any) -> None:
    before = set(lancemem_threads())
    memory = Memory(store=Store(str(db_path)), embedder=real_embedder)
    memory.warm_up()
    ids = [memory.add(f"fact number {i}", user_id="u")["results"][0]["id"] for i in range(5)]
    memory.search("fact", user_id="u")
    memory.close()
    written = {row["memory_id"] for row in Store(str(db_path)).select(HISTORY, None)}
    assert written == set(ids)  # read through another Store: committed, not just queued
    assert set(lancemem_threads()) <= before


def test_a_closed_memory_refuses_work_and_closes_once(db_path: Path, real_embedder: Any) -> None:
    with Memory(store=Store(str(db_path)), embedder=real_embedder) as memory:
        memory.add("something", user_id="u")
    memory.close()  # a second close does nothing
    with pytest.raises(ClosedError, match="closed"):
        memory.add("something else", user_id="u")
    calls = [lambda: memory.search("something", user_id="u"),
             lambda: memory.get_all(user_id="u"), lambda: memory.history("x", user_id="u"),
             lambda: memory.delete_all(user_id="u"), lambda: memory.get("x", user_id="u"),
             lambda: memory.add_many([]), memory.ensure_open, memory.reset, memory.warm_up]
    for call in calls:
        with pytest.raises(ClosedError, match=r"^CLOSED_001: this Memory is closed"):
            call()
    assert issubclass(ClosedError, LanceMemError)
    with Memory(store=Store(str(db_path)), embedder=real_embedder) as again:  # reset refused:
        assert [r["memory"] for r in again.get_all(user_id="u")["results"]] == ["something"]


def test_each_memory_has_its_own_runtime(db_path: Path, tmp_path: Path,
                                         real_embedder: Any) -> None:
    first = Memory(store=Store(str(db_path)), embedder=real_embedder)
    with Memory(store=Store(str(tmp_path / "other")), embedder=real_embedder) as second:
        first.close()
        assert second.add("still works", user_id="u")["results"][0]["event"] == "ADD"
