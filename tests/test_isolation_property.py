"""Isolation as a property: random tool sequences never reach outside the caller's scope.

Each case is a fresh store behind a real MCP client (the SDK's in-process
client) and the real embedding model, served with one of the scope
configurations a user can pick (no defaults, a default user, a pinned user).
A case runs a random sequence of all twelve tools (memories and relations)
for several users, agents and runs whose ids include the attack strings
(``*``, ``%``, ``_``, quotes, look-alikes, whitespace), with random filters
up to the documented bounds (1,000 list items, 500 conditions, NOT nested 8
deep) and entity names and relationships drawn from the same attack strings.
After every step the store is read directly, through its own ``Store``, and
checked:

- every memory, relation and entity outside the call's scope is still
  there, unchanged, with the same history; every new row has exactly the
  call's scope; only the tools that write a kind of row change it;
- both ends of every relation are entities of its exact scope;
- everything the call returned (memories, relations, ids, history) is in
  its scope, and counts of deletions match what went;
- a failed call changed nothing and failed with a lancemem error code (not
  ``STORAGE_`` or ``INTERNAL_``);
- the server still answers (it lists its tools).

Each case ends with the store-wide relation invariants (tests/invariants.py).

The call's scope is worked out here, independently of the server: its id
arguments (stripped), plain-string id entries of its filters, then the
server's default or pin. The case count and seed are printed; set
``LANCEMEM_PROPERTY_SEED`` to replay a run and ``LANCEMEM_PROPERTY_CASES``
to run more cases.
"""

from __future__ import annotations

import os
import random
import re
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from mcp import Client

from lancemem.core.config import load_settings
from lancemem.core.relations import name_key
from lancemem.mcp.server import build_server
from lancemem.memory.facade import Memory
from lancemem.storage.relation_schema import ENTITIES, RELATION_HISTORY, RELATIONS
from lancemem.storage.store import HISTORY, MEMORIES, Store
from tests.attack import ATTACK_IDS, LOOKALIKES
from tests.invariants import check_relations
from tests.mcp_scenario import TOOLS

SEED = int(os.environ.get("LANCEMEM_PROPERTY_SEED") or random.SystemRandom().randrange(2**32))
CASES = int(os.environ.get("LANCEMEM_PROPERTY_CASES") or 60)
MAX_STEPS = 24
NO_SUCH_ID = "00000000-0000-4000-8000-000000000000"
SCOPE = ("user_id", "agent_id", "run_id")
ALLOWED_ERRORS = re.compile(r"^(VALIDATION|FILTER|NOT_FOUND)_\d{3}: \S")

USERS = ["bob", *ATTACK_IDS]
AGENTS = ["helper", "*", "%", "_", "x' OR '1'='1", " helper ", LOOKALIKES[1]]
RUNS = ["r1", "*", "r%", "run 2", "\\", "o'brien"]
ACTORS = ["dave", "*", "%", "o'brien", "alice", LOOKALIKES[0]]
TEXTS = ["likes green tea", "moved to Lisbon", "is allergic to peanuts",
         "prefers window seats", "plays the cello", "*", "50% off", "it's o'clock"]
CATEGORIES = ["food", "travel", "*", "%", "o'brien"]
NAMES = ["Alice", "alice ", "ALICE", "Acme", "Berlin", "*", "%", "_", "o'brien",
         "x' OR '1'='1", LOOKALIKES[0], "50% off"]
RELATIONSHIPS = ["works at", "lives_in", "Knows", "*", "o'brien", "50% of", "is-a"]
DATES = ["2026-01-01", "0999-06-01", "9999-12-31T23:59:59-23:59", "2999-01-01T00:00:00Z"]

# What the server is configured with: defaults fill missing ids, a pin replaces them.
CONFIGS: list[dict[str, Any]] = [
    {},
    {"user_id": "alice"},
    {"user_id": "*"},
    {"user_id": "bob", "pinned": frozenset({"user_id"})},
]


# ---------------------------------------------------------------- strategies


def wrapped_not(inner: dict[str, Any], depth: int) -> dict[str, Any]:
    for _ in range(depth):
        inner = {"NOT": [inner]}
    return inner


def _leaf_filters() -> st.SearchStrategy[dict[str, Any]]:
    sizes = st.sampled_from([1, 3, 999, 1000])
    return st.one_of(
        st.builds(lambda c: {"category": c}, st.sampled_from(CATEGORIES)),
        st.builds(lambda n, c: {"category": {"in": [c, *(f"c{i}" for i in range(n - 1))]}},
                  sizes, st.sampled_from(CATEGORIES)),
        st.builds(lambda n: {"priority": {"nin": list(range(n))}}, sizes),
        st.builds(lambda p: {"priority": {"gte": p}}, st.integers(0, 5)),
        st.builds(lambda a: {"actor_id": {"ne": a}}, st.sampled_from(ACTORS)),
        st.just({"actor_id": "*"}),
        st.builds(lambda u: {"user_id": {"ne": u}}, st.sampled_from(USERS)),
        st.builds(lambda us: {"user_id": {"in": us}},
                  st.lists(st.sampled_from(USERS), min_size=1, max_size=4)),
        st.builds(lambda a: {"agent_id": {"nin": [a]}}, st.sampled_from(AGENTS)),
        st.builds(lambda d, op: {"created_at": {op: d}}, st.sampled_from(DATES),
                  st.sampled_from(["gt", "lt"])),
        st.builds(lambda w: {"memory": {"icontains": w}}, st.sampled_from(["TEA", "%", "_"])),
        st.just({"OR": [{"priority": {"eq": i}} for i in range(500)]}),
    )


def filter_strategy() -> st.SearchStrategy[dict[str, Any] | None]:
    leaf = _leaf_filters()
    combined = st.one_of(
        leaf,
        st.builds(lambda f, d: wrapped_not(f, d), leaf, st.integers(1, 8)),
        st.builds(lambda fs: {"AND": fs}, st.lists(leaf, min_size=1, max_size=3)),
        st.builds(lambda fs: {"OR": fs}, st.lists(leaf, min_size=1, max_size=3)),
    )
    return st.none() | combined


@dataclass(frozen=True)
class Step:
    """One tool call: its tool, ids (each passed as argument or plain filter entry)
    and whatever else the tool takes."""

    tool: str
    ids: dict[str, str | None]
    ids_in_filters: frozenset[str]
    actor: str | None
    filters: dict[str, Any] | None
    text: str
    metadata: dict[str, Any] | None
    target: int  # which known memory id to name, by index
    target_attack: str | None  # or an attack string instead of a known id
    as_owner: bool  # call with the ids of the known memory instead of ``ids``
    limit: int
    triples: tuple[tuple[str, str, str], ...] = ()  # add_relations, or delete by triple
    replace: bool = False  # add_relations
    by_triple: bool = False  # delete_relations by triple; list_relations by entity


def step_strategy() -> st.SearchStrategy[Step]:
    tools = st.sampled_from([
        "add_memory", "add_memory", "add_memory", "search_memories", "list_memories",
        "get_memory", "update_memory", "delete_memory", "delete_all_memories",
        "memory_history", "add_relations", "add_relations", "add_relations",
        "search_relations", "search_relations", "list_relations", "list_relations",
        "delete_relations", "export_memories"])
    ids = st.fixed_dictionaries({
        "user_id": st.none() | st.sampled_from(USERS),
        "agent_id": st.none() | st.sampled_from(AGENTS),
        "run_id": st.none() | st.sampled_from(RUNS),
    })
    metadata = st.none() | st.builds(lambda c, p: {"category": c, "priority": p},
                                     st.sampled_from(CATEGORIES), st.integers(0, 5))
    return st.builds(
        Step, tool=tools, ids=ids,
        ids_in_filters=st.frozensets(st.sampled_from(SCOPE), max_size=2),
        actor=st.none() | st.sampled_from(ACTORS), filters=filter_strategy(),
        text=st.sampled_from(TEXTS), metadata=metadata, target=st.integers(0, 10_000),
        target_attack=st.none() | st.none() | st.sampled_from([*ATTACK_IDS, "  "]),
        as_owner=st.sampled_from([True, True, False]), limit=st.sampled_from([1, 5, 1000]),
        triples=st.lists(st.tuples(st.sampled_from(NAMES), st.sampled_from(RELATIONSHIPS),
                                   st.sampled_from(NAMES)), min_size=1, max_size=3).map(tuple),
        replace=st.booleans(), by_triple=st.booleans(),
    )


# ---------------------------------------------------------------- the oracle


@dataclass
class CallScope:
    """The rows one call may see or touch, worked out from its arguments alone."""

    ids: dict[str, str | None]
    actor: str | None = None

    def holds(self, row: dict[str, Any], *, with_actor: bool = True) -> bool:
        """Whether a stored row (or a returned item) is inside this scope."""
        if any(value is not None and row.get(key) != value for key, value in self.ids.items()):
            return False
        return not (with_actor and self.actor is not None and row.get("actor_id") != self.actor)


def strip_id(value: str | None) -> str | None:
    return None if value is None else value.strip()


def call_scope(tool: str, args: dict[str, Any], config: dict[str, Any]) -> CallScope:
    """Arguments, then plain-string filter entries, then the server's default or pin."""
    filters = args.get("filters") or {}
    pinned = config.get("pinned", frozenset())
    ids: dict[str, str | None] = {}
    for key in SCOPE:
        value = args.get(key)
        if value is None and isinstance(filters.get(key), str):
            value = filters[key]
        if key in pinned:
            value = config[key]
        elif value is None:
            value = config.get(key)
        ids[key] = strip_id(value)
    actor = args.get("actor_id") if tool in TAKES_FILTERS else None
    if actor is None and isinstance(filters.get("actor_id"), str) and filters["actor_id"] != "*":
        actor = filters["actor_id"]
    return CallScope(ids=ids, actor=strip_id(actor))


TAKES_FILTERS = {"search_memories", "list_memories", "delete_all_memories"}
TAKES_ACTOR = {"add_memory", "add_relations", *TAKES_FILTERS}
RELATION_READS = {"search_relations", "list_relations"}
RELATION_WRITES = {"add_relations", "delete_relations"}


def arguments(step: Step, before: Snapshot) -> dict[str, Any]:
    """The tool's arguments for this step, against the store as it is now."""
    if step.tool in RELATION_READS | RELATION_WRITES:
        return relation_arguments(step, before)
    known = sorted(before.memories) + sorted(set(before.history) - set(before.memories))
    target = known[step.target % len(known)] if known else None
    ids = dict(step.ids)
    owner = before.memories.get(target) if step.as_owner and target else None
    if owner is not None:  # the ids of a stored memory: calls that find something
        ids = {key: owner[key] for key in SCOPE}
    args: dict[str, Any] = {}
    filters = dict(step.filters or {})
    for key in SCOPE:
        value = ids[key]
        if value is None:
            continue
        if key in step.ids_in_filters and step.tool in TAKES_FILTERS:
            filters[key] = value  # a plain-string entry: the scope, not a filter
        else:
            args[key] = value
    if step.tool in TAKES_ACTOR and step.actor is not None:
        args["actor_id"] = step.actor
    if step.tool in TAKES_FILTERS and filters:
        args["filters"] = filters
    if step.tool in {"search_memories", "list_memories", "export_memories"}:
        args["limit"] = step.limit
    if step.tool == "export_memories":
        args["include_history"] = step.replace
    if step.tool == "search_memories":
        args["query"] = step.text
    if step.tool in {"add_memory", "update_memory"}:
        args["text"] = step.text
        if step.metadata is not None:
            args["metadata"] = step.metadata
    if step.tool in {"get_memory", "update_memory", "delete_memory", "memory_history"}:
        args["memory_id"] = step.target_attack or target or NO_SUCH_ID
    return args


def relation_arguments(step: Step, before: Snapshot) -> dict[str, Any]:
    """A relation tool's arguments: as ``arguments``, with a known relation (or
    one that history remembers) as the target."""
    known = sorted(before.relations) + sorted(set(before.relation_history)
                                              - set(before.relations))
    target = known[step.target % len(known)] if known else None
    owner = before.relations.get(target) if step.as_owner and target else None
    ids = {key: owner[key] for key in SCOPE} if owner is not None else dict(step.ids)
    args: dict[str, Any] = {key: value for key, value in ids.items() if value is not None}
    triples = [{"source": s, "relationship": r, "target": t} for s, r, t in step.triples]
    if step.tool == "add_relations":
        args["relations"] = triples
        if step.replace:
            args["replace"] = True
        if step.actor is not None:
            args["actor_id"] = step.actor
    elif step.tool == "search_relations":
        args["query"] = step.text if step.replace else step.triples[0][0]
        args["limit"] = min(step.limit, 100)
    elif step.tool == "list_relations":
        args["limit"] = step.limit
        if step.by_triple:
            args["entity"] = step.triples[0][0]
        if step.replace:
            args["relationship"] = step.triples[0][1]
    elif step.by_triple:  # delete_relations by triple: a known one, spelled anew
        if owner is not None:
            triples = [{"source": f" {owner['source'].upper()} ",
                        "relationship": owner["relationship"], "target": owner["target"]}]
        args["relations"] = triples
    else:
        args["relation_ids"] = [step.target_attack or target or NO_SUCH_ID]
    return args


# ---------------------------------------------------------------- the check


@dataclass
class Snapshot:
    """Both tables, read directly from storage."""

    memories: dict[str, dict[str, Any]]
    history: Counter[str] = field(default_factory=Counter)
    relations: dict[str, dict[str, Any]] = field(default_factory=dict)
    entities: dict[str, dict[str, Any]] = field(default_factory=dict)
    relation_history: Counter[str] = field(default_factory=Counter)

    def within(self, ids: dict[str, str]) -> Snapshot:
        """The rows whose ids include these (a token's pins)."""
        def mine(row: dict[str, Any]) -> bool:
            return all(row[key] == value for key, value in ids.items())

        memories = {i: row for i, row in self.memories.items() if mine(row)}
        relations = {i: row for i, row in self.relations.items() if mine(row)}
        return Snapshot(memories, Counter({i: self.history[i] for i in memories}), relations,
                        self.entities, Counter({i: self.relation_history[i] for i in relations}))


def _rows(store: Store, table: str) -> dict[str, dict[str, Any]]:
    columns = [name for name in store.dataset(table).schema.names if name != "vector"]
    return {row["id"]: row for row in store.select(table, None, columns=columns)}


def read_store(store: Store) -> Snapshot:
    history = Counter(row["memory_id"] for row in store.select(
        HISTORY, None, columns=["memory_id"]))
    relation_history = Counter(row["relation_id"] for row in store.select(
        RELATION_HISTORY, None, columns=["relation_id"]))
    return Snapshot(memories=_rows(store, MEMORIES), history=history,
                    relations=_rows(store, RELATIONS), entities=_rows(store, ENTITIES),
                    relation_history=relation_history)


def check_step(step: Step, args: dict[str, Any], scope: CallScope, result: Any,
               before: Snapshot, after: Snapshot) -> None:
    """Nothing outside ``scope`` was returned, changed or deleted."""
    where = f"{step.tool}({args!r}) in scope {scope}"
    if result.is_error:
        text = result.content[0].text
        assert ALLOWED_ERRORS.match(text), f"{where} failed badly: {text}"
        assert after == before, f"{where} failed but changed the store"
        return
    # Rows outside the scope: untouched.
    for memory_id, row in before.memories.items():
        if not scope.holds(row, with_actor=False):
            assert after.memories.get(memory_id) == row, f"{where} changed {row}"
            assert after.history[memory_id] == before.history[memory_id], (
                f"{where} wrote history for {row}")
    # Rows inside the scope that changed or went: only by a tool that writes.
    changed = {i for i, row in before.memories.items() if after.memories.get(i) != row}
    if step.tool == "add_memory":  # re-added text with other metadata: that copy, reported
        updated = {e["id"] for e in result.structured_content["results"]
                   if e["event"] == "UPDATE"}
        assert changed <= updated, f"{where} changed {changed - updated} unreported"
        assert all(after.memories[i]["memory"] == before.memories[i]["memory"]
                   for i in changed), f"{where} changed the text of {changed}"
    elif step.tool not in {"update_memory", "delete_memory", "delete_all_memories"}:
        assert not changed, f"{where} changed {changed}"
    for memory_id in changed:
        assert scope.holds(before.memories[memory_id], with_actor=False), where
    new = [row for i, row in after.memories.items() if i not in before.memories]
    for row in new:
        assert step.tool == "add_memory", f"{where} created {row}"
        assert {key: row[key] for key in SCOPE} == scope.ids, f"{where} stored {row}"
    for memory_id in set(after.history) | set(before.history):
        if after.history[memory_id] != before.history[memory_id]:
            owner = before.memories.get(memory_id) or after.memories.get(memory_id)
            assert owner is not None and scope.holds(owner, with_actor=False), (
                f"{where} wrote history for {memory_id}")
    check_relation_rows(step, where, scope, args, before, after)
    check_returned(step, args, where, scope, result.structured_content, before, after)
    check_returned_relations(step, args, where, scope, result.structured_content, before,
                             after)


def _entity_keys(snapshot: Snapshot) -> set[tuple[str | None, ...]]:
    return {(*(row[key] for key in SCOPE), row["name_key"])
            for row in snapshot.entities.values()}


def check_relation_rows(step: Step, where: str, scope: CallScope, args: dict[str, Any],
                        before: Snapshot, after: Snapshot) -> None:
    """Relations and entities outside the scope untouched; only the tools that
    write relations change them; new ones have exactly the call's scope, and
    both ends of every relation are entities of its exact scope."""
    for kind, old, new in (("relation", before.relations, after.relations),
                           ("entity", before.entities, after.entities)):
        for row_id, row in old.items():
            if not scope.holds(row, with_actor=False):
                assert new.get(row_id) == row, f"{where} changed {kind} {row}"
        changed = [row for row_id, row in old.items() if new.get(row_id) != row]
        gone = [row for row_id, row in old.items() if row_id not in new]
        writes = {"add_relations", "delete_relations", "delete_all_memories"}
        assert not changed or step.tool in writes, f"{where} changed {kind} {changed}"
        assert not gone or step.tool in writes - {"add_relations"}, f"{where} removed {gone}"
        if kind == "entity":  # entities never change; they go with their scope
            assert all(row_id not in new for row_id in (r["id"] for r in changed)), where
            assert not gone or step.tool == "delete_all_memories", f"{where} removed {gone}"
        for row_id, row in new.items():
            if row_id not in old:
                assert step.tool == "add_relations", f"{where} created {kind} {row}"
                assert {key: row[key] for key in SCOPE} == scope.ids, f"{where} stored {row}"
                if kind == "relation":
                    assert row["actor_id"] == strip_id(args.get("actor_id")), where
    for relation_id in set(after.relation_history) | set(before.relation_history):
        if after.relation_history[relation_id] != before.relation_history[relation_id]:
            owner = before.relations.get(relation_id) or after.relations.get(relation_id)
            assert owner is not None and scope.holds(owner, with_actor=False), (
                f"{where} wrote history for relation {relation_id}")
    entities = _entity_keys(after)
    for row in after.relations.values():
        exact = tuple(row[key] for key in SCOPE)
        assert (*exact, row["source_key"]) in entities, f"{where} left {row} without a source"
        assert (*exact, row["target_key"]) in entities, f"{where} left {row} without a target"


def check_returned_relations(step: Step, args: dict[str, Any], where: str, scope: CallScope,
                             content: dict[str, Any], before: Snapshot,
                             after: Snapshot) -> None:
    """Every relation a call returned is in its scope, as stored; counts agree."""
    if step.tool in RELATION_READS or step.tool == "search_memories":
        items = content["relations" if step.tool == "search_memories" else "results"]
        assert step.tool == "search_memories" or len(items) <= args["limit"], where
        for item in items:
            stored = before.relations.get(item["id"])
            assert stored is not None, f"{where} returned unknown relation {item}"
            assert scope.holds(stored, with_actor=False) and scope.holds(
                item, with_actor=False), f"{where} returned {item}"
            assert (item["source"], item["relationship"], item["target"]) == (
                stored["source"], stored["relationship"], stored["target"]), where
    elif step.tool == "add_relations":
        seen: set[str] = set()
        for item in content["results"]:
            stored = after.relations.get(item["id"])
            assert stored is not None, f"{where} reported {item}, not stored"
            if item["event"] == "INVALIDATE":
                assert item["id"] in before.relations and not stored["valid"], where
                assert scope.holds(stored, with_actor=False), f"{where} invalidated {stored}"
            else:
                assert {key: stored[key] for key in SCOPE} == scope.ids, f"{where}: {item}"
                assert name_key(item["source"]) == stored["source_key"], where
            if item["event"] == "NONE":
                assert item["id"] in before.relations or item["id"] in seen, where
            seen.add(item["id"])
    elif step.tool == "delete_relations":
        gone = [row for i, row in before.relations.items() if i not in after.relations]
        assert content["deleted"] == len(gone), f"{where} reported {content}, removed {gone}"
        assert all(scope.holds(row, with_actor=False) for row in gone), f"{where}: {gone}"
    elif step.tool == "delete_all_memories":
        gone = [row for i, row in before.relations.items() if i not in after.relations]
        assert content["relations_deleted"] == len(gone), f"{where}: {content}, {gone}"
        assert all(scope.holds(row) for row in gone), f"{where} deleted relations {gone}"


def check_returned(step: Step, args: dict[str, Any], where: str, scope: CallScope,
                   content: dict[str, Any], before: Snapshot, after: Snapshot) -> None:
    """Every memory the call returned is in its scope, as stored."""
    if step.tool in {"search_memories", "list_memories"}:
        items = content["results"]
        assert len(items) <= step.limit, where
        for item in items:
            stored = before.memories.get(item["id"])
            assert stored is not None, f"{where} returned unknown {item}"
            assert scope.holds(stored) and scope.holds(item), f"{where} returned {item}"
    elif step.tool in {"get_memory", "update_memory"}:
        stored = before.memories.get(content["id"])
        assert stored is not None and content["id"] == args["memory_id"].strip(), where
        assert scope.holds(stored, with_actor=False) and scope.holds(content, with_actor=False), (
            f"{where} returned {content}")
    elif step.tool == "delete_memory":
        gone = before.memories.get(content["id"])
        assert gone is not None and scope.holds(gone, with_actor=False), where
        assert content["id"] not in after.memories, f"{where} did not delete"
    elif step.tool == "delete_all_memories":
        gone = [row for i, row in before.memories.items() if i not in after.memories]
        assert content["deleted"] == len(gone), where
        assert all(scope.holds(row) for row in gone), f"{where} deleted {gone}"
    elif step.tool == "export_memories":
        memories = [line for line in content["lines"] if line["type"] == "memory"]
        assert len(memories) <= step.limit, where
        for line in content["lines"]:
            stored = before.memories.get(line["id" if line["type"] == "memory"
                                              else "memory_id"])
            assert stored is not None, f"{where} exported unknown {line}"
            assert scope.holds(stored, with_actor=False) and scope.holds(
                line, with_actor=False), f"{where} exported {line}"
        assert {line["memory_id"] for line in content["lines"] if line["type"] == "history"
                } <= {line["id"] for line in memories}, where
        assert content["total"] == sum(scope.holds(row, with_actor=False)
                                       for row in before.memories.values()), where
    elif step.tool == "memory_history":
        for entry in content["results"]:
            assert scope.holds(entry, with_actor=False), f"{where} returned {entry}"
    elif step.tool == "add_memory":
        for event in content["results"]:
            stored = after.memories.get(event["id"])
            assert stored is not None, f"{where} reported {event}, not stored"
            assert {key: stored[key] for key in SCOPE} == scope.ids, f"{where}: {event}"
            if event["event"] == "NONE":
                assert event["id"] in before.memories, where


# ---------------------------------------------------------------- the run


@dataclass
class Tally:
    """How much the property ran, for the test output."""

    cases: int = 0
    steps: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    relations_reached: int = 0  # relation steps that returned, stored or removed relations


async def run_case(config: dict[str, Any], steps: list[Step], db: Path, embedder: Any,
                   tally: Tally) -> None:
    """Serve a fresh store with ``config`` and check every step of one case."""
    settings_ = load_settings({"db": str(db), **config})
    memory = Memory(store=Store(str(db)), embedder=embedder,
                    defaults=settings_.scope_defaults())
    memory.ensure_open()
    reader = Store(str(db))
    async with Client(build_server(settings_, memory=memory)) as client:
        for step in steps:
            before = read_store(reader)
            args = arguments(step, before)
            result = await client.call_tool(step.tool, args)
            memory.history_log.flush()
            memory.relation_log.flush()
            after = read_store(reader)
            check_step(step, args, call_scope(step.tool, args, config), result, before, after)
            if step.tool in RELATION_READS | RELATION_WRITES and not result.is_error and (
                    after.relations != before.relations
                    or result.structured_content.get("results")):
                tally.relations_reached += 1
            tools = (await client.list_tools()).tools
            assert len(tools) == len(TOOLS), "the server stopped answering"
            tally.steps += 1
            outcome = result.content[0].text.split(":")[0] if result.is_error else "ok"
            tally.outcomes[f"{step.tool} {outcome}"] += 1
    check_relations(reader)
    tally.cases += 1


def test_no_call_reaches_outside_its_scope(real_embedder: Any,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    tally = Tally()

    @seed(SEED)
    @settings(max_examples=CASES, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(config=st.sampled_from(CONFIGS),
           steps=st.lists(step_strategy(), min_size=4, max_size=MAX_STEPS))
    def isolation_holds(config: dict[str, Any], steps: list[Step]) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            anyio.run(run_case, config, steps, Path(tmp) / "db", real_embedder, tally)

    try:
        isolation_holds()
    finally:
        with capsys.disabled():
            print(f"\nisolation property: {tally.cases} cases, {tally.steps} steps "
                  f"({tally.relations_reached} reaching relations), seed {SEED} "
                  f"(replay: LANCEMEM_PROPERTY_SEED={SEED}); "
                  + ", ".join(f"{k}: {v}" for k, v in sorted(tally.outcomes.items())))
    assert tally.cases > 0 and tally.steps >= 4 * tally.cases
    assert tally.relations_reached > 0, tally
