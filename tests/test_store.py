"""The store on real LanceDB: tables, model record, indexes, error translation."""

from __future__ import annotations

from pathlib import Path

import pytest

from lancemem.core.errors import ConflictError, StorageError
from lancemem.storage.store import HISTORY, INDEXED_COLUMNS, MEMORIES, Store, with_retries


def test_open_creates_tables_indexes_and_model_record(tmp_path: Path) -> None:
    store = Store(str(tmp_path / "db"))
    assert not store.exists()
    store.open(model_name="m", dim=8)
    assert store.exists()
    assert store.meta() == {"embedding_model": "m", "embedding_dim": "8", "schema_version": "4"}
    indexed = {tuple(i.columns) for i in store.table(MEMORIES).list_indices()}
    assert {(c,) for c in INDEXED_COLUMNS} <= indexed
    assert ("memory_id",) in {tuple(i.columns) for i in store.table(HISTORY).list_indices()}
    again = Store(str(tmp_path / "db"))
    again.open(model_name="m", dim=8)
    assert again.meta()["embedding_model"] == "m"


def test_relative_paths_become_absolute(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    store = Store("relative-db")
    assert store.uri == str(tmp_path / "relative-db")
    store.open(model_name="m", dim=4)
    assert (tmp_path / "relative-db").is_dir()


def test_lancedb_errors_become_storage_errors() -> None:
    def bad() -> None:
        raise ValueError("Invalid input, column nope not found")

    with pytest.raises(StorageError) as info:
        with_retries(bad, what="reading")
    # LanceDB's text can quote the where clause: it is kept for the log, not told.
    assert info.value.code == "STORAGE_001" and "nope" not in str(info.value)
    assert "not found" in str(info.value) and "nope" in info.value.detail


def test_commit_conflicts_are_retried_then_reported(monkeypatch) -> None:
    monkeypatch.setattr("lancemem.storage.retries.time.sleep", lambda _: None)
    attempts = []

    def flaky() -> str:
        attempts.append(1)
        if len(attempts) < 3:
            raise RuntimeError("Retryable commit conflict for version 7. Please retry.")
        return "ok"

    assert with_retries(flaky, what="writing") == "ok" and len(attempts) == 3

    def always() -> None:
        raise RuntimeError("Retryable commit conflict. Please retry.")

    with pytest.raises(ConflictError) as info:
        with_retries(always, what="writing")
    assert info.value.code == "STORAGE_002"


def test_a_table_left_half_created_is_created_again(tmp_path: Path) -> None:
    """A process killed while creating a new store leaves a table directory
    with no version in it; the next open must not fail on it forever."""
    db = tmp_path / "db"
    (db / "lancemem_meta.lance" / "_versions").mkdir(parents=True)
    store = Store(str(db))
    store.open(model_name="test/model", dim=8)
    assert store.meta()["embedding_model"] == "test/model"
    assert set(store._table_names()) == {"memories", "history", "lancemem_meta", "entities",
                                         "relations", "relation_history"}
