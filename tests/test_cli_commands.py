"""The rest of the CLI a new user looked for (update, delete-all, add --messages),
argument errors as one coded line, read-only commands on a missing store, and
serve/reindex failing cleanly: real subprocesses, real LanceDB, the real model."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lancemem.core.errors import EmbeddingError
from lancemem.memory.facade import Memory
from lancemem.memory.reindex import reindex
from lancemem.storage.store import Store
from tests.embedders import HashEmbedder


def run(db: Path, *args: str, stdin: str | None = None,
        env_extra: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LANCEMEM_DB": str(db),
           "LANCEMEM_MODEL_CACHE_DIR": str(db.parent / "models"), **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "lancemem", *args], env=env, input=stdin,
                          capture_output=True, text=True, timeout=300)


def one_coded_line(result: subprocess.CompletedProcess[str], code: str) -> str:
    """A clean refusal: exit 1, one stderr line starting with the code, no traceback."""
    assert result.returncode == 1, (result.returncode, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.startswith("lancemem:")]
    assert len(lines) == 1 and lines[0].startswith(f"lancemem: {code}: "), result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


@pytest.mark.parametrize(("args", "named"), [
    (["search", "x", "--user-id", "a", "--limit", "abc"], "--limit"),
    (["list", "--user-id", "a", "--limit", "1.5"], "--limit"),
    (["add", "x", "--user-id", "a", "--metadata", "{bad"], "--metadata"),
    (["list", "--user-id", "a", "--filters", "[1,"], "--filters"),
    (["search", "x", "--user-id", "a", "--mode", "bm25"], "--mode"),
    (["search", "x", "--user-id", "a", "--threshold", "high"], "--threshold"),
    (["token", "create", "--user-id", "a", "--expires-in", "soon"], "--expires-in"),
])
def test_a_bad_value_for_a_flag_is_one_coded_line(tmp_path: Path, args: list[str],
                                                  named: str) -> None:
    db = tmp_path / "db"
    line = one_coded_line(run(db, *args), "VALIDATION_005")
    assert named in line
    assert not db.exists()  # refused before anything was opened


def test_an_unknown_flag_or_command_gets_the_usage_and_exit_2(tmp_path: Path) -> None:
    for args in (["list", "--user-id", "a", "--bogus"], ["lsit"]):
        result = run(tmp_path / "db", *args)
        assert result.returncode == 2 and "usage: lancemem" in result.stderr, result.stderr


def test_a_bad_log_level_is_a_validation_error_not_a_traceback(tmp_path: Path) -> None:
    result = run(tmp_path / "db", "list", "--user-id", "a",
                 env_extra={"LANCEMEM_LOG_LEVEL": "LOUD"})
    assert "LOUD" in one_coded_line(result, "VALIDATION_005")
    quiet = run(tmp_path / "db", "add", "x", "--user-id", "a",
                env_extra={"LANCEMEM_LOG_LEVEL": "warning"})
    assert quiet.returncode == 0, quiet.stderr


@pytest.mark.parametrize("args", [
    ["list"], ["search", "coffee"], ["get", "some-id"], ["history", "some-id"], ["export"],
    ["ui", "--port", "0"],
    ["delete", "some-id"], ["delete-all", "--yes"], ["relations", "list"],
    ["relations", "search", "coffee"], ["relations", "delete", "some-id"],
])
def test_commands_that_read_a_missing_store_say_so_and_create_nothing(
        tmp_path: Path, args: list[str]) -> None:
    db = tmp_path / "typo"
    line = one_coded_line(run(db, *args, "--user-id", "alice"), "VALIDATION_005")
    assert f"no store at {db}" in line
    assert not db.exists()


def test_add_messages_update_and_delete_all(tmp_path: Path) -> None:
    db = tmp_path / "db"
    conversation = [{"role": "system", "content": "You are helpful."},
                    {"role": "user", "content": "I moved to Lisbon", "name": "alice"},
                    {"role": "assistant", "content": "Lisbon is lovely"}]
    added = run(db, "add", "--messages", json.dumps(conversation), "--user-id", "alice",
                "--json")
    assert added.returncode == 0, added.stderr
    results = json.loads(added.stdout)["results"]
    assert [(r["memory"], r["event"]) for r in results] == [
        ("I moved to Lisbon", "ADD"), ("Lisbon is lovely", "ADD")]
    assert results[0]["actor_id"] == "alice" and results[1]["role"] == "assistant"
    piped = run(db, "add", "--messages", "-", "--user-id", "alice", "--json",
                stdin=json.dumps([{"role": "user", "content": "I drink oat milk"}]))
    assert json.loads(piped.stdout)["results"][0]["event"] == "ADD", piped.stderr
    one_coded_line(run(db, "add", "text", "--messages", "[]", "--user-id", "alice"),
                   "VALIDATION_005")
    one_coded_line(run(db, "add", "--user-id", "alice"), "VALIDATION_005")
    assert "JSON" in one_coded_line(run(db, "add", "--messages", "[{", "--user-id", "alice"),
                                    "VALIDATION_005")
    run(db, "add", "Bob likes tea", "--user-id", "bob")

    memory_id = results[0]["id"]
    updated = run(db, "update", memory_id, "--user-id", "alice", "--text",
                  "I moved to Porto", "--metadata", '{"topic": "home"}',
                  "--expiration-date", "2030-01-01", "--json")
    assert updated.returncode == 0, updated.stderr
    item = json.loads(updated.stdout)
    assert item["memory"] == "I moved to Porto" and item["metadata"] == {"topic": "home"}
    assert item["expiration_date"].startswith("2030-01-02")
    cleared = json.loads(run(db, "update", memory_id, "--user-id", "alice",
                             "--no-expiration", "--json").stdout)
    assert "expiration_date" not in cleared or cleared["expiration_date"] is None
    assert "nothing to change" in one_coded_line(
        run(db, "update", memory_id, "--user-id", "alice"), "VALIDATION_005")
    one_coded_line(run(db, "update", memory_id, "--user-id", "bob", "--text", "x"),
                   "NOT_FOUND_001")
    found = json.loads(run(db, "search", "I moved to Porto", "--user-id", "alice", "--mode",
                           "vector", "--limit", "1", "--json").stdout)["results"]
    assert found[0]["memory"] == "I moved to Porto"
    history = json.loads(run(db, "history", memory_id, "--user-id", "alice",
                             "--json").stdout)["results"]
    assert [h["event"] for h in history] == ["ADD", "UPDATE", "UPDATE"]
    assert (history[1]["old_metadata"], history[1]["new_metadata"]) == ({}, {"topic": "home"})
    shown = run(db, "history", memory_id, "--user-id", "alice").stdout
    assert 'metadata {} -> {"topic": "home"}' in shown

    asked = one_coded_line(run(db, "delete-all", "--user-id", "alice"), "VALIDATION_005")
    assert "would delete 3 memories" in asked and "--yes" in asked
    assert json.loads(run(db, "list", "--user-id", "alice", "--json").stdout)["total"] == 3
    gone = run(db, "delete-all", "--user-id", "alice", "--yes", "--json")
    assert json.loads(gone.stdout)["deleted"] == 3, gone.stderr
    assert json.loads(run(db, "list", "--user-id", "alice", "--json").stdout)["total"] == 0
    bob = json.loads(run(db, "list", "--user-id", "bob", "--json").stdout)["results"]
    assert [m["memory"] for m in bob] == ["Bob likes tea"]
    one_coded_line(run(db, "delete-all", "--yes"), "VALIDATION_001")


def _serve(db: Path, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "LANCEMEM_DB": str(db),
           "LANCEMEM_MODEL_CACHE_DIR": str(db.parent / "models")}
    return subprocess.Popen([sys.executable, "-m", "lancemem", "serve", *args], env=env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _ends(process: subprocess.Popen[str], timeout: float = 60) -> tuple[int, str]:
    """The exit status and stderr of a server that must stop by itself (its stdin
    stays open, as a client's would)."""
    try:
        process.wait(timeout=timeout)
        err = process.stderr.read()
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        raise AssertionError("the server kept running on a store it cannot open") from None
    return process.returncode, err


def test_serve_on_stdio_stops_at_start_on_a_store_it_cannot_open(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("not a store")
    status, err = _ends(_serve(not_a_dir))
    assert status == 1 and "lancemem: STORAGE_001" in err, err

    other_model = tmp_path / "other"
    Memory(store=Store(str(other_model)), embedder=HashEmbedder()).add("x", user_id="a")
    status, err = _ends(_serve(other_model))
    assert status == 1 and "lancemem: EMBEDDING_001" in err and "reindex" in err, err


def test_serve_on_http_stops_before_listening_on_a_store_it_cannot_open(
        tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("not a store")
    status, err = _ends(_serve(not_a_dir, "--transport", "streamable-http", "--port",
                               str(port)))
    assert status == 1 and "lancemem: STORAGE_001" in err and "serving" not in err, err


def test_serve_still_starts_on_a_new_store(tmp_path: Path) -> None:
    """The check must not refuse a store that does not exist yet: serve creates it."""
    db = tmp_path / "new"
    process = _serve(db)
    try:
        deadline = time.monotonic() + 60
        while not (db / "memories.lance").exists() and time.monotonic() < deadline:
            assert process.poll() is None, process.stderr.read()
            time.sleep(0.2)
        assert (db / "memories.lance").exists()
        time.sleep(1)
        assert process.poll() is None, process.stderr.read()
    finally:
        process.stdin.close()
        process.wait(timeout=30)


class _Unloadable(HashEmbedder):
    """Another model whose files are not there (offline, a typo)."""

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        raise EmbeddingError("could not load embedding model 'other/model' (test).")


def test_a_reindex_whose_model_cannot_load_leaves_the_store_as_it_was(
        tmp_path: Path) -> None:
    db = tmp_path / "db"
    with Memory(store=Store(str(db)), embedder=HashEmbedder()) as memory:
        memory.add("I love pizza with olives", user_id="alice")
    with pytest.raises(EmbeddingError):
        reindex(Store(str(db)), _Unloadable(model_name="other/model", dim=16))
    with Memory(store=Store(str(db)), embedder=HashEmbedder()) as memory:
        found = memory.search("pizza", user_id="alice")["results"]
        assert [f["memory"] for f in found] == ["I love pizza with olives"]
