"""mem0-style filter dicts compiled to safe LanceDB where clauses.

The language (the same everywhere, whatever the data):

* ``{"key": value}``: equality. ``{"key": "*"}``: the key is present (not null).
* ``{"key": {"op": value, ...}}`` with ``eq ne gt gte lt lte in nin contains
  icontains`` (each also spelled ``$op``); several operators are ANDed.
* ``{"AND": [f, ...]}``, ``{"OR": [f, ...]}``, ``{"NOT": [f, ...]}`` (also
  ``$and``/``$or``/``$not``); NOT of a list matches when none of its filters
  match. Several keys in one dict are ANDed.
* Keys: ``user_id agent_id run_id actor_id role`` (strings), ``created_at``,
  ``updated_at``, ``expiration_date`` (ISO-8601), and custom metadata keys,
  bare (``category``) or as ``metadata.category``, made of letters, digits
  and ``_`` (at most 64).
* Values compare as their JSON types: ``5`` never equals ``"5"`` or ``true``;
  numbers compare numerically (exactly up to 2**53). ``contains`` tests
  membership on a list and a substring on a string (``%`` and ``_`` literal);
  ``icontains`` is a case-insensitive substring test on strings.
* A missing key matches nothing, except under ``ne``/``nin`` (it differs):
  a memory that never expires has no ``expiration_date``.

Bounds: nesting depth ``MAX_DEPTH``, ``MAX_LIST`` items per list and
``MAX_ITEMS`` in all, ``MAX_NODES`` conditions per filter, ``MAX_TEXT``
characters of text in all (the caller's scope is not part of the filter and
does not count). Every value reaches SQL through
``sql_string``; keys are checked against a fixed set or a safe pattern.
Metadata is queried through hidden typed columns that the store maintains
(``meta_str``, ``meta_num``, ``meta_tags``; see ``metadata_columns``), so a
typed comparison never meets a value of another type.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from .errors import FilterError

MAX_DEPTH = 8
MAX_LIST = 1000
# List items in one filter, all lists together: 500 lists of 1,000 numbers made
# a 3.4 MB where clause that took 2.5 s a query; 10,000 items take 0.06 s.
MAX_ITEMS = 10_000
MAX_NODES = 500
MAX_STRING = 10_000
# Characters of text in one filter, all strings together (keys too). Within
# the other bounds a filter could carry 100 MB (10,000 items of 10,000
# characters: 73 s for one list) or 500 substring tests of 7,800 characters
# (19-42 s a search over 2,000 memories). At 100,000 characters, over 3,000
# memories in scope: 500 icontains 0.7 s (hybrid search under NOT 1.7 s), ten
# lists of 1,000 0.2 s. (500 list-contains under NOT took 6.9 s whatever
# their length: each parses the row's JSON tags.)
MAX_TEXT = 100_000
STRING_COLUMNS = ("user_id", "agent_id", "run_id", "actor_id", "role")
TIME_COLUMNS = ("created_at", "updated_at", "expiration_date")
UNFILTERABLE = ("id", "memory", "hash", "score", "vector", "metadata")
LOGIC = {"and": "AND", "or": "OR", "not": "NOT"}
OPERATORS = ("eq", "ne", "gt", "gte", "lt", "lte", "in", "nin", "contains", "icontains")
_COMPARE = {"eq": "=", "ne": "<>", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}
_KEY_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")

Scalar = str | int | float | bool


_PLAIN_KEY = re.compile(r"[A-Za-z0-9_$-]{1,100}")


def _child(path: str, key: str) -> str:
    """The path of ``key`` under ``path`` for error messages: a plain key as
    ``.key``, anything else quoted (``["a\\nb"]``), so a caller's key cannot
    break a log line or imitate one."""
    return f"{path}.{key}" if _PLAIN_KEY.fullmatch(key) else f"{path}[{key!r}]"


def sql_string(value: str) -> str:
    """Quote a string as a SQL literal; doubling quotes is the only escape needed."""
    return "'" + value.replace("'", "''") + "'"


def like_pattern(value: str) -> str:
    """A LIKE pattern matching ``value`` anywhere, with its wildcards literal."""
    escaped = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return sql_string(f"%{escaped}%")


def tag(value: Scalar) -> str:
    """Type-tagged text of a scalar, for strict list membership.

    Strings are tagged by their UTF-8 hex: json_array_contains compares an
    element's JSON-escaped text, so a backslash, quote or newline in the text
    itself would never match.
    """
    if isinstance(value, bool):
        return "b:" + ("true" if value else "false")
    if isinstance(value, int | float):
        return "n:" + repr(float(value))
    return "s:" + value.encode("utf-8").hex()


def metadata_columns(metadata: Mapping[str, Any]) -> dict[str, str]:
    """The hidden typed projections of custom metadata that filters query."""
    strings = {k: v for k, v in metadata.items() if isinstance(v, str)}
    numbers = {
        k: v for k, v in metadata.items()
        if isinstance(v, int | float) and not isinstance(v, bool)
    }
    tags = {
        k: [tag(item) for item in v if isinstance(item, str | int | float)]
        for k, v in metadata.items()
        if isinstance(v, list)
    }
    return {
        "meta_str": json.dumps(strings, ensure_ascii=False),
        "meta_num": json.dumps(numbers),
        "meta_tags": json.dumps(tags, ensure_ascii=False),
    }


def compile_where(filters: Mapping[str, Any]) -> str:
    """Compile a filter dict (already scoped) into one where clause."""
    if text_size(filters) > MAX_TEXT:
        raise FilterError(f"the filter holds more than {MAX_TEXT:,} characters of text in all; "
                          "use fewer or shorter values, or split the call.")
    compiler = _Compiler()
    return compiler.compile_dict(filters, depth=0, path="filters")


def text_size(node: Any) -> int:
    """Characters in every string (keys too) of a filter, walked without recursion."""
    size, stack = 0, [node]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            size += len(item)
        elif isinstance(item, Mapping):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
    return size


class _Compiler:
    """Walks one filter tree, counting nodes so a filter's size stays bounded."""

    def __init__(self) -> None:
        self.nodes = 0
        self.items = 0

    def compile_dict(self, node: Any, *, depth: int, path: str) -> str:
        if not isinstance(node, Mapping):
            raise FilterError(f"{path} must be an object such as {{\"category\": \"food\"}}.")
        if not node:
            raise FilterError(f"{path} is an empty object; give at least one condition.")
        if depth > MAX_DEPTH:
            raise FilterError(f"{path} nests deeper than {MAX_DEPTH} levels; flatten the filter.")
        parts = [self._entry(key, value, depth=depth, path=path) for key, value in node.items()]
        return _join(parts, "AND")

    def _entry(self, key: Any, value: Any, *, depth: int, path: str) -> str:
        if not isinstance(key, str):
            raise FilterError(f"{path} has a non-string key {key!r}.")
        logic = LOGIC.get(key.lower().removeprefix("$"))
        if logic:
            return self._logic(logic, value, depth=depth, path=f"{path}.{key}")
        return self._field(key, value, path=_child(path, key))

    def _logic(self, op: str, value: Any, *, depth: int, path: str) -> str:
        if not isinstance(value, list) or not value:
            raise FilterError(f"{path} takes a non-empty list of filters, e.g. [{{\"a\": 1}}].")
        parts = [
            self.compile_dict(item, depth=depth + 1, path=f"{path}[{i}]")
            for i, item in enumerate(value)
        ]
        # A missing key makes a comparison NULL: ``IS NOT TRUE`` counts it as a
        # non-match, where NOT would keep it NULL. (``NOT COALESCE(x, FALSE)``
        # means the same, but DataFusion's simplifier took exponential time
        # over nested NOTs: 1.4 s at depth 6 over 120 conditions, 4 ms now.)
        if op == "NOT":
            return _join([f"({part}) IS NOT TRUE" for part in parts], "AND")
        return _join(parts, op)

    def _field(self, key: str, condition: Any, *, path: str) -> str:
        field = _Field.resolve(key, path)
        if isinstance(condition, Mapping):
            if not condition:
                raise FilterError(f"{path} has no operator; use e.g. {{\"eq\": \"value\"}}.")
            parts = [self._operator(field, op, value, path) for op, value in condition.items()]
            return _join(parts, "AND")
        return self._operator(field, "eq", condition, path)

    def _operator(self, field: _Field, op: Any, value: Any, path: str) -> str:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise FilterError(f"the filter has more than {MAX_NODES} conditions; simplify it.")
        name = op.lower().removeprefix("$") if isinstance(op, str) else None
        if name not in OPERATORS:
            raise FilterError(
                f"{path} uses unknown operator {op!r}; use one of {', '.join(OPERATORS)}."
            )
        if value == "*" and name == "eq":
            return field.present()
        if name in ("in", "nin"):
            items = _check_list(value, f"{path}.{op}")
            self.items += len(items)
            if self.items > MAX_ITEMS:
                raise FilterError(f"{path}.{op}: the filter's lists hold more than {MAX_ITEMS} "
                                  "items in all; split the call or use fewer values.")
            matched = field.member(items, path)
            return matched if name == "in" else f"({matched}) IS NOT TRUE"
        _check_scalar(value, f"{path}.{op}")
        if name in ("contains", "icontains"):
            return field.contains(value, ignore_case=name == "icontains", path=f"{path}.{op}")
        return field.compare(name, value, f"{path}.{op}")


class _Field:
    """One filterable key and how each operator reads it in SQL."""

    def __init__(self, kind: str, name: str) -> None:
        self.kind = kind  # "string" | "time" | "meta"
        self.name = name

    @classmethod
    def resolve(cls, key: str, path: str) -> _Field:
        if key in STRING_COLUMNS:
            return cls("string", key)
        if key in TIME_COLUMNS:
            return cls("time", key)
        bare = key.removeprefix("metadata.")
        if key in UNFILTERABLE or bare in UNFILTERABLE:
            raise FilterError(
                f"{path}: '{key}' cannot be filtered; filter on scope ids, role, "
                "created_at/updated_at/expiration_date or custom metadata keys."
            )
        if not _KEY_PATTERN.fullmatch(bare):
            raise FilterError(
                f"{path}: key {key!r} is not allowed; metadata keys in filters are letters, "
                "digits and '_' (at most 64, not starting with a digit)."
            )
        return cls("meta", bare)

    def present(self) -> str:
        if self.kind != "meta":
            return f"{self.name} IS NOT NULL"
        raw = f"json_extract(metadata, {sql_string('$.' + self.name)})"
        return f"COALESCE({raw} <> 'null', FALSE)"

    def compare(self, op: str, value: Any, path: str) -> str:
        _check_scalar(value, path)
        sql_op = _COMPARE[op]
        column, literal = self._typed(value, op, path)
        if op == "ne":
            return f"({column} <> {literal}) IS NOT FALSE"
        return f"{column} {sql_op} {literal}"

    def member(self, items: list[Any], path: str) -> str:
        """Membership in ``items`` (each compared as ``eq``) as SQL IN lists.

        One IN list per typed view of the key, not an OR of equalities: Lance
        refuses a filter of more than 500 conditions, and a NOT over a long OR
        chain crashed the process (SIGSEGV) at about 850 items.
        """
        groups: dict[str, list[str]] = {}
        for item in items:
            _check_scalar(item, path)
            column, literal = self._typed(item, "eq", path)
            groups.setdefault(column, []).append(literal)
        return _join([_in_list(column, literals) for column, literals in groups.items()], "OR")

    def _typed(self, value: Any, op: str, path: str) -> tuple[str, str]:
        """The SQL expression of this key for a value of that type, and its literal."""
        if self.kind == "time":
            return self.name, _timestamp(value, path)
        if self.kind == "string":
            if not isinstance(value, str):
                raise FilterError(f"{path}: '{self.name}' holds strings; got {value!r}.")
            return self.name, sql_string(value)
        key = sql_string(self.name)
        if isinstance(value, bool):
            if op not in ("eq", "ne"):
                raise FilterError(f"{path}: booleans support only eq/ne/in/nin.")
            return f"json_extract(metadata, {sql_string('$.' + self.name)})", (
                "'true'" if value else "'false'"
            )
        if isinstance(value, int | float):
            return f"json_get_float(meta_num, {key})", _number(value)
        return f"json_get_string(meta_str, {key})", sql_string(value)

    def contains(self, value: Any, *, ignore_case: bool, path: str) -> str:
        if self.kind == "time":
            raise FilterError(f"{path}: '{self.name}' is a date; use gt/gte/lt/lte.")
        if ignore_case and not isinstance(value, str):
            raise FilterError(f"{path}: icontains takes a string; got {value!r}.")
        if self.kind == "string":
            if not isinstance(value, str):
                raise FilterError(f"{path}: '{self.name}' holds strings; got {value!r}.")
            return _like(self.name, value, ignore_case)
        parts = []
        if isinstance(value, str):
            parts.append(_like(f"json_get_string(meta_str, {sql_string(self.name)})", value,
                               ignore_case))
        if not ignore_case:
            member = sql_string(tag(value))
            parts.append(
                f"COALESCE(json_array_contains(meta_tags, {sql_string('$.' + self.name)}, "
                f"{member}), FALSE)"
            )
        return _join(parts, "OR")


def _like(column: str, value: str, ignore_case: bool) -> str:
    if ignore_case:
        return f"lower({column}) LIKE {like_pattern(value.lower())}"
    return f"{column} LIKE {like_pattern(value)}"


def _in_list(column: str, literals: list[str]) -> str:
    unique = list(dict.fromkeys(literals))
    if len(unique) == 1:
        return f"{column} = {unique[0]}"
    return f"{column} IN ({', '.join(unique)})"


def _join(parts: list[str], op: str) -> str:
    """``parts`` joined by ``op`` as a balanced tree of parentheses.

    A flat ``a AND b AND ...`` parses into a chain as deep as it is long;
    halving keeps the depth logarithmic, so 500 conditions nest 9 deep.
    """
    if len(parts) == 1:
        return parts[0]
    return _tree([f"({part})" for part in parts], op)


def _tree(parts: list[str], op: str) -> str:
    if len(parts) == 1:
        return parts[0]
    middle = len(parts) // 2
    return f"({_tree(parts[:middle], op)} {op} {_tree(parts[middle:], op)})"


def _check_scalar(value: Any, path: str) -> None:
    if isinstance(value, bool | int | str):
        if isinstance(value, str) and len(value) > MAX_STRING:
            raise FilterError(f"{path}: a string longer than {MAX_STRING} characters.")
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 2**63 - 1:
            raise FilterError(f"{path}: {value} is out of the 64-bit integer range.")
        if isinstance(value, str) and any(0xD800 <= ord(ch) <= 0xDFFF for ch in value):
            raise FilterError(f"{path}: the string contains an unpaired surrogate.")
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise FilterError(f"{path}: {value} is not a finite number.")
        return
    kind = "null" if value is None else type(value).__name__
    raise FilterError(
        f"{path}: expected a string, number or boolean, got {kind}. "
        "Lists go with in/nin; use {\"NOT\": [{\"key\": \"*\"}]} for a missing key."
    )


def _check_list(value: Any, path: str) -> list[Any]:
    if not isinstance(value, list):
        raise FilterError(f"{path} takes a list, e.g. [\"a\", \"b\"]; got {value!r}.")
    if len(value) > MAX_LIST:
        raise FilterError(f"{path} has {len(value)} items; at most {MAX_LIST}.")
    if not value:
        raise FilterError(f"{path} is an empty list; give at least one value.")
    return value


def _number(value: int | float) -> str:
    # A float literal keeps the comparison in floating point on both sides.
    return repr(float(value))


def sql_timestamp(moment: datetime) -> str:
    """A SQL timestamp literal for an aware datetime, to the microsecond, in UTC.

    Raises OverflowError when the moment in UTC falls outside years 1-9999.
    """
    utc = moment.astimezone(UTC)
    # The year by hand: strftime leaves years before 1000 unpadded ('999-06-01').
    return f"TIMESTAMP '{utc.year:04d}-{utc:%m-%dT%H:%M:%S.%f}Z'"


def _timestamp(value: Any, path: str) -> str:
    if not isinstance(value, str):
        raise FilterError(f"{path}: dates are ISO-8601 strings such as '2026-05-01T12:00:00Z'.")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise FilterError(
            f"{path}: {value!r} is not an ISO-8601 date; use e.g. '2026-05-01T12:00:00Z'."
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        return sql_timestamp(parsed)
    except OverflowError:
        raise FilterError(
            f"{path}: {value!r} falls outside the years 0001-9999 in UTC; use a date "
            "within them."
        ) from None
