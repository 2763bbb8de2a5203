"""Per-client and per-credential limits for the HTTP transports.

A token bucket per client address: ``rate`` requests per second on average,
bursts of up to twice that. A client over its budget gets 429 with
``Retry-After`` at once, before authentication or any tool runs, so a flood
costs the server a dictionary look-up per request and other clients keep
being served. Behind a reverse proxy every client shares the proxy's
address: raise the limit there, or let the proxy limit.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from collections import OrderedDict

from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)
MAX_CLIENTS = 10_000  # buckets kept; the least recently seen client is forgotten first
_LOG_EVERY_SECONDS = 10.0


class RateLimiter:
    """ASGI wrapper answering 429 to a client over ``rate`` requests per second."""

    def __init__(self, app: ASGIApp, rate: float, *, burst: float | None = None,
                 max_clients: int = MAX_CLIENTS) -> None:
        """``rate`` 0 lets everything through; ``burst`` defaults to ``2 * rate``."""
        self.app = app
        self.rate = rate
        self.burst = burst if burst is not None else max(1.0, 2 * rate)
        self.max_clients = max_clients
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._logged: dict[str, float] = {}

    def take(self, client: str, now: float | None = None) -> float:
        """Spend one request of ``client``'s budget: 0 if allowed, else seconds to wait."""
        now = time.monotonic() if now is None else now
        tokens, last = self._buckets.pop(client, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        wait = 0.0
        if tokens >= 1:
            tokens -= 1
        else:
            wait = (1 - tokens) / self.rate
        self._buckets[client] = (tokens, now)
        while len(self._buckets) > self.max_clients:
            self._buckets.popitem(last=False)
        return wait

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on, or answer 429 for a client over its budget."""
        if scope["type"] != "http" or self.rate <= 0:
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        address = client[0] if client else "unknown"
        wait = self.take(address)
        if not wait:
            await self.app(scope, receive, send)
            return
        self._note(address)
        retry = max(1, math.ceil(wait))
        await _too_many(send, f"more than {self.rate:g} requests per second from {address}; "
                        f"retry in {retry} s", retry=retry)

    def _note(self, address: str) -> None:
        """One log line per client every few seconds, not one per refused request."""
        now = time.monotonic()
        if now - self._logged.get(address, -math.inf) >= _LOG_EVERY_SECONDS:
            self._logged[address] = now
            if len(self._logged) > self.max_clients:
                self._logged.clear()
            log.warning("rate-limited %s: over %g requests per second (429); raise "
                        "--rate-limit if this client is legitimate", address, self.rate)


# What one credential may hold open at once. A legacy (stateful) streamable-HTTP
# session lives in the SDK until it idles out (SESSION_IDLE_SECONDS, the SDK's
# default), and the SDK's table of sessions is shared by every caller; an SSE
# stream is one open request. Without a cap per credential, one token (even a
# read-only one) could fill the table and lock every other tenant out.
MAX_OPEN_REQUESTS = 32
MAX_SESSIONS = 64
SESSION_IDLE_SECONDS = 30 * 60
_SESSION_HEADER = b"mcp-session-id"


def _header(scope: Scope, name: bytes) -> bytes | None:
    return next((value for key, value in scope["headers"] if key == name), None)


class CredentialLimiter:
    """ASGI wrapper answering 429 to a credential over its open requests or sessions.

    Keyed by a digest of the ``Authorization`` header, before it is verified:
    requests without one pass on (authentication refuses them), and an
    invalid credential never creates a session, so only credentials the
    server accepted take up room.
    """

    def __init__(self, app: ASGIApp, *, max_open: int = MAX_OPEN_REQUESTS,
                 max_sessions: int = MAX_SESSIONS,
                 session_idle: float = SESSION_IDLE_SECONDS) -> None:
        """Caps per credential: requests in flight (streams included) and live sessions."""
        self.app = app
        self.max_open = max_open
        self.max_sessions = max_sessions
        self.session_idle = session_idle
        self._open: dict[bytes, int] = {}
        self._sessions: dict[bytes, OrderedDict[bytes, float]] = {}

    def _live_sessions(self, key: bytes, now: float) -> OrderedDict[bytes, float]:
        sessions = self._sessions.setdefault(key, OrderedDict())
        while sessions and now - next(iter(sessions.values())) > self.session_idle:
            sessions.popitem(last=False)
        return sessions

    def _refusal(self, scope: Scope, key: bytes, session: bytes | None) -> str | None:
        if self._open.get(key, 0) >= self.max_open:
            return (f"this credential already has {self.max_open} requests open (streams "
                    "count while open); close some first")
        if session is None and scope["method"] == "POST" and len(
                self._live_sessions(key, time.monotonic())) >= self.max_sessions:
            return (f"this credential already holds {self.max_sessions} sessions; end some "
                    "(HTTP DELETE) or let them idle out")
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Count the request against its credential while it runs; refuse past a cap."""
        credential = _header(scope, b"authorization") if scope["type"] == "http" else None
        if credential is None:
            await self.app(scope, receive, send)
            return
        key = _credential_key(credential)
        session = _header(scope, _SESSION_HEADER)
        refusal = self._refusal(scope, key, session)
        if refusal:
            log.warning("refused a request (429): %s", refusal)
            await _too_many(send, refusal, retry=5)
            return

        async def noting_sessions(message: Message) -> None:
            # A new session is announced in the answer to a request that had none
            # (answers within a session, a DELETE's too, repeat its id).
            if message["type"] == "http.response.start" and session is None:
                started = dict(message.get("headers", [])).get(_SESSION_HEADER)
                if started is not None:
                    self._live_sessions(key, time.monotonic())[started] = time.monotonic()
            await send(message)

        if session is not None and session in self._sessions.get(key, {}):
            sessions = self._sessions[key]
            if scope["method"] == "DELETE":
                del sessions[session]
            else:
                sessions[session] = time.monotonic()
                sessions.move_to_end(session)
        self._open[key] = self._open.get(key, 0) + 1
        try:
            await self.app(scope, receive, noting_sessions)
        finally:
            self._open[key] -= 1
            if not self._open[key]:
                del self._open[key]
            if not self._sessions.get(key, True):
                del self._sessions[key]


async def _too_many(send: Send, description: str, *, retry: int) -> None:
    body = json.dumps({"error": "too_many_requests", "error_description": description})
    await send({"type": "http.response.start", "status": 429, "headers": [
        (b"content-type", b"application/json"), (b"retry-after", str(retry).encode()),
        (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body.encode()})


def _credential_key(header: bytes) -> bytes:
    """One key per credential, however its header is spelt: the scheme's case and
    the spaces around the token vary, and both endpoints accept some variants,
    which must not open a new bucket each (found by an attacker helper)."""
    scheme, _, credential = header.strip().partition(b" ")
    return hashlib.sha256(scheme.lower() + b" " + credential.strip()).digest()
