"""``lancemem relations ...`` for humans, run as a real subprocess."""

from __future__ import annotations

import json
from pathlib import Path

from tests.test_cli import run


def test_relations_round_trip(tmp_path: Path) -> None:
    added = run(tmp_path, "relations", "add", "Alice", "works at", "Acme", "--user-id",
                "alice", "--source-type", "person", "--json")
    assert added.returncode == 0, added.stderr
    works_at = json.loads(added.stdout)["results"][0]
    assert (works_at["event"], works_at["relationship"], works_at["source_type"]) == (
        "ADD", "works_at", "person")
    based = run(tmp_path, "relations", "add", "acme", "headquartered in", "Berlin",
                "--user-id", "alice")
    assert based.returncode == 0 and "Acme -[headquartered_in]-> Berlin" in based.stdout
    again = run(tmp_path, "relations", "add", "ALICE", "works at", "acme", "--user-id", "alice")
    assert again.stdout.startswith("NONE") and works_at["id"] in again.stdout

    found = run(tmp_path, "relations", "search", "Where is Alice's employer based?",
                "--user-id", "alice")
    assert found.returncode == 0
    assert found.stdout.index("works_at") < found.stdout.index("headquartered_in")
    assert "(no relations)" in run(tmp_path, "relations", "search", "Alice", "--user-id",
                                   "bob").stdout
    moved = run(tmp_path, "relations", "add", "Alice", "works at", "Globex", "--user-id",
                "alice", "--replace")
    assert "INVALIDATE" in moved.stdout and "(replaced" in moved.stdout
    listed = json.loads(run(tmp_path, "relations", "list", "--user-id", "alice",
                            "--entity", "alice", "--json").stdout)
    assert [r["target"] for r in listed["results"]] == ["Globex"]
    everything = run(tmp_path, "relations", "list", "--user-id", "alice", "--show-invalid")
    assert "Acme -[headquartered_in]-> Berlin" in everything.stdout and "(replaced" in (
        everything.stdout)

    deleted = run(tmp_path, "relations", "delete", "--triple", "acme", "Headquartered In",
                  "berlin", "--triple", "x", "y", "z", "--user-id", "alice")
    assert deleted.returncode == 0
    assert deleted.stdout.splitlines() == ["deleted 1", "not found: x -[y]-> z"]
    by_id = run(tmp_path, "relations", "delete", works_at["id"], "--user-id", "alice",
                "--json")
    assert json.loads(by_id.stdout) == {"deleted": 1, "not_found": []}
    history = run(tmp_path, "relations", "history", works_at["id"], "--user-id", "alice")
    assert [line.split()[1] for line in history.stdout.splitlines()] == [
        "ADD", "INVALIDATE", "DELETE"]


def test_relation_errors_are_one_line_with_a_code(tmp_path: Path) -> None:
    no_scope = run(tmp_path, "relations", "list")
    assert no_scope.returncode == 1
    assert no_scope.stderr.strip().startswith("lancemem: VALIDATION_001: ")
    nothing = run(tmp_path, "relations", "delete", "--user-id", "alice")
    assert nothing.returncode == 1 and "VALIDATION_005" in nothing.stderr
    bad = run(tmp_path, "relations", "add", "Alice", "!!!", "Acme", "--user-id", "alice")
    assert bad.returncode == 1 and "relationship" in bad.stderr
    assert run(tmp_path, "relations", "add", "Alice", "works at", "Acme",
               "--user-id", "alice").returncode == 0  # a store, so the id is what is missing
    missing = run(tmp_path, "relations", "history", "nope", "--user-id", "alice")
    assert missing.returncode == 1 and "NOT_FOUND_001" in missing.stderr
