"""The HTTP transports' listening socket: connections it accepts send at once.

lancemem binds its socket itself (so the port is known before uvicorn runs).
asyncio turns Nagle's algorithm off only on connections whose socket says it
is TCP; on one created with the default protocol number every answer waited
for the client's delayed ACK.
"""

from __future__ import annotations

import asyncio
import socket

from lancemem.serving.serve import _bind


async def _accepted_nodelay(host: str) -> int:
    """TCP_NODELAY on the server side of one connection to a socket from ``_bind``."""
    listening = _bind(host, 0)
    seen: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        seen.set_result(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
        writer.close()

    server = await asyncio.start_server(accepted, sock=listening)
    async with server:
        _, writer = await asyncio.open_connection(*listening.getsockname()[:2])
        value = await asyncio.wait_for(seen, 10)
        writer.close()
    return value


def test_connections_on_the_bound_socket_have_nagle_off() -> None:
    assert asyncio.run(_accepted_nodelay("127.0.0.1")) != 0


def test_the_bound_socket_is_tcp() -> None:
    listening = _bind("127.0.0.1", 0)
    with listening:
        assert listening.proto == socket.IPPROTO_TCP
