"""The command line for humans, run as a real subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LANCEMEM_DB": str(tmp_path / "db"),
           "LANCEMEM_MODEL_CACHE_DIR": str(tmp_path / "models")}
    return subprocess.run([sys.executable, "-m", "lancemem", *args], env=env,
                          capture_output=True, text=True, timeout=300)


def test_cli_round_trip(tmp_path: Path) -> None:
    added = run(tmp_path, "add", "I love pizza with olives", "--user-id", "alice",
                "--metadata", '{"topic": "food"}', "--json")
    assert added.returncode == 0, added.stderr
    memory_id = json.loads(added.stdout)["results"][0]["id"]
    run(tmp_path, "add", "My car is a red Toyota", "--user-id", "alice")

    human = run(tmp_path, "search", "favourite food", "--user-id", "alice", "--limit", "1")
    assert human.returncode == 0 and "I love pizza with olives" in human.stdout
    assert "Toyota" not in human.stdout
    by_word = json.loads(run(tmp_path, "search", "Toyota", "--user-id", "alice", "--mode",
                             "keyword", "--json").stdout)
    assert [i["memory"] for i in by_word["results"]] == ["My car is a red Toyota"]
    bad_mode = run(tmp_path, "search", "Toyota", "--user-id", "alice", "--mode", "bm25")
    assert bad_mode.returncode == 1 and "VALIDATION_005" in bad_mode.stderr
    assert "invalid choice: 'bm25'" in bad_mode.stderr
    listed = json.loads(run(tmp_path, "list", "--user-id", "alice", "--json").stdout)
    assert [i["memory"] for i in listed["results"]] == [
        "My car is a red Toyota", "I love pizza with olives"]
    filtered = run(tmp_path, "list", "--user-id", "alice", "--filters", '{"topic": "food"}')
    assert "pizza" in filtered.stdout and "Toyota" not in filtered.stdout
    got = json.loads(run(tmp_path, "get", memory_id, "--user-id", "alice", "--json").stdout)
    assert got["metadata"] == {"topic": "food"}

    assert run(tmp_path, "get", memory_id, "--user-id", "bob").returncode == 1
    deleted = run(tmp_path, "delete", memory_id, "--user-id", "alice")
    assert deleted.returncode == 0 and memory_id in deleted.stdout
    history = run(tmp_path, "history", memory_id, "--user-id", "alice")
    assert "ADD" in history.stdout and "DELETE" in history.stdout
    assert "pizza" in history.stdout


def test_cli_errors_are_one_clean_line(tmp_path: Path) -> None:
    result = run(tmp_path, "list")
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.strip().splitlines()[-1] == (
        "lancemem: VALIDATION_001: At least one of 'user_id', 'agent_id', or 'run_id' "
        "must be provided.")


def test_cli_uses_default_user_from_environment(tmp_path: Path) -> None:
    env_run = subprocess.run(
        [sys.executable, "-m", "lancemem", "add", "remember me", "--json"],
        env={**os.environ, "LANCEMEM_DB": str(tmp_path / "db"), "LANCEMEM_USER_ID": "envuser",
             "LANCEMEM_MODEL_CACHE_DIR": str(tmp_path / "models")},
        capture_output=True, text=True, timeout=300)
    assert env_run.returncode == 0, env_run.stderr
    assert json.loads(env_run.stdout)["results"][0]["user_id"] == "envuser"


def test_cli_version_names_the_installed_release(tmp_path: Path) -> None:
    from importlib.metadata import version

    from lancemem import __version__

    assert version("lancemem") == __version__  # pyproject.toml and the package agree
    shown = run(tmp_path, "--version")
    assert shown.returncode == 0 and shown.stdout.strip() == f"lancemem {__version__}"
    assert __version__[0].isdigit() and not (tmp_path / "db").exists()


def test_db_may_come_before_the_command_but_only_once(tmp_path: Path) -> None:
    elsewhere = str(tmp_path / "elsewhere")
    added = run(tmp_path, "--db", elsewhere, "add", "Kept elsewhere", "--user-id", "alice")
    assert added.returncode == 0, added.stderr
    listed = run(tmp_path, "--db", elsewhere, "list", "--user-id", "alice")
    assert "Kept elsewhere" in listed.stdout
    assert "Kept elsewhere" not in run(tmp_path, "list", "--user-id", "alice").stdout
    after = run(tmp_path, "list", "--db", elsewhere, "--user-id", "alice")
    assert "Kept elsewhere" in after.stdout
    twice = run(tmp_path, "--db", elsewhere, "list", "--db", str(tmp_path / "db"),
                "--user-id", "alice")
    assert twice.returncode == 2 and "--db is given twice" in twice.stderr
