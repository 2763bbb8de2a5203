"""Re-adding a known text with new metadata says what happened (UPDATE, the
metadata replaced) and history records metadata before and after every change;
real LanceDB and the real model, and once through the SDK client."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
from mcp import Client

from lancemem.core.config import load_settings
from lancemem.mcp.server import build_server
from lancemem.memory.facade import Memory
from lancemem.storage.store import HISTORY, Store, history_schema
from tests.mcp_scenario import call


def _events(memory: Memory, memory_id: str, **scope: str) -> list[tuple[Any, ...]]:
    return [(h["event"], h["old_metadata"], h["new_metadata"])
            for h in memory.history(memory_id, **scope)["results"]]


def test_readding_with_other_metadata_replaces_it_and_says_so(memory: Memory) -> None:
    [first] = memory.add("I take my coffee black", user_id="alice",
                         metadata={"topic": "food"})["results"]
    assert first["event"] == "ADD"
    same = memory.add("I take my coffee black", user_id="alice", metadata={"topic": "food"})
    bare = memory.add("I take my coffee black", user_id="alice")
    assert [r["event"] for r in same["results"] + bare["results"]] == ["NONE", "NONE"]
    assert "metadata" not in same["results"][0]

    [changed] = memory.add("I take my coffee black", user_id="alice",
                           metadata={"topic": "drinks", "since": 2020})["results"]
    assert (changed["id"], changed["event"]) == (first["id"], "UPDATE")
    assert changed["metadata"] == {"topic": "drinks", "since": 2020}
    item = memory.get(first["id"], user_id="alice")
    assert item["metadata"] == {"topic": "drinks", "since": 2020}
    assert item["created_at"] == memory.get(first["id"], user_id="alice")["created_at"]
    assert memory.get_all(user_id="alice")["total"] == 1
    assert memory.get_all(user_id="alice", filters={"topic": "drinks"})["total"] == 1
    assert memory.get_all(user_id="alice", filters={"topic": "food"})["total"] == 0
    assert _events(memory, first["id"], user_id="alice") == [
        ("ADD", None, {"topic": "food"}),
        ("UPDATE", {"topic": "food"}, {"topic": "drinks", "since": 2020})]

    # Another scope's copy of the same text is its own memory, untouched.
    [bobs] = memory.add("I take my coffee black", user_id="bob",
                        metadata={"topic": "bob"})["results"]
    assert bobs["event"] == "ADD" and bobs["id"] != first["id"]
    assert memory.get(first["id"], user_id="alice")["metadata"]["topic"] == "drinks"


def test_an_expired_copy_readded_with_new_metadata_is_one_update(memory: Memory) -> None:
    past = (datetime.now(UTC) - timedelta(days=2)).date().isoformat()
    [old] = memory.add("Visiting Lisbon", user_id="u", metadata={"trip": 1},
                       expiration_date=past)["results"]
    [back] = memory.add("Visiting Lisbon", user_id="u", metadata={"trip": 2})["results"]
    assert (back["id"], back["event"], back["metadata"]) == (old["id"], "UPDATE", {"trip": 2})
    item = memory.get(old["id"], user_id="u")
    assert item["metadata"] == {"trip": 2} and "expiration_date" not in item
    assert [e[0] for e in _events(memory, old["id"], user_id="u")] == ["ADD", "UPDATE"]


def test_an_import_run_again_with_changed_metadata_updates_it(memory: Memory) -> None:
    records = [{"text": f"fact {n}", "user_id": "u", "metadata": {"v": 1}} for n in range(5)]
    assert memory.add_many(records) == {"added": 5, "skipped": 0}
    assert memory.add_many(records) == {"added": 0, "skipped": 5}
    records[2] = {**records[2], "metadata": {"v": 2}}
    memory.add_many(records)
    by_text = {m["memory"]: m["metadata"] for m in memory.get_all(user_id="u")["results"]}
    assert by_text == {f"fact {n}": {"v": 2 if n == 2 else 1} for n in range(5)}


def test_update_and_delete_record_metadata_in_history(memory: Memory) -> None:
    [added] = memory.add("Works as a nurse", user_id="u", metadata={"a": 1})["results"]
    memory.update(added["id"], user_id="u", metadata={"a": 2})
    memory.update(added["id"], user_id="u", text="Works as a doctor")
    memory.delete(added["id"], user_id="u")
    assert _events(memory, added["id"], user_id="u") == [
        ("ADD", None, {"a": 1}), ("UPDATE", {"a": 1}, {"a": 2}),
        ("UPDATE", {"a": 2}, {"a": 2}), ("DELETE", {"a": 2}, None)]


def test_an_older_history_table_gains_the_metadata_columns(db_path: Path,
                                                           real_embedder: Any) -> None:
    import lancedb
    import pyarrow as pa

    old = pa.schema([f for f in history_schema() if not f.name.endswith("_metadata")])
    lancedb.connect(str(db_path)).create_table(HISTORY, schema=old).add(pa.Table.from_pylist(
        [{"id": "h1", "memory_id": "m1", "event": "ADD", "user_id": "u",
          "created_at": datetime.now(UTC) - timedelta(days=1)}], schema=old))
    with Memory(store=Store(str(db_path)), embedder=real_embedder) as memory:
        memory.ensure_open()
        assert {"old_metadata", "new_metadata"} <= set(memory.store.table(HISTORY).schema.names)
        rows = memory.store.select(HISTORY, None)
        assert (rows[0]["old_metadata"], rows[0]["new_metadata"]) == (None, None)
        [added] = memory.add("a fact", user_id="u", metadata={"k": "v"})["results"]
        assert _events(memory, added["id"], user_id="u") == [("ADD", None, {"k": "v"})]


def test_the_tools_report_the_metadata_update(db_path: Path, real_embedder: Any) -> None:
    settings = load_settings({"db": str(db_path)})
    memory = Memory(store=Store(str(db_path)), embedder=real_embedder)

    async def scenario() -> None:
        async with Client(build_server(settings, memory=memory)) as client:
            first = await call(client, "add_memory", text="Likes jazz", user_id="alice",
                               metadata={"genre": "jazz"})
            again = await call(client, "add_memory", text="Likes jazz", user_id="alice",
                               metadata={"genre": "bebop"})
            [event] = again["results"]
            assert event["id"] == first["results"][0]["id"]
            assert (event["event"], event["metadata"]) == ("UPDATE", {"genre": "bebop"})
            history = await call(client, "memory_history", memory_id=event["id"],
                                 user_id="alice")
            assert [(h["old_metadata"], h["new_metadata"]) for h in history["results"]] == [
                (None, {"genre": "jazz"}), ({"genre": "jazz"}, {"genre": "bebop"})]

    anyio.run(scenario)
    memory.close()


def test_metadata_history_survives_an_export_round_trip(memory: Memory, tmp_path: Path,
                                                        real_embedder: Any) -> None:
    from lancemem.core.exchange import dumps

    [added] = memory.add("Plays the cello", user_id="u", metadata={"since": 2001})["results"]
    memory.add("Plays the cello", user_id="u", metadata={"since": 1999})
    memory.update(added["id"], user_id="u", metadata={"since": 1998, "level": "good"})
    exported = [dumps(line) for line in memory.export(user_id="u", include_history=True)]
    with Memory(store=Store(str(tmp_path / "copy")), embedder=real_embedder) as copy:
        copy.restore(json.loads(line) for line in exported)
        again = [dumps(line) for line in copy.export(user_id="u", include_history=True)]
        assert again == exported
        assert _events(copy, added["id"], user_id="u") == [
            ("ADD", None, {"since": 2001}), ("UPDATE", {"since": 2001}, {"since": 1999}),
            ("UPDATE", {"since": 1999}, {"since": 1998, "level": "good"})]
