"""Memories that expire: the accepted forms, hiding, show_expired, update, revival
on re-add, filters, purge and the migration of older stores; on real LanceDB with
the real model. Dates are relative to today, so the tests do not age."""

from __future__ import annotations

import threading
import time
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from lancemem.core.errors import NotFoundError, ReservedKeyError, ValidationError
from lancemem.core.messages import check_expiration
from lancemem.memory.facade import Memory
from lancemem.search.embeddings import FastEmbedder
from lancemem.storage import history as hist
from lancemem.storage.memory_table import MemoryTable
from lancemem.storage.meta import EXPIRATIONS
from lancemem.storage.store import HISTORY, MEMORIES, Store
from tests.invariants import check_store, settled
from tests.old_stores import old_memories_schema, write_old_store
from tests.test_races import race, rows_with_text

MODES = ("vector", "keyword", "hybrid")


def utc_today() -> date:
    """Today in UTC, waiting out the last seconds of a day so that "today" still
    holds when the test checks what it stored."""
    now = datetime.now(UTC)
    midnight = datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), UTC)
    if midnight - now < timedelta(seconds=30):
        time.sleep((midnight - now).total_seconds() + 1)
    return datetime.now(UTC).date()


def days(n: int) -> str:
    """The date ``n`` days from today (UTC), as ISO-8601."""
    return (utc_today() + timedelta(days=n)).isoformat()


def moment(**delta: float) -> datetime:
    return datetime.now(UTC) + timedelta(**delta)


def midnight_after(day: str) -> str:
    """What a date comes back as: the instant it expires, 00:00 UTC the next day."""
    return datetime.combine(date.fromisoformat(day) + timedelta(days=1),
                            datetime.min.time(), UTC).isoformat()


def texts(result: dict[str, Any]) -> list[str]:
    return [item["memory"] for item in result["results"]]


# ---------------------------------------------------------------- the accepted forms

def test_a_date_is_kept_through_that_whole_day_in_utc() -> None:
    assert check_expiration("2026-12-31") == datetime(2027, 1, 1, tzinfo=UTC)
    assert check_expiration(date(2026, 12, 31)) == datetime(2027, 1, 1, tzinfo=UTC)
    assert check_expiration("2028-02-28") == datetime(2028, 2, 29, tzinfo=UTC)


@pytest.mark.parametrize(("given", "expected"), [
    ("2026-12-31T18:00:00+01:00", datetime(2026, 12, 31, 17, tzinfo=UTC)),
    ("2026-12-31T18:00:00Z", datetime(2026, 12, 31, 18, tzinfo=UTC)),
    ("2026-12-31T18:00:00", datetime(2026, 12, 31, 18, tzinfo=UTC)),  # naive: UTC
    ("2026-12-31 18:00", datetime(2026, 12, 31, 18, tzinfo=UTC)),
    ("2026-12-31T18:00:00.25-0230", datetime(2026, 12, 31, 20, 30, 0, 250_000, tzinfo=UTC)),
    (" 2026-12-31T18:00:00Z ", datetime(2026, 12, 31, 18, tzinfo=UTC)),
    (datetime(2026, 12, 31, 18), datetime(2026, 12, 31, 18, tzinfo=UTC)),
    (None, None), ("", None),
])
def test_a_datetime_expires_at_that_instant(given: Any, expected: datetime | None) -> None:
    assert check_expiration(given) == expected


@pytest.mark.parametrize("bad", ["tomorrow", "2026-02-30", "31/12/2026", "20261231",
                                 "2026-W01-1", "2026-12-31T25:00", "9999-12-31",
                                 "0001-01-01T00:00:00+01:00", "2026-12-31T18:00:00+1"])
def test_an_invalid_form_is_refused_naming_field_value_and_forms(bad: str) -> None:
    with pytest.raises(ValidationError) as info:
        check_expiration(bad)
    message = str(info.value)
    assert message.startswith("VALIDATION_005: 'expiration_date' is ")
    assert repr(bad) in message and "'2026-12-31'" in message
    assert "'2026-12-31T18:00:00+01:00'" in message and "UTC" in message


def test_a_value_that_is_not_a_string_is_refused() -> None:
    with pytest.raises(ValidationError, match="'expiration_date' must be a string, got int"):
        check_expiration(20261231)
    with pytest.raises(ValidationError, match="or '' to remove it"):
        check_expiration("soon", removable=True)


# ---------------------------------------------------------------- hidden, and shown on request

@pytest.fixture
def mixed(memory: Memory) -> dict[str, str]:
    """Four memories of one user: no expiration, one ending today, one ended
    yesterday and one that ended a minute ago."""
    ids = {}
    for label, text, expiration in [
        ("forever", "Ana plays the cello in an orchestra", None),
        ("today", "Ana is practising the cello concerto today", days(0)),
        ("yesterday", "Ana had a cello lesson yesterday", days(-1)),
        ("minute", "Ana was tuning her cello a minute ago",
         moment(minutes=-1).isoformat()),
    ]:
        result = memory.add(text, user_id="ana", expiration_date=expiration)["results"][0]
        assert result["event"] == "ADD"
        ids[label] = result["id"]
    return ids


def test_the_item_carries_the_instant_it_expires(memory: Memory, mixed: dict[str, str]) -> None:
    assert "expiration_date" not in memory.get(mixed["forever"], user_id="ana")
    today = memory.get(mixed["today"], user_id="ana")
    assert today["expiration_date"] == midnight_after(days(0))
    added = memory.add("Ana tours in spring", user_id="ana",
                       expiration_date="2099-06-01T12:00:00+02:00")["results"][0]
    assert added["expiration_date"] == "2099-06-01T10:00:00+00:00"
    assert memory.get(added["id"], user_id="ana")["expiration_date"] == added["expiration_date"]


@pytest.mark.parametrize("mode", MODES)
def test_expired_memories_are_left_out_of_search(memory: Memory, mixed: dict[str, str],
                                                 mode: str) -> None:
    found = memory.search("Ana cello", user_id="ana", mode=mode, limit=20)
    assert {item["id"] for item in found["results"]} == {mixed["forever"], mixed["today"]}
    shown = memory.search("Ana cello", user_id="ana", mode=mode, limit=20, show_expired=True)
    assert {item["id"] for item in shown["results"]} == set(mixed.values())


def test_expired_memories_are_left_out_of_list_and_get(memory: Memory,
                                                       mixed: dict[str, str]) -> None:
    listed = memory.get_all(user_id="ana")["results"]
    assert [item["id"] for item in listed] == [mixed["today"], mixed["forever"]]
    every = memory.get_all(user_id="ana", show_expired=True)["results"]
    assert {item["id"] for item in every} == set(mixed.values())
    for label in ("yesterday", "minute"):
        with pytest.raises(NotFoundError) as expired:
            memory.get(mixed[label], user_id="ana")
        with pytest.raises(NotFoundError) as missing:
            memory.get("no-such-id", user_id="ana")
        # Reported exactly like a missing memory.
        assert str(expired.value).replace(mixed[label], "ID") == str(missing.value).replace(
            "no-such-id", "ID")
        assert memory.get(mixed[label], user_id="ana", show_expired=True)["id"] == mixed[label]


def test_history_delete_and_delete_all_still_reach_expired_memories(
        memory: Memory, mixed: dict[str, str]) -> None:
    assert [e["event"] for e in memory.history(mixed["yesterday"], user_id="ana")["results"]] == [
        "ADD"]
    assert memory.delete(mixed["yesterday"], user_id="ana") == {"id": mixed["yesterday"],
                                                               "deleted": True}
    assert memory.delete_all(user_id="ana") == {"deleted": 3, "relations_deleted": 0}
    assert memory.get_all(user_id="ana", show_expired=True) == {
        "results": [], "total": 0, "next_cursor": None}


def test_a_date_already_past_is_accepted_and_hidden_at_once(memory: Memory) -> None:
    added = memory.add("the 1999 conference was in Oslo", user_id="u",
                       expiration_date="1999-12-31")["results"][0]
    assert added["event"] == "ADD" and added["expiration_date"] == "2000-01-01T00:00:00+00:00"
    assert memory.get_all(user_id="u")["results"] == []
    assert texts(memory.get_all(user_id="u", show_expired=True)) == [
        "the 1999 conference was in Oslo"]


def test_invalid_input_stores_nothing(memory: Memory) -> None:
    with pytest.raises(ValidationError, match="'expiration_date' is 'next week'"):
        memory.add("a plan", user_id="u", expiration_date="next week")
    with pytest.raises(ReservedKeyError, match="pass it as the 'expiration_date' argument"):
        memory.add("a plan", user_id="u", metadata={"expiration_date": days(3)})
    assert memory.get_all(user_id="u", show_expired=True)["results"] == []


# ---------------------------------------------------------------- update

def test_update_sets_replaces_and_removes_the_expiration(memory: Memory) -> None:
    memory_id = memory.add("the office is closed for works", user_id="u")["results"][0]["id"]
    first = memory.update(memory_id, user_id="u", expiration_date=days(7))
    assert first["expiration_date"] == midnight_after(days(7))
    assert first["memory"] == "the office is closed for works"
    ended = memory.update(memory_id, user_id="u", expiration_date=moment(hours=-1))
    assert memory.get_all(user_id="u")["results"] == []
    # An expired memory can still be updated: extended, and visible again.
    extended = memory.update(memory_id, user_id="u", expiration_date=days(30))
    assert extended["expiration_date"] == midnight_after(days(30))
    kept = memory.update(memory_id, user_id="u", text="the office is closed for repairs")
    assert kept["expiration_date"] == extended["expiration_date"]  # None keeps it
    cleared = memory.update(memory_id, user_id="u", expiration_date="")
    assert "expiration_date" not in cleared
    assert "expiration_date" not in memory.get(memory_id, user_id="u")
    events = [e["event"] for e in memory.history(memory_id, user_id="u")["results"]]
    assert events == ["ADD"] + ["UPDATE"] * 5
    assert "expiration_date" in ended
    with pytest.raises(ValidationError, match="or '' to remove it"):
        memory.update(memory_id, user_id="u", expiration_date="later")
    with pytest.raises(ValidationError, match="'expiration_date' to update"):
        memory.update(memory_id, user_id="u")


# ---------------------------------------------------------------- re-adding an expired text

def test_re_adding_an_expired_text_revives_it(memory: Memory) -> None:
    first = memory.add("the gate code is 4711", user_id="u",
                       expiration_date=days(-2))["results"][0]
    again = memory.add("the gate code is 4711", user_id="u")["results"][0]
    assert again == {"id": first["id"], "memory": "the gate code is 4711", "event": "UPDATE",
                     "user_id": "u"}
    item = memory.get(first["id"], user_id="u")
    assert "expiration_date" not in item
    assert len(rows_with_text(memory.store, "the gate code is 4711")) == 1
    history = memory.history(first["id"], user_id="u")["results"]
    assert [(e["event"], e["old_memory"], e["new_memory"]) for e in history] == [
        ("ADD", None, "the gate code is 4711"),
        ("UPDATE", "the gate code is 4711", "the gate code is 4711")]
    # Live now: a further re-add is NONE, as for any stored text.
    assert memory.add("the gate code is 4711", user_id="u")["results"][0]["event"] == "NONE"
    check_store(settled(memory))


def test_a_revived_copy_takes_the_new_expiration(memory: Memory) -> None:
    first = memory.add("the sale ends soon", user_id="u",
                       expiration_date=days(-1))["results"][0]
    again = memory.add("the sale ends soon", user_id="u",
                       expiration_date=days(5))["results"][0]
    assert (again["event"], again["id"]) == ("UPDATE", first["id"])
    assert again["expiration_date"] == midnight_after(days(5))
    assert memory.get(first["id"], user_id="u")["expiration_date"] == again["expiration_date"]
    # A live copy is left alone, whatever the new call's date (NONE, as before).
    none = memory.add("the sale ends soon", user_id="u", expiration_date=days(9))["results"][0]
    assert none["event"] == "NONE"
    assert memory.get(first["id"], user_id="u")["expiration_date"] == again["expiration_date"]


def test_re_importing_the_same_expired_record_changes_nothing(memory: Memory) -> None:
    record = {"text": "the 2020 tax return is filed", "user_id": "u",
              "expiration_date": "2021-04-30"}
    assert memory.add_many([record]) == {"added": 1, "skipped": 0}
    assert memory.add_many([record]) == {"added": 0, "skipped": 1}
    assert memory.add_many([{**record, "expiration_date": None}]) == {"added": 1, "skipped": 0}
    [item] = memory.get_all(user_id="u")["results"]
    assert "expiration_date" not in item


def test_threads_re_adding_an_expired_text_revive_it_once(memory: Memory) -> None:
    text = "the wifi password is hunter2"
    first = memory.add(text, user_id="u", agent_id="a", expiration_date=days(-1))["results"][0]
    outcome = race(lambda _: memory.add(text, user_id="u", agent_id="a")["results"][0], 6)
    assert not [o for o in outcome if isinstance(o, Exception)], outcome
    assert Counter(o["event"] for o in outcome) == {"UPDATE": 1, "NONE": 5}
    assert {o["id"] for o in outcome} == {first["id"]}
    assert [row["id"] for row in rows_with_text(memory.store, text)] == [first["id"]]
    events = [e["event"] for e in memory.history(first["id"], user_id="u", agent_id="a")[
        "results"]]
    assert events == ["ADD", "UPDATE"]
    check_store(settled(memory))


def test_text_whose_expired_copy_is_purged_meanwhile_is_added_anew(
        memory: Memory, monkeypatch: pytest.MonkeyPatch) -> None:
    text = "the parcel is at the neighbour's"
    first = memory.add(text, user_id="u", expiration_date=days(-1))["results"][0]
    real_find = MemoryTable.find

    def purge_first(self: MemoryTable, *args: Any, **kwargs: Any) -> Any:
        monkeypatch.setattr(MemoryTable, "find", real_find)
        memory.purge_expired()  # lands between the duplicate check and the revival
        return real_find(self, *args, **kwargs)

    monkeypatch.setattr(MemoryTable, "find", purge_first)
    again = memory.add(text, user_id="u")["results"][0]
    assert again["event"] == "ADD" and again["id"] != first["id"]
    assert [row["id"] for row in rows_with_text(memory.store, text)] == [again["id"]]
    check_store(settled(memory))


def test_add_many_records_take_an_expiration(memory: Memory) -> None:
    counts = memory.add_many([
        {"text": "kept for good", "user_id": "u"},
        {"text": "kept for a week", "user_id": "u", "expiration_date": days(7)},
        {"text": "already over", "user_id": "u", "expiration_date": days(-7)},
    ])
    assert counts == {"added": 3, "skipped": 0}
    # One batch, one created_at: compared as a set.
    assert set(texts(memory.get_all(user_id="u"))) == {"kept for a week", "kept for good"}
    with pytest.raises(ValidationError, match="record 2: 'expiration_date' is 'soon'"):
        memory.add_many([{"text": "fine", "user_id": "u"},
                         {"text": "bad", "user_id": "u", "expiration_date": "soon"}])
    assert "fine" not in texts(memory.get_all(user_id="u", show_expired=True))


# ---------------------------------------------------------------- filters

def test_filters_on_expiration_date(memory: Memory) -> None:
    ids = {}
    for label, expiration in (("never", None), ("week", days(7)), ("month", days(30)),
                              ("gone", days(-3))):
        ids[label] = memory.add(f"memory {label}", user_id="u",
                                expiration_date=expiration)["results"][0]["id"]

    def found(filters: dict[str, Any], **kwargs: Any) -> set[str]:
        listed = {i["id"] for i in memory.get_all(user_id="u", filters=filters,
                                                  **kwargs)["results"]}
        searched = {i["id"] for i in memory.search("memory", user_id="u", filters=filters,
                                                   limit=50, **kwargs)["results"]}
        assert listed == searched
        return {label for label, memory_id in ids.items() if memory_id in listed}

    week = midnight_after(days(7))
    assert found({"expiration_date": "*"}) == {"week", "month"}
    assert found({"expiration_date": "*"}, show_expired=True) == {"week", "month", "gone"}
    assert found({"NOT": [{"expiration_date": "*"}]}) == {"never"}
    assert found({"expiration_date": {"lte": days(10)}}) == {"week"}
    assert found({"expiration_date": {"gt": days(10)}}) == {"month"}
    assert found({"expiration_date": week}) == {"week"}
    # A missing expiration matches nothing, except under ne / nin.
    assert found({"expiration_date": {"ne": week}}) == {"never", "month"}
    assert found({"expiration_date": {"nin": [week]}}) == {"never", "month"}
    assert found({"expiration_date": {"lt": days(0)}}, show_expired=True) == {"gone"}
    assert found({"expiration_date": {"lt": days(0)}}) == set()  # filters only narrow


# ---------------------------------------------------------------- purge

def test_purge_deletes_expired_memories_of_every_scope_with_history(memory: Memory) -> None:
    gone = [memory.add("old plan A", user_id="alice", expiration_date=days(-1)),
            memory.add("old plan B", agent_id="bot", expiration_date=moment(seconds=-5)),
            memory.add("old plan C", user_id="bob", run_id="r1", expiration_date=days(-9))]
    kept = [memory.add("lasting fact", user_id="alice"),
            memory.add("plan for next week", user_id="bob", run_id="r1",
                       expiration_date=days(7))]
    assert memory.purge_expired() == {"deleted": 3}
    assert memory.purge_expired() == {"deleted": 0}
    rows = memory.store.select(MEMORIES, None, columns=["id"])
    assert {row["id"] for row in rows} == {k["results"][0]["id"] for k in kept}
    memory.history_log.flush()
    deletes = {row["memory_id"] for row in memory.store.select(HISTORY, None)
               if row["event"] == hist.DELETE}
    assert deletes == {g["results"][0]["id"] for g in gone}
    check_store(settled(memory))


def test_purge_keeps_a_memory_extended_while_it_runs(memory: Memory,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    doomed = memory.add("expired and left so", user_id="u",
                        expiration_date=days(-1))["results"][0]["id"]
    saved = memory.add("expired, then extended", user_id="u",
                       expiration_date=days(-1))["results"][0]["id"]
    real_expired = MemoryTable.expired

    def extend_meanwhile(self: MemoryTable, now: datetime) -> Any:
        found = real_expired(self, now)
        memory.update(saved, user_id="u", expiration_date=days(3))
        return found

    monkeypatch.setattr(MemoryTable, "expired", extend_meanwhile)
    assert memory.purge_expired() == {"deleted": 1}
    assert texts(memory.get_all(user_id="u")) == ["expired, then extended"]
    events = [e["event"] for e in memory.history(saved, user_id="u")["results"]]
    assert events == ["ADD", "UPDATE"]  # no DELETE for the memory that stayed
    assert [e["event"] for e in memory.history(doomed, user_id="u")["results"]] == [
        "ADD", "DELETE"]
    check_store(settled(memory))


# ---------------------------------------------------------------- the store's mark

def test_the_store_is_marked_before_its_first_expiring_memory(memory: Memory) -> None:
    memory.add("plain", user_id="u")
    assert EXPIRATIONS not in memory.store.meta()
    memory_id = memory.add("plain too", user_id="u")["results"][0]["id"]
    memory.update(memory_id, user_id="u", expiration_date=days(-1))  # through an update
    assert memory.store.meta()[EXPIRATIONS] == "1"
    other = Memory(store=Store(memory.store.uri), embedder=memory.embedder)
    assert texts(other.get_all(user_id="u")) == ["plain"]  # another process sees the mark
    other.close()


# ---------------------------------------------------------------- older stores

def _version_2_store(db: Path, embedder: FastEmbedder) -> None:
    """A store as lancemem wrote it before expiration_date: one memory of user u."""

    from lancemem.core.messages import Message
    from lancemem.core.records import MemoryRecord, Plan
    from lancemem.storage.store import history_schema

    legacy = old_memories_schema(embedder.dim, 2)
    plan = Plan([Message("Ana sold her old piano", "user", "Ana")],
                {"user_id": "u", "agent_id": None, "run_id": None}, {}, None)
    record = MemoryRecord.new(plan.messages[0], plan, datetime.now(UTC))
    row = {k: v for k, v in record.to_row().items() if k in legacy.names}
    row["vector"] = embedder.embed_documents([record.search_text])[0]
    conn = write_old_store(db, embedder, 2, [row])
    conn.create_table(HISTORY, schema=history_schema()).add([hist.history_row(
        memory=record, event=hist.ADD, old_memory=None, new_memory=record.memory,
        now=record.created_at)])


def test_a_version_2_store_gains_expiration_date_on_open(db_path: Path,
                                                         real_embedder: FastEmbedder) -> None:
    _version_2_store(db_path, real_embedder)
    with Memory(store=Store(str(db_path)), embedder=real_embedder) as old:
        old.ensure_open()
        assert "expiration_date" in old.store.table(MEMORIES).schema.names
        assert old.store.meta()["schema_version"] == "4"
        [item] = old.get_all(user_id="u")["results"]
        assert item["memory"] == "Ana sold her old piano" and "expiration_date" not in item
        for mode in MODES:
            assert texts(old.search("piano", user_id="u", mode=mode)) == [
                "Ana sold her old piano"]
        old.add("Ana had a recital last week", user_id="u", expiration_date=days(-1))
        assert texts(old.get_all(user_id="u")) == ["Ana sold her old piano"]
        old.update(item["id"], user_id="u", expiration_date=days(2))
        assert old.get(item["id"], user_id="u")["expiration_date"] == midnight_after(days(2))
        check_store(settled(old))


def test_stores_migrating_one_store_at_once_all_succeed(tmp_path: Path,
                                                          real_embedder: FastEmbedder) -> None:
    for attempt in range(3):
        db = tmp_path / f"db{attempt}"
        _version_2_store(db, real_embedder)
        stores = [Store(str(db)) for _ in range(4)]
        outcome = race(lambda i, s=stores: s[i].open(model_name=real_embedder.model_name,
                                                    dim=real_embedder.dim), 4)
        assert outcome == [None] * 4
        names = Store(str(db)).table(MEMORIES).schema.names
        assert names.count("expiration_date") == 1


def test_concurrent_readers_never_see_an_expired_memory(memory: Memory) -> None:
    """Searches racing the store's first expiring (already expired) memory: the
    mark is committed first, so no search shows that memory."""
    memory.add("an ordinary memory about tea", user_id="u")
    stop = threading.Event()
    seen: list[str] = []

    def search() -> None:
        with Memory(store=Store(memory.store.uri), embedder=memory.embedder) as reader:
            while not stop.is_set():
                seen.extend(texts(reader.search("tea", user_id="u", mode="keyword")))

    readers = [threading.Thread(target=search) for _ in range(2)]
    for thread in readers:
        thread.start()
    time.sleep(0.5)
    memory.add("an expired memory about tea", user_id="u", expiration_date=days(-1))
    time.sleep(0.5)
    stop.set()
    for thread in readers:
        thread.join()
    assert seen and "an expired memory about tea" not in seen
