"""Running the MCP server over stdio, SSE or streamable HTTP.

HTTP transports bind 127.0.0.1 by default with DNS-rebinding protection (a
foreign Host or Origin is refused). A non-loopback address needs
authentication (``--auth token|jwt``) or an explicit ``--allow-remote``; the
protection stays on either way, and ``--allowed-host`` (or the host of
``--public-url``) names the public host names clients use. Every HTTP request
passes a per-client rate limit first. On stdio, stdout carries the protocol,
so every log line goes to stderr.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
import sys
from collections.abc import Iterable, Sequence
from concurrent.futures import Future

import anyio
import anyio.to_thread
from mcp.server.mcpserver import MCPServer
from mcp.server.transport_security import TransportSecuritySettings
from starlette.datastructures import Headers
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..core.config import Settings, normalize_allowed_host
from ..core.errors import ValidationError
from ..core.object_storage import describe, is_remote, secrets
from ..mcp.auth import ServerAuth, jwt_auth, token_auth
from ..mcp.listing import after_first_listing
from ..mcp.server import build_server
from ..memory.facade import Memory
from .limits import CredentialLimiter, RateLimiter
from .page import page_app
from .page_http import MAX_BODY, PageRouter, loggable

log = logging.getLogger(__name__)
LOOPBACK_NAMES = ("localhost",)
# Host header forms of this machine, always accepted.
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")
TRANSPORT_LABELS = {"sse": "an SSE", "streamable-http": "a streamable HTTP"}
# The server embeds a text or two per call while its reads run alongside (a
# search reads the scope during the embedding). One model thread leaves the
# other core to LanceDB: at 100,000 memories a vector search took 15 ms with
# one thread against 23 ms with two, whose idle threads spin between calls.
# Batch imports (`lancemem import`) keep a thread per core.
EMBEDDING_THREADS = 1
# On stdio the warm-up waits for the first tools/list (it holds the GIL most of
# the time it runs, and begun at start it slowed the handshake), but no longer
# than this: a store that cannot be opened still stops a server nobody lists.
WARM_UP_GRACE = 0.5


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine only (127.0.0.0/8, ::1, localhost)."""
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _header_patterns(names: Iterable[str]) -> tuple[list[str], list[str]]:
    """Allowed Host and Origin values (SDK syntax, ``:*`` = any port) for ``names``.

    A name without a port is accepted with any port or none (a proxy on 443
    sends ``memory.example.com``); a name with a port only with that port.
    """
    hosts: list[str] = []
    for name in dict.fromkeys(names):
        has_port = name.rsplit("]", 1)[-1].count(":") == 1
        hosts.extend([name] if has_port else [name, f"{name}:*"])
    origins = [f"{scheme}://{host}" for host in hosts for scheme in ("http", "https")]
    return hosts, origins


def _is_unspecified(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")).is_unspecified
    except ValueError:
        return False


def transport_security(
    host: str, allow_remote: bool, allowed_hosts: Sequence[str] = (), *,
    authenticated: bool = False,
) -> TransportSecuritySettings:
    """Host/Origin checks for the HTTP transports; refuses unsafe binds.

    Accepted Host values: the loopback names, ``allowed_hosts`` and the bind
    address itself unless it is a wildcard (0.0.0.0, ::). Origins: http:// and
    https:// of the same. The protection is never switched off. A
    non-loopback bind needs ``authenticated`` or ``allow_remote``.
    """
    if not is_loopback(host) and not allow_remote and not authenticated:
        raise ValidationError(
            f"refusing to listen on {host}: it is reachable from other machines and nothing "
            "would authenticate the callers. Use 127.0.0.1, turn on --auth token (see the "
            "README, 'Serving a team'), or pass --allow-remote (LANCEMEM_ALLOW_REMOTE=1) if "
            "the network is trusted."
        )
    names = [*LOOPBACK_HOSTS, *(normalize_allowed_host(name) for name in allowed_hosts)]
    if not _is_unspecified(host):
        names.append(normalize_allowed_host(host.strip("[]"), source="--host"))
    if not is_loopback(host):
        if not authenticated:
            log.warning("listening on %s with no authentication: anyone who can reach it can "
                        "read and change every memory", host)
        if not allowed_hosts and _is_unspecified(host):
            log.warning("listening on every interface (%s) with no --allowed-host: only "
                        "loopback Host headers (%s) will be accepted, other clients get 421; "
                        "pass --allowed-host NAME (LANCEMEM_ALLOWED_HOSTS) with the name or "
                        "address they connect to", host, ", ".join(LOOPBACK_HOSTS))
    hosts, origins = _header_patterns(names)
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True, allowed_hosts=hosts, allowed_origins=origins)


def _matches(value: str, patterns: Sequence[str]) -> bool:
    """An exact value, or ``base:*`` matching ``base:<port>``; host names ignore case.

    Stricter than the SDK's rule (which lets ``base:*`` match ``base:`` and
    anything after it, such as ``localhost:1@evil.example``): only digits may
    follow the colon.
    """
    value = value.lower()
    if value in patterns:
        return True
    return any(pattern.endswith(":*") and value.startswith(pattern[:-1])
               and value[len(pattern) - 1:].isdigit() for pattern in patterns)


class HostOriginGuard:
    """ASGI wrapper that refuses a foreign Host (421) or Origin (403) itself.

    The SDK's SSE endpoint refuses by raising after its 403/421, so uvicorn
    logs an ASGI traceback per refused request; answering here first leaves one
    warning line per refusal, for both transports. The SDK keeps its own
    identical check behind this one.
    """

    def __init__(self, app: ASGIApp, security: TransportSecuritySettings, transport: str) -> None:
        self.app = app
        self.security = security
        self.label = TRANSPORT_LABELS.get(transport, f"a {transport}")

    def _refusal(self, headers: Headers) -> tuple[int, str, str] | None:
        """(status, body, log detail) for a request to refuse, else None."""
        host = headers.get("host")
        if not host or not _matches(host, self.security.allowed_hosts):
            shown = loggable(host) if host else "(none)"
            return 421, "Invalid Host header", (
                f"with Host {shown} (not an allowed host; if clients use that name, "
                "pass --allowed-host)")
        foreign = [origin for origin in headers.getlist("origin")  # every one, not the first
                   if origin and not _matches(origin, self.security.allowed_origins)]
        if foreign:
            return 403, "Invalid Origin header", (
                f"from Origin {loggable(foreign[0])} (not an allowed origin)")
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass allowed requests (and lifespan events) through; refuse the rest."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.security.enable_dns_rebinding_protection:
            refusal = self._refusal(Headers(scope=scope))
            if refusal:
                status, body, detail = refusal
                log.warning("refused %s request %s", self.label, detail)
                await PlainTextResponse(body, status_code=status)(scope, receive, send)
                return
            scope = {**scope, "headers": _lowered_hosts(scope["headers"])}

        async def noting_too_large(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 413:
                limit = (f"the memory browser's {MAX_BODY >> 20} MiB"
                         if scope["path"].startswith("/api") else "the transport's 4 MiB")
                log.warning("refused %s request to %s: its body is over %s limit (413)",
                            self.label, loggable(scope["path"]), limit)
            await send(message)

        await self.app(scope, receive, noting_too_large)


def _lowered_hosts(headers: Iterable[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """Host and Origin values lower-cased, as the SDK's own (case-sensitive) check
    behind the guard expects them; host names ignore case."""
    return [(key, value.lower() if key in (b"host", b"origin") else value)
            for key, value in headers]


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    # IPPROTO_TCP, not the default 0: asyncio turns Nagle off (TCP_NODELAY) only on
    # connections whose socket says TCP, and with Nagle on every HTTP answer waited
    # for the client's delayed ACK, 40 ms a call.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as exc:
        sock.close()
        raise ValidationError(f"cannot listen on {host}:{port}: {exc.strerror}; "
                              "choose another --port.") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def endpoint_path(transport: str) -> str:
    """Where the transport's MCP endpoint is served."""
    return "/sse" if transport == "sse" else "/mcp"


def _http_app(server: MCPServer, settings: Settings, security: TransportSecuritySettings,
              page: ASGIApp) -> ASGIApp:
    """The transport's ASGI app, with the memory browser (``page``) beside it,
    behind the rate limit and the Host/Origin guard."""
    if settings.transport == "sse":
        app = server.sse_app(transport_security=security, host=settings.host)
    else:
        app = server.streamable_http_app(transport_security=security, host=settings.host,
                                         stateless_http=settings.stateless)
    return _guarded(PageRouter(page, app), settings, security, settings.transport)


def _guarded(app: ASGIApp, settings: Settings, security: TransportSecuritySettings,
             label: str) -> ASGIApp:
    """``app`` behind the rate limit, the per-credential limit and the Host/Origin guard."""
    guarded = HostOriginGuard(app, security, label)
    return RateLimiter(CredentialLimiter(guarded), settings.rate_limit)


def _public_names(settings: Settings) -> list[str]:
    """The allowed host names, with the host of ``--public-url`` among them."""
    names = list(settings.allowed_hosts)
    if settings.public_url:
        host = settings.public_url.split("://", 1)[1].split("/", 1)[0]
        names.append(normalize_allowed_host(host.rsplit("@", 1)[-1], source="--public-url"))
    return names


def serve(settings: Settings) -> None:
    """Serve the tools on the configured transport until interrupted."""
    if settings.auth != "none" and settings.transport == "stdio":
        raise ValidationError(
            f"--auth {settings.auth} is for the HTTP transports; on stdio the client starts "
            "lancemem as its own process, so there is nobody to authenticate. Add --transport "
            "streamable-http (or sse), or drop --auth (LANCEMEM_AUTH).")
    security = None
    if settings.transport != "stdio":
        security = transport_security(settings.host, settings.allow_remote,
                                      _public_names(settings),
                                      authenticated=settings.auth != "none")
    with Memory.from_settings(settings, embedding_threads=EMBEDDING_THREADS) as memory:
        if security is None:
            server = build_server(settings, memory=memory)
            log.info("serving MCP on stdio, store %s", settings.db)
            anyio.run(_serve_stdio, server, memory)
            return
        memory.warm_up().result()  # a store it cannot open fails here, before the port opens
        sock = _bind(settings.host, settings.port)
        base = _base_url(settings, sock.getsockname()[1])
        auth = _server_auth(settings, memory, f"{base}{endpoint_path(settings.transport)}")
        server = build_server(settings, memory=memory, auth=auth)
        app = _http_app(server, settings, security, page_app(memory, settings, auth))
        url = _bound_url(settings.host, sock.getsockname()[1])
        print(f"lancemem: serving {settings.transport} at {url}"
              f"{endpoint_path(settings.transport)} ({_store_and_auth(settings)}); memory "
              f"browser at {url}/", file=sys.stderr, flush=True)
        _run_uvicorn(app, sock)


def serve_page(settings: Settings) -> None:
    """``lancemem ui``: the memory browser alone (no MCP endpoint), on loopback only."""
    if not is_loopback(settings.host):
        raise ValidationError(
            f"refusing to serve the memory browser on {settings.host}: `lancemem ui` is for "
            "this machine only. Use 127.0.0.1, or `lancemem serve --transport "
            "streamable-http --auth token` to share the page (README, 'The memory browser').")
    security = transport_security(settings.host, False, _public_names(settings))
    with Memory.from_settings(settings, embedding_threads=EMBEDDING_THREADS) as memory:
        memory.warm_up().result()  # a store it cannot open fails here, before the port opens
        sock = _bind(settings.host, settings.port)
        url = _bound_url(settings.host, sock.getsockname()[1])
        auth = _server_auth(settings, memory, f"{url}/")
        app = _guarded(page_app(memory, settings, auth), settings, security, "memory browser")
        print(f"lancemem: memory browser at {url}/ ({_store_and_auth(settings)})",
              file=sys.stderr, flush=True)
        _run_uvicorn(app, sock)


async def _serve_stdio(server: MCPServer, memory: Memory) -> None:
    """Serve on stdio while the store opens alongside (the handshake need not wait
    for it); a store that cannot be opened ends the process with its error and
    exit status 1, rather than leaving tools that would all fail."""
    listed = anyio.Event()
    after_first_listing(server, listed.set)
    async with anyio.create_task_group() as group:
        group.start_soon(_warm_up_after, memory, listed)
        await server.run_stdio_async()
        group.cancel_scope.cancel()


async def _warm_up_after(memory: Memory, listed: anyio.Event) -> None:
    """Warm up once the client has its tool list, or after WARM_UP_GRACE without
    one (a client that calls at once opens the store in its first call anyway)."""
    with anyio.move_on_after(WARM_UP_GRACE):
        await listed.wait()
    await _exit_if_unopened(memory.warm_up())


async def _exit_if_unopened(opened: Future[None]) -> None:
    try:
        await anyio.to_thread.run_sync(opened.result)
    except Exception as exc:
        # The SDK reads stdin in a worker thread that cancelling cannot stop, so
        # the server would wait for the client's next line: leave at once instead
        # (nothing was written, the store never opened).
        print(f"lancemem: {secrets.redact(str(exc))}", file=sys.stderr, flush=True)
        os._exit(1)


def _store_and_auth(settings: Settings) -> str:
    """What a server's start line says of its store and authentication."""
    auth = "" if settings.auth == "none" else f", auth {settings.auth}"
    shared = ""
    if is_remote(settings.db):
        shared = f"; other servers' writes show within {settings.read_consistency:g} s"
    return f"store {describe(settings.db)}{shared}{auth}"


def _base_url(settings: Settings, port: int) -> str:
    """The server's URL as clients see it: --public-url, else the bound address."""
    if settings.public_url:
        return settings.public_url.rstrip("/")
    return _bound_url(settings.host, port)


def _bound_url(host: str, port: int) -> str:
    """``http://host:port`` of the listening socket (an IPv6 address bracketed)."""
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _server_auth(settings: Settings, memory: Memory, resource_url: str) -> ServerAuth | None:
    """The configured authentication, checked at start (a store it cannot read fails here)."""
    if settings.auth == "token":
        from ..storage.tokens import TokenAuthenticator, TokenTable

        authenticator = TokenAuthenticator(TokenTable(memory.store))
        if not authenticator.count():
            log.warning("--auth token: the store %s has no tokens yet, so every request will "
                        "get 401; create one with `lancemem token create --user-id ID --db "
                        "%s`", settings.db, settings.db)
        return token_auth(authenticator.authenticate)
    if settings.auth == "jwt":
        from .jwt_auth import JwtVerifier

        assert settings.jwt_issuer and settings.jwt_audience  # config checked them
        verifier = JwtVerifier(issuer=settings.jwt_issuer, audience=settings.jwt_audience,
                               jwks_url=settings.jwt_jwks_url,
                               user_claim=settings.jwt_user_claim)
        return jwt_auth(verifier.verify, settings, resource_url)
    return None


def _run_uvicorn(app: ASGIApp, sock: socket.socket) -> None:
    """Run uvicorn on the bound socket until interrupted."""
    import uvicorn

    # proxy_headers off: uvicorn would otherwise take the client address from
    # X-Forwarded-For sent through 127.0.0.1, which lets any local client pick the
    # address the rate limit counts against.
    config = uvicorn.Config(app, log_level="warning", lifespan="on", proxy_headers=False)
    uvicorn.Server(config).run(sockets=[sock])
