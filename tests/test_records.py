"""MemoryRecord: every derived column computed in one place, rows in and out."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta

import pytest

from lancemem.core.filters import metadata_columns
from lancemem.core.records import MemoryRecord
from lancemem.memory.facade import Memory
from lancemem.storage.store import MEMORIES

NOW = datetime(2026, 12, 2, 1, 2, 3, tzinfo=UTC)


def record(**changes: object) -> MemoryRecord:
    fields: dict = {"id": "m1", "memory": "likes green tea", "user_id": "alice",
                    "agent_id": None, "run_id": "r1", "actor_id": "dave", "role": "user",
                    "metadata": {"category": "food", "tags": ["x"], "n": 2},
                    "created_at": NOW, "updated_at": NOW, "vector": [0.5, 0.25]}
    fields.update(changes)
    return MemoryRecord(**fields)


def test_derived_columns_come_from_the_record() -> None:
    row = record().to_row()
    assert row["hash"] == hashlib.md5(b"likes green tea").hexdigest()
    assert row["search_text"] == "dave: likes green tea"
    assert record(actor_id=None).to_row()["search_text"] == "likes green tea"
    assert json.loads(row["metadata"]) == {"category": "food", "tags": ["x"], "n": 2}
    for column, value in metadata_columns({"category": "food", "tags": ["x"], "n": 2}).items():
        assert row[column] == value
    assert "vector" not in record(vector=None).to_row()


def test_a_row_round_trips() -> None:
    original = record()
    assert MemoryRecord.from_row(original.to_row()) == original
    items_only = {k: v for k, v in original.to_row().items() if k != "vector"}
    assert MemoryRecord.from_row(items_only) == record(vector=None)


def test_revised_keeps_scope_and_attribution() -> None:
    later = NOW + timedelta(seconds=1)
    new = record().revised(text="likes black tea", vector=[1.0, 0.0], updated_at=later)
    assert (new.memory, new.vector, new.updated_at, new.created_at) == (
        "likes black tea", [1.0, 0.0], later, NOW)
    assert (new.user_id, new.run_id, new.actor_id, new.role, new.id) == (
        "alice", "r1", "dave", "user", "m1")
    assert new.to_row()["search_text"] == "dave: likes black tea"
    relabelled = record().revised(metadata={"category": "drink"}, updated_at=later)
    assert relabelled.memory == "likes green tea" and relabelled.vector == [0.5, 0.25]
    assert relabelled.to_row()["meta_str"] == metadata_columns({"category": "drink"})["meta_str"]
    with pytest.raises(ValueError, match="vector"):
        record().revised(text="no vector", updated_at=later)


def test_to_item_is_mem0_shaped() -> None:
    item = record(agent_id=None).to_item(score=0.5)
    assert item == {"id": "m1", "memory": "likes green tea",
                    "hash": hashlib.md5(b"likes green tea").hexdigest(),
                    "metadata": {"category": "food", "tags": ["x"], "n": 2},
                    "created_at": NOW.isoformat(), "updated_at": NOW.isoformat(),
                    "user_id": "alice", "run_id": "r1", "actor_id": "dave", "role": "user",
                    "score": 0.5}


def test_stored_rows_are_what_the_record_computes(memory: Memory) -> None:
    added = memory.add([{"role": "user", "content": "moved to Lisbon", "name": "dave"}],
                       user_id="alice", metadata={"city": "Lisbon"})["results"][0]
    memory.update(added["id"], text="moved to Porto", metadata={"city": "Porto"},
                  user_id="alice")
    [row] = memory.store.select(MEMORIES, None)

    def parsed(r: dict) -> dict:  # the JSON columns come back in LanceDB's spacing
        return {k: json.loads(v) if k == "metadata" or k.startswith("meta_") else v
                for k, v in r.items()}

    assert parsed(MemoryRecord.from_row(row).to_row()) == parsed(row)
    assert (row["memory"], row["search_text"]) == ("moved to Porto", "dave: moved to Porto")
    assert json.loads(row["meta_str"]) == {"city": "Porto"}
