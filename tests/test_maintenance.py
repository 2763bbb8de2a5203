"""Compaction keeps a store's fragments and versions bounded; import and optimize commands."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from lancemem.memory.facade import Memory
from lancemem.storage import maintenance as store_module
from lancemem.storage.store import HISTORY, MEMORIES, SLACK_FRAGMENTS, Store
from tests.embedders import HashEmbedder
from tests.invariants import check_store, settled


def fragments(store: Store, name: str) -> int:
    return store.table(name).stats()["fragment_stats"]["num_fragments"]


def test_background_compaction_bounds_fragments(tmp_path: Path) -> None:
    memory = Memory(store=Store(str(tmp_path / "db")), embedder=HashEmbedder())
    for i in range(300):
        memory.add(f"single add number {i}", user_id=f"u{i % 7}")
    memory.store.wait_for_compaction()
    for name in (MEMORIES, HISTORY):
        assert fragments(memory.store, name) <= SLACK_FRAGMENTS + 8 + 1, name
    uncompacted = Memory(store=Store(str(tmp_path / "raw"), auto_compact=False),
                         embedder=HashEmbedder())
    for i in range(60):
        uncompacted.add(f"single add number {i}", user_id="u")
    assert fragments(uncompacted.store, MEMORIES) == 60
    check_store(settled(memory))


def test_new_rows_are_indexed_in_batches(tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Compaction merges fragments every few commits but indexes new rows only
    once INDEX_AFTER_ROWS of them wait; until then queries still find them."""
    monkeypatch.setattr(store_module, "INDEX_AFTER_ROWS", 100)
    memory = Memory(store=Store(str(tmp_path / "db")), embedder=HashEmbedder())
    memory.ensure_open()
    table = memory.store.table(MEMORIES)
    for i in range(80):
        memory.add(f"single add number {i}", user_id="u")
    memory.store.wait_for_compaction()
    assert fragments(memory.store, MEMORIES) < 80  # merged...
    assert memory.store._unindexed_rows(table) == 80  # ...but not indexed yet
    found = memory.search("number 42", user_id="u", mode="keyword", limit=1)["results"]
    assert found[0]["memory"] == "single add number 42"
    for i in range(80, 280):
        memory.add(f"single add number {i}", user_id="u")
    memory.store.wait_for_compaction()
    assert memory.store._unindexed_rows(table) < 200  # indexed along the way
    check_store(settled(memory))


def test_optimize_merges_fragments_and_drops_old_versions(tmp_path: Path) -> None:
    store = Store(str(tmp_path / "db"), auto_compact=False)
    memory = Memory(store=store, embedder=HashEmbedder())
    ids = [memory.add(f"fact {i}", user_id="u")["results"][0]["id"] for i in range(40)]
    memory.delete(ids[0], user_id="u")
    before = store.disk_bytes()
    store.optimize(keep_versions_for=timedelta(0))
    assert fragments(store, MEMORIES) == 1
    assert len(store.table(MEMORIES).list_versions()) <= 2
    assert store.disk_bytes() < before
    assert len(memory.get_all(user_id="u")["results"]) == 39
    assert memory.search("fact 7", user_id="u", limit=1)["results"][0]["memory"] == "fact 7"
    check_store(store)


def run(tmp_path: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "LANCEMEM_DB": str(tmp_path / "db")}
    return subprocess.run([sys.executable, "-m", "lancemem", *args], env=env, input=stdin,
                          capture_output=True, text=True, timeout=300)


def test_import_is_all_or_nothing_and_idempotent(tmp_path: Path) -> None:
    good = tmp_path / "good.jsonl"
    good.write_text("\n".join(json.dumps(r) for r in [
        {"text": "imported one"},
        {"messages": [{"role": "user", "content": "imported two", "name": "ann"}],
         "metadata": {"source": "import"}},
        {"text": "for bob", "user_id": "bob"},
    ]) + "\n\n")
    first = run(tmp_path, "import", str(good), "--user-id", "alice", "--json")
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout) == {"added": 3, "skipped": 0}
    assert "import [" in first.stderr  # the progress bar, on stderr
    again = run(tmp_path, "import", str(good), "--user-id", "alice", "--json")
    assert json.loads(again.stdout) == {"added": 0, "skipped": 3}
    listed = json.loads(run(tmp_path, "list", "--user-id", "alice", "--json").stdout)
    assert {(i["memory"], i.get("actor_id")) for i in listed["results"]} == {
        ("imported one", None), ("imported two", "ann")}

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "would be fine"}\n{"txt": "typo"}\n')
    failed = run(tmp_path, "import", str(bad), "--user-id", "carol")
    assert failed.returncode == 1
    assert "record 2: unknown keys ['txt']" in failed.stderr
    broken = run(tmp_path, "import", "-", "--user-id", "carol", stdin='{"text": "x"}\nnope\n')
    assert broken.returncode == 1 and "line 2 is not JSON" in broken.stderr
    assert json.loads(run(tmp_path, "list", "--user-id", "carol", "--json").stdout) == {
        "results": [], "total": 0, "next_cursor": None}


def test_optimize_command(tmp_path: Path) -> None:
    for i in range(5):
        assert run(tmp_path, "add", f"fact {i}", "--user-id", "u").returncode == 0
    result = run(tmp_path, "optimize", "--json")
    assert result.returncode == 0, result.stderr
    sizes = json.loads(result.stdout)
    assert sizes["bytes_after"] > 0 and set(sizes) == {"bytes_before", "bytes_after"}


def test_compaction_tiers_rewrite_only_what_is_small() -> None:
    from lancemem.storage.store import LARGE_FRAGMENT, SMALL_FRAGMENT, compaction_targets

    big, small = LARGE_FRAGMENT, SMALL_FRAGMENT
    assert compaction_targets([big, big, small, 5]) == []
    assert compaction_targets([big] + [1] * 33) == [small]
    assert compaction_targets([big] * 3 + [small] * 17) == [big]
    assert compaction_targets([small] * 17 + [1] * 40) == [small, big]
    # Below LARGE_FRAGMENT rows in all, the large pass waits for 17 full small fragments.
    assert compaction_targets([small] * 16 + [100]) == []
