"""The MCP tools: thin, typed wrappers over Memory.

Each tool runs its Memory call in a worker thread (LanceDB and fastembed
block), turns lancemem errors into tool errors whose text starts with the
stable code, and returns a typed result (structured content plus its JSON
text). Ids pinned by the server's configuration are removed from the tools'
schemas and always applied.
Calls are checked strictly before a tool runs (mcp_strict). On an
authenticated server every call is bound to its caller's credential
(principal.bind_ids): its ids are filled in, other ids and read-only writes
are refused (AUTH_002), and changes are recorded in history under its name.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Annotated, Any, Literal

import anyio.to_thread
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.tools import Tool
from mcp.types import ToolAnnotations
from pydantic import Field

from .. import __version__
from ..core.config import SCOPE_KEYS, Settings
from ..core.errors import (
    AuthenticationError,
    LanceMemError,
    ScopeConflictError,
    ValidationError,
)
from ..core.principal import Principal, bind_ids, check_may_write
from ..memory.facade import Memory
from .auth import ServerAuth, current_principal
from .models import (
    AddResult,
    ChatMessage,
    Deleted,
    DeletedCount,
    ExportPage,
    HistoryList,
    MemoryItem,
    MemoryPage,
)
from .relation_models import SearchResult
from .relation_tools import relation_tools
from .scope_fields import scope_id_fields
from .strict import ServedTool, error_result, serve_strictly

log = logging.getLogger(__name__)

INSTRUCTIONS = """\
lancemem is your long-term memory. Save facts, preferences and decisions worth \
recalling in later conversations with add_memory; before answering, look for \
what you already know with search_memories. Memories are scoped: user_id is whose \
memory it is, agent_id which assistant, run_id which conversation. A call sees only \
memories matching every id it gives. Relations between people, places and things \
(add_relations: "Alice works at Acme") are searched with search_relations and come \
back beside search_memories results."""

FILTERS_HELP = (
    "Optional filter object. Keys: custom metadata keys, actor_id, role, created_at, "
    "updated_at, expiration_date. Operators: eq ne gt gte lt lte in nin contains icontains; logic: "
    'AND OR NOT with lists. Examples: {"category": "food"}; '
    '{"AND": [{"priority": {"gte": 5}}, {"created_at": {"gt": "2026-01-01"}}]}.'
)

UserId, AgentId, RunId = scope_id_fields("memories")
ActorId = Annotated[str | None, Field(
    description="Who said it (e.g. a speaker's name). On add: attributed to messages "
    "without a name. On search/list: only memories said by this actor.")]
MemoryId = Annotated[str, Field(description="The memory's id, as returned by add, search "
                                            "or list.")]
Filters = Annotated[dict[str, Any] | None, Field(description=FILTERS_HELP)]
Metadata = Annotated[dict[str, Any] | None, Field(
    description='Custom key/value data to store with the memory, e.g. {"category": "food"}.')]
ExpirationDate = Annotated[str | None, Field(
    description="When the memory stops being relevant, e.g. for a plan or a temporary fact: "
    "a date '2026-12-31' (kept through that day, UTC) or a datetime "
    "'2026-12-31T18:00:00+01:00' (no offset means UTC). From then on search, list and get "
    "leave it out (show_expired shows it); a date already past hides it at once.")]
ShowExpired = Annotated[bool, Field(
    description="Also return memories whose expiration_date has passed (hidden by default).")]

_READ = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True,
                        open_world_hint=False)
_WRITE = ToolAnnotations(read_only_hint=False, destructive_hint=False, open_world_hint=False)
_DESTROY = ToolAnnotations(read_only_hint=False, destructive_hint=True, open_world_hint=False)
def _check_filters_against_pins(filters: Any, pinned: Mapping[str, str]) -> None:
    """Refuse a plain-string filter entry naming another id than a pin, saying
    that the server pins it (the caller never gave the pinned id itself)."""
    if not isinstance(filters, Mapping):
        return
    for name, pin in pinned.items():
        value = filters.get(name)
        if isinstance(value, str) and value.strip() != pin:
            raise ScopeConflictError(
                f"this server pins '{name}' to {pin!r}, but filters name {value!r}; leave "
                f"'{name}' out: every call uses the pinned id.")


def pinned_ids(settings: Settings) -> dict[str, str]:
    """The scope ids the server's configuration pins (--pin-user-id, ...)."""
    return {name: getattr(settings, name) for name in settings.pinned
            if name in SCOPE_KEYS and getattr(settings, name)}


def bind_call(action: str, ids: Mapping[str, Any], *, principal: Principal | None,
              pinned: Mapping[str, str], writes: bool, authenticated: bool,
              filters: Any = None) -> dict[str, Any]:
    """A call's scope ids bound to its caller and the server's pins: the rule
    every tool and the web page apply.

    With a credential, its ids are filled in, and ids outside it or the
    server's pins, and writes (``action`` names them) with a read-only
    credential, are refused. Then the pins apply (silently replacing an id
    only on an unauthenticated server). An unauthenticated call on a server
    that requires authentication never runs (it cannot get here over HTTP:
    fail closed).
    """
    bound = dict(ids)
    if principal is None:
        if authenticated:
            raise AuthenticationError("this server requires a credential; none came with "
                                      "the call.")
    else:
        if writes:
            check_may_write(principal, action)
        bound.update(bind_ids(principal, {key: ids.get(key) for key in SCOPE_KEYS},
                              filters, server_pins=pinned))
    bound.update(pinned)
    _check_filters_against_pins(filters, pinned)
    return bound


def _tool(fn: Callable[..., Awaitable[Any]], pinned: Mapping[str, str], *,
          writes: bool, authenticated: bool) -> Callable[..., Any]:
    """Wrap a tool: bind it to the caller, apply pinned ids (hidden from its
    schema by ``_hide``, but still accepted, so a credential's call naming
    another id is refused rather than rebound) and code its errors."""
    signature = inspect.signature(fn, eval_str=True)

    @functools.wraps(fn)
    async def tool(**kwargs: Any) -> Any:
        try:
            bound = bind_call(fn.__name__, {key: kwargs.get(key) for key in SCOPE_KEYS},
                              principal=current_principal(), pinned=pinned, writes=writes,
                              authenticated=authenticated, filters=kwargs.get("filters"))
            kwargs.update({name: value for name, value in bound.items()
                           if name in signature.parameters})
            return await fn(**kwargs)
        except LanceMemError as exc:
            log.info("tool %s failed: %s", fn.__name__, exc)
            return error_result(exc)

    tool.__signature__ = signature  # type: ignore[attr-defined]
    del tool.__wrapped__  # the schema must come from the signature above
    return tool


def _hide(tool: Tool, pinned: Mapping[str, str]) -> Tool:
    """Leave pinned ids out of the advertised schema (they are still validated
    and reach the wrapper)."""
    properties = tool.parameters.get("properties", {})
    for name in pinned:
        properties.pop(name, None)
    if "required" in tool.parameters:
        tool.parameters["required"] = [n for n in tool.parameters["required"] if n not in pinned]
    return tool


def build_server(settings: Settings, *, memory: Memory | None = None,
                 auth: ServerAuth | None = None) -> MCPServer:
    """The lancemem MCP server: eight memory tools and four relation tools over one Memory.

    With ``auth``, its HTTP apps refuse requests without a valid credential
    (401) and bind every call to the credential's ids.
    """
    memory = memory or Memory.from_settings(settings)
    pinned = pinned_ids(settings)

    async def call(method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return await anyio.to_thread.run_sync(functools.partial(method, *args, **kwargs))

    async def add_memory(
        text: Annotated[str | None, Field(description="The fact to remember, in plain words. "
                                          "Give this or messages.")] = None,
        messages: Annotated[list[ChatMessage] | None, Field(
            description="Chat messages to remember, each stored as one memory.")] = None,
        user_id: UserId = None, agent_id: AgentId = None, run_id: RunId = None,
        actor_id: ActorId = None, metadata: Metadata = None,
        expiration_date: ExpirationDate = None,
    ) -> AddResult:
        """Remember something for later conversations.

        Use when the user shares a fact, preference, plan or decision worth recalling
        later. Pass `text`, or `messages` (each message becomes one memory, its `name`
        recorded as who said it). Text already stored in the same scope is not stored
        twice: event NONE, or UPDATE when the stored copy changed (it had expired and
        comes back with this call's expiration_date, or this call's `metadata` differs
        and replaces its metadata). Give `expiration_date` for facts that stop being
        true, e.g. "visiting Lisbon until 2026-12-31".
        """
        if (text is None) == (messages is None):
            raise ValidationError("give exactly one of 'text' or 'messages'.")
        payload: Any = text if text is not None else [
            m.model_dump(exclude_none=True) for m in messages or []]
        return AddResult.model_validate(await call(
            memory.add, payload, user_id=user_id, agent_id=agent_id, run_id=run_id,
            actor_id=actor_id, metadata=metadata, principal=current_principal(),
            expiration_date=expiration_date))

    async def search_memories(
        query: Annotated[str, Field(description="What to look for, in natural language.")],
        user_id: UserId = None, agent_id: AgentId = None, run_id: RunId = None,
        actor_id: ActorId = None, filters: Filters = None,
        limit: Annotated[int, Field(ge=1, le=1000, description="At most this many.")] = 10,
        threshold: Annotated[float | None, Field(
            description="Drop results whose score (relevance, 0 to 1) is below this, "
            "e.g. 0.3.")] = None,
        mode: Annotated[Literal["hybrid", "vector", "keyword"] | None, Field(
            description="How to rank: 'hybrid' (meaning and shared words, the usual "
            "default), 'vector' (meaning only) or 'keyword' (shared words only, BM25). "
            "Leave unset for the server's default.")] = None,
        show_expired: ShowExpired = False,
    ) -> SearchResult:
        """Find the memories most relevant to a query, best first, each with a score.

        Use before answering anything that may depend on what you learned earlier.
        Put names and distinctive words in the query: they are matched as words too.
        Expired memories are left out unless show_expired is true.
        Example filters: {"category": "food"} or
        {"AND": [{"priority": {"gte": 5}}, {"created_at": {"gt": "2026-01-01"}}]}.
        Beside the memories, `relations` lists stored relations about the entities
        that the query or the memories name.
        """
        return SearchResult.model_validate(await call(
            memory.search, query, user_id=user_id, agent_id=agent_id, run_id=run_id,
            actor_id=actor_id, filters=filters, limit=limit, threshold=threshold, mode=mode,
            show_expired=show_expired))

    async def list_memories(
        user_id: UserId = None, agent_id: AgentId = None, run_id: RunId = None,
        actor_id: ActorId = None, filters: Filters = None,
        limit: Annotated[int, Field(ge=1, le=1000, description="At most this many "
                                    "(one page).")] = 100,
        cursor: Annotated[str | None, Field(description="The next_cursor of the previous "
                                            "page, to get the page after it.")] = None,
        show_expired: ShowExpired = False,
    ) -> MemoryPage:
        """List the memories in a scope, newest first, a page at a time.

        Use to review everything known about a user, agent or session. total says how
        many there are; when next_cursor is not null, more remain: call again with
        cursor=next_cursor (same ids and filters). Expired memories are left out unless
        show_expired is true. Example filters: {"category": "food"} or
        {"OR": [{"role": "assistant"}, {"tags": {"contains": "x"}}]}.
        """
        return MemoryPage.model_validate(await call(
            memory.get_all, user_id=user_id, agent_id=agent_id, run_id=run_id,
            actor_id=actor_id, filters=filters, limit=limit, cursor=cursor,
            show_expired=show_expired))

    async def export_memories(
        user_id: UserId = None, agent_id: AgentId = None, run_id: RunId = None,
        include_history: Annotated[bool, Field(description="Also each memory's history "
                                               "(ADD/UPDATE/DELETE rows).")] = False,
        limit: Annotated[int, Field(ge=1, le=1000, description="At most this many "
                                    "memories (one page).")] = 100,
        cursor: Annotated[str | None, Field(description="The next_cursor of the previous "
                                            "page, to get the page after it.")] = None,
    ) -> ExportPage:
        """Export a scope's memories as the lines `lancemem export` writes, a page at a time.

        Use when the user wants a copy of everything remembered (to back it up or move it
        to another lancemem with `lancemem import`). Expired memories are included. When
        next_cursor is not null, call again with cursor=next_cursor (same ids).
        """
        return ExportPage.model_validate(await call(
            memory.export_page, user_id=user_id, agent_id=agent_id, run_id=run_id,
            include_history=include_history, limit=limit, cursor=cursor))

    async def get_memory(memory_id: MemoryId, user_id: UserId = None, agent_id: AgentId = None,
                         run_id: RunId = None, show_expired: ShowExpired = False) -> MemoryItem:
        """Read one memory by its id (only if it is in your scope; an expired one only
        with show_expired, otherwise it is reported as not found)."""
        return MemoryItem.model_validate(await call(
            memory.get, memory_id, user_id=user_id, agent_id=agent_id, run_id=run_id,
            show_expired=show_expired))

    async def update_memory(
        memory_id: MemoryId,
        text: Annotated[str | None, Field(description="The corrected text.")] = None,
        metadata: Annotated[dict[str, Any] | None, Field(
            description="New custom metadata; replaces the old metadata.")] = None,
        user_id: UserId = None, agent_id: AgentId = None, run_id: RunId = None,
        expiration_date: Annotated[str | None, Field(
            description="A new expiration date, replacing the old one: a date '2026-12-31' "
            "(kept through that day, UTC) or a datetime '2026-12-31T18:00:00+01:00'. "
            "'' removes it: the memory never expires.")] = None,
    ) -> MemoryItem:
        """Correct a memory's text, replace its metadata and/or change when it expires;
        its scope never changes.

        Use when a remembered fact changed (the user moved, changed their mind), or to
        extend or end a memory's life. Expired memories can be updated too. The change
        is kept in the memory's history.
        """
        return MemoryItem.model_validate(await call(
            memory.update, memory_id, text=text, metadata=metadata, user_id=user_id,
            agent_id=agent_id, run_id=run_id, principal=current_principal(),
            expiration_date=expiration_date))

    async def delete_memory(memory_id: MemoryId, user_id: UserId = None,
                            agent_id: AgentId = None, run_id: RunId = None) -> Deleted:
        """Forget one memory by its id. Its history is kept."""
        return Deleted.model_validate(await call(
            memory.delete, memory_id, user_id=user_id, agent_id=agent_id, run_id=run_id,
            principal=current_principal()))

    async def delete_all_memories(user_id: UserId = None, agent_id: AgentId = None,
                                  run_id: RunId = None, actor_id: ActorId = None,
                                  filters: Filters = None) -> DeletedCount:
        """Forget every memory in a scope: all of a user's, an agent's or a session's.

        Irreversible. At least one id is required; only memories matching every
        given id (and the filters, if any) are deleted. Without filters the scope's
        relations are deleted too (only that actor's, with actor_id). Use only when the
        user asks to forget everything, or everything of a kind, e.g. filters
        {"category": "food"}.
        """
        return DeletedCount.model_validate(await call(
            memory.delete_all, user_id=user_id, agent_id=agent_id, run_id=run_id,
            actor_id=actor_id, filters=filters, principal=current_principal()))

    async def memory_history(memory_id: MemoryId, user_id: UserId = None,
                             agent_id: AgentId = None, run_id: RunId = None) -> HistoryList:
        """Show how a memory changed over time (ADD, UPDATE, DELETE), oldest first."""
        return HistoryList.model_validate(await call(
            memory.history, memory_id, user_id=user_id, agent_id=agent_id, run_id=run_id))

    tools = [(add_memory, _WRITE), (search_memories, _READ), (list_memories, _READ),
             (get_memory, _READ), (update_memory, _WRITE), (delete_memory, _DESTROY),
             (delete_all_memories, _DESTROY), (memory_history, _READ),
             (export_memories, _READ),
             *relation_tools(memory, call, read=_READ, write=_WRITE, destroy=_DESTROY)]
    served: dict[str, ServedTool] = {}
    for fn, hints in tools:
        tool = Tool.from_function(_tool(fn, pinned, writes=not hints.read_only_hint,
                                        authenticated=auth is not None),
                                  name=fn.__name__, description=inspect.getdoc(fn),
                                  annotations=hints)
        tool = _hide(tool, pinned)
        served[tool.name] = ServedTool(tool, frozenset(inspect.signature(fn).parameters))
    server = MCPServer(name="lancemem", version=__version__, instructions=INSTRUCTIONS,
                       tools=[entry.tool for entry in served.values()],
                       token_verifier=auth.verifier if auth else None,
                       auth=auth.settings if auth else None)
    if auth:
        auth.register(server)
    serve_strictly(server, served)
    return server
