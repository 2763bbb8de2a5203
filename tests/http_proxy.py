"""A small HTTP proxy on 127.0.0.1 for tests: round robin over upstreams,
optionally dropping request headers.

Used as a load balancer without sticky sessions in front of several lancemem
servers, and as an S3 server without conditional writes (object_store.py).
Responses are read whole before they are passed on, so it suits requests
that end (S3 calls, stateless streamable HTTP), not open event streams.
"""

from __future__ import annotations

import http.client
import http.server
import itertools
import socketserver
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

_HOP_BY_HOP = ("transfer-encoding", "content-length", "connection", "keep-alive")


class _Handler(http.server.BaseHTTPRequestHandler):
    """Forwards each request to the next upstream, without ``dropped`` headers."""

    protocol_version = "HTTP/1.1"
    upstreams: Iterator[tuple[str, int]]
    dropped: frozenset[str]
    lock: threading.Lock
    seen: list[tuple[str, int]]

    def _forward(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        headers = {k: v for k, v in self.headers.items()
                   if k.lower() not in self.dropped and k.lower() not in _HOP_BY_HOP}
        with self.lock:
            upstream = next(self.upstreams)
            self.seen.append(upstream)
        conn = http.client.HTTPConnection(*upstream, timeout=120)
        try:
            conn.request(self.command, self.path, body=body, headers=headers)
            answer = conn.getresponse()
            data = answer.read()
            self.send_response(answer.status, answer.reason)
            for key, value in answer.getheaders():
                if key.lower() not in _HOP_BY_HOP:
                    self.send_header(key, value)
            # HEAD answers carry the resource's length, not the (empty) body's
            length_header = answer.getheader("Content-Length") if self.command == "HEAD" else None
            self.send_header("Content-Length", length_header or str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)
        finally:
            conn.close()

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        return


class _Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True


@contextmanager
def forwarding(upstreams: Sequence[str], *, drop_headers: Sequence[str] = (),
               seen: list[tuple[str, int]] | None = None) -> Iterator[str]:
    """A proxy URL (``http://127.0.0.1:PORT``) sending request after request to
    the next of ``upstreams`` (``http://host:port`` each); ``seen`` collects
    which upstream got each request."""
    targets = []
    for url in upstreams:
        host, _, port = url.removeprefix("http://").partition(":")
        targets.append((host, int(port)))
    handler = type("Handler", (_Handler,), {
        "upstreams": itertools.cycle(targets),
        "dropped": frozenset(h.lower() for h in drop_headers),
        "lock": threading.Lock(), "seen": seen if seen is not None else []})
    server = _Server(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
