"""A per-client request rate limit for the HTTP transports.

A token bucket per client address: ``rate`` requests per second on average,
bursts of up to twice that. A client over its budget gets 429 with
``Retry-After`` at once, before authentication or any tool runs, so a flood
costs the server a dictionary look-up per request and other clients keep
being served. Behind a reverse proxy every client shares the proxy's
address: raise the limit there, or let the proxy limit.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections import OrderedDict

from starlette.types import ASGIApp, Receive, Scope, Send

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
        body = json.dumps({"error": "rate_limited", "error_description": (
            f"more than {self.rate:g} requests per second from {address}; retry in {retry} s")})
        await send({"type": "http.response.start", "status": 429, "headers": [
            (b"content-type", b"application/json"), (b"retry-after", str(retry).encode()),
            (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body.encode()})

    def _note(self, address: str) -> None:
        """One log line per client every few seconds, not one per refused request."""
        now = time.monotonic()
        if now - self._logged.get(address, -math.inf) >= _LOG_EVERY_SECONDS:
            self._logged[address] = now
            if len(self._logged) > self.max_clients:
                self._logged.clear()
            log.warning("rate-limited %s: over %g requests per second (429); raise "
                        "--rate-limit if this client is legitimate", address, self.rate)
