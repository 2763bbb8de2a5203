"""Whole-store invariants the reliability tests check after every abuse."""

from __future__ import annotations

from collections import Counter
from typing import Any

from lancemem.storage import history as hist
from lancemem.storage.consistency import missing_history
from lancemem.storage.store import HISTORY, MEMORIES, Store


def check_store(store: Store) -> dict[str, dict[str, Any]]:
    """Assert memories and history agree; return the memories by id."""
    memories = store.select(MEMORIES, None, columns=["id", "memory", "updated_at"])
    counts = Counter(row["id"] for row in memories)
    assert not [i for i, n in counts.items() if n > 1], "a memory id is stored twice"
    assert missing_history(store) == [], "history disagrees with memories"
    by_memory: dict[str, list[dict[str, Any]]] = {}
    for row in hist.ordered(store.select(HISTORY, None)):
        by_memory.setdefault(row["memory_id"], []).append(row)
    for row in memories:
        events = by_memory[row["id"]]
        assert events[0]["event"] == hist.ADD, events
        assert events[-1]["event"] != hist.DELETE, events
        assert events[-1]["new_memory"] == row["memory"], (events, row)
    live = {row["id"] for row in memories}
    for memory_id, events in by_memory.items():
        if memory_id not in live:
            assert events[-1]["event"] == hist.DELETE, events
    return {row["id"]: row for row in memories}
