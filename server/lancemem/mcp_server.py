"""The MCP tools: thin, typed wrappers over Memory.

Each tool runs its Memory call in a worker thread (LanceDB and fastembed
block), turns lancemem errors into tool errors whose text starts with the
stable code, and returns a typed result (structured content plus its JSON
text). Ids pinned by the server's configuration are removed from the tools'
schemas and always applied.

Calls are checked strictly before a tool runs: an unknown tool is a JSON-RPC
invalid-params error; an unknown argument or a bad value is a VALIDATION_005
tool error in plain words. Only tools are served and advertised.
"""

from __future__ import annotations

import functools
import inspect
import json
import logging
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from types import NoneType, UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import anyio.to_thread
import pydantic
from mcp import MCPError
from mcp.server.context import HandlerResult, ServerRequestContext
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.tools import Tool
from mcp.types import (
    INVALID_PARAMS,
    CallToolRequestParams,
    CallToolResult,
    TextContent,
    ToolAnnotations,
)
from pydantic import BaseModel, Field
from pydantic_core import ErrorDetails

from . import __version__
from .config import SCOPE_FIELDS, Settings
from .errors import LanceMemError, ValidationError
from .mcp_models import (
    AddResult,
    ChatMessage,
    Deleted,
    DeletedCount,
    HistoryList,
    MemoryItem,
    MemoryList,
)
from .memory import Memory
from .messages import no_such_keys

log = logging.getLogger(__name__)

INSTRUCTIONS = """\
lancemem is your long-term memory. Save facts, preferences and decisions worth \
recalling in later conversations with add_memory; before answering, look for \
what you already know with search_memories. Memories are scoped: user_id is whose \
memory it is, agent_id which assistant, run_id which conversation. A call sees only \
memories matching every id it gives."""

FILTERS_HELP = (
    "Optional filter object. Keys: custom metadata keys, actor_id, role, created_at, "
    "updated_at. Operators: eq ne gt gte lt lte in nin contains icontains; logic: "
    'AND OR NOT with lists. Examples: {"category": "food"}; '
    '{"AND": [{"priority": {"gte": 5}}, {"created_at": {"gt": "2026-01-01"}}]}.'
)

UserId = Annotated[str | None, Field(
    description="Whose memories: the end user's id, e.g. 'alice'. Omit to use the "
    "server's default user.")]
AgentId = Annotated[str | None, Field(
    description="Which assistant or agent the memories belong to, e.g. 'coding-helper'.")]
RunId = Annotated[str | None, Field(
    description="Which conversation or session, e.g. a chat id; omit for memories that "
    "outlive one session.")]
ActorId = Annotated[str | None, Field(
    description="Who said it (e.g. a speaker's name). On add: attributed to messages "
    "without a name. On search/list: only memories said by this actor.")]
MemoryId = Annotated[str, Field(description="The memory's id, as returned by add, search "
                                            "or list.")]
Filters = Annotated[dict[str, Any] | None, Field(description=FILTERS_HELP)]
Metadata = Annotated[dict[str, Any] | None, Field(
    description='Custom key/value data to store with the memory, e.g. {"category": "food"}.')]

_READ = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True,
                        open_world_hint=False)
_WRITE = ToolAnnotations(read_only_hint=False, destructive_hint=False, open_world_hint=False)
_DESTROY = ToolAnnotations(read_only_hint=False, destructive_hint=True, open_world_hint=False)
_CODE = re.compile(r"^[A-Z][A-Z_]*_\d{3}: ")
_INTERNAL = "INTERNAL_001: the server failed unexpectedly; its log on stderr has details."
_EXPECTED = {  # pydantic error type -> what the argument must be, in JSON terms
    "string_type": "a string", "int_type": "a whole number", "int_parsing": "a whole number",
    "int_from_float": "a whole number", "float_type": "a number", "float_parsing": "a number",
    "bool_type": "true or false", "bool_parsing": "true or false", "dict_type": "an object",
    "model_type": "an object", "model_attributes_type": "an object", "list_type": "a list",
}
_BOUNDS = {"greater_than_equal": ("ge", "at least"), "greater_than": ("gt", "more than"),
           "less_than_equal": ("le", "at most"), "less_than": ("lt", "less than")}


def error_result(exc: LanceMemError) -> CallToolResult:
    """A tool error whose text starts with the stable code."""
    return CallToolResult(content=[TextContent(type="text", text=str(exc))], is_error=True)


@dataclass(frozen=True)
class ServedTool:
    """A tool as the SDK serves it, and every argument it takes: its schema's
    and the pinned ids, which the schema hides but a caller may still send."""

    tool: Tool
    takes: frozenset[str]

    def check(self, arguments: Mapping[str, Any]) -> None:
        """Raise ValidationError unless the tool takes every argument and accepts its value.

        The values are checked by the SDK's own validator, the one the call
        then runs through, so only the wording of its complaints is ours.
        """
        shown = list(self.tool.parameters.get("properties", {}))
        unknown = [key for key in arguments if key not in self.takes]
        if unknown:
            raise ValidationError(no_such_keys(self.tool.name, unknown, shown, noun="argument"))
        try:
            self.tool.fn_metadata.validate_arguments(dict(arguments))
        except pydantic.ValidationError as exc:
            raise ValidationError(" ".join(
                self._problem(error) for error in exc.errors(include_url=False))) from None

    def _problem(self, error: ErrorDetails) -> str:
        """One pydantic error as one sentence naming the argument, without its boilerplate."""
        loc, kind, limits = error["loc"], error["type"], error.get("ctx", {})
        where, value = _where(loc), _shown(error.get("input"))
        if kind == "missing":
            return f"{self.tool.name} needs '{where}'."
        if kind == "extra_forbidden":
            keys = _fields_at(self.tool.fn_metadata.arg_model, loc[:-1])
            return no_such_keys(_where(loc[:-1]), [loc[-1]], keys)
        if kind in _EXPECTED:
            return f"'{where}' must be {_EXPECTED[kind]}, got {value}."
        if kind == "literal_error":
            return f"'{where}' is {value}; use {limits.get('expected')}."
        if kind in _BOUNDS:
            bound, phrase = _BOUNDS[kind]
            return f"'{where}' is {value}; it must be {phrase} {limits.get(bound)}."
        return f"'{where}' is not valid: {error['msg'][:1].lower()}{error['msg'][1:]}."


def _where(loc: Sequence[int | str]) -> str:
    """A pydantic location as the caller wrote it: messages[0].name."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else str(part)
    return text


def _shown(value: Any) -> str:
    """A caller's value, short and in JSON terms, for an error message."""
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, list | tuple):
        return "a list"
    # repr and ASCII JSON both escape a lone surrogate, which could not be sent back.
    text = repr(value) if isinstance(value, str) else json.dumps(value, default=repr)
    return text if len(text) <= 40 else text[:36] + "..."


def _fields_at(model: Any, loc: Sequence[int | str]) -> list[str]:
    """The fields of the model at ``loc`` inside ``model``, through X | None and list[X]."""
    for part in (*loc, None):
        while get_origin(model) in (Union, UnionType, list):
            options = [arg for arg in get_args(model) if arg is not NoneType]
            if len(options) != 1:
                return []
            model = options[0]
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return []
        if isinstance(part, str):
            model = model.model_fields[part].annotation if part in model.model_fields else None
    return list(model.model_fields)


def _coded(result: HandlerResult) -> HandlerResult:
    """A tool error without a code (the SDK's bare text for a crash) as INTERNAL_001."""
    if not isinstance(result, CallToolResult) or not result.is_error:
        return result
    first = result.content[0] if result.content else None
    if isinstance(first, TextContent) and _CODE.match(first.text):
        return result
    return CallToolResult(content=[TextContent(type="text", text=_INTERNAL)], is_error=True)


def _serve_strictly(server: MCPServer, tools: Mapping[str, ServedTool]) -> None:
    """Serve tools only, and check each tools/call before the SDK runs it.

    Both go through the low-level server's request handler table (MCPServer's
    ``_lowlevel_server``), which the SDK also rewrites to wrap tools/call for
    extensions: a method missing from it answers -32601 and the capabilities
    are derived from it. MCPServer always registers prompt and resource
    handlers and the SDK cannot unregister one, so their entries are deleted.
    Unlike a middleware, a tools/call handler runs after the SDK has checked
    the request and the handshake, and its result gets the SDK's envelope.
    """
    table = server._lowlevel_server._request_handlers
    for method in [name for name in table if name.startswith(("prompts/", "resources/"))]:
        del table[method]
    run_tool = table["tools/call"].handler

    async def call_tool(ctx: ServerRequestContext[Any, Any],
                        params: CallToolRequestParams) -> HandlerResult:
        served = tools.get(params.name)
        if served is None:
            raise MCPError(INVALID_PARAMS, f"Unknown tool: {params.name!r}; the tools are "
                                           f"{', '.join(tools)}.")
        try:
            served.check(params.arguments or {})
        except ValidationError as exc:
            log.info("tool %s refused: %s", params.name, exc)
            return error_result(exc)
        return _coded(await run_tool(ctx, params))

    server._lowlevel_server.add_request_handler("tools/call", CallToolRequestParams, call_tool)


def _tool(fn: Callable[..., Awaitable[Any]], pinned: Mapping[str, str]) -> Callable[..., Any]:
    """Wrap a tool: apply pinned ids (hidden from its schema) and code its errors."""
    signature = inspect.signature(fn, eval_str=True)

    @functools.wraps(fn)
    async def tool(**kwargs: Any) -> Any:
        kwargs.update({name: value for name, value in pinned.items()
                       if name in signature.parameters})
        try:
            return await fn(**kwargs)
        except LanceMemError as exc:
            log.info("tool %s failed: %s", fn.__name__, exc)
            return error_result(exc)

    visible = [p for p in signature.parameters.values() if p.name not in pinned]
    tool.__signature__ = signature.replace(parameters=visible)  # type: ignore[attr-defined]
    del tool.__wrapped__  # the schema must come from the signature above
    return tool


def build_server(settings: Settings, *, memory: Memory | None = None) -> MCPServer:
    """The lancemem MCP server: eight memory tools over one Memory."""
    memory = memory or Memory.from_settings(settings)
    pinned = {name: getattr(settings, name) for name in settings.pinned
              if name in SCOPE_FIELDS and getattr(settings, name)}

    async def call(method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return await anyio.to_thread.run_sync(functools.partial(method, *args, **kwargs))

    async def add_memory(
        text: Annotated[str | None, Field(description="The fact to remember, in plain words. "
                                          "Give this or messages.")] = None,
        messages: Annotated[list[ChatMessage] | None, Field(
            description="Chat messages to remember, each stored as one memory.")] = None,
        user_id: UserId = None, agent_id: AgentId = None, run_id: RunId = None,
        actor_id: ActorId = None, metadata: Metadata = None,
    ) -> AddResult:
        """Remember something for later conversations.

        Use when the user shares a fact, preference, plan or decision worth recalling
        later. Pass `text`, or `messages` (each message becomes one memory, its `name`
        recorded as who said it). Text already stored in the same scope is not stored
        twice (event NONE).
        """
        if (text is None) == (messages is None):
            raise ValidationError("give exactly one of 'text' or 'messages'.")
        payload: Any = text if text is not None else [
            m.model_dump(exclude_none=True) for m in messages or []]
        return AddResult.model_validate(await call(
            memory.add, payload, user_id=user_id, agent_id=agent_id, run_id=run_id,
            actor_id=actor_id, metadata=metadata))

    async def search_memories(
        query: Annotated[str, Field(description="What to look for, in natural language.")],
        user_id: UserId = None, agent_id: AgentId = None, run_id: RunId = None,
        actor_id: ActorId = None, filters: Filters = None,
        limit: Annotated[int, Field(ge=1, le=1000, description="At most this many.")] = 10,
        threshold: Annotated[float | None, Field(
            description="Drop results scoring below this similarity (-1 to 1, e.g. 0.3).")] = None,
        mode: Annotated[Literal["hybrid", "vector", "keyword"] | None, Field(
            description="How to rank: 'hybrid' (meaning and shared words, the usual "
            "default), 'vector' (meaning only) or 'keyword' (shared words only, BM25). "
            "Leave unset for the server's default.")] = None,
    ) -> MemoryList:
        """Find the memories most relevant to a query, best first, each with a score.

        Use before answering anything that may depend on what you learned earlier.
        Put names and distinctive words in the query: they are matched as words too.
        Example filters: {"category": "food"} or
        {"AND": [{"priority": {"gte": 5}}, {"created_at": {"gt": "2026-01-01"}}]}.
        """
        return MemoryList.model_validate(await call(
            memory.search, query, user_id=user_id, agent_id=agent_id, run_id=run_id,
            actor_id=actor_id, filters=filters, limit=limit, threshold=threshold, mode=mode))

    async def list_memories(
        user_id: UserId = None, agent_id: AgentId = None, run_id: RunId = None,
        actor_id: ActorId = None, filters: Filters = None,
        limit: Annotated[int, Field(ge=1, le=1000, description="At most this many.")] = 100,
    ) -> MemoryList:
        """List the memories in a scope, newest first.

        Use to review everything known about a user, agent or session. Example filters:
        {"category": "food"} or {"OR": [{"role": "assistant"}, {"tags": {"contains": "x"}}]}.
        """
        return MemoryList.model_validate(await call(
            memory.get_all, user_id=user_id, agent_id=agent_id, run_id=run_id,
            actor_id=actor_id, filters=filters, limit=limit))

    async def get_memory(memory_id: MemoryId, user_id: UserId = None, agent_id: AgentId = None,
                         run_id: RunId = None) -> MemoryItem:
        """Read one memory by its id (only if it is in your scope)."""
        return MemoryItem.model_validate(await call(
            memory.get, memory_id, user_id=user_id, agent_id=agent_id, run_id=run_id))

    async def update_memory(
        memory_id: MemoryId,
        text: Annotated[str | None, Field(description="The corrected text.")] = None,
        metadata: Annotated[dict[str, Any] | None, Field(
            description="New custom metadata; replaces the old metadata.")] = None,
        user_id: UserId = None, agent_id: AgentId = None, run_id: RunId = None,
    ) -> MemoryItem:
        """Correct a memory's text and/or replace its metadata; its scope never changes.

        Use when a remembered fact changed (the user moved, changed their mind).
        The change is kept in the memory's history.
        """
        return MemoryItem.model_validate(await call(
            memory.update, memory_id, text=text, metadata=metadata, user_id=user_id,
            agent_id=agent_id, run_id=run_id))

    async def delete_memory(memory_id: MemoryId, user_id: UserId = None,
                            agent_id: AgentId = None, run_id: RunId = None) -> Deleted:
        """Forget one memory by its id. Its history is kept."""
        return Deleted.model_validate(await call(
            memory.delete, memory_id, user_id=user_id, agent_id=agent_id, run_id=run_id))

    async def delete_all_memories(user_id: UserId = None, agent_id: AgentId = None,
                                  run_id: RunId = None, actor_id: ActorId = None,
                                  filters: Filters = None) -> DeletedCount:
        """Forget every memory in a scope: all of a user's, an agent's or a session's.

        Irreversible. At least one id is required; only memories matching every
        given id (and the filters, if any) are deleted. Use only when the user asks
        to forget everything, or everything of a kind, e.g. filters {"category": "food"}.
        """
        return DeletedCount.model_validate(await call(
            memory.delete_all, user_id=user_id, agent_id=agent_id, run_id=run_id,
            actor_id=actor_id, filters=filters))

    async def memory_history(memory_id: MemoryId, user_id: UserId = None,
                             agent_id: AgentId = None, run_id: RunId = None) -> HistoryList:
        """Show how a memory changed over time (ADD, UPDATE, DELETE), oldest first."""
        return HistoryList.model_validate(await call(
            memory.history, memory_id, user_id=user_id, agent_id=agent_id, run_id=run_id))

    tools = [(add_memory, _WRITE), (search_memories, _READ), (list_memories, _READ),
             (get_memory, _READ), (update_memory, _WRITE), (delete_memory, _DESTROY),
             (delete_all_memories, _DESTROY), (memory_history, _READ)]
    served: dict[str, ServedTool] = {}
    for fn, hints in tools:
        tool = Tool.from_function(_tool(fn, pinned), name=fn.__name__,
                                  description=inspect.getdoc(fn), annotations=hints)
        served[tool.name] = ServedTool(tool, frozenset(inspect.signature(fn).parameters))
    server = MCPServer(name="lancemem", version=__version__, instructions=INSTRUCTIONS,
                       tools=[entry.tool for entry in served.values()])
    _serve_strictly(server, served)
    return server
