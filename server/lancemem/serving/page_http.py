"""The memory browser's HTTP plumbing: security headers, routing the page's
paths beside the MCP endpoint, its static files, and how an API request is
checked (credential, write headers, parameters, body) and how a refusal looks.

The handlers themselves are page.py's.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from importlib import resources
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..core.errors import (
    AuthenticationError,
    ConflictError,
    LanceMemError,
    NotFoundError,
    PermissionDeniedError,
    ValidationError,
)
from ..core.principal import Principal
from ..mcp.auth import PrincipalToken, ServerAuth

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
SECURITY_HEADERS = (
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
)
# The page's files (server/lancemem/page/), by the name they are served under.
# A fixed list: a request names one of these or gets 404, so no path reaches the disk.
ASSETS = {
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}
INDEX = "index.html"
PAGE_PREFIXES = ("/page/", "/api/")
# A cross-site form can send neither this header nor a JSON content type without
# a CORS preflight, which nothing here answers.
WRITE_HEADER = "x-lancemem-page"
MAX_BODY = 1 << 20  # an edit is a text and its metadata; 1 MiB is plenty
_STATUS = ((AuthenticationError, 401), (PermissionDeniedError, 403), (NotFoundError, 404),
           (ValidationError, 400), (ConflictError, 409))


class PageError(Exception):
    """A request the API refuses before any Memory call: its status, code and message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def is_page_path(path: str) -> bool:
    """Whether a request path belongs to the page (the rest is the MCP endpoint's)."""
    return path in ("/", "/api") or path.startswith(PAGE_PREFIXES)


def read_asset(name: str) -> bytes:
    """One of the page's files, from inside the installed package."""
    return resources.files("lancemem").joinpath("page", name).read_bytes()


class SecurityHeaders:
    """ASGI wrapper adding the page's security headers to every response, and
    ``Cache-Control: no-store`` to the API's (memories must not linger in caches)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on; add the headers to its response."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cache = b"no-store" if scope["path"].startswith("/api") else b"no-cache"

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(key, value) for key, value in message.get("headers", [])
                           if key.lower() != b"cache-control"]
                message = {**message, "headers": [*headers, *SECURITY_HEADERS,
                                                  (b"cache-control", cache)]}
            await send(message)

        await self.app(scope, receive, with_headers)


class PageRouter:
    """ASGI app sending the page's paths to the page and the rest (and lifespan
    events) to the MCP app, so both sit behind one guard and one rate limit."""

    def __init__(self, page: ASGIApp, rest: ASGIApp) -> None:
        self.page = page
        self.rest = rest

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Dispatch by path."""
        if scope["type"] == "http" and is_page_path(scope["path"]):
            await self.page(scope, receive, send)
        else:
            await self.rest(scope, receive, send)


def error_response(status: int, code: str, message: str,
                   headers: Mapping[str, str] | None = None) -> JSONResponse:
    """The API's one error shape: ``{"error": {"code", "message"}}``."""
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status,
                        headers=dict(headers or {}))


def lancemem_error_response(exc: LanceMemError) -> JSONResponse:
    """A domain error with the status that fits it (500 for the store or model failing)."""
    status = next((code for kind, code in _STATUS if isinstance(exc, kind)), 500)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return error_response(status, exc.code, exc.message, headers)


async def http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own refusals (404, 405) as the API's JSON errors under /api."""
    assert isinstance(exc, HTTPException)
    if not request.url.path.startswith("/api"):
        return Response(str(exc.detail), status_code=exc.status_code, media_type="text/plain")
    return error_response(exc.status_code, f"HTTP_{exc.status_code}", str(exc.detail))


def loggable(value: object) -> str:
    """A value a client chose (a header, a path, an error echoing them) safe for
    one log line: escaped, so no control or line-breaking character gets
    through, and cut to 200 characters."""
    return str(value)[:200].encode("unicode_escape").decode("ascii")


async def authenticate(request: Request, auth: ServerAuth | None) -> Principal | None:
    """The request's caller, by the MCP endpoint's own verifier (None: no auth).

    Refuses (AuthenticationError, 401) a missing or malformed Authorization
    header and a credential the verifier does not accept.
    """
    if auth is None:
        return None
    scheme, _, credential = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not credential.strip():
        raise AuthenticationError("this server requires a credential: paste a token "
                                  "(`lancemem token create`) into the login form.")
    token = await auth.verifier.verify_token(credential.strip())
    if not isinstance(token, PrincipalToken):
        raise AuthenticationError("the credential was refused (unknown, expired or revoked); "
                                  "log in again with a valid token.")
    return token.principal


def check_write_request(request: Request) -> None:
    """Refuse (403) a write without a JSON content type and the page's own header."""
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media != "application/json" or request.headers.get(WRITE_HEADER) != "1":
        raise PageError(403, "PAGE_001", "a change needs 'Content-Type: application/json' "
                        f"and '{WRITE_HEADER.title()}: 1' (the page sends both); nothing "
                        "was changed.")


def query_params(request: Request, allowed: Iterable[str]) -> dict[str, str]:
    """The request's query parameters, each at most once and each one of ``allowed``."""
    allowed = set(allowed)
    params: dict[str, str] = {}
    for key, value in request.query_params.multi_items():
        if key not in allowed:
            raise PageError(400, ValidationError.code, f"unknown parameter {key!r}; this "
                            f"endpoint takes {', '.join(sorted(allowed))}.")
        if key in params:
            raise PageError(400, ValidationError.code, f"parameter {key!r} is given twice; "
                            "give it once.")
        params[key] = value
    return params


def number(params: Mapping[str, str], key: str, kind: type, default: Any) -> Any:
    """A numeric query parameter (``kind`` int or float), or ``default`` when absent."""
    raw = params.get(key)
    if raw is None or raw == "":
        return default
    try:
        return kind(raw)
    except ValueError:
        raise PageError(400, ValidationError.code,
                        f"{key!r} must be a number, got {raw!r}.") from None


async def json_object(request: Request) -> dict[str, Any]:
    """The request's body: one JSON object of at most MAX_BODY bytes."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            raise PageError(413, ValidationError.code, f"the body is over {MAX_BODY} bytes.")
    try:
        value = json.loads(body or b"{}")
    except (ValueError, RecursionError):
        raise PageError(400, ValidationError.code, "the body is not valid JSON.") from None
    if not isinstance(value, dict):
        raise PageError(400, ValidationError.code, "the body must be a JSON object.")
    return value
