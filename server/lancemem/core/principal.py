"""Who is calling: an authenticated principal, and the scope its credential binds.

On a server with ``--auth``, every call carries a Principal (an API token from
the store, or a verified JWT). Its pinned ids are not a request but a bound:
``bind_ids`` fills them into the call and refuses a call that names any
other value for them, as an argument or as a plain filter entry. Ids the
credential does not pin stay free, so a user's token may narrow to any of
that user's agents or runs. Pure functions, no storage: the MCP layer and
the web page apply the same rules.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from .errors import PermissionDeniedError
from .scoping import SCOPE_KEYS, validate_id

PrincipalKind = Literal["token", "jwt"]


@dataclass(frozen=True)
class Principal:
    """An authenticated caller and the ids its credential pins.

    ``id`` is the token's id (never its secret) or the JWT's subject;
    ``label`` the token's label, if any. ``user_id`` is always pinned;
    ``agent_id``/``run_id`` only when the credential names them.
    """

    kind: PrincipalKind
    id: str
    user_id: str
    agent_id: str | None = None
    run_id: str | None = None
    read_only: bool = False
    label: str | None = None

    @property
    def name(self) -> str:
        """How history records this principal: ``token:<id>`` or ``jwt:<subject>``."""
        return f"{self.kind}:{self.id}"

    def pins(self) -> dict[str, str]:
        """The session ids this credential binds every call to."""
        ids = {"user_id": self.user_id, "agent_id": self.agent_id, "run_id": self.run_id}
        return {key: value for key, value in ids.items() if value is not None}

    def describe(self) -> str:
        """A short phrase for error messages, e.g. ``token tk_1a2b ('support-bot')``."""
        label = f" ({self.label!r})" if self.label else ""
        kind = "token" if self.kind == "token" else "JWT subject"
        return f"{kind} {self.id}{label}"


def _refusal(principal: Principal, key: str, named: str, where: str) -> PermissionDeniedError:
    pinned = principal.pins()[key]
    return PermissionDeniedError(
        f"this server authenticated you as {principal.describe()}, which is bound to "
        f"{key} {pinned!r}; the call names {named!r} {where}. Nothing was read or changed. "
        f"Leave '{key}' out (your credential's id is used) or pass {pinned!r}.")


def bind_ids(principal: Principal, ids: Mapping[str, Any], filters: Any = None,
             server_pins: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The call's session ids with the principal's pins applied.

    ``ids`` are the call's ``user_id``/``agent_id``/``run_id`` arguments
    (None where not given). A pinned id given with another value, or a
    plain-string filter entry naming another value, raises
    PermissionDeniedError; ids the credential does not pin pass through.
    ``server_pins`` (the server's own pins) must agree with the credential's,
    and an argument naming another value for one is refused too, rather than
    silently replaced (filter entries for them are the caller's to check).
    Values are compared as stored ids (surrounding whitespace stripped).
    """
    server_pins = server_pins or {}
    check_against_server_pins(principal, server_pins)
    for key, pin in server_pins.items():  # a credential's call never silently changes scope
        given = ids.get(key)
        if given is not None and validate_id(key, given) != pin:
            raise PermissionDeniedError(
                f"this server pins {key} to {pin!r}; the call names {given!r}. Nothing was "
                f"read or changed. Leave '{key}' out.")
    bound = dict(ids)
    entries = filters if isinstance(filters, Mapping) else {}
    for key, pinned in principal.pins().items():
        given = ids.get(key)
        if given is not None and validate_id(key, given) != pinned:
            raise _refusal(principal, key, given, "as an argument")
        entry = entries.get(key)
        if isinstance(entry, str) and validate_id(key, entry) != pinned:
            raise _refusal(principal, key, entry, "in filters")
        bound[key] = pinned
    return bound


def check_may_write(principal: Principal, action: str) -> None:
    """Refuse a change (``action`` names it, e.g. ``add_memory``) with a read-only credential."""
    if principal.read_only:
        raise PermissionDeniedError(
            f"{principal.describe()} is read-only, so {action} is refused and nothing was "
            "changed. Use search/list/get/history, or a token created without --read-only.")


def check_against_server_pins(principal: Principal, server_pins: Mapping[str, str]) -> None:
    """Refuse a credential bound to other ids than the server's own pins."""
    for key in SCOPE_KEYS:
        mine, theirs = principal.pins().get(key), server_pins.get(key)
        if mine is not None and theirs is not None and mine != theirs:
            raise PermissionDeniedError(
                f"{principal.describe()} is bound to {key} {mine!r}, but this server pins "
                f"{key} to {theirs!r}; use a credential for {theirs!r} or a server without "
                f"--pin-{key.replace('_', '-')}.")
