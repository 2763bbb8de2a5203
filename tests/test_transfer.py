"""Export and restore (issue 17) on real LanceDB: round trips byte for byte,
scopes, idempotence, refusals that write nothing, and the CLI."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lancemem.cli import main
from lancemem.core.errors import NotFoundError, ScopeRequiredError, ValidationError
from lancemem.core.exchange import dumps
from lancemem.memory.facade import Memory
from lancemem.search.embeddings import FastEmbedder
from lancemem.storage.store import HISTORY, MEMORIES, Store
from tests.embedders import HashEmbedder

META = {"note": "café ☕ \"quoted\" it's 50% *all*", "n": 3, "tags": ["a*", "%b"],
        "deep": {"x": [1, 2.5, None, True]}}


def text_of(memory: Memory, **kwargs: Any) -> str:
    return "".join(dumps(line) + "\n" for line in memory.export(**kwargs))


def counts(store_path: Path) -> tuple[int, int]:
    store = Store(str(store_path))
    if not store.exists():  # a refused restore did not even create the store
        return 0, 0
    return store.count(MEMORIES), store.count(HISTORY)


@pytest.fixture
def other(tmp_path: Path, real_embedder: FastEmbedder) -> Iterator[Memory]:
    """An empty second store with the real model."""
    with Memory(store=Store(str(tmp_path / "other")), embedder=real_embedder) as opened:
        yield opened


def fill(memory: Memory) -> dict[str, str]:
    """Several scopes; updated, deleted, expired and expiring memories; odd metadata."""
    ids = {}
    ids["tea"] = memory.add("I like tea", user_id="alice", metadata=META,
                            actor_id="o'brien")["results"][0]["id"]
    memory.update(ids["tea"], text="I like green tea", user_id="alice",
                  metadata={**META, "n": 4})
    ids["gone"] = memory.add("I live in Porto", user_id="alice",
                             agent_id="helper")["results"][0]["id"]
    memory.delete(ids["gone"], user_id="alice")
    ids["trip"] = memory.add("Alice is in Lisbon this week", user_id="alice", agent_id="*",
                             expiration_date="2999-12-31")["results"][0]["id"]
    ids["old"] = memory.add("Alice had a cold", user_id="alice",
                            expiration_date="2020-01-01")["results"][0]["id"]
    ids["bob"] = memory.add("Bob plays the cello", user_id="bob",
                            metadata={"%": "*"})["results"][0]["id"]
    ids["run"] = memory.add([{"role": "assistant", "content": "Booked the 9:15 train"}],
                            run_id="r 1")["results"][0]["id"]
    return ids


@pytest.mark.parametrize("include_history", [False, True])
def test_round_trip_is_byte_identical(memory: Memory, other: Memory,
                                      include_history: bool) -> None:
    ids = fill(memory)
    first = text_of(memory, every_scope=True, include_history=include_history)
    restored = other.restore([json.loads(line) for line in first.split("\n")[:-1]])
    assert restored["restored"] == 5 and restored["skipped"] == 0
    assert text_of(other, every_scope=True, include_history=include_history) == first
    for scope in ({"user_id": "alice"}, {"user_id": "bob"}, {"run_id": "r 1"}):
        assert (text_of(other, include_history=include_history, **scope)
                == text_of(memory, include_history=include_history, **scope))
    # Restored memories are embedded with the store's model: search finds them.
    found = other.search("which drink?", user_id="alice", mode="vector", limit=1)
    assert found["results"][0]["id"] == ids["tea"]
    lines = [json.loads(line) for line in first.split("\n")[:-1]]
    kinds = {line["type"] for line in lines}
    assert kinds == ({"memory", "history"} if include_history else {"memory"})
    if include_history:  # the deleted memory's history comes along, after every memory
        assert [line["event"] for line in lines if line.get("memory_id") == ids["gone"]] == [
            "ADD", "DELETE"]
        assert lines[-1]["memory_id"] == ids["gone"]
        assert other.history(ids["tea"], user_id="alice") == memory.history(
            ids["tea"], user_id="alice")


def test_without_history_each_memory_gets_the_rows_repair_would_write(
        memory: Memory, other: Memory) -> None:
    ids = fill(memory)
    other.restore([json.loads(line) for line in text_of(memory, user_id="alice").split("\n")[:-1]])
    events = [row["event"] for row in other.history(ids["tea"], user_id="alice")["results"]]
    assert events == ["ADD", "UPDATE"]  # updated once: its UPDATE at updated_at
    assert [row["event"] for row in other.history(ids["trip"], user_id="alice")["results"]] == [
        "ADD"]
    with pytest.raises(NotFoundError):  # deleted before the export: not restored
        other.history(ids["gone"], user_id="alice")
    # The next open's crash repair finds nothing to add.
    from lancemem.storage import consistency
    assert consistency.missing_history(other.store) == []


def test_an_export_holds_its_scope_only(memory: Memory) -> None:
    ids = fill(memory)
    alice = [json.loads(line) for line in text_of(memory, user_id="alice",
                                                  include_history=True).split("\n")[:-1]]
    assert {line["user_id"] for line in alice} == {"alice"}
    assert ids["bob"] not in {line.get("id") for line in alice}
    assert ids["bob"] not in {line.get("memory_id") for line in alice}
    everything = text_of(memory, every_scope=True)
    assert ids["bob"] in everything and ids["tea"] in everything and ids["run"] in everything
    agent = text_of(memory, user_id="alice", agent_id="*")
    assert ids["trip"] in agent and ids["tea"] not in agent  # '*' is an id, not a wildcard
    with pytest.raises(NotFoundError, match=ids["bob"]):
        text_of(memory, user_id="alice", memory_ids=[ids["tea"], ids["bob"]])
    only = [json.loads(line) for line in text_of(memory, user_id="alice",
                                                 memory_ids=[ids["tea"]]).split("\n")[:-1]]
    assert [line["id"] for line in only] == [ids["tea"]]
    with pytest.raises(ScopeRequiredError):
        memory.export()
    with pytest.raises(ValidationError, match="not both"):
        memory.export(user_id="alice", every_scope=True)


def test_a_restore_is_idempotent(memory: Memory, other: Memory, tmp_path: Path) -> None:
    fill(memory)
    lines = [json.loads(line) for line in text_of(memory, every_scope=True,
                                                  include_history=True).split("\n")[:-1]]
    other.restore(lines)
    before = text_of(other, every_scope=True, include_history=True)
    stored = counts(tmp_path / "other")
    again = other.restore(lines)
    assert again == {"restored": 0, "skipped": 5, "history_restored": 0}
    assert counts(tmp_path / "other") == stored
    assert text_of(other, every_scope=True, include_history=True) == before


def test_a_stored_id_with_other_text_or_scope_is_refused(memory: Memory, other: Memory,
                                                         tmp_path: Path) -> None:
    ids = fill(memory)
    lines = [json.loads(line) for line in text_of(memory, every_scope=True).split("\n")[:-1]]
    other.restore(lines[:1])
    for change in ({"memory": "I like coffee"}, {"user_id": "mallory"}):
        edited = [*lines[1:], {**lines[0], **change, "hash": None}]
        stored = counts(tmp_path / "other")
        with pytest.raises(ValidationError, match=f"record {len(lines)}: field 'id'"):
            other.restore(edited)
        assert counts(tmp_path / "other") == stored  # the good lines were not written either
    assert ids["tea"] in text_of(other, user_id="alice")


def test_a_bad_line_names_line_and_field_and_writes_nothing(memory: Memory,
                                                            tmp_path: Path) -> None:
    fill(memory)
    lines = [json.loads(line) for line in text_of(memory, every_scope=True,
                                                  include_history=True).split("\n")[:-1]]
    target = tmp_path / "fresh"
    cases = [("created_at", "yesterday", "VALIDATION_005"), ("user_id", "", "VALIDATION_002"),
             ("id", "a\nb", "VALIDATION_002"), ("metadata", {"memory": 1}, "VALIDATION_003"),
             ("colour", "red", "VALIDATION_005"), ("hash", "0" * 32, "VALIDATION_005")]
    with Memory(store=Store(str(target)), embedder=HashEmbedder()) as fresh:
        at = [i for i, line in enumerate(lines) if line["type"] == "memory"][1]
        assert at > 0
        for field, value, code in cases:
            bad = [*lines]
            bad[at] = {**bad[at], field: value}
            with pytest.raises(ValidationError, match=f"record {at + 1}: field '{field}'") as error:
                fresh.restore(bad)
            assert error.value.code == code
        unscoped = [*lines]
        unscoped[0] = {**unscoped[0], "user_id": None, "agent_id": None, "run_id": None}
        with pytest.raises(ScopeRequiredError, match="record 1"):
            fresh.restore(unscoped)
        assert counts(target) == (0, 0)


def test_history_must_belong_to_a_memory(memory: Memory, other: Memory) -> None:
    ids = fill(memory)
    lines = [json.loads(line) for line in text_of(memory, user_id="alice",
                                                  include_history=True).split("\n")[:-1]]
    adds = [line for line in lines if line.get("memory_id") == ids["tea"]]
    with pytest.raises(ValidationError, match="names no memory"):
        other.restore(adds)  # its memory line left out, and it was never deleted
    gone = [line for line in lines if line.get("memory_id") == ids["gone"]]
    assert other.restore(gone)["history_restored"] == 2  # a deleted memory's history is fine
    moved = [{**line, "user_id": "bob"} for line in lines if line.get("memory_id") == ids["tea"]
             or line.get("id") == ids["tea"]]
    moved[1]["user_id"] = "alice"
    with pytest.raises(ValidationError, match="history stays with its memory"):
        other.restore(moved)


def test_given_ids_fill_lines_and_must_agree(memory: Memory, other: Memory) -> None:
    fill(memory)
    lines = [json.loads(line) for line in text_of(memory, user_id="bob").split("\n")[:-1]]
    with pytest.raises(ValidationError, match="--user-id is 'alice'"):
        other.restore(lines, user_id="alice")
    bare = [{**line, "user_id": None} for line in lines]
    assert other.restore(bare, user_id="carol")["restored"] == 1
    assert other.get_all(user_id="carol")["total"] == 1


def test_the_same_text_in_a_scope_is_stored_once(other: Memory) -> None:
    line = {"type": "memory", "id": "m-1", "memory": "likes tea", "user_id": "u",
            "created_at": "2024-01-01T00:00:00Z"}
    result = other.restore([line, {**line, "id": "m-2"}, {**line, "id": "m-3",
                                                          "user_id": "v"}])
    assert result == {"restored": 2, "skipped": 1, "history_restored": 2}
    other.add("likes tea", user_id="w")
    assert other.restore([{**line, "id": "m-4", "user_id": "w"}])["restored"] == 0


def test_the_cli_round_trip(memory: Memory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                            capsys: pytest.CaptureFixture[str]) -> None:
    ids = fill(memory)
    memory.close()
    monkeypatch.setenv("LANCEMEM_MODEL_CACHE_DIR", str(tmp_path / "models"))
    source, target = str(tmp_path / "db"), str(tmp_path / "copy")
    capsys.readouterr()
    assert main(["export", "--db", source, "--all", "--include-history"]) == 0
    out = capsys.readouterr()
    assert out.out.count('"type": "memory"') == 5 and "export [" in out.err
    dump = tmp_path / "dump.jsonl"
    dump.write_text(out.out, encoding="utf-8")
    assert main(["import", str(dump), "--db", target, "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"restored": 5, "skipped": 0,
                                                   "history_restored": 8}
    assert main(["import", str(dump), "--db", target, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["restored"] == 0
    assert main(["export", "--db", target, "--all", "--include-history", "--json"]) == 0
    assert capsys.readouterr().out == out.out
    assert main(["export", "--db", target]) == 1
    assert "--all to export every scope" in capsys.readouterr().err
    assert main(["export", ids["bob"], "--db", target, "--user-id", "alice"]) == 1
    assert "NOT_FOUND_001" in capsys.readouterr().err
    bad = tmp_path / "bad.jsonl"
    lines = out.out.split("\n")[:-1]
    bad.write_text("\n".join([lines[0], "", lines[1].replace('"event": "ADD"',
                                                            '"event": "MOVE"')]))
    empty = str(tmp_path / "empty")
    assert main(["import", str(bad), "--db", empty]) == 1
    assert f"{bad} line 3: field 'event'" in capsys.readouterr().err
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_text(lines[0] + '\n{"text": "an add line", "user_id": "alice"}\n')
    assert main(["import", str(mixed), "--db", empty]) == 1
    assert "line 2: field 'type' is missing" in capsys.readouterr().err
    assert counts(Path(empty)) == (0, 0)


def test_a_thousand_memories(memory: Memory, other: Memory) -> None:
    memory.add_many([{"text": f"fact number {i}: the {i % 7}th colour is {i * 31 % 997}",
                      "user_id": f"u{i % 3}"} for i in range(1000)])
    seen: list[tuple[int, int]] = []
    first = text_of(memory, every_scope=True, include_history=True,
                    progress=lambda done, total: seen.append((done, total)))
    assert first.count('"type": "memory"') == 1000
    assert seen[0] == (500, 1000) and seen[-1] == (1000, 1000)  # read in pages of 500
    result = other.restore([json.loads(line) for line in first.split("\n")[:-1]], batch_size=256)
    assert result == {"restored": 1000, "skipped": 0, "history_restored": 1000}
    assert text_of(other, every_scope=True, include_history=True) == first


# -- a property: random memories survive the round trip, and a second restore --

_ID = st.text(st.characters(blacklist_categories=("Cc", "Cs")), min_size=1,
              max_size=12).filter(lambda s: s.strip() == s and s)
_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1,
                max_size=40).filter(lambda s: s.strip() == s and s)
_VALUE = st.recursive(st.none() | st.booleans() | st.integers(-10**6, 10**6)
                      | st.floats(allow_nan=False, allow_infinity=False, width=32) | _TEXT,
                      lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(_ID, inner, max_size=3), max_leaves=6)
_META = st.dictionaries(_ID.filter(lambda k: k not in {
    "id", "memory", "hash", "user_id", "agent_id", "run_id", "actor_id", "role",
    "created_at", "updated_at", "score", "vector", "expiration_date"}), _VALUE, max_size=4)
_TIME = st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(2999, 1, 1))  # naive


@st.composite
def memory_lines(draw: st.DrawFn) -> list[dict[str, Any]]:
    count = draw(st.integers(1, 6))
    lines = []
    for index in range(count):
        scope = draw(st.fixed_dictionaries({}, optional={"user_id": _ID, "agent_id": _ID,
                                                         "run_id": _ID}).filter(bool))
        created = draw(_TIME)
        lines.append({"type": "memory", "id": f"{draw(_ID)}-{index}", "memory": draw(_TEXT),
                      **scope, "actor_id": draw(st.none() | _ID),
                      "role": draw(st.sampled_from([None, "user", "assistant"])),
                      "metadata": draw(_META), "created_at": created.isoformat(),
                      "updated_at": draw(st.none() | st.just(created.isoformat() + "+00:00")),
                      "expiration_date": draw(st.none() | _TIME.map(
                          lambda t: t.isoformat() + "Z"))})
    return lines


@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(lines=memory_lines())
def test_random_memories_round_trip(lines: list[dict[str, Any]]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        embedder = HashEmbedder()
        with Memory(store=Store(f"{folder}/a"), embedder=embedder) as first:
            first.restore(lines)
            exported = text_of(first, every_scope=True, include_history=True)
        parsed = [json.loads(line) for line in exported.split("\n")[:-1]]
        with Memory(store=Store(f"{folder}/b"), embedder=embedder) as second:
            second.restore(parsed)
            assert text_of(second, every_scope=True, include_history=True) == exported
            assert second.restore(parsed)["restored"] == 0
            assert second.restore(lines)["restored"] == 0
            assert text_of(second, every_scope=True, include_history=True) == exported


def test_a_line_may_hold_unicode_line_separators(tmp_path: Path) -> None:
    from lancemem.cli_transfer import _jsonl

    line = dumps({"type": "memory", "memory": "one\u2028two\x85three"})
    records, labels = _jsonl("f.jsonl", f"{line}\r\n\n{line}\n")
    assert [r["memory"] for r in records] == ["one\u2028two\x85three"] * 2
    assert labels == ["f.jsonl line 1", "f.jsonl line 3"]


def test_configured_defaults_do_not_move_restored_lines(tmp_path: Path) -> None:
    line = {"type": "memory", "id": "m-1", "memory": "likes tea", "user_id": None,
            "agent_id": "helper", "created_at": "2024-01-01T00:00:00Z"}
    with Memory(store=Store(str(tmp_path / "db")), embedder=HashEmbedder(),
                defaults={"user_id": "zed"}) as memory:
        memory.restore([line])
        exported = [json.loads(text) for text in text_of(memory, every_scope=True).split("\n")[:-1]]
    assert [(item["user_id"], item["agent_id"]) for item in exported] == [(None, "helper")]
