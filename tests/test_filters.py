"""The filter language: compile errors, every operator on real LanceDB, and a property test."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lancemem.core.errors import FilterError, ScopeConflictError
from lancemem.core.filters import MAX_DEPTH, compile_where
from lancemem.memory.facade import Memory
from lancemem.storage.store import Store
from tests.filter_oracle import matches

# ---------------------------------------------------------------- compile errors

ERRORS = [
    ({"cat": {"regex": "x"}}, "filters.cat uses unknown operator 'regex'"),
    ({"cat": {"gt": True}}, "filters.cat.gt: booleans"),
    ({"role": 5}, "filters.role.eq: 'role' holds strings"),
    ({"created_at": {"gt": "yesterday"}}, "filters.created_at.gt: 'yesterday' is not an ISO"),
    ({"created_at": {"contains": "2026"}}, "'created_at' is a date"),
    ({"expiration_date": {"icontains": "2026"}}, "'expiration_date' is a date"),
    ({"expiration_date": {"lt": "next week"}}, "filters.expiration_date.lt: 'next week' is not"),
    ({"AND": {"cat": "x"}}, "filters.AND takes a non-empty list"),
    ({"OR": []}, "filters.OR takes a non-empty list"),
    ({"OR": ["cat"]}, "filters.OR[0] must be an object"),
    ({"NOT": [{}]}, "filters.NOT[0] is an empty object"),
    ({"cat; DROP TABLE memories": "x"}, "key 'cat; DROP TABLE memories' is not allowed"),
    ({"metadata.a.b": 1}, "key 'metadata.a.b' is not allowed"),
    ({"é": 1}, "key 'é' is not allowed"),
    ({"memory": "x"}, "'memory' cannot be filtered"),
    ({"metadata.vector": "x"}, "'metadata.vector' cannot be filtered"),
    ({"cat": {"in": "food"}}, "filters.cat.in takes a list"),
    ({"cat": {"nin": []}}, "filters.cat.nin is an empty list"),
    ({"cat": None}, "got null"),
    ({"cat": [1, 2]}, "Lists go with in/nin"),
    ({"cat": {"in": [[1]]}}, "got list"),
    ({"n": math.nan}, "nan is not a finite number"),
    ({"n": {"lt": math.inf}}, "inf is not a finite number"),
    ({"cat": {}}, "filters.cat has no operator"),
    ({"cat": {"icontains": 5}}, "icontains takes a string"),
    ({"cat": "x" * 10_001}, "longer than 10000"),
    ({"cat": "\ud800"}, "unpaired surrogate"),
    ({"n": 2**70}, "64-bit integer range"),
    ({5: "x"}, "non-string key 5"),
]


@pytest.mark.parametrize(("bad", "fragment"), ERRORS, ids=[str(i) for i in range(len(ERRORS))])
def test_bad_filters_name_the_offending_part(bad: dict, fragment: str) -> None:
    with pytest.raises(FilterError) as info:
        compile_where(bad)
    assert info.value.code == "FILTER_001"
    assert fragment in info.value.message


def test_nesting_and_size_are_bounded() -> None:
    nested: dict[str, Any] = {"cat": "x"}
    for _ in range(MAX_DEPTH):
        nested = {"NOT": [nested]}
    compile_where(nested)
    with pytest.raises(FilterError, match=f"deeper than {MAX_DEPTH} levels"):
        compile_where({"AND": [nested]})
    with pytest.raises(FilterError, match="more than 500 conditions"):
        compile_where({"OR": [{"n": i} for i in range(501)]})
    text = {"tag": {"in": ["x" * 9_995, *("y" * 10_000 for _ in range(9))]}}  # keys: 3 + 2
    compile_where(text)
    text["tag"]["in"][0] += "x"
    with pytest.raises(FilterError, match="more than 100,000 characters of text"):
        compile_where(text)


# ---------------------------------------------------------------- every operator, real store

@dataclass
class Fixture:
    memory: Memory
    ids: dict[str, str]
    items: list[dict[str, Any]]


ROWS = {
    "A": ("I love pizza with olives", "user", "ann",
          {"cat": "food", "n": 5, "f": 2.5, "flag": True, "tags": ["x", "y", 3],
           "s": "50%_off o'brien"}),
    "B": ("Morning runs by the river", "user", "bob",
          {"cat": "sport", "n": 7, "f": -1.0, "flag": False, "tags": ["z", True], "s": "a\\b"}),
    "C": ("Food and drink festival downtown", "assistant", "ann",
          {"cat": "Food & Drink", "n": "5", "tags": "x y"}),
    "D": ("Nothing special happened today", "user", None, {}),
}


@pytest.fixture(scope="module")
def table(tmp_path_factory: pytest.TempPathFactory, real_embedder: Any) -> Fixture:
    memory = Memory(store=Store(str(tmp_path_factory.mktemp("filters") / "db")),
                    embedder=real_embedder)
    ids = {}
    for label, (text, role, actor, metadata) in ROWS.items():
        message = {"role": role, "content": text, **({"name": actor} if actor else {})}
        ids[label] = memory.add([message], user_id="alice", metadata=metadata)["results"][0]["id"]
    memory.add("Mallory loves pizza too", user_id="mallory", metadata={"cat": "food", "n": 5})
    items = memory.get_all(user_id="alice")["results"]
    return Fixture(memory, ids, items)


def created(fx: Fixture, label: str) -> str:
    return next(i["created_at"] for i in fx.items if i["id"] == fx.ids[label])


CASES: list[tuple[Any, str]] = [
    ({"cat": "food"}, "A"), ({"cat": {"eq": "food"}}, "A"), ({"cat": {"$eq": "food"}}, "A"),
    ({"n": 5}, "A"), ({"n": 5.0}, "A"), ({"n": "5"}, "C"), ({"f": 2.5}, "A"),
    ({"flag": True}, "A"), ({"flag": False}, "B"), ({"metadata.cat": "sport"}, "B"),
    ({"actor_id": "ann"}, "AC"), ({"role": "assistant"}, "C"),
    ({"cat": "*"}, "ABC"), ({"actor_id": "*"}, "ABC"), ({"metadata.s": {"eq": "*"}}, "AB"),
    ({"cat": {"ne": "food"}}, "BCD"), ({"n": {"ne": 5}}, "BCD"), ({"f": {"ne": 2.5}}, "BCD"),
    ({"flag": {"ne": True}}, "BCD"), ({"actor_id": {"$ne": "ann"}}, "BD"),
    ({"n": {"gt": 5}}, "B"), ({"n": {"gte": 5}}, "AB"), ({"n": {"lt": 7}}, "A"),
    ({"n": {"lte": 7.0}}, "AB"), ({"f": {"gt": -1.5, "lt": 0}}, "B"),
    ({"cat": {"gt": "food"}}, "B"), ({"cat": {"lt": "g"}}, "AC"),
    ({"actor_id": {"gte": "b"}}, "B"), ({"role": {"lte": "assistant"}}, "C"),
    ({"created_at": {"gte": "@C"}}, "CD"), ({"created_at": {"lt": "@C"}}, "AB"),
    ({"created_at": {"eq": "@B"}}, "B"), ({"updated_at": {"lte": "2000-01-01"}}, ""),
    ({"updated_at": {"gt": "2000-01-01T00:00:00+02:00"}}, "ABCD"),
    ({"cat": {"in": ["food", "sport"]}}, "AB"), ({"n": {"in": [7, "5"]}}, "BC"),
    ({"flag": {"in": [False]}}, "B"), ({"f": {"in": [2.5, 99]}}, "A"),
    ({"role": {"$in": ["assistant"]}}, "C"), ({"created_at": {"in": ["@A", "@D"]}}, "AD"),
    ({"cat": {"nin": ["food"]}}, "BCD"), ({"actor_id": {"nin": ["ann", "bob"]}}, "D"),
    ({"n": {"nin": [5, 7]}}, "CD"), ({"flag": {"$nin": [True]}}, "BCD"),
    ({"tags": {"contains": "x"}}, "AC"), ({"tags": {"contains": 3}}, "A"),
    ({"tags": {"contains": 3.0}}, "A"), ({"tags": {"contains": True}}, "B"),
    ({"tags": {"contains": "3"}}, ""), ({"s": {"contains": "%_"}}, "A"),
    ({"s": {"contains": "o'b"}}, "A"), ({"s": {"contains": "\\"}}, "B"),
    ({"s": {"contains": "_"}}, "A"), ({"s": {"$contains": "%"}}, "A"),
    ({"actor_id": {"contains": "nn"}}, "AC"),
    ({"cat": {"icontains": "FOOD"}}, "AC"), ({"actor_id": {"icontains": "BO"}}, "B"),
    ({"tags": {"icontains": "X"}}, "C"), ({"s": {"icontains": "O'BRIEN"}}, "A"),
    ({"OR": [{"cat": "food"}, {"cat": "sport"}]}, "AB"),
    ({"$or": [{"n": 5}, {"flag": False}]}, "AB"),
    ({"AND": [{"actor_id": "ann"}, {"n": {"gte": 5}}]}, "A"),
    ({"$and": [{"role": "user"}, {"NOT": [{"cat": "*"}]}]}, "D"),
    ({"NOT": [{"cat": "food"}]}, "BCD"), ({"not": [{"cat": "food"}, {"cat": "sport"}]}, "CD"),
    ({"$not": [{"cat": "*"}]}, "D"), ({"cat": "food", "OR": [{"n": 5}, {"n": 7}]}, "A"),
    ({"OR": [{"AND": [{"cat": "food"}, {"NOT": [{"flag": False}]}]}, {"role": "assistant"}]},
     "AC"),
    ({"user_id": {"ne": "alice"}}, ""), ({"OR": [{"user_id": "mallory"}, {"cat": "food"}]}, "A"),
    ({"user_id": {"in": ["alice", "mallory"]}}, "ABCD"), ({"NOT": [{"user_id": "alice"}]}, ""),
]


def resolve(node: Any, fx: Fixture) -> Any:
    """Replace "@X" placeholders with memory X's created_at."""
    if isinstance(node, dict):
        return {k: resolve(v, fx) for k, v in node.items()}
    if isinstance(node, list):
        return [resolve(v, fx) for v in node]
    if isinstance(node, str) and node.startswith("@"):
        return created(fx, node[1:])
    return node


@pytest.mark.parametrize("how", ["list", "search"])
@pytest.mark.parametrize(("filters", "expected"), CASES, ids=[str(c[0]) for c in CASES])
def test_every_operator_and_value_type(table: Fixture, how: str, filters: dict,
                                       expected: str) -> None:
    filters = resolve(filters, table)
    if how == "list":
        found = table.memory.get_all(user_id="alice", filters=filters, limit=1000)["results"]
    else:
        found = table.memory.search("food", user_id="alice", filters=filters,
                                    limit=1000)["results"]
    assert {i["id"] for i in found} == {table.ids[label] for label in expected}
    oracle = {i["id"] for i in table.items if matches(filters, i)}
    assert oracle == {table.ids[label] for label in expected}, "the oracle disagrees"


def test_a_filter_cannot_name_another_scope(table: Fixture) -> None:
    with pytest.raises(ScopeConflictError):
        table.memory.get_all(user_id="alice", filters={"user_id": "mallory"})
    mallory_only = table.memory.get_all(user_id="mallory")["results"]
    assert [i["memory"] for i in mallory_only] == ["Mallory loves pizza too"]


@pytest.mark.parametrize("text", ["a\\' OR 1=1) --", "line1\nline2", 'say "hi"', "tab\there"])
def test_list_membership_of_strings_json_must_escape(db_path: Path, real_embedder: Any,
                                                     text: str) -> None:
    memory = Memory(store=Store(str(db_path)), embedder=real_embedder)
    memory.add("as a list element", user_id="u", metadata={"k": [text, 5]})
    memory.add("as the whole string", user_id="u", metadata={"k": text})
    memory.add("something else", user_id="u", metadata={"k": ["other"]})
    found = memory.get_all(user_id="u", filters={"k": {"contains": text}})["results"]
    assert {i["memory"] for i in found} == {"as a list element", "as the whole string"}


def test_json_null_counts_as_absent(db_path: Path, real_embedder: Any) -> None:
    memory = Memory(store=Store(str(db_path)), embedder=real_embedder)
    for text, metadata in (("null", {"k": None}), ("one", {"k": 1}), ("none", {})):
        memory.add(text, user_id="u", metadata=metadata)

    def texts(filters: dict) -> set[str]:
        return {i["memory"] for i in memory.get_all(user_id="u", filters=filters)["results"]}

    assert texts({"k": "*"}) == {"one"}
    assert texts({"NOT": [{"k": "*"}]}) == {"null", "none"}
    assert texts({"k": {"ne": 1}}) == {"null", "none"}
    assert texts({"k": {"nin": [1, 2]}}) == {"null", "none"}


def test_delete_all_with_filters_only_narrows(db_path: Path, real_embedder: Any) -> None:
    memory = Memory(store=Store(str(db_path)), embedder=real_embedder)
    memory.add(["keep one", "drop one", "drop two"], user_id="u",
               metadata={"k": "v"})
    memory.add("other user's drop", user_id="w", metadata={"drop": True})
    for text in ("drop one", "drop two"):
        item = next(i for i in memory.get_all(user_id="u")["results"] if i["memory"] == text)
        memory.update(item["id"], metadata={"drop": True}, user_id="u")
    assert memory.delete_all(user_id="u", filters={"drop": True}) == {
        "deleted": 2, "relations_deleted": 0}
    assert [i["memory"] for i in memory.get_all(user_id="u")["results"]] == ["keep one"]
    assert len(memory.get_all(user_id="w")["results"]) == 1


# ---------------------------------------------------------------- property test

NASTY = ["food", "Food", "sport", "", "x' OR '1'='1", "o'brien", "50%_off", "a\\' OR 1=1) --",
         "%", "_", "\\", "''", "ünïcödé ÜNÏ", "Σίσυφος ΣΑΣ", "line1\nline2", "tab\there",
         "DROP TABLE memories; --", "*", "x" * 300, "日本語", "NULL", "true", "5"]
NUMBERS = [0, -1, 5, 5.5, -3.25, 1e16, 2**53, 7, 0.1]
# What rows store: few values, so that random filters often match some rows and not others.
STORED_TEXT = ["o'brien", "50%_off", "a\\' OR 1=1) --", "%", "ünïcödé ÜNÏ", "line1\nline2", "5", ""]
STORED_NUMBERS = [5, 5.5, -1, 2**53]
SCALARS = [*STORED_TEXT, *STORED_NUMBERS, True, False]
META_KEYS = ["k1", "k2", "k3", "k4"]
ACTORS = ["ann", "bob", "o'brien", "50%_off", None]


def _meta_value(rng: random.Random) -> Any:
    roll = rng.random()
    if roll < 0.1:
        return None
    if roll < 0.3:
        return [rng.choice(SCALARS) for _ in range(rng.randint(0, 3))]
    if roll < 0.32:
        return rng.choice(NUMBERS)
    if roll < 0.35:
        return {"nested": rng.choice(SCALARS)}
    return rng.choice(SCALARS)


@dataclass
class PropertyFixture:
    memory: Memory
    items: list[dict[str, Any]]
    times: list[str]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory, real_embedder: Any) -> PropertyFixture:
    rng = random.Random(20261121)
    memory = Memory(store=Store(str(tmp_path_factory.mktemp("prop") / "db")),
                    embedder=real_embedder)
    ahead = random.Random(7)  # expirations have their own stream: the rest stays as it was
    for user in ("alice", "alice", "alice", "bob"):
        for i in range(16):
            metadata = {k: _meta_value(rng) for k in META_KEYS if rng.random() < 0.7}
            actor = rng.choice(ACTORS)
            message = {"role": rng.choice(["user", "assistant"]),
                       "content": f"{user} memory {i} {rng.choice(NASTY)}",
                       **({"name": actor} if actor else {})}
            # Ahead of now, so that every memory stays visible to the filters.
            expiration = datetime.now(UTC) + timedelta(
                days=ahead.randint(1, 400), microseconds=ahead.randint(0, 10**6))
            memory.add([message], user_id=user, agent_id=rng.choice([None, "helper"]),
                       metadata=metadata,
                       expiration_date=expiration if ahead.random() < 0.4 else None)
    items = memory.get_all(user_id="alice", limit=1000)["results"]
    times = sorted({i["created_at"] for i in items} | {i["updated_at"] for i in items}
                   | {i["expiration_date"] for i in items if "expiration_date" in i})
    return PropertyFixture(memory, items, times)


def _weighted(stored: st.SearchStrategy, fresh: st.SearchStrategy) -> st.SearchStrategy:
    """Mostly values that are stored (so filters select something), sometimes fresh ones."""
    return st.one_of(stored, stored, stored, fresh)


def _slice(text: str) -> st.SearchStrategy[str]:
    bounds = st.tuples(st.integers(0, len(text)), st.integers(0, len(text)))
    return bounds.map(lambda ij: text[min(ij):max(ij)])


texts = _weighted(st.sampled_from(STORED_TEXT), st.sampled_from(NASTY) | st.text(max_size=12))
# Float twins of stored integers (5.0 for 5) must match them, in lists too.
numbers = _weighted(st.sampled_from([*STORED_NUMBERS, 5.0, -1.0, float(2**53)]),
                    st.sampled_from(NUMBERS)
                    | st.integers(-(2**53), 2**53) | st.floats(allow_nan=False,
                                                           allow_infinity=False))
scalars = st.one_of(texts, numbers, st.booleans())
substrings = st.one_of(st.sampled_from(STORED_TEXT).flatmap(_slice),
                       st.sampled_from(["%", "_", "%_", "\\", "'"]), texts)


def _op(name: str) -> st.SearchStrategy[str]:
    return st.sampled_from([name, f"${name}"])


def _condition(values: st.SearchStrategy, ops: list[str], orderable: st.SearchStrategy,
               substring: st.SearchStrategy) -> st.SearchStrategy:
    plain = values | st.just("*")
    compare = st.builds(lambda op, v: {op: v}, st.sampled_from(ops).flatmap(_op), values)
    order = st.builds(lambda op, v: {op: v},
                      st.sampled_from(["gt", "gte", "lt", "lte"]).flatmap(_op), orderable)
    member = st.builds(lambda op, v: {op: v}, st.sampled_from(["in", "nin"]).flatmap(_op),
                       st.lists(values, min_size=1, max_size=4))
    contains = st.builds(lambda v: {"contains": v}, substring) | st.builds(
        lambda v: {"icontains": v}, substrings.map(_recase))
    return st.one_of(plain, compare, order, member, contains, contains)


def _recase(text: str) -> str:
    return text.swapcase() if len(text) % 2 else text.upper()


meta_condition = _condition(scalars, ["eq", "ne"], texts | numbers, substrings | scalars)
column_values = _weighted(st.sampled_from(["ann", "bob", "o'brien", "50%_off", "helper",
                                           "user", "assistant", "alice"]), texts)
column_substrings = st.sampled_from(["o'brien", "50%_off", "assistant", "helper"]).flatmap(
    _slice) | column_values
string_condition = _condition(column_values, ["eq", "ne"], column_values, column_substrings)


def _time_text(stamp: str, offset_us: int, style: str) -> str:
    moment = datetime.fromisoformat(stamp) + timedelta(microseconds=offset_us)
    if style == "z":
        return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    if style == "plus2":
        return moment.astimezone(datetime.fromisoformat("2000-01-01T00:00+02:00").tzinfo
                                 ).isoformat()
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat()


def time_leaves(times: list[str]) -> st.SearchStrategy:
    stamp = st.builds(_time_text, st.sampled_from(times), st.sampled_from([-1, 0, 0, 1]),
                      st.sampled_from(["z", "plus2", "naive"]))
    op = st.sampled_from(["eq", "ne", "gt", "gte", "lt", "lte"]).flatmap(_op)
    single = st.builds(lambda o, v: {o: v}, op, stamp)
    member = st.builds(lambda o, v: {o: v}, st.sampled_from(["in", "nin"]),
                       st.lists(stamp, min_size=1, max_size=3))
    key = st.sampled_from(["created_at", "updated_at", "expiration_date"])
    return st.builds(lambda k, c: {k: c}, key, single | member | st.just("*"))


def filter_trees(times: list[str]) -> st.SearchStrategy:
    meta_key = st.sampled_from(META_KEYS) | st.sampled_from(META_KEYS).map(
        lambda k: f"metadata.{k}")
    meta_leaf = st.builds(lambda k, c: {k: c}, meta_key, meta_condition)
    # Scope keys only as operator expressions: a plain value at the top is a scope id.
    column = st.sampled_from(["user_id", "agent_id", "run_id", "actor_id", "role"])
    column_leaf = st.builds(lambda k, c: {k: c if isinstance(c, dict) else {"eq": c}},
                            column, string_condition)
    leaf = meta_leaf | column_leaf | time_leaves(times)
    logic = st.sampled_from(["AND", "OR", "NOT", "$and", "$or", "$not", "and", "Not"])

    def extend(children: st.SearchStrategy) -> st.SearchStrategy:
        grouped = st.builds(lambda op, xs: {op: xs}, logic,
                            st.lists(children, min_size=1, max_size=3))
        merged = st.lists(children, min_size=2, max_size=3).map(
            lambda parts: {k: v for part in parts for k, v in part.items()})
        return grouped | merged

    return st.recursive(leaf, extend, max_leaves=8)


def depth(node: Any) -> int:
    inner = [depth(item) + 1 for value in node.values() if isinstance(value, list)
             for item in value if isinstance(item, dict)]
    return max(inner, default=0)


@pytest.fixture(scope="module")
def trees(dataset: PropertyFixture) -> st.SearchStrategy:
    return filter_trees(dataset.times)


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data(), how=st.sampled_from(["list", "search"]))
def test_lancedb_selects_exactly_what_python_selects(
    dataset: PropertyFixture, trees: st.SearchStrategy, data: st.DataObject, how: str
) -> None:
    filters = data.draw(trees)
    if depth(filters) > MAX_DEPTH:
        with pytest.raises(FilterError):
            dataset.memory.get_all(user_id="alice", filters=filters)
        return
    if how == "list":
        found = dataset.memory.get_all(user_id="alice", filters=filters, limit=1000)["results"]
    else:
        found = dataset.memory.search("memory", user_id="alice", filters=filters,
                                      limit=1000)["results"]
    assert all(item["user_id"] == "alice" for item in found)
    expected = {item["id"] for item in dataset.items if matches(filters, item)}
    assert {item["id"] for item in found} == expected
