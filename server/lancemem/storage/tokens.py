"""API tokens: kept hashed in the store, so every server on the store knows them.

A token is ``lmk_`` and 43 random URL-safe characters (256 bits). Only its
SHA-256 is stored, beside an id (``tk_`` and 12 hex digits, what ``token
list`` and history show), the ids it pins, whether it is read-only, a label,
and when it expires or was revoked. A high-entropy secret needs no slow hash:
nobody can guess one from its digest.

``TokenAuthenticator`` answers each request from a copy of the table held in
memory, re-read whenever the table's version moved, checked at most every
``REFRESH_SECONDS``: a token revoked by ``lancemem token revoke`` (or on
another server) stops working within that time.
"""

from __future__ import annotations

import functools
import hashlib
import math
import secrets
import threading
import time
import unicodedata
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from ..core.errors import AuthenticationError, NotFoundError, ValidationError
from ..core.principal import Principal
from ..core.scoping import validate_id
from . import sql
from .connection import Connection
from .retries import with_retries

if TYPE_CHECKING:
    import pyarrow as pa

TOKENS = "lancemem_tokens"
TOKEN_PREFIX = "lmk_"
ID_PREFIX = "tk_"
REFRESH_SECONDS = 0.25
MAX_LABEL_LENGTH = 200
MAX_EXPIRY_DAYS = 36_500


@functools.cache
def tokens_schema() -> pa.Schema:
    """The tokens table: one row per token, its secret only as a digest."""
    import pyarrow as pa

    ts = pa.timestamp("us", tz="UTC")
    return pa.schema([
        pa.field("id", pa.utf8(), nullable=False),
        pa.field("secret_sha256", pa.utf8(), nullable=False),
        pa.field("user_id", pa.utf8(), nullable=False),
        pa.field("agent_id", pa.utf8()),
        pa.field("run_id", pa.utf8()),
        pa.field("read_only", pa.bool_()),
        pa.field("label", pa.utf8()),
        pa.field("created_at", ts),
        pa.field("expires_at", ts),
        pa.field("revoked_at", ts),
    ])


def digest(token: str) -> str:
    """The SHA-256 hex digest under which a token is stored."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class TokenRecord:
    """One stored token, without its secret."""

    id: str
    user_id: str
    agent_id: str | None
    run_id: str | None
    read_only: bool
    label: str | None
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> TokenRecord:
        """A record from a stored row (the digest is left behind)."""
        return cls(id=row["id"], user_id=row["user_id"], agent_id=row["agent_id"],
                   run_id=row["run_id"], read_only=bool(row["read_only"]), label=row["label"],
                   created_at=row["created_at"], expires_at=row["expires_at"],
                   revoked_at=row["revoked_at"])

    def status(self, now: datetime) -> str:
        """``active``, ``expired`` or ``revoked``."""
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return "active"

    def principal(self) -> Principal:
        """The caller this token authenticates."""
        return Principal(kind="token", id=self.id, user_id=self.user_id, agent_id=self.agent_id,
                         run_id=self.run_id, read_only=self.read_only, label=self.label)

    def to_item(self, now: datetime) -> dict[str, Any]:
        """The token as ``token list --json`` shows it (timestamps ISO-8601)."""
        def iso(value: datetime | None) -> str | None:
            return value.isoformat() if value is not None else None

        return {"id": self.id, "user_id": self.user_id, "agent_id": self.agent_id,
                "run_id": self.run_id, "read_only": self.read_only, "label": self.label,
                "status": self.status(now), "created_at": iso(self.created_at),
                "expires_at": iso(self.expires_at), "revoked_at": iso(self.revoked_at)}


def _check_label(label: str | None) -> str | None:
    if label is None:
        return None
    cleaned = label.strip()
    if not cleaned or len(cleaned) > MAX_LABEL_LENGTH or any(
            unicodedata.category(ch) == "Cc" for ch in cleaned):
        raise ValidationError(f"--label must be 1-{MAX_LABEL_LENGTH} printable characters, "
                              "e.g. 'support-bot'.")
    return cleaned


def _expiry(now: datetime, days: float | None) -> datetime | None:
    if days is None:
        return None
    if not (isinstance(days, int | float) and math.isfinite(days)
            and 0 < days <= MAX_EXPIRY_DAYS):
        raise ValidationError(f"--expires-in must be a number of days above 0 and at most "
                              f"{MAX_EXPIRY_DAYS}, e.g. 30 or 0.5; got {days!r}.")
    return now + timedelta(days=days)


class TokenTable:
    """The tokens table of one store: create, list, revoke, read."""

    def __init__(self, store: Connection) -> None:
        """Work on ``store``'s tokens table, created by the first ``create``."""
        self._store = store
        self._exists = False

    def _found(self) -> bool:
        """Whether the table exists yet (reading never creates it)."""
        self._exists = self._exists or self._store.has_table(TOKENS)
        return self._exists

    def create(self, *, user_id: str, agent_id: str | None = None, run_id: str | None = None,
               read_only: bool = False, label: str | None = None,
               expires_in_days: float | None = None) -> tuple[TokenRecord, str]:
        """Store a new token; returns its record and the secret (shown once, never stored)."""
        now = datetime.now(UTC)
        record = TokenRecord(
            id=ID_PREFIX + secrets.token_hex(6), user_id=validate_id("user_id", user_id),
            agent_id=validate_id("agent_id", agent_id) if agent_id is not None else None,
            run_id=validate_id("run_id", run_id) if run_id is not None else None,
            read_only=read_only, label=_check_label(label), created_at=now,
            expires_at=_expiry(now, expires_in_days), revoked_at=None)
        secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
        self._store.ensure_table(TOKENS, tokens_schema())
        self._store.insert(TOKENS, [{**asdict(record), "secret_sha256": digest(secret)}],
                           tokens_schema())
        return record, secret

    def rows(self) -> list[dict[str, Any]]:
        """Every stored row, digests included (for the authenticator)."""
        return self._store.select(TOKENS, None) if self._found() else []

    def records(self) -> list[TokenRecord]:
        """Every token, oldest first."""
        return sorted((TokenRecord.from_row(row) for row in self.rows()),
                      key=lambda record: (record.created_at, record.id))

    def version(self) -> int:
        """The table's version: it moves with every create and revoke (-1: no table yet)."""
        return self._store.version(TOKENS) if self._found() else -1

    def revoke(self, token_id: str) -> TokenRecord:
        """Revoke a token by id (a second revoke keeps the first time); NotFoundError if unknown."""
        if not isinstance(token_id, str) or not token_id.strip():
            raise ValidationError("give the token's id, as `lancemem token list` shows it.")
        where = sql.equals("id", token_id.strip())
        rows = self._store.select(TOKENS, where, limit=1) if self._found() else []
        if not rows:
            raise NotFoundError(f"no token with id {token_id.strip()!r}; `lancemem token list` "
                                "shows the ids.")
        row = rows[0]
        if row["revoked_at"] is None:
            row["revoked_at"] = datetime.now(UTC)
            self._store.upsert(TOKENS, [row], tokens_schema())
        return TokenRecord.from_row(row)


class TokenAuthenticator:
    """Turns a presented token into its Principal, or AuthenticationError.

    Thread-safe. Reads the table again only when its version moved, looked
    at no more often than ``refresh_seconds``.
    """

    def __init__(self, table: TokenTable, *, refresh_seconds: float = REFRESH_SECONDS) -> None:
        """Authenticate against ``table``; revocations are seen within ``refresh_seconds``."""
        self._table = table
        self._refresh_seconds = refresh_seconds
        self._lock = threading.Lock()
        self._by_digest: dict[str, TokenRecord] = {}
        self._version: int | None = None
        self._checked = -math.inf

    def _current(self) -> dict[str, TokenRecord]:
        with self._lock:
            if time.monotonic() - self._checked >= self._refresh_seconds:
                version = self._table.version()
                if version != self._version:
                    self._by_digest = {row["secret_sha256"]: TokenRecord.from_row(row)
                                       for row in self._table.rows()}
                    self._version = version
                self._checked = time.monotonic()
            return self._by_digest

    def count(self) -> int:
        """How many tokens the store holds (any status)."""
        return len(self._current())

    def authenticate(self, token: str) -> Principal:
        """The token's Principal; AuthenticationError if unknown, expired or revoked."""
        if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
            raise AuthenticationError("the bearer token is not a lancemem token (lmk_...).")
        record = with_retries(lambda: self._current(), what="reading tokens").get(digest(token))
        if record is None:
            raise AuthenticationError("unknown token.")
        status = record.status(datetime.now(UTC))
        if status != "active":
            raise AuthenticationError(f"token {record.id} is {status}.")
        return record.principal()
