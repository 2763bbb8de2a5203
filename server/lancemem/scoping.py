"""Session scoping: session ids in, a metadata template and query filters out.

This is the heart of lancemem's isolation. Every operation derives the scope
it may touch from here, and nothing here touches storage, so the rules can be
tested exhaustively (DESIGN.md, "Session scoping").
"""

from __future__ import annotations

import copy
import unicodedata
from collections.abc import Mapping
from typing import Any

from .errors import (
    FilterError,
    InvalidIdError,
    ReservedKeyError,
    ScopeConflictError,
    ScopeRequiredError,
    ValidationError,
)

SCOPE_KEYS = ("user_id", "agent_id", "run_id")
ACTOR_KEY = "actor_id"
RESERVED_KEYS = frozenset(
    {
        "id", "memory", "hash", "user_id", "agent_id", "run_id", "actor_id",
        "role", "created_at", "updated_at", "score", "vector",
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
                if key in (*SCOPE_KEYS, ACTOR_KEY)
                else "rename it (for example 'my_" + key + "')"
            )
            raise ReservedKeyError(
                f"metadata key '{key}' is reserved by lancemem; {hint}. "
                f"Reserved keys: {', '.join(sorted(RESERVED_KEYS))}."
            )


def _resolve_id(
    name: str, param: Any, filters: dict[str, Any], narrowing: list[dict[str, Any]]
) -> str | None:
    """Resolve one scope id from its parameter and any same-named filter entry.

    A plain string in filters counts as the id when no parameter is given, and
    must agree with the parameter when both are. Any other filter value (an
    operator expression) stays a filter that narrows the scope further.
    """
    value = validate_id(name, param) if param is not None else None
    if name not in filters:
        return value
    entry = filters.pop(name)
    if not isinstance(entry, str):
        narrowing.append({name: entry})
        return value
    from_filter = validate_id(name, entry)
    if value is not None and from_filter != value:
        raise ScopeConflictError(
            f"'{name}' is {value!r} as an argument but {from_filter!r} in filters; "
            "a filter cannot widen or change the scope. Give one value."
        )
    return from_filter


def _resolve_actor(param: Any, filters: dict[str, Any]) -> str | None:
    """Actor precedence: the parameter, then a plain string in filters, then none."""
    if param is not None:
        filters.pop(ACTOR_KEY, None)
        return validate_id(ACTOR_KEY, param)
    entry = filters.get(ACTOR_KEY)
    if isinstance(entry, str):
        del filters[ACTOR_KEY]
        return validate_id(ACTOR_KEY, entry)
    return None


def build_filters_and_metadata(
    *,
    user_id: str | None = None,
    agent_id: str | None = None,
    run_id: str | None = None,
    actor_id: str | None = None,
    input_metadata: Mapping[str, Any] | None = None,
    input_filters: Mapping[str, Any] | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Turn session ids into ``(metadata_template, query_filters)``.

    Each given scope id is validated and written to both outputs; at least
    one of user/agent/run is required. The actor only filters, never stamps
    metadata. Inputs are deep-copied and never mutated.
    """
    if input_metadata is not None:
        check_custom_metadata(input_metadata)
    metadata = copy.deepcopy(dict(input_metadata)) if input_metadata is not None else {}
    if input_filters is not None and not isinstance(input_filters, Mapping):
        raise ValidationError(
            f"'filters' must be a JSON object, got {type(input_filters).__name__}; "
            'pass something like {"category": "food"}.'
        )
    if nests_deeper_than(input_filters, MAX_NESTING):
        raise FilterError(f"filters nest deeper than {MAX_NESTING} levels; flatten the filter.")
    filters = copy.deepcopy(dict(input_filters or {}))
    narrowing: list[dict[str, Any]] = []
    params = {"user_id": user_id, "agent_id": agent_id, "run_id": run_id}
    scope = {}
    for name in SCOPE_KEYS:
        value = _resolve_id(name, params[name], filters, narrowing)
        if value is not None:
            scope[name] = value
    if not scope:
        raise ScopeRequiredError(SCOPE_REQUIRED_MESSAGE)
    actor = _resolve_actor(actor_id, filters)
    metadata.update(scope)
    query_filters: dict[str, Any] = dict(scope)
    if actor is not None:
        query_filters[ACTOR_KEY] = actor
    if narrowing:
        filters = {"AND": [filters, *narrowing]} if filters else {"AND": narrowing}
    query_filters.update(filters)
    return metadata, query_filters
