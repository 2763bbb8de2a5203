"""Relations and entities as the domain sees them: pure functions, no storage.

A relation is a triple (source, relationship, target) stored in one exact
scope, and both its ends are entities of that same scope. Entities are
known by a key that ignores case, Unicode width and runs of whitespace
(``name_key``: ``"Alice"`` and ``" alice "`` are one entity, and the first
spelling stored is kept); they are found in free text by their words
(``match_key``). A relationship is lower_snake_case (``"works at"`` ->
``works_at``). Ids derive from the scope and the keys, so the same triple
added twice (by two processes at once, too) is one row.
"""

from __future__ import annotations

import json
import re
import unicodedata
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .errors import ValidationError
from .scoping import SCOPE_KEYS

if TYPE_CHECKING:
    import numpy as np

MAX_NAME = 256  # characters in an entity name
MAX_RELATIONSHIP = 64  # characters in a normalised relationship or type
MAX_RELATIONS = 100  # relations in one add_relations or delete_relations call
MAX_NAME_WORDS = 8  # words of a name that is looked for in free text
RELATION_KEYS = frozenset({"source", "relationship", "target", "source_type", "target_type"})
_NAMESPACE = uuid.UUID("3c9b2f4e-7d21-4a8e-b6f0-5e1d9a7c2b13")
_WORD = re.compile(r"\w+")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_NOT_WORD = re.compile(r"[\W_]+")
_FORBIDDEN_CATEGORIES = {"Cc", "Cs"}
ADD, NONE, INVALIDATE, DELETE = "ADD", "NONE", "INVALIDATE", "DELETE"


def _fold(text: str) -> str:
    return unicodedata.normalize("NFKC", text).casefold()


def name_key(name: str) -> str:
    """An entity's identity within a scope: case, width and whitespace ignored."""
    return " ".join(_fold(name).split())


def match_key(name: str) -> str:
    """An entity's words, as looked for in free text (punctuation ignored)."""
    return " ".join(_WORD.findall(_fold(name)))


def snake_case(text: str) -> str:
    """lower_snake_case: ``"works at"``, ``"WorksAt"``, ``"works-at"`` -> ``works_at``."""
    spaced = _CAMEL.sub("_", unicodedata.normalize("NFKC", text))
    return _NOT_WORD.sub("_", spaced.casefold()).strip("_")


def relation_text(source: str, relationship: str, target: str) -> str:
    """What the embedding of a relation sees: ``"Alice works at Acme"``."""
    return f"{source} {relationship.replace('_', ' ')} {target}"


def mentions(texts: Iterable[str], *, longest: int = MAX_NAME_WORDS) -> set[str]:
    """Every run of up to ``longest`` consecutive words in ``texts``, as match keys."""
    found: set[str] = set()
    for text in texts:
        words = _WORD.findall(_fold(text))
        for start in range(len(words)):
            for end in range(start + 1, min(start + longest, len(words)) + 1):
                found.add(" ".join(words[start:end]))
    return found


def _check_string(value: Any, field: str, limit: int) -> str:
    if not isinstance(value, str):
        raise ValidationError(f"'{field}' must be a string, got {type(value).__name__}.")
    cleaned = value.strip()
    if not cleaned:
        raise ValidationError(f"'{field}' is empty; give a name such as 'Alice' or 'Acme'.")
    if len(cleaned) > limit:
        raise ValidationError(f"'{field}' is {len(cleaned)} characters long; at most {limit}.")
    if any(unicodedata.category(ch) in _FORBIDDEN_CATEGORIES for ch in cleaned):
        raise ValidationError(f"'{field}' contains a control character (such as a newline); "
                              "use printable characters only.")
    return cleaned


def _check_label(value: Any, field: str) -> str:
    """A relationship or entity type, normalised to lower_snake_case."""
    label = snake_case(_check_string(value, field, MAX_NAME))
    if not label:
        raise ValidationError(f"'{field}' has no letters or digits; use words such as "
                              "'works at'.")
    if len(label) > MAX_RELATIONSHIP:
        raise ValidationError(f"'{field}' is {len(label)} characters long once normalised "
                              f"({label[:20]}...); at most {MAX_RELATIONSHIP}.")
    return label


@dataclass(frozen=True)
class Triple:
    """One checked relation as a caller gave it: names stripped, labels normalised."""

    source: str
    relationship: str
    target: str
    source_type: str | None = None
    target_type: str | None = None

    @property
    def key(self) -> tuple[str, str, str]:
        """What makes two triples the same relation: both ends' keys and the relationship."""
        return name_key(self.source), self.relationship, name_key(self.target)


def check_triples(items: Any, *, field: str = "relations", types: bool = True) -> list[Triple]:
    """Check a list of ``{source, relationship, target, source_type?, target_type?}``.

    An error names the item (``relations[2].target``) and says what to do;
    nothing is written until every item passed.
    """
    if not isinstance(items, Sequence) or isinstance(items, str | bytes) or not items:
        raise ValidationError(f"'{field}' must be a non-empty list of objects like "
                              '{"source": "Alice", "relationship": "works at", '
                              '"target": "Acme"}.')
    if len(items) > MAX_RELATIONS:
        raise ValidationError(f"'{field}' has {len(items)} items; at most {MAX_RELATIONS} "
                              "per call: split it.")
    allowed = RELATION_KEYS if types else RELATION_KEYS - {"source_type", "target_type"}
    return [_check_triple(item, f"{field}[{index}]", allowed)
            for index, item in enumerate(items)]


def _check_triple(item: Any, where: str, allowed: frozenset[str]) -> Triple:
    if not isinstance(item, Mapping):
        raise ValidationError(f"{where} must be an object, got {type(item).__name__}.")
    unknown = sorted(str(key) for key in item if key not in allowed)
    if unknown:
        raise ValidationError(f"{where} has unknown keys {unknown}; use "
                              f"{', '.join(sorted(allowed))}.")
    missing = [key for key in ("source", "relationship", "target") if item.get(key) is None]
    if missing:
        raise ValidationError(f"{where} lacks {', '.join(repr(m) for m in missing)}.")
    types = {key: None if item.get(key) is None else _check_label(item[key], f"{where}.{key}")
             for key in ("source_type", "target_type")}
    return Triple(source=_check_string(item["source"], f"{where}.source", MAX_NAME),
                  relationship=_check_label(item["relationship"], f"{where}.relationship"),
                  target=_check_string(item["target"], f"{where}.target", MAX_NAME), **types)


def check_entity(value: Any, field: str = "entity") -> str:
    """An entity name given to filter by, as its key."""
    return name_key(_check_string(value, field, MAX_NAME))


def check_relationship(value: Any, field: str = "relationship") -> str:
    """A relationship given to filter by, normalised."""
    return _check_label(value, field)


def _scoped_id(scope: Mapping[str, str | None], *parts: str) -> str:
    key = json.dumps([*(scope.get(name) for name in SCOPE_KEYS), *parts], ensure_ascii=False)
    return str(uuid.uuid5(_NAMESPACE, key))


def entity_id(scope: Mapping[str, str | None], key: str) -> str:
    """The id of the entity with this key in exactly this scope."""
    return _scoped_id(scope, "entity", key)


def relation_id(scope: Mapping[str, str | None], key: tuple[str, str, str]) -> str:
    """The id of the relation with these keys in exactly this scope."""
    return _scoped_id(scope, "relation", *key)


@dataclass(frozen=True, slots=True)
class Entity:
    """One entity of one scope: its first spelling, its keys, its type."""

    id: str
    name: str
    scope: Mapping[str, str | None]
    entity_type: str | None
    created_at: datetime
    vector: Sequence[float] | None = None

    @property
    def key(self) -> str:
        """The entity's identity in its scope (``name_key``)."""
        return name_key(self.name)

    def to_row(self) -> dict[str, Any]:
        """The row to store."""
        return {"id": self.id, "name": self.name, "name_key": self.key,
                "match_key": match_key(self.name), "entity_type": self.entity_type,
                **{name: self.scope.get(name) for name in SCOPE_KEYS},
                "created_at": self.created_at, "vector": list(self.vector or [])}

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Entity:
        """A stored row."""
        return cls(id=row["id"], name=row["name"], entity_type=row.get("entity_type"),
                   scope={name: row.get(name) for name in SCOPE_KEYS},
                   created_at=row["created_at"], vector=row.get("vector"))


@dataclass(frozen=True)
class EntityIndex:
    """The entities of one scope as a search holds them: each entity, its match
    key, and (when the scope is small enough to hold) all their name vectors as
    one matrix, row by row."""

    entities: list[Entity]
    match_keys: list[str]
    matrix: np.ndarray | None


@dataclass(frozen=True, slots=True)
class Relation:
    """One stored relation: both ends' names as their entities spell them."""

    id: str
    source: str
    relationship: str
    target: str
    source_type: str | None
    target_type: str | None
    scope: Mapping[str, str | None]
    actor_id: str | None
    valid: bool
    invalidated_at: datetime | None
    created_at: datetime
    updated_at: datetime
    vector: Sequence[float] | None = None

    @property
    def key(self) -> tuple[str, str, str]:
        """Both ends' keys and the relationship."""
        return name_key(self.source), self.relationship, name_key(self.target)

    @property
    def text(self) -> str:
        """What the relation's embedding sees."""
        return relation_text(self.source, self.relationship, self.target)

    @property
    def triple(self) -> str:
        """The relation in one line, for history: ``Alice -[works_at]-> Acme``."""
        return f"{self.source} -[{self.relationship}]-> {self.target}"

    def invalidated(self, moment: datetime) -> Relation:
        """The same relation, no longer valid since ``moment``."""
        return replace(self, valid=False, invalidated_at=moment, updated_at=moment)

    def revalidated(self, moment: datetime) -> Relation:
        """The same relation, valid again since ``moment``."""
        return replace(self, valid=True, invalidated_at=None, updated_at=moment)

    def to_row(self) -> dict[str, Any]:
        """The row to store (``vector`` only once set)."""
        row = {"id": self.id, "source": self.source, "source_key": name_key(self.source),
               "relationship": self.relationship, "target": self.target,
               "target_key": name_key(self.target), "source_type": self.source_type,
               "target_type": self.target_type,
               **{name: self.scope.get(name) for name in SCOPE_KEYS},
               "actor_id": self.actor_id, "valid": self.valid,
               "invalidated_at": self.invalidated_at, "created_at": self.created_at,
               "updated_at": self.updated_at}
        if self.vector is not None:
            row["vector"] = list(self.vector)
        return row

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Relation:
        """A stored row (with or without its vector)."""
        return cls(id=row["id"], source=row["source"], relationship=row["relationship"],
                   target=row["target"], source_type=row.get("source_type"),
                   target_type=row.get("target_type"),
                   scope={name: row.get(name) for name in SCOPE_KEYS},
                   actor_id=row.get("actor_id"), valid=bool(row.get("valid", True)),
                   invalidated_at=row.get("invalidated_at"), created_at=row["created_at"],
                   updated_at=row["updated_at"], vector=row.get("vector"))

    def to_item(self, *, score: float | None = None, event: str | None = None
                ) -> dict[str, Any]:
        """The caller's shape: ``{id, source, relationship, target, ...}``, optional
        fields only when set."""
        item: dict[str, Any] = {"id": self.id, "source": self.source,
                                "relationship": self.relationship, "target": self.target}
        for key in ("source_type", "target_type"):
            if getattr(self, key) is not None:
                item[key] = getattr(self, key)
        item.update(valid=self.valid, created_at=self.created_at.isoformat(),
                    updated_at=self.updated_at.isoformat())
        if self.invalidated_at is not None:
            item["invalidated_at"] = self.invalidated_at.isoformat()
        item.update({name: value for name, value in self.scope.items() if value is not None})
        if self.actor_id is not None:
            item["actor_id"] = self.actor_id
        if score is not None:
            item["score"] = score
        if event is not None:
            item["event"] = event
        return item
