"""Settings: the only module that reads environment variables.

Values come from, in rising precedence: defaults, ``LANCEMEM_*`` environment
variables, then explicit overrides (the CLI's flags). ``load_settings`` is the
one entry point; everything else receives a ``Settings``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from .errors import ValidationError
from .retrieval import DEFAULT_MODE, check_mode

ENV_PREFIX = "LANCEMEM_"
DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
TRANSPORTS = ("stdio", "sse", "streamable-http")
SCOPE_FIELDS = ("user_id", "agent_id", "run_id")

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


@dataclass(frozen=True)
class Settings:
    """Everything lancemem can be configured with.

    ``db`` is a local path or a LanceDB URI (``s3://``, ``gs://``, ``az://``,
    ``memory://``). ``user_id``/``agent_id``/``run_id`` fill ids missing from a
    call; the ones named in ``pinned`` cannot be overridden by callers.
    """

    db: str
    model_cache_dir: str
    embedding_model: str = DEFAULT_MODEL
    user_id: str | None = None
    agent_id: str | None = None
    run_id: str | None = None
    pinned: frozenset[str] = frozenset()
    transport: str = "stdio"
    host: str = "127.0.0.1"
    port: int = 8765
    allow_remote: bool = False
    log_level: str = "INFO"
    search_mode: str = DEFAULT_MODE

    def scope_defaults(self) -> dict[str, str]:
        """The configured default ids, by field name, leaving out unset ones."""
        values = {name: getattr(self, name) for name in SCOPE_FIELDS}
        return {name: value for name, value in values.items() if value is not None}


def _platform_dir(environ: Mapping[str, str], kind: str) -> Path:
    """The per-user data or cache directory, following each OS's convention."""
    home = Path(environ.get("HOME") or Path.home())
    if sys.platform == "win32":
        base = environ.get("LOCALAPPDATA") or str(home / "AppData" / "Local")
        return Path(base) / "lancemem" / ("cache" if kind == "cache" else "data")
    if sys.platform == "darwin":
        sub = "Caches" if kind == "cache" else "Application Support"
        return home / "Library" / sub / "lancemem"
    xdg = "XDG_CACHE_HOME" if kind == "cache" else "XDG_DATA_HOME"
    fallback = home / (".cache" if kind == "cache" else ".local/share")
    return Path(environ.get(xdg) or fallback) / "lancemem"


def default_db_path(environ: Mapping[str, str]) -> str:
    """Where the store lives unless told otherwise: the user's data directory."""
    return str(_platform_dir(environ, "data") / "db")


def _parse_bool(name: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValidationError(
        f"{ENV_PREFIX}{name.upper()}={raw!r} is not a boolean; use 1/0 or true/false."
    )


def _parse_port(raw: Any) -> int:
    try:
        port = int(raw)
    except (TypeError, ValueError):
        raise ValidationError(f"port {raw!r} is not a number; use 1-65535.") from None
    if not 0 <= port <= 65535:
        raise ValidationError(f"port {port} is out of range; use 1-65535 (0 picks a free port).")
    return port


def _from_environ(environ: Mapping[str, str]) -> dict[str, Any]:
    """Read ``LANCEMEM_*`` variables into Settings field values."""
    values: dict[str, Any] = {}
    plain = ("db", "model_cache_dir", "embedding_model", "transport", "host", "log_level",
             "search_mode")
    for name in (*plain, *SCOPE_FIELDS):
        raw = environ.get(ENV_PREFIX + name.upper())
        if raw:
            values[name] = raw
    if environ.get(ENV_PREFIX + "PORT"):
        values["port"] = environ[ENV_PREFIX + "PORT"]
    if ENV_PREFIX + "ALLOW_REMOTE" in environ:
        values["allow_remote"] = _parse_bool("allow_remote", environ[ENV_PREFIX + "ALLOW_REMOTE"])
    pinned = set()
    for name in SCOPE_FIELDS:
        raw = environ.get(f"{ENV_PREFIX}PIN_{name.upper()}")
        if raw:
            values[name] = raw
            pinned.add(name)
    if pinned:
        values["pinned"] = frozenset(pinned)
    return values


def load_settings(
    overrides: Mapping[str, Any] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Build Settings from the environment, then apply non-None ``overrides``.

    ``overrides`` uses Settings field names (``db``, ``user_id``, ...); a
    ``pinned`` override is merged with pins from the environment.
    """
    env = os.environ if environ is None else environ
    values = _from_environ(env)
    given = {key: value for key, value in (overrides or {}).items() if value is not None}
    known = {f.name for f in fields(Settings)}
    unknown = set(given) - known
    if unknown:
        raise ValueError(f"unknown settings: {sorted(unknown)}")
    pinned = frozenset(values.get("pinned", frozenset())) | frozenset(given.pop("pinned", ()))
    values.update(given)
    values["pinned"] = pinned
    values.setdefault("db", default_db_path(env))
    values.setdefault("model_cache_dir", str(_platform_dir(env, "cache") / "models"))
    values["port"] = _parse_port(values.get("port", 8765))
    if values.get("transport", "stdio") not in TRANSPORTS:
        raise ValidationError(
            f"unknown transport {values['transport']!r}; choose one of {', '.join(TRANSPORTS)}."
        )
    values["search_mode"] = check_mode(values.get("search_mode", DEFAULT_MODE))
    return Settings(**values)
