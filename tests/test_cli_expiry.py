"""Expiring memories from the command line: add, import, the readers'
--show-expired and optimize --purge-expired, run as real subprocesses."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.test_expiry import days, midnight_after
from tests.test_maintenance import run


def as_json(tmp_path: Path, *args: str, stdin: str | None = None) -> Any:
    result = run(tmp_path, *args, "--json", stdin=stdin)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def memories(tmp_path: Path, user: str, *flags: str) -> set[str]:
    listed = as_json(tmp_path, "list", "--user-id", user, *flags)
    return {item["memory"] for item in listed["results"]}


def test_cli_add_import_show_and_purge(tmp_path: Path) -> None:
    lisbon = as_json(tmp_path, "add", "visiting Lisbon on a trip", "--user-id", "alice",
                     "--expiration-date", days(5))["results"][0]
    assert lisbon["expiration_date"] == midnight_after(days(5))
    rome = as_json(tmp_path, "add", "the old trip to Rome", "--user-id", "alice",
                   "--expiration-date", days(-3))["results"][0]
    lines = [{"text": "bob's expired note", "expiration_date": days(-1)},
             {"text": "bob's lasting note"},
             {"text": "carol's dated note", "user_id": "carol",
              "expiration_date": "2099-01-01T10:00:00+02:00"}]
    imported = as_json(tmp_path, "import", "-", "--user-id", "bob",
                       stdin="".join(json.dumps(line) + "\n" for line in lines))
    assert imported == {"added": 3, "skipped": 0}

    human = run(tmp_path, "list", "--user-id", "alice")
    assert "visiting Lisbon" in human.stdout and "Rome" not in human.stdout
    assert f"expires {lisbon['expiration_date']}" in human.stdout
    assert memories(tmp_path, "alice", "--show-expired") == {"visiting Lisbon on a trip",
                                                             "the old trip to Rome"}
    found = as_json(tmp_path, "search", "trip", "--user-id", "alice")
    assert [item["id"] for item in found["results"]] == [lisbon["id"]]
    every = as_json(tmp_path, "search", "trip", "--user-id", "alice", "--show-expired")
    assert {item["id"] for item in every["results"]} == {lisbon["id"], rome["id"]}
    hidden = run(tmp_path, "get", rome["id"], "--user-id", "alice")
    assert hidden.returncode == 1 and "NOT_FOUND_001" in hidden.stderr
    assert as_json(tmp_path, "get", rome["id"], "--user-id", "alice",
                   "--show-expired")["id"] == rome["id"]

    plain = as_json(tmp_path, "optimize")  # without the flag nothing is deleted
    assert set(plain) == {"bytes_before", "bytes_after"}
    assert len(memories(tmp_path, "bob", "--show-expired")) == 2
    purged = as_json(tmp_path, "optimize", "--purge-expired")
    assert purged["purged"] == 2 and purged["bytes_after"] > 0
    again = run(tmp_path, "optimize", "--purge-expired")
    assert again.returncode == 0 and "purged 0 expired memories" in again.stdout
    assert "store size" in again.stdout

    assert memories(tmp_path, "alice", "--show-expired") == {"visiting Lisbon on a trip"}
    assert memories(tmp_path, "bob", "--show-expired") == {"bob's lasting note"}
    assert memories(tmp_path, "carol") == {"carol's dated note"}
    history = as_json(tmp_path, "history", rome["id"], "--user-id", "alice")
    assert [entry["event"] for entry in history["results"]] == ["ADD", "DELETE"]

    bad = run(tmp_path, "add", "a plan", "--user-id", "alice", "--expiration-date", "soon")
    assert bad.returncode == 1
    assert "VALIDATION_005: 'expiration_date' is 'soon'" in bad.stderr.strip().splitlines()[-1]
