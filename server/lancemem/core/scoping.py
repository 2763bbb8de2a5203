"""Session scoping: session ids in, a Scope value and the caller's own filters out.

This is the heart of lancemem's isolation. Every operation resolves the scope
it may touch here, once per call, into a frozen ``Scope`` (ids + actor) from
its arguments, the server's defaults and plain-string filter entries. The
scope is compiled by one function, ``scope_where``, into literal equality
only; the caller's remaining filters are compiled separately (filters.py) and
ANDed with it. A scope id never passes through the filter language, so
``"*"`` or ``%`` in an id are plain characters. Nothing here touches storage,
so the rules can be tested exhaustively (DESIGN.md, "Session scoping").
"""

from __future__ import annotations

import copy
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import (
    FilterError,
    InvalidIdError,
    ReservedKeyError,
    ScopeConflictError,
    ScopeRequiredError,
    ValidationError,
)
from .filters import compile_where, sql_string

SCOPE_KEYS = ("user_id", "agent_id", "run_id")
ACTOR_KEY = "actor_id"
EXPIRATION_KEY = "expiration_date"  # a column of its own, given as an argument
RESERVED_KEYS = frozenset(
    {
        "id", "memory", "hash", "user_id", "agent_id", "run_id", "actor_id",
        "role", "created_at", "updated_at", "score", "vector", "expiration_date",
    }
)
MAX_ID_LENGTH = 256
# How deeply metadata and filter objects may nest (objects and lists alike).
# Checked without recursion, before anything recursive (deepcopy, json) runs.
MAX_NESTING = 32
SCOPE_REQUIRED_MESSAGE = "At least one of 'user_id', 'agent_id', or 'run_id' must be provided."

# Unicode categories an id may not contain: control characters, and lone
# surrogates (which cannot be encoded as UTF-8 and so cannot be stored).
_FORBIDDEN_CATEGORIES = {"Cc", "Cs"}


def validate_id(name: str, value: Any) -> str:
    """Return ``value`` stripped of surrounding whitespace, or raise InvalidIdError."""
    if not isinstance(value, str):
        raise InvalidIdError(
            f"'{name}' must be a string, got {type(value).__name__}; pass an id such as 'alice'."
        )
    cleaned = value.strip()
    if not cleaned:
        raise InvalidIdError(f"'{name}' is empty; pass a non-empty id such as 'alice', or omit it.")
    if len(cleaned) > MAX_ID_LENGTH:
        raise InvalidIdError(
            f"'{name}' is {len(cleaned)} characters long; ids may have at most {MAX_ID_LENGTH}."
        )
    if any(unicodedata.category(ch) in _FORBIDDEN_CATEGORIES for ch in cleaned):
        raise InvalidIdError(
            f"'{name}' contains a control character (such as a newline or tab); "
            "use printable characters only."
        )
    return cleaned


def nests_deeper_than(value: Any, limit: int) -> bool:
    """Whether objects/lists in ``value`` nest more than ``limit`` levels (iteratively)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, Mapping) else (
            item if isinstance(item, list | tuple) else None)
        if children is None:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def check_custom_metadata(metadata: Mapping[str, Any]) -> None:
    """Raise if custom metadata is not an object with string keys or uses a reserved key."""
    if not isinstance(metadata, Mapping):
        raise ValidationError(
            f"'metadata' must be a JSON object, got {type(metadata).__name__}; "
            'pass something like {"category": "food"}.'
        )
    if nests_deeper_than(metadata, MAX_NESTING):
        raise ValidationError(f"'metadata' nests deeper than {MAX_NESTING} levels; flatten it.")
    for key in metadata:
        if not isinstance(key, str):
            raise ValidationError(f"metadata keys must be strings; got {key!r}.")
        if key in RESERVED_KEYS:
            hint = (
                f"pass it as the '{key}' argument instead"
                if key in (*SCOPE_KEYS, ACTOR_KEY, EXPIRATION_KEY)
                else "rename it (for example 'my_" + key + "')"
            )
            raise ReservedKeyError(
                f"metadata key '{key}' is reserved by lancemem; {hint}. "
                f"Reserved keys: {', '.join(sorted(RESERVED_KEYS))}."
            )


@dataclass(frozen=True)
class Scope:
    """What one call may touch: its session ids and, optionally, one actor.

    A row is in scope when every id given here equals the row's (ids left out
    are not constrained) and, when ``actor_id`` is set, so does its actor.
    """

    user_id: str | None = None
    agent_id: str | None = None
    run_id: str | None = None
    actor_id: str | None = None

    def ids(self) -> dict[str, str | None]:
        """The three session ids, None where not given."""
        return {"user_id": self.user_id, "agent_id": self.agent_id, "run_id": self.run_id}

    def given(self) -> dict[str, str]:
        """The session ids that were given."""
        return {key: value for key, value in self.ids().items() if value is not None}

    def without_actor(self) -> Scope:
        """The same ids with no actor constraint."""
        return Scope(self.user_id, self.agent_id, self.run_id)


def scope_where(scope: Scope) -> str:
    """The scope as a where clause: literal equality on each given id and the actor.

    The one place a scope becomes SQL. Values are only ever quoted literals,
    never interpreted: ``user_id = '*'`` matches the id ``*`` and nothing else.
    """
    columns = {**scope.given(), **({ACTOR_KEY: scope.actor_id} if scope.actor_id else {})}
    if not any(columns.get(key) for key in SCOPE_KEYS):
        raise ScopeRequiredError(SCOPE_REQUIRED_MESSAGE)  # never an unscoped clause
    return " AND ".join(f"{key} = {sql_string(value)}" for key, value in columns.items())


def exact_scope_where(scope: Scope) -> str:
    """Rows stored in exactly this scope: each given id equal (``scope_where``),
    each id not given absent. What an add compares against (its duplicates)."""
    absent = [f"{key} IS NULL" for key, value in scope.ids().items() if value is None]
    return " AND ".join([scope_where(scope.without_actor()), *absent])


@dataclass(frozen=True)
class ScopedCall:
    """One call's resolved scope, its add-time metadata and its own filters.

    ``metadata`` is the custom metadata with the scope ids stamped on (what
    an add stores); ``filters`` is what is left of the caller's filters once
    scope entries were taken out, or None. It only ever narrows the scope.
    """

    scope: Scope
    metadata: dict[str, Any] = field(default_factory=dict)
    filters: dict[str, Any] | None = None

    def where(self) -> str:
        """The scope ANDed with the caller's filters, as one where clause."""
        where = scope_where(self.scope)
        if self.filters:
            where = f"{where} AND ({compile_where(self.filters)})"
        return where


def _plain_entry(name: str, filters: dict[str, Any]) -> str | None:
    """Take a plain-string ``name`` entry out of filters as an id; leave operators."""
    entry = filters.get(name)
    if not isinstance(entry, str):
        return None
    del filters[name]
    return validate_id(name, entry)


def _agree(name: str, param: str | None, from_filter: str | None) -> str | None:
    """One value from an argument and a filter entry, or ScopeConflictError."""
    if param is not None and from_filter is not None and param != from_filter:
        raise ScopeConflictError(
            f"'{name}' is {param!r} as an argument but {from_filter!r} in filters; "
            "a filter cannot widen or change the scope. Give one value."
        )
    return param if param is not None else from_filter


def _check_filters(input_filters: Any) -> dict[str, Any]:
    if input_filters is not None and not isinstance(input_filters, Mapping):
        raise ValidationError(
            f"'filters' must be a JSON object, got {type(input_filters).__name__}; "
            'pass something like {"category": "food"}.'
        )
    if nests_deeper_than(input_filters, MAX_NESTING):
        raise FilterError(f"filters nest deeper than {MAX_NESTING} levels; flatten the filter.")
    return copy.deepcopy(dict(input_filters or {}))


def build_filters_and_metadata(
    *,
    user_id: str | None = None,
    agent_id: str | None = None,
    run_id: str | None = None,
    actor_id: str | None = None,
    input_metadata: Mapping[str, Any] | None = None,
    input_filters: Mapping[str, Any] | None = None,
    defaults: Mapping[str, str] | None = None,
) -> ScopedCall:
    """Resolve one call's scope, add-time metadata and remaining filters.

    Each scope id comes from its argument or a plain-string filter entry (they
    must agree: VALIDATION_004), else from ``defaults``; at least one of
    user/agent/run is required. ``actor_id`` likewise (argument or plain
    filter entry, which must agree); it only narrows, never stamps metadata.
    Operator entries on any of these keys (``{"actor_id": {"ne": "x"}}``)
    stay in the filters and narrow the scope further. Inputs are deep-copied
    and never mutated.
    """
    if input_metadata is not None:
        check_custom_metadata(input_metadata)
    metadata = copy.deepcopy(dict(input_metadata)) if input_metadata is not None else {}
    filters = _check_filters(input_filters)
    params = {"user_id": user_id, "agent_id": agent_id, "run_id": run_id}
    ids: dict[str, str | None] = {}
    for name in SCOPE_KEYS:
        param = validate_id(name, params[name]) if params[name] is not None else None
        value = _agree(name, param, _plain_entry(name, filters))
        if value is None and defaults and defaults.get(name) is not None:
            value = validate_id(name, defaults[name])
        ids[name] = value
    if not any(ids.values()):
        raise ScopeRequiredError(SCOPE_REQUIRED_MESSAGE)
    actor_param = validate_id(ACTOR_KEY, actor_id) if actor_id is not None else None
    # {"actor_id": "*"} keeps its documented filter meaning, "has an actor": it
    # only narrows. A scope id in filters never does: {"user_id": "*"} is the id "*".
    from_filter = None if filters.get(ACTOR_KEY) == "*" else _plain_entry(ACTOR_KEY, filters)
    actor = _agree(ACTOR_KEY, actor_param, from_filter)
    scope = Scope(**ids, actor_id=actor)
    metadata.update(scope.given())
    return ScopedCall(scope=scope, metadata=metadata, filters=filters or None)
