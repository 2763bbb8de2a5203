"""Settings: the only module that reads environment variables.

Values come from, in rising precedence: defaults, ``LANCEMEM_*`` environment
variables, then explicit overrides (the CLI's flags). ``load_settings`` is the
one entry point; everything else receives a ``Settings``.
"""

from __future__ import annotations

import ipaddress
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from .errors import ValidationError
from .object_storage import ENV_CONSISTENCY, read_consistency, storage_options
from .scoping import SCOPE_KEYS

ENV_PREFIX = "LANCEMEM_"
DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
TRANSPORTS = ("stdio", "sse", "streamable-http")
AUTH_MODES = ("none", "token", "jwt")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
DEFAULT_RATE_LIMIT = 100.0  # requests per second per client address on HTTP
MODES = ("hybrid", "vector", "keyword")  # search rankings (retrieval.py)
DEFAULT_MODE = "hybrid"

_HOST_NAME = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_])?")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


@dataclass(frozen=True)
class Settings:
    """Everything lancemem can be configured with.

    ``db`` is a local path or a LanceDB URI (``s3://``, ``gs://``, ``az://``,
    ``memory://``). ``user_id``/``agent_id``/``run_id`` fill ids missing from a
    call; the ones named in ``pinned`` cannot be overridden by callers.
    ``allowed_hosts`` are the public names (``host`` or ``host:port``) that
    HTTP clients may put in their Host and Origin headers. ``auth`` is
    ``none``, ``token`` (API tokens in the store) or ``jwt`` (OAuth access
    tokens from ``jwt_issuer``); ``public_url`` is the server's address as
    clients see it (for OAuth metadata). ``rate_limit`` caps requests per
    second per client address on HTTP (0: no cap). ``stateless`` serves
    streamable HTTP without sessions (any server of several may answer any
    request). ``storage_options`` go to
    LanceDB for object storage (object_storage.py; never shown in a repr);
    ``read_consistency`` is how many seconds may pass before a read sees
    another process's writes.
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
    allowed_hosts: tuple[str, ...] = ()
    log_level: str = "INFO"
    search_mode: str = DEFAULT_MODE
    auth: str = "none"
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    jwt_jwks_url: str | None = None
    jwt_user_claim: str = "sub"
    public_url: str | None = None
    rate_limit: float = DEFAULT_RATE_LIMIT
    stateless: bool = False
    storage_options: Mapping[str, str] = field(default_factory=dict, repr=False, hash=False)
    read_consistency: float = 0.0

    def scope_defaults(self) -> dict[str, str]:
        """The configured default ids, by field name, leaving out unset ones."""
        values = {name: getattr(self, name) for name in SCOPE_KEYS}
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


def check_mode(mode: object) -> str:
    """``mode`` if it names a search mode, else ValidationError saying the choices."""
    if isinstance(mode, str) and mode.strip().lower() in MODES:
        return mode.strip().lower()
    raise ValidationError(
        f"unknown search mode {mode!r}; choose one of {', '.join(MODES)} "
        f"(default {DEFAULT_MODE})."
    )



def _parse_port(raw: Any) -> int:
    try:
        port = int(raw)
    except (TypeError, ValueError):
        raise ValidationError(f"port {raw!r} is not a number; use 1-65535.") from None
    if not 0 <= port <= 65535:
        raise ValidationError(f"port {port} is out of range; use 1-65535 (0 picks a free port).")
    return port


def _bad_host(raw: str, source: str, why: str) -> ValidationError:
    return ValidationError(
        f"{source} {raw!r} {why}; pass the bare host name or address clients connect to, "
        "optionally with a port, e.g. memory.example.com, memory.example.com:8765, "
        "10.0.0.5 or [fd00::5]:8765 (no scheme, path or spaces)."
    )


def _split_port(raw: str, rest: str, source: str) -> str:
    """Check a ``:port`` suffix (``rest`` is what follows the host, maybe empty)."""
    if not rest:
        return ""
    if not rest.startswith(":") or not rest[1:].isdigit() or not 1 <= int(rest[1:]) <= 65535:
        raise _bad_host(raw, source, "has a bad port (use 1-65535)")
    return f":{int(rest[1:])}"


def normalize_allowed_host(raw: str, *, source: str = "--allowed-host") -> str:
    """Check one allowed host and return it as it appears in a Host header.

    Names are lower-cased and IPv6 addresses bracketed (``fd00::5`` becomes
    ``[fd00::5]``); a port, if given, is kept. ``source`` names the flag or
    variable in the error message.
    """
    if not raw:
        raise _bad_host(raw, source, "is empty")
    if "/" in raw or any(ch.isspace() for ch in raw):
        raise _bad_host(raw, source, "is not a host name (it has a '/' or a space)")
    if raw.startswith("["):
        address, closed, rest = raw[1:].partition("]")
        if not closed:
            raise _bad_host(raw, source, "lacks the closing ']'")
        host, port = address, _split_port(raw, rest, source)
    elif raw.count(":") > 1:
        host, port = raw, ""
    else:
        host, _, port_text = raw.partition(":")
        port = _split_port(raw, f":{port_text}" if ":" in raw else "", source)
    if ":" in host:
        try:
            return f"[{ipaddress.IPv6Address(host).compressed}]{port}"
        except ValueError:
            raise _bad_host(raw, source, "is not a valid IPv6 address") from None
    if not _HOST_NAME.fullmatch(host):
        raise _bad_host(raw, source, "is not a host name")
    return host.lower() + port


def _allowed_hosts_from_environ(raw: str) -> tuple[str, ...]:
    source = f"an entry of {ENV_PREFIX}ALLOWED_HOSTS"
    return tuple(normalize_allowed_host(item.strip(), source=source) for item in raw.split(","))


def _env_scope(environ: Mapping[str, str]) -> tuple[dict[str, str], set[str]]:
    """Scope ids from the environment and which of them are pinned.

    A pin (``LANCEMEM_PIN_USER_ID``) and a default (``LANCEMEM_USER_ID``) with
    different values contradict each other: refused rather than guessed.
    """
    values: dict[str, str] = {}
    pinned = set()
    for name in SCOPE_KEYS:
        plain = environ.get(ENV_PREFIX + name.upper())
        pin = environ.get(f"{ENV_PREFIX}PIN_{name.upper()}")
        if pin is not None and not pin.strip():
            raise ValidationError(  # unpinned by accident (PIN=$UNSET) would fail open
                f"{ENV_PREFIX}PIN_{name.upper()} is set but empty, which would leave {name} "
                f"unpinned; set it to the id to pin, or unset it."
            )
        if pin and plain and pin != plain:
            raise ValidationError(
                f"{ENV_PREFIX}PIN_{name.upper()} pins {name} to {pin!r} but "
                f"{ENV_PREFIX}{name.upper()} sets it to {plain!r}; a pinned id cannot be "
                f"replaced. Unset {ENV_PREFIX}{name.upper()} or give both the same value."
            )
        if pin or plain:
            values[name] = pin or plain
        if pin:
            pinned.add(name)
    return values, pinned


def _check_pins_against_flags(
    values: Mapping[str, Any], env_pinned: frozenset[str], given: Mapping[str, Any],
    flag_pinned: frozenset[str],
) -> None:
    """Refuse a flag that would silently replace a pin from the environment."""
    for name in sorted(env_pinned):
        if name not in given or given[name] == values[name]:
            continue
        flag = f"--{'pin-' if name in flag_pinned else ''}{name.replace('_', '-')}"
        variable = f"{ENV_PREFIX}PIN_{name.upper()}"
        raise ValidationError(
            f"{variable} pins {name} to {values[name]!r} but {flag} asks for "
            f"{given[name]!r}; a pinned id cannot be overridden. Drop {flag} (or pass the "
            f"same value), or unset {variable} to use another id."
        )


def _from_environ(environ: Mapping[str, str]) -> dict[str, Any]:
    """Read ``LANCEMEM_*`` variables into Settings field values."""
    values: dict[str, Any] = {}
    plain = ("db", "model_cache_dir", "embedding_model", "transport", "host", "log_level",
             "search_mode", "auth", "jwt_issuer", "jwt_audience", "jwt_jwks_url",
             "jwt_user_claim", "public_url", "rate_limit")
    for name in plain:
        raw = environ.get(ENV_PREFIX + name.upper())
        if raw:
            values[name] = raw
    if environ.get(ENV_PREFIX + "PORT"):
        values["port"] = environ[ENV_PREFIX + "PORT"]
    if ENV_PREFIX + "STATELESS" in environ:
        values["stateless"] = _parse_bool("stateless", environ[ENV_PREFIX + "STATELESS"])
    if ENV_PREFIX + "ALLOW_REMOTE" in environ:
        values["allow_remote"] = _parse_bool("allow_remote", environ[ENV_PREFIX + "ALLOW_REMOTE"])
    if environ.get(ENV_PREFIX + "ALLOWED_HOSTS"):
        values["allowed_hosts"] = _allowed_hosts_from_environ(environ[ENV_PREFIX + "ALLOWED_HOSTS"])
    scope, pinned = _env_scope(environ)
    values.update(scope)
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
    ``pinned`` override is merged with pins from the environment. An override
    that contradicts a pin from the environment is refused, not applied.
    ``allowed_hosts`` from overrides replace those of the environment.
    """
    env = os.environ if environ is None else environ
    values = _from_environ(env)
    given = {key: value for key, value in (overrides or {}).items() if value is not None}
    known = {f.name for f in fields(Settings)}
    unknown = set(given) - known
    if unknown:
        raise ValueError(f"unknown settings: {sorted(unknown)}")
    env_pinned = frozenset(values.get("pinned", frozenset()))
    flag_pinned = frozenset(given.pop("pinned", ()))
    _check_pins_against_flags(values, env_pinned, given, flag_pinned)
    pinned = env_pinned | flag_pinned
    if "allowed_hosts" in given:
        hosts = given["allowed_hosts"]
        hosts = (hosts,) if isinstance(hosts, str) else hosts
        given["allowed_hosts"] = tuple(normalize_allowed_host(h) for h in hosts)
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
    values["rate_limit"] = _parse_rate(values.get("rate_limit", DEFAULT_RATE_LIMIT))
    values["log_level"] = _parse_log_level(values.get("log_level", "INFO"))
    values["storage_options"] = {**storage_options(env), **values.get("storage_options", {})}
    values["read_consistency"] = read_consistency(
        values.get("read_consistency", env.get(ENV_CONSISTENCY)), values["db"])
    _check_auth(values)
    if values.get("stateless") and values.get("transport", "stdio") != "streamable-http":
        raise ValidationError("--stateless (LANCEMEM_STATELESS) is for --transport "
                              "streamable-http: stdio and SSE keep a connection open per "
                              "client. Add --transport streamable-http, or drop --stateless.")
    return Settings(**values)


def _parse_log_level(raw: Any) -> str:
    level = str(raw).strip().upper()
    if level not in LOG_LEVELS:
        raise ValidationError(f"log level {raw!r} is not one of {', '.join(LOG_LEVELS)} "
                              f"({ENV_PREFIX}LOG_LEVEL); INFO is the default.")
    return level


def _parse_rate(raw: Any) -> float:
    try:
        rate = float(raw)
    except (TypeError, ValueError):
        rate = -1.0
    if not (0 <= rate <= 1_000_000):  # also refuses NaN
        raise ValidationError(f"rate limit {raw!r} is not a number of requests per second; "
                              "use e.g. 100, or 0 for no limit.")
    return rate


def _check_url(name: str, value: str) -> None:
    if not re.fullmatch(r"https?://[^\s/?#]+(/[^\s?#]*)?", value):
        raise ValidationError(f"{name} {value!r} is not an http(s) URL; pass e.g. "
                              "https://auth.example.com/ (no spaces, query or fragment).")


def _check_auth(values: dict[str, Any]) -> None:
    """Refuse an authentication setup that cannot work, saying what is missing."""
    auth = str(values.get("auth", "none")).strip().lower()
    if auth not in AUTH_MODES:
        raise ValidationError(f"unknown auth mode {values['auth']!r}; choose one of "
                              f"{', '.join(AUTH_MODES)}.")
    values["auth"] = auth
    jwt_given = [name for name in ("jwt_issuer", "jwt_audience", "jwt_jwks_url")
                 if values.get(name)]
    if auth != "jwt" and jwt_given:
        flag = "--" + jwt_given[0].replace("_", "-")
        raise ValidationError(f"{flag} only applies with --auth jwt (LANCEMEM_AUTH=jwt).")
    if auth == "jwt":
        for name in ("jwt_issuer", "jwt_audience"):
            if not values.get(name):
                raise ValidationError(
                    f"--auth jwt needs --{name.replace('_', '-')} "
                    f"({ENV_PREFIX}{name.upper()}): the issuer URL and the audience your "
                    "authorization server puts in tokens for this server.")
        for name in ("jwt_issuer", "jwt_jwks_url"):
            if values.get(name):
                _check_url(f"--{name.replace('_', '-')}", values[name])
        claim = values.get("jwt_user_claim", "sub")
        if not re.fullmatch(r"[A-Za-z0-9_.:/-]{1,100}", str(claim)):
            raise ValidationError(
                f"--jwt-user-claim {claim!r} is not a claim name; pass the name of the JWT "
                "claim that holds the user id, e.g. sub (the default), email or "
                "preferred_username.")
    if values.get("public_url"):
        _check_url("--public-url", values["public_url"])
