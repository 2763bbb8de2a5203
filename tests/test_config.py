"""Settings: environment variables, flags, defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from lancemem.config import DEFAULT_MODEL, load_settings
from lancemem.errors import ValidationError


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
