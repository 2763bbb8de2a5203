"""The export line format, and checking lines to restore: pure functions, no storage.

An export is JSON Lines. A ``memory`` line is one stored memory, every field
present (null where unset); a ``history`` line is one history row. Keys are
sorted and timestamps are ISO-8601 UTC with microseconds, so the same store
always exports the same bytes. mem0's shapes (``get_all``'s items, the
platform export) map onto ``memory`` lines (``from_mem0``).

Every check here names the line (its ``label``, e.g. ``memories.jsonl line
3``) and the field, and raises the error class the field's own check raises
(an empty ``user_id`` is VALIDATION_002, a missing scope VALIDATION_001).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .errors import ScopeRequiredError, ValidationError
from .messages import check_expiration, check_metadata, check_text
from .records import MemoryRecord, text_hash
from .scoping import SCOPE_KEYS, SCOPE_REQUIRED_MESSAGE, validate_id

MEMORY, HISTORY = "memory", "history"
MEMORY_KEYS = ("id", "memory", "hash", *SCOPE_KEYS, "actor_id", "role", "metadata",
               "created_at", "updated_at", "expiration_date")
HISTORY_KEYS = ("id", "memory_id", "event", "old_memory", "new_memory", "created_at",
                "updated_at", "is_deleted", "actor_id", "role", *SCOPE_KEYS, "principal",
                "principal_label", "old_metadata", "new_metadata")
_METADATA_KEYS = ("old_metadata", "new_metadata")  # JSON text in the table, objects in a line
EVENTS = ("ADD", "UPDATE", "DELETE")
# What ``from_mem0`` keeps of an item; other keys (score, app_id, categories, ...) are dropped.
MEM0_KEYS = ("id", "memory", "hash", "metadata", "created_at", "updated_at", *SCOPE_KEYS,
             "actor_id", "role", "expiration_date")


def dumps(line: Mapping[str, Any]) -> str:
    """One export line: sorted keys, UTF-8 as is, no spaces to vary."""
    return json.dumps(line, ensure_ascii=False, sort_keys=True)


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).isoformat(timespec="microseconds")


def memory_line(record: MemoryRecord) -> dict[str, Any]:
    """A stored memory as a ``memory`` line (no vector: import embeds again)."""
    return {"type": MEMORY, "id": record.id, "memory": record.memory, "hash": record.hash,
            **{key: getattr(record, key) for key in (*SCOPE_KEYS, "actor_id", "role")},
            "metadata": dict(record.metadata), "created_at": _iso(record.created_at),
            "updated_at": _iso(record.updated_at),
            "expiration_date": _iso(record.expiration_date)}


def history_line(row: Mapping[str, Any]) -> dict[str, Any]:
    """A stored history row as a ``history`` line."""
    line: dict[str, Any] = {"type": HISTORY}
    for key in HISTORY_KEYS:
        value = row.get(key)
        if key in _METADATA_KEYS and isinstance(value, str):
            value = json.loads(value)
        line[key] = _iso(value) if isinstance(value, datetime) else value
    return line


def _metadata_or_none(value: Any) -> str | None:
    """A history line's old/new metadata (an object or null) as the table stores it."""
    if value is None:
        return None
    return json.dumps(check_metadata(value), ensure_ascii=False, sort_keys=True)


@dataclass(frozen=True)
class Checked:
    """One checked line: where it came from and what it restores."""

    label: str
    record: MemoryRecord | None = None  # a memory line
    row: dict[str, Any] | None = None  # a history line (the row to store)


class _Line:
    """One line being checked: its label, its fields, and errors that name both."""

    def __init__(self, label: str, fields: Mapping[str, Any]) -> None:
        self.label = label
        self.fields = fields

    def field(self, name: str, check: Callable[[Any], Any], *, required: bool = False) -> Any:
        """The checked value of ``name`` (None if absent and not ``required``)."""
        value = self.fields.get(name)
        if value is None:
            if required:
                raise ValidationError(f"{self.label}: field '{name}' is missing.")
            return None
        try:
            return check(value)
        except ValidationError as exc:
            raise type(exc)(f"{self.label}: field '{name}': {exc.message}") from None

    def fail(self, name: str, problem: str) -> ValidationError:
        return ValidationError(f"{self.label}: field '{name}' {problem}")


def _id(name: str) -> Callable[[Any], str]:
    return lambda value: validate_id(name, value)


def _text_or_none(value: Any) -> str:
    if not isinstance(value, str):
        raise ValidationError(f"must be a string or null, got {type(value).__name__}.")
    return value


def parse_time(value: Any) -> datetime:
    """An ISO-8601 datetime as an aware UTC datetime; one without an offset is UTC."""
    if not isinstance(value, str):
        raise ValidationError(f"must be an ISO-8601 datetime string, got {type(value).__name__}.")
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise ValidationError(f"is {value[:64]!r}, not an ISO-8601 datetime such as "
                              "'2024-07-20T01:30:00.123456-07:00'.") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def _scope(line: _Line, defaults: Mapping[str, str]) -> dict[str, str | None]:
    """The line's session ids; ``defaults`` fill ids it lacks and must equal those it has."""
    ids = {key: line.field(key, _id(key)) for key in SCOPE_KEYS}
    for key, value in defaults.items():
        if ids[key] is None:
            ids[key] = value
        elif ids[key] != value:
            flag = key.replace("_", "-")
            raise line.fail(key, f"is {ids[key]!r} but --{flag} is {value!r}; a restore "
                                 "never moves memories to another scope.")
    if not any(ids.values()):
        raise ScopeRequiredError(f"{line.label}: fields 'user_id', 'agent_id', 'run_id': "
                                 f"{SCOPE_REQUIRED_MESSAGE}")
    return ids


def _unknown(line: _Line, known: tuple[str, ...]) -> None:
    extra = sorted(set(line.fields) - {"type", *known})
    if extra:
        raise line.fail(extra[0], f"is not a field of a {line.fields.get('type')} line; its "
                                  f"fields are type, {', '.join(known)}.")


def check_memory(label: str, fields: Mapping[str, Any], defaults: Mapping[str, str], *,
                 check_hash: bool = True) -> MemoryRecord:
    """A ``memory`` line as the record to store (without its vector)."""
    line = _Line(label, fields)
    _unknown(line, MEMORY_KEYS)
    text = line.field("memory", lambda v: check_text(v, field="memory"), required=True)
    stated = fields.get("hash")
    if check_hash and stated is not None and stated != text_hash(text):
        raise line.fail("hash", f"is {str(stated)[:40]!r} but the md5 of 'memory' is "
                                f"{text_hash(text)!r}; fix the text or drop 'hash'.")
    created = line.field("created_at", parse_time, required=True)
    updated = line.field("updated_at", parse_time) or created
    return MemoryRecord(
        id=line.field("id", _id("id"), required=True), memory=text, **_scope(line, defaults),
        actor_id=line.field("actor_id", _id("actor_id")),
        role=line.field("role", _text_or_none),
        metadata=line.field("metadata", check_metadata) or {}, created_at=created,
        updated_at=updated, expiration_date=line.field("expiration_date", check_expiration))


def check_history(label: str, fields: Mapping[str, Any],
                  defaults: Mapping[str, str]) -> dict[str, Any]:
    """A ``history`` line as the history row to store."""
    line = _Line(label, fields)
    _unknown(line, HISTORY_KEYS)
    event = fields.get("event")
    if event not in EVENTS:
        raise line.fail("event", f"is {event!r}; use one of {', '.join(EVENTS)}.")
    created = line.field("created_at", parse_time, required=True)
    deleted = fields.get("is_deleted", event == "DELETE")
    if not isinstance(deleted, bool):
        raise line.fail("is_deleted", f"must be true or false, got {deleted!r}.")
    return {
        "id": line.field("id", _id("id"), required=True),
        "memory_id": line.field("memory_id", _id("memory_id"), required=True),
        "event": event, "created_at": created,
        "updated_at": line.field("updated_at", parse_time) or created, "is_deleted": deleted,
        **{key: line.field(key, _text_or_none) for key in ("old_memory", "new_memory", "role",
                                                            "principal", "principal_label")},
        **{key: line.field(key, _metadata_or_none) for key in _METADATA_KEYS},
        "actor_id": line.field("actor_id", _id("actor_id")), **_scope(line, defaults),
    }


def check_line(label: str, fields: Any, defaults: Mapping[str, str]) -> Checked:
    """One restore line (``"type": "memory"`` or ``"history"``), checked."""
    if not isinstance(fields, Mapping):
        raise ValidationError(f"{label}: expected a JSON object, got {type(fields).__name__}.")
    kind = fields.get("type")
    if kind == MEMORY:
        return Checked(label, record=check_memory(label, fields, defaults))
    if kind == HISTORY:
        return Checked(label, row=check_history(label, fields, defaults))
    raise ValidationError(f"{label}: field 'type' is {kind!r}; use 'memory' or 'history' "
                          "(or leave 'type' out in every line for add lines with 'text').")


def from_mem0(label: str, item: Any, defaults: Mapping[str, str]) -> Checked:
    """One mem0 memory (``get_all``'s item or the platform export's) as a memory line.

    ``memory`` is the text; ``id``, ``metadata``, the scope, ``actor_id``,
    ``role``, the timestamps (``updated_at`` null: ``created_at``) and the
    platform's ``expiration_date`` (a date: kept through that day, UTC) are kept;
    ``hash`` is not checked (it is recomputed from the text); other keys are
    dropped (MEM0_KEYS).
    """
    if not isinstance(item, Mapping):
        raise ValidationError(f"{label}: expected a JSON object, got {type(item).__name__}.")
    kept = {key: item[key] for key in MEM0_KEYS if key in item}
    return Checked(label, record=check_memory(label, kept, defaults, check_hash=False))
