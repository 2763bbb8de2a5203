"""Running the MCP server over stdio, SSE or streamable HTTP.

HTTP transports bind 127.0.0.1 by default with DNS-rebinding protection (a
foreign Host or Origin is refused). A non-loopback address is refused unless
the user opts in with ``--allow-remote``. On stdio, stdout carries the
protocol, so every log line goes to stderr.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import sys
import threading

import anyio
from mcp.server.transport_security import TransportSecuritySettings

from .config import Settings
from .errors import ValidationError
from .mcp_server import build_server
from .memory import Memory

log = logging.getLogger(__name__)
LOOPBACK_NAMES = ("localhost",)
# The server embeds a text or two per call while its reads run alongside (a
# search reads the scope during the embedding). One model thread leaves the
# other core to LanceDB: at 100,000 memories a vector search took 15 ms with
# one thread against 23 ms with two, whose idle threads spin between calls.
# Batch imports (`lancemem import`) keep a thread per core.
EMBEDDING_THREADS = 1


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine only (127.0.0.0/8, ::1, localhost)."""
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def transport_security(host: str, allow_remote: bool) -> TransportSecuritySettings:
    """Host/Origin checks for the HTTP transports; refuses unsafe binds."""
    if is_loopback(host):
        bracketed = f"[{host}]" if ":" in host else host
        hosts = sorted({"127.0.0.1", "localhost", "[::1]", bracketed})
        return TransportSecuritySettings(
            enable_dns_rebinding_protection=True,
            allowed_hosts=[f"{h}:*" for h in hosts],
            allowed_origins=[f"http://{h}:*" for h in hosts],
        )
    if not allow_remote:
        raise ValidationError(
            f"refusing to listen on {host}: it is reachable from other machines and lancemem "
            "has no authentication yet. Use 127.0.0.1, or pass --allow-remote "
            "(LANCEMEM_ALLOW_REMOTE=1) if the network is trusted."
        )
    log.warning("listening on %s with no authentication: anyone who can reach it can read "
                "and change every memory", host)
    return TransportSecuritySettings(enable_dns_rebinding_protection=False)


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
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


def _warm_up(memory: Memory) -> None:
    """Open the store and load the model in the background, off the handshake path."""
    def run() -> None:
        try:
            memory.ensure_open()
            load = getattr(memory.embedder, "load", None)
            if load:
                load()
        except Exception as exc:  # reported again, with its code, on the first tool call
            log.warning("warm-up failed: %s", exc)

    # Not a daemon: if the client leaves during warm-up, the interpreter must wait
    # for it rather than finalize under native code (Python aborts otherwise).
    threading.Thread(target=run, name="lancemem-warm-up").start()


def serve(settings: Settings) -> None:
    """Serve the tools on the configured transport until interrupted."""
    security = None
    if settings.transport != "stdio":
        security = transport_security(settings.host, settings.allow_remote)
    memory = Memory.from_settings(settings, embedding_threads=EMBEDDING_THREADS)
    server = build_server(settings, memory=memory)
    _warm_up(memory)
    if settings.transport == "stdio":
        log.info("serving MCP on stdio, store %s", settings.db)
        anyio.run(server.run_stdio_async)
        return
    import uvicorn

    if settings.transport == "sse":
        app, path = server.sse_app(transport_security=security, host=settings.host), "/sse"
    else:
        app = server.streamable_http_app(transport_security=security, host=settings.host)
        path = "/mcp"
    sock = _bind(settings.host, settings.port)
    port = sock.getsockname()[1]
    shown = f"[{settings.host}]" if ":" in settings.host else settings.host
    print(f"lancemem: serving {settings.transport} at http://{shown}:{port}{path} "
          f"(store {settings.db})", file=sys.stderr, flush=True)
    config = uvicorn.Config(app, log_level="warning", lifespan="on")
    uvicorn.Server(config).run(sockets=[sock])
