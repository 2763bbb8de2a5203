"""Settings: environment variables, flags, defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from lancemem.core.config import DEFAULT_MODEL, load_settings
from lancemem.core.errors import ValidationError


def test_defaults_live_in_the_users_data_directory(tmp_path: Path) -> None:
    settings = load_settings(environ={"HOME": str(tmp_path)})
    assert settings.db == str(tmp_path / ".local/share/lancemem/db")
    assert settings.model_cache_dir == str(tmp_path / ".cache/lancemem/models")
    assert settings.embedding_model == DEFAULT_MODEL
    assert settings.transport == "stdio" and settings.host == "127.0.0.1"
    assert settings.scope_defaults() == {}


def test_xdg_directories_are_honoured(tmp_path: Path) -> None:
    settings = load_settings(environ={"HOME": "/nowhere", "XDG_DATA_HOME": str(tmp_path / "d"),
                                      "XDG_CACHE_HOME": str(tmp_path / "c")})
    assert settings.db == str(tmp_path / "d/lancemem/db")
    assert settings.model_cache_dir == str(tmp_path / "c/lancemem/models")


def test_environment_then_flags() -> None:
    env = {"HOME": "/h", "LANCEMEM_DB": "/env/db", "LANCEMEM_USER_ID": "env-user",
           "LANCEMEM_AGENT_ID": "env-agent", "LANCEMEM_PORT": "9000",
           "LANCEMEM_TRANSPORT": "sse"}
    settings = load_settings({"db": "/flag/db", "user_id": "flag-user", "agent_id": None},
                             environ=env)
    assert settings.db == "/flag/db"
    assert settings.scope_defaults() == {"user_id": "flag-user", "agent_id": "env-agent"}
    assert settings.port == 9000 and settings.transport == "sse"


def test_pins_from_environment_and_flags() -> None:
    env = {"HOME": "/h", "LANCEMEM_PIN_USER_ID": "alice"}
    settings = load_settings({"pinned": frozenset({"agent_id"}), "agent_id": "bot"}, environ=env)
    assert settings.pinned == frozenset({"user_id", "agent_id"})
    assert settings.scope_defaults() == {"user_id": "alice", "agent_id": "bot"}


@pytest.mark.parametrize(
    ("env", "fragment"),
    [({"LANCEMEM_PORT": "http"}, "not a number"), ({"LANCEMEM_PORT": "70000"}, "out of range"),
     ({"LANCEMEM_TRANSPORT": "carrier-pigeon"}, "unknown transport"),
     ({"LANCEMEM_ALLOW_REMOTE": "maybe"}, "not a boolean")],
)
def test_bad_values_are_clear_errors(env: dict[str, str], fragment: str) -> None:
    with pytest.raises(ValidationError) as info:
        load_settings(environ={"HOME": "/h", **env})
    assert fragment in str(info.value)


def test_allowed_hosts_from_environment_then_flags() -> None:
    env = {"HOME": "/h", "LANCEMEM_ALLOWED_HOSTS": "Memory.Example.com, 10.0.0.5:8765,fd00::5"}
    settings = load_settings(environ=env)
    assert settings.allowed_hosts == ("memory.example.com", "10.0.0.5:8765", "[fd00::5]")
    flagged = load_settings({"allowed_hosts": ["memory.test:8765"]}, environ=env)
    assert flagged.allowed_hosts == ("memory.test:8765",)
    assert load_settings(environ={"HOME": "/h"}).allowed_hosts == ()


@pytest.mark.parametrize("bad", ["", "http://memory.test", "memory.test/mcp", "memory test",
                                 "memory.test:http", "memory.test:0", "[fd00::5", "*"])
def test_bad_allowed_hosts_are_clear_errors(bad: str) -> None:
    with pytest.raises(ValidationError) as info:
        load_settings({"allowed_hosts": [bad]}, environ={"HOME": "/h"})
    assert info.value.code == "VALIDATION_005"
    assert f"--allowed-host {bad!r}" in str(info.value)
    assert "memory.example.com:8765" in str(info.value)


def test_bad_allowed_hosts_in_the_environment_name_the_variable() -> None:
    with pytest.raises(ValidationError, match="LANCEMEM_ALLOWED_HOSTS") as info:
        load_settings(environ={"HOME": "/h", "LANCEMEM_ALLOWED_HOSTS": "memory.test,,other"})
    assert "is empty" in str(info.value)


@pytest.mark.parametrize("field", ["user_id", "agent_id", "run_id"])
@pytest.mark.parametrize("by_pin_flag", [False, True])
def test_a_flag_cannot_replace_a_pin_from_the_environment(field: str, by_pin_flag: bool) -> None:
    env = {"HOME": "/h", f"LANCEMEM_PIN_{field.upper()}": "alice"}
    overrides = {field: "bob", "pinned": frozenset({field} if by_pin_flag else set())}
    with pytest.raises(ValidationError) as info:
        load_settings(overrides, environ=env)
    flag = f"--{'pin-' if by_pin_flag else ''}{field.replace('_', '-')}"
    message = str(info.value)
    assert message.startswith("VALIDATION_005: ")
    assert f"LANCEMEM_PIN_{field.upper()}" in message and flag in message
    assert "'alice'" in message and "'bob'" in message


@pytest.mark.parametrize("field", ["user_id", "agent_id", "run_id"])
def test_an_environment_default_cannot_contradict_an_environment_pin(field: str) -> None:
    env = {"HOME": "/h", f"LANCEMEM_PIN_{field.upper()}": "alice",
           f"LANCEMEM_{field.upper()}": "bob"}
    with pytest.raises(ValidationError) as info:
        load_settings(environ=env)
    assert f"LANCEMEM_PIN_{field.upper()}" in str(info.value)
    assert f"LANCEMEM_{field.upper()} sets it to 'bob'" in str(info.value)


def test_a_pin_repeated_with_the_same_value_is_fine() -> None:
    env = {"HOME": "/h", "LANCEMEM_PIN_USER_ID": "alice", "LANCEMEM_USER_ID": "alice"}
    settings = load_settings({"user_id": "alice", "pinned": frozenset({"user_id"})}, environ=env)
    assert settings.pinned == frozenset({"user_id"})
    assert settings.scope_defaults() == {"user_id": "alice"}


@pytest.mark.parametrize("field", ["user_id", "agent_id", "run_id"])
@pytest.mark.parametrize("value", ["", "  "])
def test_a_pin_set_but_empty_is_refused_not_ignored(field: str, value: str) -> None:
    """PIN=$UNSET_VARIABLE must not quietly leave the server unpinned."""
    with pytest.raises(ValidationError) as info:
        load_settings(environ={"HOME": "/h", f"LANCEMEM_PIN_{field.upper()}": value})
    assert f"LANCEMEM_PIN_{field.upper()} is set but empty" in str(info.value)
