"""A plain-Python evaluation of the filter language, written from its documentation.

The property test checks that LanceDB, running the compiled where clause,
selects exactly the memories this evaluation selects.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

STRING_COLUMNS = ("user_id", "agent_id", "run_id", "actor_id", "role")
TIME_COLUMNS = ("created_at", "updated_at", "expiration_date")
MISSING = object()


def matches(node: dict[str, Any], item: dict[str, Any]) -> bool:
    """Whether a memory item (as the API returns it) satisfies a filter dict."""
    return all(_entry(key, value, item) for key, value in node.items())


def _entry(key: str, value: Any, item: dict[str, Any]) -> bool:
    logic = key.lower().removeprefix("$")
    if logic == "and":
        return all(matches(sub, item) for sub in value)
    if logic == "or":
        return any(matches(sub, item) for sub in value)
    if logic == "not":
        return not any(matches(sub, item) for sub in value)
    stored = _value(key, item)
    if isinstance(value, dict):
        return all(_op(op.lower().removeprefix("$"), arg, stored) for op, arg in value.items())
    return _op("eq", value, stored)


def _value(key: str, item: dict[str, Any]) -> Any:
    if key in STRING_COLUMNS:
        return item.get(key)
    if key in TIME_COLUMNS:  # expiration_date is absent from a memory that never expires
        return datetime.fromisoformat(item[key]) if key in item else MISSING
    return item["metadata"].get(key.removeprefix("metadata."), MISSING)


def _time(text: str) -> datetime:
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _kind(value: Any) -> str | None:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, datetime):
        return "time"
    return None


def _equal(arg: Any, stored: Any) -> bool:
    if isinstance(stored, datetime):
        return stored == _time(arg)
    if _kind(arg) != _kind(stored) or _kind(arg) is None:
        return False
    if _kind(arg) == "number":
        return float(arg) == float(stored)
    return arg == stored


def _order(op: str, arg: Any, stored: Any) -> bool:
    if isinstance(stored, datetime):
        arg = _time(arg)
    elif _kind(arg) != _kind(stored) or _kind(arg) not in ("number", "string"):
        return False
    elif _kind(arg) == "number":
        arg, stored = float(arg), float(stored)
    return {"gt": stored > arg, "gte": stored >= arg, "lt": stored < arg,
            "lte": stored <= arg}[op]


def _tag(value: Any) -> str | None:
    kind = _kind(value)
    if kind == "bool":
        return "b:" + ("true" if value else "false")
    if kind == "number":
        return "n:" + repr(float(value))
    return "s:" + value if kind == "string" else None


def _op(op: str, arg: Any, stored: Any) -> bool:
    present = stored is not MISSING and stored is not None
    if op == "eq" and arg == "*" and isinstance(arg, str):
        return present
    if op == "eq":
        return present and _equal(arg, stored)
    if op == "ne":
        return not (present and _equal(arg, stored))
    if op in ("gt", "gte", "lt", "lte"):
        return present and _order(op, arg, stored)
    if op == "in":
        return present and any(_equal(a, stored) for a in arg)
    if op == "nin":
        return not (present and any(_equal(a, stored) for a in arg))
    if op == "contains":
        if isinstance(stored, str):
            return isinstance(arg, str) and arg in stored
        if isinstance(stored, list):
            return any(_tag(x) == _tag(arg) for x in stored if _tag(x) is not None)
        return False
    if op == "icontains":
        return isinstance(stored, str) and arg.lower() in stored.lower()
    raise AssertionError(op)
