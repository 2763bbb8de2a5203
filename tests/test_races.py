"""Adds of one text and deletes of one memory, raced by threads and by processes;
and the same for relations: one triple, one entity spelled many ways, one
delete, and replacements of one source's relationship."""

from __future__ import annotations

import json
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
from lancemem.storage import relation_history as rh
from lancemem.storage import sql
from lancemem.storage.relation_schema import ENTITIES, RELATION_HISTORY, RELATIONS
from lancemem.storage.store import HISTORY, MEMORIES, Store
from tests.invariants import check_relations, check_store, settled
from tests.processes import ROOT, child_env, started_on_this_server

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
    check_store(settled(memory))


def test_threads_deleting_one_memory_report_it_deleted_once(memory: Memory) -> None:
    for round_ in range(ROUNDS):
        memory_id = memory.add(f"short-lived fact {round_}", user_id="u")["results"][0]["id"]
        outcome = race(lambda _, m=memory_id: memory.delete(m, user_id="u"), THREADS)
        deleted = [o for o in outcome if isinstance(o, dict)]
        missing = [o for o in outcome if isinstance(o, NotFoundError)]
        assert deleted == [{"id": memory_id, "deleted": True}], outcome
        assert len(missing) == THREADS - 1, outcome
    check_store(settled(memory))


ADDER = """
import sys
from pathlib import Path
import lancemem
from lancemem.memory.facade import Memory
from lancemem.storage.store import Store
from lancemem.search.embeddings import FastEmbedder
m = Memory(store=Store(sys.argv[1]), embedder=FastEmbedder(cache_dir=sys.argv[2]))
m.ensure_open()
m.embedder.load()
print("READY", Path(lancemem.__file__).resolve().parent.parent, flush=True)
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
                              cwd=ROOT, env=child_env(), stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True) for _ in range(3)]
    for proc in procs:
        assert proc.stdout is not None and started_on_this_server(proc.stdout.readline())
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


# Relations: the same races on add_relations and delete_relations, each
# scenario run by threads of one Memory and by processes of their own.
# ``Racers`` runs calls ``(name, kwargs)`` of Memory at once, one per racer,
# and returns their results once their history is written.
Racers = Callable[[list[tuple[str, dict[str, Any]]]], list[Any]]
SPELLINGS = ("Alice", "alice ", "ALICE", "  Alice", "aLiCe", "ALICE  ")
COMPANIES = ("Globex", "Initech", "Umbrella", "Hooli", "Vandelay", "Stark")
FRIENDS = ("Bob", "Carol", "Dave", "Erin", "Frank", "Grace")


def add_call(relations: list[dict[str, str]], run: str, *,
             replace: bool = False) -> tuple[str, dict[str, Any]]:
    return "add_relations", {"relations": relations, "user_id": "u", "run_id": run,
                             "replace": replace}


def triple(source: str, relationship: str, target: str) -> dict[str, str]:
    return {"source": source, "relationship": relationship, "target": target}


def relation_rows(store: Store, relation_id: str) -> list[dict[str, Any]]:
    return store.select(RELATIONS, sql.equals("id", relation_id),
                        columns=["id", "source", "target", "valid"])


def relation_events(store: Store, relation_id: str) -> list[str]:
    """One relation's history events, oldest first, one per row id."""
    rows = store.select(RELATION_HISTORY, sql.equals("relation_id", relation_id))
    return [row["event"] for row in rh.ordered(rows)]


def results_of(outcome: list[Any]) -> list[list[dict[str, Any]]]:
    assert not [o for o in outcome if isinstance(o, Exception) or "error" in o], outcome
    return [o["results"] for o in outcome]


def race_one_new_triple(racers: Racers, store: Store, count: int, round_: int) -> None:
    """One new triple added by every racer: one row, one ADD (the rest NONE);
    invalidated, then added again by every racer: valid again, one ADD."""
    run = f"same-{round_}"
    acme = triple("Alice", "works at", "Acme")
    results = results_of(racers([add_call([acme], run)] * count))
    assert Counter(r[0]["event"] for r in results) == {"ADD": 1, "NONE": count - 1}, results
    relation_id = results[0][0]["id"]
    assert {r[0]["id"] for r in results} == {relation_id}
    assert len(relation_rows(store, relation_id)) == 1
    assert relation_events(store, relation_id) == ["ADD"]
    replaced = results_of(racers([add_call([triple("Alice", "works at", "Globex")], run,
                                           replace=True)]))[0]
    assert [(i["id"], i["event"]) for i in replaced[1:]] == [(relation_id, "INVALIDATE")]
    results = results_of(racers([add_call([acme], run)] * count))
    assert Counter(r[0]["event"] for r in results) == {"ADD": 1, "NONE": count - 1}, results
    assert [row["valid"] for row in relation_rows(store, relation_id)] == [True]
    assert relation_events(store, relation_id) == ["ADD", "INVALIDATE", "ADD"]
    other_scope = results_of(racers([("add_relations", {"relations": [acme], "user_id": "u",
                                                        "agent_id": run})]))[0][0]
    assert other_scope["event"] == "ADD" and other_scope["id"] != relation_id


def race_one_new_entity(racers: Racers, store: Store, count: int, round_: int) -> None:
    """One new entity, spelled differently by each racer: stored once, and every
    relation returned spells it as stored (the first spelling)."""
    run = f"spelled-{round_}"
    calls = [add_call([triple(SPELLINGS[i], "works at", ("Acme", "ACME", " acme")[i % 3]),
                       triple(SPELLINGS[i], "knows", FRIENDS[i])], run) for i in range(count)]
    results = results_of(racers(calls))
    exact = f"user_id = 'u' AND agent_id IS NULL AND run_id = '{run}'"
    alice = store.select(ENTITIES, f"{exact} AND name_key = 'alice'", columns=["id", "name"])
    acme = store.select(ENTITIES, f"{exact} AND name_key = 'acme'", columns=["id", "name"])
    assert len(alice) == 1 and alice[0]["name"] in {s.strip() for s in SPELLINGS}, alice
    assert len(acme) == 1 and acme[0]["name"] in ("Acme", "ACME", "acme"), acme
    items = [item for result in results for item in result]
    assert {item["source"] for item in items} == {alice[0]["name"]}, items
    assert {r[0]["target"] for r in results} == {acme[0]["name"]}, results
    assert Counter(r[0]["event"] for r in results) == {"ADD": 1, "NONE": count - 1}, results
    assert [r[1]["event"] for r in results] == ["ADD"] * count, results
    assert len({r[1]["id"] for r in results}) == count


def race_one_delete(racers: Racers, store: Store, count: int, round_: int) -> None:
    """One relation deleted by every racer (half by id, half by triple): deleted
    once in all, one DELETE in its history."""
    run = f"deleted-{round_}"
    added = results_of(racers([add_call([triple("Alice", "lives in", "Paris")], run)]))[0][0]
    by_id = ("delete_relations", {"relation_ids": [added["id"]], "user_id": "u"})
    by_triple = ("delete_relations", {"relations": [triple("alice", "Lives In", "PARIS")],
                                      "user_id": "u", "run_id": run})
    outcome = racers([by_id if i % 2 else by_triple for i in range(count)])
    assert not [o for o in outcome if isinstance(o, Exception) or "error" in o], outcome
    assert sum(o["deleted"] for o in outcome) == 1, outcome
    assert relation_rows(store, added["id"]) == []
    assert relation_events(store, added["id"]) == ["ADD", "DELETE"]


def race_replacements(racers: Racers, store: Store, count: int, round_: int) -> None:
    """Every racer replaces Alice's employer with another company at once: every
    relation is kept (invalidated, not deleted), at most one stays valid, each
    invalidation is reported once and recorded once."""
    run = f"replaced-{round_}"
    first = results_of(racers([add_call([triple("Alice", "works at", "Acme")], run)]))[0][0]
    calls = [add_call([triple("Alice", "works at", COMPANIES[i])], run, replace=True)
             for i in range(count)]
    results = results_of(racers(calls))
    assert [r[0]["event"] for r in results] == ["ADD"] * count, results
    ids = [first["id"], *(r[0]["id"] for r in results)]
    rows = {relation_id: relation_rows(store, relation_id) for relation_id in ids}
    assert all(len(found) == 1 for found in rows.values()), rows  # none lost
    valid = [i for i in ids if rows[i][0]["valid"]]
    assert first["id"] not in valid and len(valid) <= 1, rows
    reported = Counter(item["id"] for r in results for item in r[1:])
    assert all(item["event"] == "INVALIDATE" for r in results for item in r[1:]), results
    assert reported == Counter(i for i in ids if i not in valid), (reported, rows)
    for relation_id in ids:
        events = relation_events(store, relation_id)
        assert events == (["ADD"] if relation_id in valid else ["ADD", "INVALIDATE"]), events


RELATION_RACES = (race_one_new_triple, race_one_new_entity, race_one_delete, race_replacements)


def thread_racers(memory: Memory) -> Racers:
    def run(calls: list[tuple[str, dict[str, Any]]]) -> list[Any]:
        outcome = race(lambda i: getattr(memory, calls[i][0])(**calls[i][1]), len(calls))
        memory.relation_log.flush()
        return outcome

    return run


def test_threads_racing_on_relations_store_and_record_each_change_once(
        memory: Memory) -> None:
    racers = thread_racers(memory)
    for round_ in range(ROUNDS):
        for scenario in RELATION_RACES:
            scenario(racers, memory.store, THREADS, round_)
    check_relations(settled(memory))
    check_store(settled(memory))


PROCESSES = 3


def test_processes_racing_on_relations_store_and_record_each_change_once(
        tmp_path: Path, real_embedder: Any) -> None:
    db = tmp_path / "db"
    Memory(store=Store(str(db)), embedder=real_embedder).ensure_open()
    procs = [subprocess.Popen([sys.executable, "-m", "tests.relation_worker", str(db)],
                              cwd=ROOT, env=child_env(), stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True) for _ in range(PROCESSES)]
    try:
        for proc in procs:
            assert proc.stdout is not None
            assert started_on_this_server(proc.stdout.readline()), "worker did not start here"

        def racers(calls: list[tuple[str, dict[str, Any]]]) -> list[Any]:
            for proc, (call, kwargs) in zip(procs, calls, strict=False):
                assert proc.stdin is not None
                proc.stdin.write(json.dumps({"call": call, "kwargs": kwargs}) + "\n")
                proc.stdin.flush()
            return [json.loads(proc.stdout.readline())  # type: ignore[union-attr]
                    for proc in procs[:len(calls)]]

        store = Store(str(db))
        for round_ in range(ROUNDS):
            for scenario in RELATION_RACES:
                scenario(racers, store, PROCESSES, round_)
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.close()
        assert [proc.wait(timeout=60) for proc in procs] == [0] * PROCESSES
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    check_relations(store)
