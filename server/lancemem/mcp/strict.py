"""Strict tools/call handling: every call checked before a tool runs.

An unknown tool is a JSON-RPC invalid-params error; an argument a tool does
not take, or a value its schema refuses, is a VALIDATION_005 tool error in
plain words (no pydantic boilerplate); a tool error without a code becomes
INTERNAL_001. Only tools are served and advertised.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import NoneType, UnionType
from typing import Any, Union, get_args, get_origin

import pydantic
from mcp import MCPError
from mcp.server.context import HandlerResult, ServerRequestContext
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.tools import Tool
from mcp.types import INVALID_PARAMS, CallToolRequestParams, CallToolResult, TextContent
from pydantic import BaseModel
from pydantic_core import ErrorDetails

from ..core.errors import LanceMemError, ValidationError
from ..core.messages import no_such_keys

log = logging.getLogger(__name__)

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


def serve_strictly(server: MCPServer, tools: Mapping[str, ServedTool]) -> None:
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
