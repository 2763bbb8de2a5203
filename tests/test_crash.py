"""SIGKILL at random moments of add, update, delete, delete_all, import and reindex,
and of add_relations (with and without replace) and delete_relations.

After each kill the store must open, hold every acknowledged write (each
relation present or absent, valid or invalid, as acknowledged), show at most
the one in-flight operation half-done, and keep history (memory history and
relation history) in agreement.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lancemem.core.errors import ModelMismatchError
from lancemem.core.relations import ADD, INVALIDATE, NONE, name_key, relation_id, snake_case
from lancemem.memory.facade import Memory
from lancemem.memory.reindex import reindex
from lancemem.storage.relation_schema import ENTITIES, RELATIONS
from lancemem.storage.store import Store
from tests.crash_worker import USER
from tests.invariants import check_relations, check_store, settled
from tests.processes import ROOT, child_env, started_on_this_server

KILLS = 12
# A relation as the test expects it: (run, (source, relationship, target), valid).
RelationState = tuple[str, tuple[str, str, str], bool]


def run_until_killed(db: Path | str, journal: Path, seed: int, delay: float, *,
                     env: Mapping[str, str] | None = None) -> None:
    """Start tests.crash_worker on ``db`` (with ``env`` added to the child's
    environment) and SIGKILL it ``delay`` seconds after it is ready."""
    proc = subprocess.Popen([sys.executable, "-m", "tests.crash_worker", str(db), str(journal),
                             str(seed)], cwd=ROOT, env={**child_env(), **(env or {})},
                            stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None
        assert started_on_this_server(proc.stdout.readline()), "worker did not start here"
        time.sleep(delay)
        assert proc.poll() is None, "worker stopped by itself"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)


def read_journal(path: Path) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    acked, pending = [], None
    if path.exists():
        for line in path.read_text().splitlines():
            entry = json.loads(line)
            if "intent" in entry:
                pending = entry["intent"]
            else:
                acked.append(entry["ack"])
                pending = None
    return acked, pending


def apply(expected: dict[str, tuple[str, str]], op: dict[str, Any]) -> None:
    if op["op"] in ("add", "import"):
        for memory_id, text in zip(op["ids"], op["texts"], strict=True):
            expected[memory_id] = (text, op["run"])
    elif op["op"] == "update":
        expected[op["id"]] = (op["text"], expected[op["id"]][1])
    elif op["op"] == "delete":
        del expected[op["id"]]
    elif op["op"] == "delete_all":
        for memory_id in [i for i, (_, run) in expected.items() if run == op["run"]]:
            del expected[memory_id]


def triple_key(triple: dict[str, str]) -> tuple[str, str, str]:
    """A triple's keys, as the server derives them (case, spacing, snake_case)."""
    return (name_key(triple["source"]), snake_case(triple["relationship"]),
            name_key(triple["target"]))


def key_of(state: RelationState) -> tuple[str, str, str]:
    source, relationship, target = state[1]
    return name_key(source), relationship, name_key(target)


def scoped_id(run: str, key: tuple[str, str, str]) -> str:
    return relation_id({"user_id": USER, "agent_id": None, "run_id": run}, key)


def deleted_by(expected: dict[str, RelationState], op: dict[str, Any]) -> set[str]:
    """The relations a delete_relations removes: by id in the user's scope, or
    every one with the triple's keys (in its run, if given)."""
    if "ids" in op:
        return set(op["ids"]) & set(expected)
    key = triple_key(op["triple"])
    return {i for i, state in expected.items()
            if key_of(state) == key and op["run"] in (None, state[0])}


def replaced_by(expected: dict[str, RelationState], op: dict[str, Any]) -> set[str]:
    """The valid relations an add with replace=true invalidates: same run, same
    source and relationship as a given triple, none of the given triples."""
    if not op["replace"]:
        return set()
    given = {scoped_id(op["run"], triple_key(t)) for t in op["relations"]}
    heads = {triple_key(t)[:2] for t in op["relations"]}
    return {i for i, (run, _, valid) in expected.items()
            if run == op["run"] and valid and i not in given
            and key_of(expected[i])[:2] in heads}


def apply_relations(expected: dict[str, RelationState], op: dict[str, Any],
                    seen: set[str]) -> None:
    """Apply an acknowledged relation change, checking first that its answer is
    what the store held before it implies (ADD, NONE, INVALIDATE, counts)."""
    if op["op"] == "add_relations":
        results, given = op["results"], op["relations"]
        invalidated = replaced_by(expected, op)
        earlier: set[str] = set()
        assert len(results) >= len(given), (given, results)
        for triple, item in zip(given, results, strict=False):
            wanted = scoped_id(op["run"], triple_key(triple))
            assert item["id"] == wanted, (triple, item)
            before = expected.get(wanted)
            event = NONE if wanted in earlier or (before and before[2]) else ADD
            assert item["event"] == event and item["valid"], (triple, item, before)
            if before is not None:  # a stored triple keeps its spelling
                assert (item["source"], item["relationship"], item["target"]) == before[1]
            if event == ADD and before is not None:
                seen.add("revalidated")
            earlier.add(wanted)
        extra = results[len(given):]
        assert all(i["event"] == INVALIDATE and not i["valid"] for i in extra), extra
        assert {i["id"] for i in extra} == invalidated, (extra, invalidated)
        for item in results:
            seen.add(item["event"])
            expected[item["id"]] = (op["run"], (item["source"], item["relationship"],
                                                item["target"]), item["valid"])
    elif op["op"] == "delete_relations":
        gone = deleted_by(expected, op)
        assert op["deleted"] == len(gone), (op, gone)
        for relation_id_ in gone:
            del expected[relation_id_]
    elif op["op"] == "delete_all":
        for relation_id_ in [i for i, state in expected.items() if state[0] == op["run"]]:
            del expected[relation_id_]


def verify_relations(expected: dict[str, RelationState], pending: dict[str, Any] | None,
                     actual: dict[str, RelationState]) -> None:
    """Every acknowledged relation as acknowledged; only the in-flight operation
    may have added, revalidated, invalidated or deleted some of them."""
    kind = pending["op"] if pending else None
    may_vanish: set[str] = set()
    may_appear: set[str] = set()
    may_invalidate: set[str] = set()
    if kind == "add_relations":
        assert pending is not None
        may_appear = {scoped_id(pending["run"], triple_key(t)) for t in pending["relations"]}
        may_invalidate = replaced_by(expected, pending)
    elif kind == "delete_relations":
        may_vanish = deleted_by(expected, pending)
    elif kind == "delete_all":
        assert pending is not None
        may_vanish = {i for i, state in expected.items() if state[0] == pending["run"]}
    for relation_id_, (run, triple, valid) in expected.items():
        if relation_id_ not in actual:
            assert relation_id_ in may_vanish, f"lost {triple} in {run}"
            continue
        got_run, got_triple, got_valid = actual[relation_id_]
        assert (got_run, got_triple) == (run, triple), (actual[relation_id_], triple)
        if got_valid != valid:
            assert relation_id_ in (may_appear if got_valid else may_invalidate), (
                f"{triple} is {'valid' if got_valid else 'invalid'}, acknowledged otherwise")
    for relation_id_, (_, triple, valid) in actual.items():
        if relation_id_ not in expected:
            assert relation_id_ in may_appear and valid, f"stray relation {triple}"


def open_after_crash(db: Path | str, embedder: Any, *,
                     storage_options: Mapping[str, str] | None = None) -> Memory:
    """Open the store a killed worker left (finishing an interrupted reindex)."""
    memory = Memory(store=Store(str(db), storage_options=storage_options), embedder=embedder)
    try:
        memory.ensure_open()
    except ModelMismatchError as exc:
        assert "interrupted" in str(exc)
        reindex(Store(str(db), storage_options=storage_options), embedder, batch_size=16)
        memory = Memory(store=Store(str(db), storage_options=storage_options), embedder=embedder)
        memory.ensure_open()
    return memory


def verify(expected: dict[str, tuple[str, str]], pending: dict[str, Any] | None,
           actual: dict[str, tuple[str, str]]) -> None:
    kind = pending["op"] if pending else None
    for memory_id, (text, run) in expected.items():
        if memory_id not in actual:
            assert (kind == "delete" and pending["id"] == memory_id) or (
                kind == "delete_all" and pending["run"] == run), f"lost {text!r}"
            continue
        got = actual[memory_id][0]
        assert got == text or (kind == "update" and pending["id"] == memory_id
                               and got == pending["text"]), f"{got!r} should be {text!r}"
    for memory_id, (text, _) in actual.items():
        if memory_id not in expected:
            assert kind in ("add", "import") and text in pending["texts"], f"stray {text!r}"


def check_after_kill(journal: Path, memory: Memory, expected: dict[str, tuple[str, str]],
                     relations: dict[str, RelationState], seen_ops: set[str]
                     ) -> tuple[dict[str, tuple[str, str]], dict[str, RelationState]]:
    """Apply the journal's acknowledged writes to what was expected, check the
    reopened store against it (rows, history, relations, vectors, searches)
    and return what it now holds, for the next round."""
    acked, pending = read_journal(journal)
    for op in acked:
        apply(expected, op)
        apply_relations(relations, op, seen_ops)
        seen_ops.add(op["op"])
    rows = check_store(settled(memory))
    items = memory.get_all(user_id=USER, limit=1000)["results"]
    actual = {i["id"]: (i["memory"], i.get("run_id", "")) for i in items}
    assert set(actual) == set(rows)
    verify(expected, pending, actual)
    memory.search("added", user_id=USER, limit=3)
    stored = check_relations(settled(memory))
    listed = memory.list_relations(user_id=USER, show_invalid=True, limit=1000)["results"]
    now = {i["id"]: (i["run_id"], (i["source"], i["relationship"], i["target"]), i["valid"])
           for i in listed}
    assert set(now) == set(stored)
    verify_relations(relations, pending, now)
    for table in (RELATIONS, ENTITIES):  # reindex, finished on open, embedded them all
        assert memory.store.count(table, "vector IS NULL") == 0, table
    memory.search_relations("Alice works at", user_id=USER, limit=3)
    return actual, now


def test_sigkill_at_random_moments_loses_nothing_acknowledged(
    tmp_path: Path, real_embedder: Any
) -> None:
    db = tmp_path / "db"
    rng = random.Random(int(os.environ.get("LANCEMEM_CRASH_SEED", "7")))
    expected: dict[str, tuple[str, str]] = {}
    relations: dict[str, RelationState] = {}
    seen_ops: set[str] = set()
    wanted = {"add", "update", "delete", "import", "add_relations", "delete_relations",
              ADD, NONE, INVALIDATE}
    kill = 0
    # At least KILLS rounds, more (up to 3x) on a slow machine until every kind
    # of write has been acknowledged at least once.
    while kill < KILLS or (not wanted <= seen_ops and kill < 3 * KILLS):
        kill += 1
        journal = tmp_path / f"journal-{kill}.jsonl"
        run_until_killed(db, journal, seed=kill, delay=rng.uniform(0.05, 1.5))
        expected, relations = check_after_kill(journal, open_after_crash(db, real_embedder),
                                               expected, relations, seen_ops)
    assert wanted <= seen_ops, seen_ops
    print(f"{kill} kills; seen: {sorted(seen_ops)}")
