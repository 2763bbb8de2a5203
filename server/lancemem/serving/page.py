"""The memory browser: a web page at ``/``, its files under ``/page/`` and its
JSON API under ``/api/``.

It is served beside the MCP endpoint (``serve --transport streamable-http|sse``)
or alone (``lancemem ui``), always behind the same Host/Origin guard and rate
limit. Its security model:

- Authentication is the MCP endpoint's: with ``--auth`` every API request
  carries ``Authorization: Bearer ...``, checked by the same verifier, and its
  scope ids are bound to the credential (and to the server's pins) by the
  tools' own rule, mcp.server.bind_call. The page keeps the credential in
  sessionStorage and sends it as a header: no cookies, so no ambient
  credential for a foreign site to ride on.
- Every write also needs ``Content-Type: application/json`` and
  ``X-Lancemem-Page: 1``, which a cross-site form cannot send without a CORS
  preflight, and no CORS header is ever sent.
- A strict Content-Security-Policy (scripts, styles and requests to this
  origin only, nothing inline), ``nosniff``, no framing, no referrer; the
  script renders every stored value as text.

Memory calls block (LanceDB, the model), so they run in worker threads.
"""

from __future__ import annotations

import functools
import itertools
import logging
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import anyio.to_thread
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp

from ..core.config import SCOPE_KEYS, Settings
from ..core.errors import LanceMemError, ValidationError
from ..core.exchange import dumps
from ..core.principal import Principal
from ..mcp.auth import ServerAuth
from ..mcp.server import bind_call, pinned_ids
from ..memory.facade import Memory
from .page_http import (
    ASSETS,
    INDEX,
    PageError,
    SecurityHeaders,
    authenticate,
    check_write_request,
    error_response,
    http_error,
    json_object,
    lancemem_error_response,
    loggable,
    number,
    query_params,
    read_asset,
)

log = logging.getLogger(__name__)
PAGE_SIZE = 20  # memories per page of the list
RELATIONS_SHOWN = 200
EDITABLE = frozenset({"text", "metadata"})
Handler = Callable[[Request], Awaitable[Response]]


@dataclass(frozen=True)
class Call:
    """One checked API request: its bound scope ids, its other parameters, its caller."""

    ids: dict[str, Any]
    params: dict[str, str]
    principal: Principal | None


def _export_lines(memory: Memory, ids: Mapping[str, Any]) -> Iterator[str]:
    """The scope as ``lancemem export --include-history`` writes it (expired
    memories too: an export is a complete copy), so ``lancemem import`` restores
    the download; read as the response streams."""
    for line in memory.export(**ids, include_history=True):
        yield dumps(line) + "\n"


def _endpoint(handler: Callable[..., Awaitable[Response]]) -> Callable[..., Awaitable[Response]]:
    """Turn refusals and errors into the API's JSON errors (never a traceback)."""
    @functools.wraps(handler)
    async def endpoint(self: PageApi, request: Request) -> Response:
        try:
            return await handler(self, request)
        except PageError as exc:
            return error_response(exc.status, exc.code, exc.message)
        except LanceMemError as exc:
            log.info("page request %s %s failed: %s", request.method,
                     loggable(request.url.path), loggable(exc))
            return lancemem_error_response(exc)
        except Exception:
            log.exception("page request %s %s failed", request.method,
                          loggable(request.url.path))
            return error_response(500, "INTERNAL", "the server failed; see its log.")

    return endpoint


class PageApi:
    """The API's handlers over one Memory, with the server's auth and pins."""

    def __init__(self, memory: Memory, *, auth: ServerAuth | None, auth_mode: str,
                 pinned: Mapping[str, str], defaults: Mapping[str, str]) -> None:
        self.memory = memory
        self.auth = auth
        self.auth_mode = auth_mode
        self.pinned = dict(pinned)
        self.defaults = dict(defaults)

    async def _call(self, request: Request, action: str, *, writes: bool = False,
                    takes: tuple[str, ...] = ()) -> Call:
        """Check a request (write headers, credential, parameters) and bind its ids."""
        if writes:
            check_write_request(request)
        principal = await authenticate(request, self.auth)
        params = query_params(request, (*SCOPE_KEYS, *takes))
        ids = bind_call(action, {key: params.get(key) or None for key in SCOPE_KEYS},
                        principal=principal, pinned=self.pinned, writes=writes,
                        authenticated=self.auth is not None)
        return Call(ids, params, principal)

    @staticmethod
    async def _run(method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return await anyio.to_thread.run_sync(functools.partial(method, *args, **kwargs))

    @_endpoint
    async def session(self, request: Request) -> Response:
        """Who the caller is and what the server pins: the page's first request."""
        principal = await authenticate(request, self.auth)
        query_params(request, ())
        who = None if principal is None else {
            "name": principal.name, "label": principal.label, "read_only": principal.read_only,
            "pins": principal.pins()}
        return JSONResponse({"auth": self.auth_mode, "principal": who, "pinned": self.pinned,
                             "defaults": self.defaults})

    @_endpoint
    async def scopes(self, request: Request) -> Response:
        """The ids that hold memories, with counts (within the caller's binding)."""
        call = await self._call(request, "scopes")
        return JSONResponse(await self._run(self.memory.scopes, **call.ids))

    @_endpoint
    async def listing(self, request: Request) -> Response:
        """One page of the scope's memories, newest first."""
        call = await self._call(request, "list_memories", takes=("cursor", "limit"))
        return JSONResponse(await self._run(
            self.memory.get_all, **call.ids, cursor=call.params.get("cursor") or None,
            limit=number(call.params, "limit", int, PAGE_SIZE)))

    @_endpoint
    async def search(self, request: Request) -> Response:
        """The scope's memories best matching ``q``, each with its score."""
        call = await self._call(request, "search_memories",
                                takes=("q", "mode", "limit", "threshold"))
        return JSONResponse(await self._run(
            self.memory.search, call.params.get("q", ""), **call.ids,
            mode=call.params.get("mode") or None,
            limit=number(call.params, "limit", int, 10),
            threshold=number(call.params, "threshold", float, None)))

    @_endpoint
    async def one(self, request: Request) -> Response:
        """GET, PATCH (``{"text"?, "metadata"?}``) or DELETE one memory of the scope."""
        memory_id = request.path_params["memory_id"]
        if request.method == "GET":
            call = await self._call(request, "get_memory")
            return JSONResponse(await self._run(self.memory.get, memory_id, **call.ids))
        if request.method == "DELETE":
            call = await self._call(request, "delete_memory", writes=True)
            return JSONResponse(await self._run(self.memory.delete, memory_id, **call.ids,
                                                principal=call.principal))
        call = await self._call(request, "update_memory", writes=True)
        change = await json_object(request)
        unknown = sorted(set(change) - EDITABLE)
        if unknown or not change:
            raise PageError(400, ValidationError.code, "an edit is a JSON object with 'text' "
                            f"and/or 'metadata'; got {unknown or 'nothing'}.")
        return JSONResponse(await self._run(
            self.memory.update, memory_id, text=change.get("text"),
            metadata=change.get("metadata"), **call.ids, principal=call.principal))

    @_endpoint
    async def history(self, request: Request) -> Response:
        """One memory's changes, oldest first."""
        call = await self._call(request, "memory_history")
        return JSONResponse(await self._run(self.memory.history,
                                            request.path_params["memory_id"], **call.ids))

    @_endpoint
    async def relations(self, request: Request) -> Response:
        """The scope's valid relations, newest first (for the graph)."""
        call = await self._call(request, "list_relations")
        return JSONResponse(await self._run(self.memory.list_relations, **call.ids,
                                            limit=RELATIONS_SHOWN))

    @_endpoint
    async def export(self, request: Request) -> Response:
        """The scope's memories as a JSON Lines download, streamed a page at a time."""
        call = await self._call(request, "export")
        lines = _export_lines(self.memory, call.ids)
        first = await anyio.to_thread.run_sync(next, lines, None)  # errors answer as JSON
        body = itertools.chain([] if first is None else [first], lines)
        return StreamingResponse(body, media_type="application/jsonl; charset=utf-8", headers={
            "Content-Disposition": 'attachment; filename="lancemem-export.jsonl"'})


async def _index(request: Request) -> Response:
    return Response(read_asset(INDEX), media_type="text/html; charset=utf-8")


async def _asset(request: Request) -> Response:
    name = request.path_params["name"]
    if name not in ASSETS:
        return Response("Not Found", status_code=404, media_type="text/plain")
    return Response(read_asset(name), media_type=ASSETS[name])


def _routes(api: PageApi) -> list[Route]:
    """The page, its files, and the API's endpoints."""
    endpoints: list[tuple[str, Handler, list[str]]] = [
        ("/api/session", api.session, ["GET"]),
        ("/api/scopes", api.scopes, ["GET"]),
        ("/api/memories", api.listing, ["GET"]),
        ("/api/search", api.search, ["GET"]),
        ("/api/memories/{memory_id}", api.one, ["GET", "PATCH", "DELETE"]),
        ("/api/memories/{memory_id}/history", api.history, ["GET"]),
        ("/api/relations", api.relations, ["GET"]),
        ("/api/export", api.export, ["GET"]),
    ]
    return [Route("/", _index, methods=["GET"]),
            Route("/page/{name}", _asset, methods=["GET"]),
            *(Route(path, handler, methods=methods) for path, handler, methods in endpoints)]


def page_app(memory: Memory, settings: Settings, auth: ServerAuth | None) -> ASGIApp:
    """The page and its API over ``memory``, requiring ``auth``'s credential if given."""
    api = PageApi(memory, auth=auth, auth_mode=settings.auth, pinned=pinned_ids(settings),
                  defaults=settings.scope_defaults())
    app = Starlette(routes=_routes(api), exception_handlers={HTTPException: http_error})
    return SecurityHeaders(app)

