"""``lancemem import --from mem0``: mem0's get_all() JSON, the platform export, and
JSON Lines of items, with ids and timestamps kept. The fixtures copy the
shapes mem0 writes (mem0/memory/main.py: MemoryItem, US/Pacific timestamps,
``updated_at`` null until a memory is updated; the platform's extra fields)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from lancemem.cli import main
from lancemem.core.errors import InvalidIdError, ValidationError
from lancemem.core.records import text_hash
from lancemem.memory.facade import Memory
from lancemem.storage.store import Store
from tests.embedders import HashEmbedder

OSS = [  # Memory.get_all(user_id="alice")["results"]
    {"id": "892db2ae-06d9-49e5-8b3e-585ef9b85b8e", "memory": "Likes to play cricket on weekends",
     "hash": text_hash("Likes to play cricket on weekends"), "metadata": None,
     "created_at": "2024-07-20T01:30:00.123456-07:00", "updated_at": None, "user_id": "alice"},
    {"id": "3b0e1f77-1c2d-4b8a-9f5e-2a6d7c8e9f01", "memory": "Is vegetarian",
     "hash": text_hash("Was vegetarian"), "metadata": {"source": "chat"},
     "created_at": "2024-07-20T01:31:10.000001-07:00",
     "updated_at": "2024-08-01T09:00:00.5-07:00", "user_id": "alice", "agent_id": "diet-bot",
     "actor_id": "alice", "role": "user"},
]
PLATFORM = [  # the platform's export / v2 get_all items
    {"id": "6f1c2b1e-8a40-4b6e-b9c4-6b6f0e1d2a3c", "memory": "Prefers window seats",
     "user_id": "bob", "agent_id": None, "app_id": None, "run_id": None,
     "hash": "ignored", "metadata": {"trip": "Lisbon"}, "categories": ["travel"],
     "immutable": False, "expiration_date": "2999-12-31", "owner": "bob@example.com",
     "organization": "org_1", "created_at": "2024-09-02T10:00:00-07:00",
     "updated_at": "2024-09-02T10:00:00-07:00"},
]


def restore(tmp_path: Path, items: list[Any], **kwargs: Any) -> Memory:
    memory = Memory(store=Store(str(tmp_path / "db")), embedder=HashEmbedder())
    memory.restore(items, source="mem0", **kwargs)
    return memory


def test_ids_timestamps_scope_and_metadata_are_kept(tmp_path: Path) -> None:
    with restore(tmp_path, [*OSS, *PLATFORM]) as memory:
        cricket = memory.get(OSS[0]["id"], user_id="alice")
        assert cricket["created_at"] == "2024-07-20T08:30:00.123456+00:00"  # -07:00 in UTC
        assert cricket["updated_at"] == cricket["created_at"]  # mem0's null: never updated
        assert cricket["metadata"] == {}
        veg = memory.get(OSS[1]["id"], user_id="alice")
        assert (veg["agent_id"], veg["actor_id"], veg["role"]) == ("diet-bot", "alice", "user")
        assert veg["updated_at"] == "2024-08-01T16:00:00.500000+00:00"
        assert veg["hash"] == text_hash("Is vegetarian")  # mem0's hash is not trusted
        seat = memory.get(PLATFORM[0]["id"], user_id="bob")
        assert seat["metadata"] == {"trip": "Lisbon"}  # categories, owner, app_id dropped
        assert seat["expiration_date"] == "3000-01-01T00:00:00+00:00"  # kept through that day
        events = [row["event"] for row in memory.history(OSS[1]["id"],
                                                         user_id="alice")["results"]]
        assert events == ["ADD", "UPDATE"]
        assert memory.restore(OSS, source="mem0")["restored"] == 0  # twice: nothing new


def test_naive_timestamps_are_utc(tmp_path: Path) -> None:
    item = {**OSS[0], "created_at": "2024-07-20T01:30:00"}
    with restore(tmp_path, [item]) as memory:
        assert memory.get(item["id"], user_id="alice")["created_at"] == (
            "2024-07-20T01:30:00+00:00")


@pytest.mark.parametrize(("change", "field", "error"), [
    ({"memory": ""}, "memory", ValidationError), ({"created_at": None}, "created_at",
                                                   ValidationError),
    ({"created_at": "last Tuesday"}, "created_at", ValidationError),
    ({"id": " "}, "id", InvalidIdError), ({"user_id": 7}, "user_id", InvalidIdError),
    ({"metadata": {"score": 1}}, "metadata", ValidationError),
])
def test_errors_name_the_item_and_the_field(tmp_path: Path, change: dict[str, Any],
                                            field: str, error: type[Exception]) -> None:
    items = [OSS[0], {**OSS[1], **change}]
    memory = Memory(store=Store(str(tmp_path / "db")), embedder=HashEmbedder())
    with memory, pytest.raises(error, match=f"item 2: field '{field}'"):
        memory.restore(items, source="mem0", labels=["item 1", "item 2"])
    assert not Store(str(tmp_path / "db")).exists()  # nothing written, not even the tables


def test_the_three_shapes_through_the_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("LANCEMEM_MODEL_CACHE_DIR", str(tmp_path / "models"))
    files = {"results.json": json.dumps({"results": OSS}),
             "list.json": json.dumps(PLATFORM, indent=2),
             "items.jsonl": "\n".join(json.dumps(item) for item in [*OSS, *PLATFORM]) + "\n"}
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    db = str(tmp_path / "db")
    assert main(["import", "--from", "mem0", str(tmp_path / "results.json"), "--db", db,
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["restored"] == 2
    assert main(["import", "--from", "mem0", str(tmp_path / "list.json"), "--db", db]) == 0
    assert "restored 1 memories" in capsys.readouterr().out
    assert main(["import", "--from", "mem0", str(tmp_path / "items.jsonl"), "--db", db,
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"restored": 0, "skipped": 3,
                                                   "history_restored": 0}
    assert main(["export", "--db", db, "--user-id", "alice"]) == 0
    exported = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["id"] for line in exported] == [OSS[0]["id"], OSS[1]["id"]]
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(OSS[0]) + "\n" + json.dumps({**OSS[1], "memory": None}) + "\n")
    assert main(["import", "--from", "mem0", str(bad), "--db", str(tmp_path / "b")]) == 1
    assert f"{bad} line 2: field 'memory' is missing" in capsys.readouterr().err
    bad_json = tmp_path / "bad.json"
    bad_json.write_text(json.dumps({"results": [OSS[0], {**OSS[1], "user_id": None}]}))
    assert main(["import", "--from", "mem0", str(bad_json), "--db", str(tmp_path / "b"),
                 "--user-id", "carol"]) == 1
    assert f"{bad_json} item 1: field 'user_id' is 'alice' but --user-id is 'carol'" in (
        capsys.readouterr().err)
    assert not Store(str(tmp_path / "b")).exists()
