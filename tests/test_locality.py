"""Scope locality (issue 16): compaction stores a scope's memories side by side,
and every search answers exactly as before, during the rewrite and after it."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from lancemem.core.scoping import Scope, scope_where
from lancemem.memory.facade import Memory
from lancemem.storage import locality, maintenance
from lancemem.storage.schema import MEMORIES, SEARCH_TEXT
from lancemem.storage.store import Store
from tests.embedders import HashEmbedder
from tests.invariants import check_store, settled

FRUITS = ["apples", "pears", "plums", "figs", "limes", "dates", "kiwis"]
# Every combination of ids a call can give; rows without a user sort last.
SCOPES: list[dict[str, str]] = [
    {"user_id": "ann"}, {"user_id": "bob"}, {"user_id": "ann", "agent_id": "helper"},
    {"user_id": "bob", "agent_id": "helper", "run_id": "r1"}, {"agent_id": "helper"},
    {"agent_id": "planner", "run_id": "r2"}, {"user_id": "cy", "run_id": "r1"},
    {"user_id": "dee"},
]
QUERIES = ["apples and pears", "figs number 7", "limes", "kiwis dates plums"]


def records(count: int, start: int = 0) -> list[dict[str, Any]]:
    """Memories written round-robin over SCOPES, so every scope's rows interleave.
    Within a scope no two share their words and length, so rankings have no ties."""
    return [{"text": f"fact {n} about {FRUITS[n % 7]} and {FRUITS[n * 3 % 7]} number {n % 11}"
             + "".join(f" w{n}x{k}" for k in range(n % 17)),
             "metadata": {"kind": "even" if n % 2 == 0 else "odd", "n": n},
             **SCOPES[n % len(SCOPES)]} for n in range(start, start + count)]


def in_insertion_order(memory: Memory) -> None:
    """Compact and index as optimize did before issue 16 (Lance's own compaction)."""
    memory.store.open_dataset(MEMORIES).optimize.compact_files(target_rows_per_fragment=1 << 16)
    memory.store.open_dataset(MEMORIES).optimize.optimize_indices()
    memory.store.changed(MEMORIES)


def filled(path: Path, count: int = 640, batch: int = 64) -> Memory:
    memory = Memory(store=Store(str(path), auto_compact=False), embedder=HashEmbedder())
    memory.add_many(records(count), batch_size=batch)
    return memory


def scope_blocks(store: Store) -> tuple[int, int]:
    """(runs, scopes) in storage order, counted here independently of locality.py."""
    table = store.open_dataset(MEMORIES).to_table(
        columns=list(locality.SCOPE_ORDER), with_row_address=True, scan_in_order=True)
    addresses = table.column("_rowaddr").to_pylist()
    assert addresses == sorted(addresses), "a scan in order returns rows by address"
    keys = list(zip(*(table.column(c).to_pylist() for c in locality.SCOPE_ORDER), strict=True))
    runs = sum(1 for i, key in enumerate(keys) if i == 0 or keys[i - 1] != key)
    return runs, len(set(keys))


def ranked(results: list[dict[str, Any]]) -> tuple[list[float], list[set[str]]]:
    """A ranking up to ties: its scores, and its ids grouped by equal score (the
    last group dropped: where the limit cut a tie, either side may be kept)."""
    groups: dict[float, set[str]] = {}
    for item in results:
        groups.setdefault(round(item["score"], 5), set()).add(item["id"])
    return [round(item["score"], 5) for item in results], list(groups.values())[:-1]


def bm25(memory: Memory, query: str, scope: dict[str, str]) -> dict[str, float]:
    """Every match of ``query`` in the scope with its BM25 score (Lance's index)."""
    table = memory.store.open_dataset(MEMORIES).to_table(
        columns=["id", "_score"], filter=scope_where(Scope(**scope)), prefilter=True,
        full_text_query={"query": query, "columns": [SEARCH_TEXT]}, limit=1_000,
        disable_scoring_autoprojection=True)
    return dict(zip(table.column("id").to_pylist(),
                    [round(s, 4) for s in table.column("_score").to_pylist()], strict=True))


def answers(memory: Memory, *, with_scores: bool = True) -> dict[str, Any]:
    """For every scope: its listing, a filtered listing, what each search mode
    finds (every match), vector rankings, and (``with_scores``) BM25 scores."""
    out: dict[str, Any] = {}
    for number, scope in enumerate(SCOPES):
        listed = memory.get_all(**scope, limit=1_000)["results"]
        out[f"list {number}"] = sorted((m["id"], m["memory"], str(m["metadata"]))
                                       for m in listed)
        out[f"filtered {number}"] = sorted(m["id"] for m in memory.get_all(
            **scope, filters={"kind": "even"}, limit=1_000)["results"])
        for query in QUERIES:
            for mode in ("vector", "keyword", "hybrid"):
                found = memory.search(query, **scope, mode=mode, limit=1_000)["results"]
                out[f"{mode} {number} {query}"] = sorted(m["id"] for m in found)
            found = memory.search(query, **scope, mode="keyword", limit=1_000,
                                  filters={"kind": "odd"})["results"]
            out[f"keyword odd {number} {query}"] = sorted(m["id"] for m in found)
            out[f"top vector {number} {query}"] = ranked(
                memory.search(query, **scope, mode="vector", limit=10)["results"])
            if with_scores:
                out[f"bm25 {number} {query}"] = bm25(memory, query, scope)
    return out


def assert_indexed(store: Store) -> None:
    """Every index covers every row, and a scope filter goes through its index."""
    table, dataset = store.table(MEMORIES), store.open_dataset(MEMORIES)
    assert len(table.list_indices()) == 6
    for index in table.list_indices():
        stats = table.index_stats(index.name)
        assert stats.num_unindexed_rows == 0, index.name
        assert stats.num_indexed_rows == dataset.count_rows(), index.name
    plan = dataset.scanner(columns=["id"], filter="user_id = 'ann'").explain_plan()
    assert "ScalarIndexQuery" in plan, plan


def test_optimize_stores_each_scope_in_one_run_and_answers_as_before(tmp_path: Path) -> None:
    memory = filled(tmp_path / "db")
    runs, scopes = scope_blocks(memory.store)
    assert scopes == len(SCOPES) and runs > 10 * scopes  # interleaved as written
    in_insertion_order(memory)
    assert scope_blocks(memory.store) == (runs, scopes)
    before = answers(memory)
    assert sum(len(v) for v in before.values()) > 10_000  # the comparison has substance
    memory.store.optimize()
    assert scope_blocks(memory.store) == (scopes, scopes)
    assert answers(memory) == before
    assert_indexed(memory.store)
    check_store(settled(memory))
    fragments = [f.fragment_id for f in memory.store.open_dataset(MEMORIES).get_fragments()]
    memory.store.optimize()  # already in order: nothing is rewritten
    assert [f.fragment_id for f in memory.store.open_dataset(MEMORIES).get_fragments()] \
        == fragments


def test_results_are_right_between_the_rewrite_and_its_indexing(tmp_path: Path) -> None:
    """Right after the sorted fragments are committed no index covers them yet:
    queries scan them and mask the index's entries for the fragments gone."""
    memory = filled(tmp_path / "db")
    in_insertion_order(memory)
    before, unscored = answers(memory), answers(memory, with_scores=False)
    rewritten = locality._rewrite(memory.store, MEMORIES, locality.all_fragments, 1 << 16)
    memory.store.changed(MEMORIES)
    assert rewritten == 640
    table = memory.store.table(MEMORIES)
    assert all(table.index_stats(i.name).num_unindexed_rows == 640
               for i in table.list_indices())
    # BM25 over unindexed rows uses a flat scan's statistics (as for any new
    # rows), so scores are compared once the rows are indexed again.
    assert answers(memory, with_scores=False) == unscored
    memory.store.optimize()  # (a process that died here: the next compaction indexes them)
    assert answers(memory) == before
    assert_indexed(memory.store)


@pytest.mark.parametrize("racing", ["update", "delete", "add"])
def test_a_write_racing_the_rewrite_is_not_lost(tmp_path: Path, racing: str,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Another connection writes after the rewrite read its rows and before it
    commits: an update or delete conflicts and the rewrite is redone on the
    newest version; an add is rebased onto it. Either way the write stays."""
    memory = filled(tmp_path / "db")
    other = Memory(store=Store(str(tmp_path / "db"), auto_compact=False),
                   embedder=HashEmbedder())
    victim = memory.get_all(user_id="ann", limit=1)["results"][0]["id"]
    attempts: list[int] = []
    addresses = locality._sorted_addresses

    def read_then_race(dataset: Any, fragments: Any) -> Any:
        attempts.append(dataset.version)
        found = addresses(dataset, fragments)
        if len(attempts) == 1:
            if racing == "update":
                other.update(victim, text="changed while sorting", user_id="ann")
            elif racing == "delete":
                other.delete(victim, user_id="ann")
            else:
                other.add("added while sorting", user_id="ann")
        return found

    monkeypatch.setattr(locality, "_sorted_addresses", read_then_race)
    memory.store.optimize()
    texts = {m["id"]: m["memory"] for m in memory.get_all(user_id="ann", limit=1_000)["results"]}
    if racing == "update":
        assert texts[victim] == "changed while sorting"
    elif racing == "delete":
        assert victim not in texts
    else:
        assert "added while sorting" in texts.values()
    assert len(attempts) == (1 if racing == "add" else 2), attempts  # conflicts redone
    runs, scopes = scope_blocks(memory.store)
    assert runs == scopes or racing == "add"  # the add came after the sort: its own run
    assert_indexed(memory.store)
    check_store(settled(memory))


def test_searches_during_sorted_compaction_see_exactly_their_scope(tmp_path: Path) -> None:
    """A reader thread lists and searches fixed scopes while another user's adds
    scatter the table again and optimize re-sorts it, round after round."""
    memory = filled(tmp_path / "db", count=480)
    expected = {n: {m["id"] for m in memory.get_all(**scope, limit=1_000)["results"]}
                for n, scope in enumerate(SCOPES)}
    done, wrong, reads = threading.Event(), [], [0]

    def read() -> None:
        while not done.is_set():
            for n, scope in enumerate(SCOPES):
                listed = {m["id"] for m in memory.get_all(**scope, limit=1_000)["results"]}
                found = {m["id"] for m in memory.search("fact", **scope, mode="keyword",
                                                        limit=1_000)["results"]}
                if listed != expected[n] or found != expected[n]:
                    wrong.append((n, len(listed), len(found)))
                reads[0] += 1

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for round_ in range(4):
            memory.add_many([{"text": f"noise {round_} {i}", "user_id": f"noise-{i % 5}"}
                             for i in range(120)], batch_size=8)
            assert scope_blocks(memory.store)[0] > len(SCOPES) + 5
            memory.store.optimize()
            assert scope_blocks(memory.store)[0] == len(SCOPES) + 5
    finally:
        done.set()
        reader.join()
    assert reads[0] > 4 * len(SCOPES)
    assert wrong == []


def test_the_large_tier_merges_in_scope_order(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Background compaction of single adds: fragments merged by the large tier
    hold their rows in scope order; Lance's small tier keeps insertion order."""
    for name, value in (("SMALL_FRAGMENT", 16), ("LARGE_FRAGMENT", 128),
                        ("SLACK_FRAGMENTS", 4), ("SLACK_SMALL", 3)):
        monkeypatch.setattr(maintenance, name, value)
    monkeypatch.setattr(maintenance, "CHECK_EVERY_COMMITS", 4)
    monkeypatch.setattr(locality, "FULL_SORT_RUNS", 1_000.0)  # the tier alone
    memory = Memory(store=Store(str(tmp_path / "db")), embedder=HashEmbedder())
    for item in records(200):
        memory.add(item["text"], **{k: v for k, v in item.items() if k.endswith("_id")})
    memory.store.wait_for_compaction()
    dataset = memory.store.open_dataset(MEMORIES)
    # Lance's small tier merges fragments under 16 rows until one reaches 16:
    # under 32 rows each. Larger ones come from the large tier.
    merged = [f for f in dataset.get_fragments() if f.physical_rows >= 32]
    assert merged, [f.physical_rows for f in dataset.get_fragments()]
    for fragment in merged:
        table = dataset.scanner(columns=list(locality.SCOPE_ORDER), fragments=[fragment],
                                scan_in_order=True).to_table()
        keys = [tuple("~" if v is None else v for v in key) for key in
                zip(*(table.column(c).to_pylist() for c in locality.SCOPE_ORDER), strict=True)]
        assert keys == sorted(keys), fragment.fragment_id
    for index in dataset.list_indices():  # the sort indexes what it wrote at once
        assert {f.fragment_id for f in merged} <= set(index["fragment_ids"]), index["name"]
    assert memory.store.count(MEMORIES) == 200
    check_store(settled(memory))
