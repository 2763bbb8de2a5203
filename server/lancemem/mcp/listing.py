"""A hook on the first answered tools/list, the end of a client's handshake.

A stdio server starts its warm-up (LanceDB's import, the store, the model)
from here rather than at process start: the warm-up holds the GIL for most
of a second, and begun before the handshake it slowed every step of it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mcp.server.context import HandlerResult, ServerRequestContext
from mcp.server.mcpserver import MCPServer
from mcp.types import PaginatedRequestParams


def after_first_listing(server: MCPServer, callback: Callable[[], None]) -> None:
    """Call ``callback`` (on the event loop) once the server has built its first
    tools/list answer; later listings are served as before.

    Goes through the low-level server's handler table, like ``strict.serve_strictly``.
    """
    entry = server._lowlevel_server._request_handlers["tools/list"]
    list_tools = entry.handler
    called = False

    async def listing(ctx: ServerRequestContext[Any, Any],
                      params: PaginatedRequestParams | None) -> HandlerResult:
        nonlocal called
        result = await list_tools(ctx, params)
        if not called:
            called = True
            callback()
        return result

    server._lowlevel_server.add_request_handler("tools/list", entry.params_type, listing)
