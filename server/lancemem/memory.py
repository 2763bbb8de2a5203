"""Memory: the Python API that the MCP server and the CLI wrap.

Every operation derives its scope from session ids (scoping.py), compiles it
with any filters into one escaped where clause (filters.py), and records
each change in the history table in the same call.
"""

from __future__ import annotations

import hashlib
import json
import threading
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from . import history as hist
from .config import Settings
from .embeddings import Embedder, FastEmbedder
from .errors import NotFoundError, ValidationError
from .filters import compile_where, metadata_columns, sql_string
from .messages import (
    check_limit,
    check_metadata,
    check_text,
    check_threshold,
    normalise_messages,
)
from .scoping import SCOPE_KEYS, build_filters_and_metadata, validate_id
from .store import HIDDEN_COLUMNS, MEMORIES, Store, memories_schema

ITEM_FIELDS = ("user_id", "agent_id", "run_id", "actor_id", "role")
_ID_CHUNK = 500


def text_hash(text: str) -> str:
    """The md5 hex digest of a memory's text, as mem0 computes it."""
    return hashlib.md5(text.encode("utf-8")).hexdigest()


def to_item(row: Mapping[str, Any], *, score: float | None = None) -> dict[str, Any]:
    """A stored row in mem0's shape: scope fields on top, custom keys under metadata."""
    raw = row.get("metadata")
    item: dict[str, Any] = {
        "id": row["id"],
        "memory": row["memory"],
        "hash": row["hash"],
        "metadata": json.loads(raw) if raw else {},
        "created_at": row["created_at"].isoformat(),
        "updated_at": row["updated_at"].isoformat(),
    }
    for key in ITEM_FIELDS:
        if row.get(key) is not None:
            item[key] = row[key]
    if score is not None:
        item["score"] = score
    return item


def _exact_scope(scope: Mapping[str, str | None]) -> str:
    """Rows in exactly this scope (absent ids must be NULL), for deduplication."""
    parts = [
        f"{key} = {sql_string(scope[key])}" if scope.get(key) else f"{key} IS NULL"
        for key in SCOPE_KEYS
    ]
    return " AND ".join(parts)


class Memory:
    """Session-scoped long-term memories over a LanceDB store."""

    def __init__(self, *, store: Store, embedder: Embedder,
                 defaults: Mapping[str, str] | None = None) -> None:
        self.store = store
        self.embedder = embedder
        self.history_log = hist.History(store)
        self._defaults = {key: validate_id(key, value) for key, value in (defaults or {}).items()}
        self._schema = memories_schema(embedder.dim)
        self._opened = False
        self._open_lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings, *, embedder: Embedder | None = None) -> Memory:
        """Build a Memory from Settings; nothing is opened or loaded until first use."""
        model = embedder or FastEmbedder(settings.embedding_model,
                                         cache_dir=settings.model_cache_dir)
        return cls(store=Store(settings.db), embedder=model, defaults=settings.scope_defaults())

    def ensure_open(self) -> None:
        """Create or open the tables and check the embedding model (once)."""
        if self._opened:
            return
        with self._open_lock:
            if not self._opened:
                self.store.open(model_name=self.embedder.model_name, dim=self.embedder.dim)
                self._opened = True

    def _scope(self, ids: Mapping[str, Any], *, actor_id: Any = None, metadata: Any = None,
               filters: Any = None) -> tuple[dict[str, Any], dict[str, Any]]:
        given = {key: ids.get(key) for key in SCOPE_KEYS}
        filter_ids = filters if isinstance(filters, Mapping) else {}
        for key, value in self._defaults.items():
            if given.get(key) is None and key not in filter_ids:
                given[key] = value
        return build_filters_and_metadata(
            **given, actor_id=actor_id, input_metadata=metadata, input_filters=filters
        )

    def add(self, messages: Any, *, user_id: str | None = None, agent_id: str | None = None,
            run_id: str | None = None, actor_id: str | None = None,
            metadata: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Store each non-system message as one memory.

        ``messages`` is a string, a ``{role, content, name?}`` dict or a list of
        them. A message's ``name`` becomes its ``actor_id`` (``actor_id`` applies
        to messages without a name). Text already stored in the same scope is
        not stored again: its existing id comes back with event ``NONE``.
        """
        items = normalise_messages(messages)
        custom = check_metadata(metadata)
        template, filters = self._scope(
            {"user_id": user_id, "agent_id": agent_id, "run_id": run_id},
            actor_id=actor_id, metadata=custom,
        )
        self.ensure_open()
        scope = {key: template.get(key) for key in SCOPE_KEYS}
        known = self._existing_hashes(scope, {text_hash(m.content) for m in items})
        now = datetime.now(UTC)
        results, rows = [], []
        for message in items:
            digest = text_hash(message.content)
            if digest in known:
                results.append({"id": known[digest], "memory": message.content, "event": "NONE"})
                continue
            row = self._new_row(message, scope, custom, filters.get("actor_id"), digest, now)
            known[digest] = row["id"]
            rows.append(row)
            results.append({"id": row["id"], "memory": row["memory"], "event": "ADD"})
        self._write_new(rows, now)
        for result in results:
            result.update({k: v for k, v in scope.items() if v is not None})
        by_id = {row["id"]: row for row in rows}
        for result in results:
            row = by_id.get(result["id"])
            for key in ("actor_id", "role"):
                if row is not None and row.get(key) is not None:
                    result[key] = row[key]
        return {"results": results}

    def _existing_hashes(self, scope: Mapping[str, Any], hashes: set[str]) -> dict[str, str]:
        wanted = ", ".join(sql_string(h) for h in sorted(hashes))
        where = f"{_exact_scope(scope)} AND hash IN ({wanted})"
        rows = self.store.select(MEMORIES, where, columns=["id", "hash"])
        return {row["hash"]: row["id"] for row in rows}

    def _new_row(self, message: Any, scope: Mapping[str, Any], custom: Mapping[str, Any],
                 actor: str | None, digest: str, now: datetime) -> dict[str, Any]:
        return {
            "id": str(uuid.uuid4()),
            "memory": message.content,
            "hash": digest,
            **scope,
            "actor_id": message.name or actor,
            "role": message.role,
            "metadata": json.dumps(custom, ensure_ascii=False),
            **metadata_columns(custom),
            "created_at": now,
            "updated_at": now,
        }

    def _write_new(self, rows: list[dict[str, Any]], now: datetime) -> None:
        if not rows:
            return
        vectors = self.embedder.embed_documents([row["memory"] for row in rows])
        for row, vector in zip(rows, vectors, strict=True):
            row["vector"] = vector
        self.store.insert(MEMORIES, rows, self._schema)
        self.history_log.record(
            [hist.history_row(memory=row, event=hist.ADD, old_memory=None,
                              new_memory=row["memory"], now=now) for row in rows]
        )

    def search(self, query: str, *, user_id: str | None = None, agent_id: str | None = None,
               run_id: str | None = None, actor_id: str | None = None,
               filters: Mapping[str, Any] | None = None, limit: int = 10,
               threshold: float | None = None) -> dict[str, Any]:
        """Memories in scope most similar to ``query``, best first, each with a score.

        The score is cosine similarity (higher is closer); ``threshold`` drops
        results scoring below it. The search is exact within the scope.
        """
        text = check_text(query, field="query")
        limit = check_limit(limit)
        minimum = check_threshold(threshold)
        _, query_filters = self._scope(
            {"user_id": user_id, "agent_id": agent_id, "run_id": run_id},
            actor_id=actor_id, filters=filters,
        )
        where = compile_where(query_filters)
        self.ensure_open()
        vector = self.embedder.embed_query(text)
        columns = [name for name in self._schema.names if name not in HIDDEN_COLUMNS]
        rows = self.store.vector_search(vector, where, limit=limit, columns=columns)
        items = [to_item(row, score=1.0 - float(row["_distance"])) for row in rows]
        if minimum is not None:
            items = [item for item in items if item["score"] >= minimum]
        return {"results": items}

    def get_all(self, *, user_id: str | None = None, agent_id: str | None = None,
                run_id: str | None = None, actor_id: str | None = None,
                filters: Mapping[str, Any] | None = None, limit: int = 100) -> dict[str, Any]:
        """Memories in scope, newest first, at most ``limit``."""
        limit = check_limit(limit)
        _, query_filters = self._scope(
            {"user_id": user_id, "agent_id": agent_id, "run_id": run_id},
            actor_id=actor_id, filters=filters,
        )
        rows = self._select(compile_where(query_filters))
        rows.sort(key=lambda row: (row["created_at"], row["id"]), reverse=True)
        return {"results": [to_item(row) for row in rows[:limit]]}

    def _select(self, where: str) -> list[dict[str, Any]]:
        self.ensure_open()
        columns = [name for name in self._schema.names if name not in HIDDEN_COLUMNS]
        return self.store.select(MEMORIES, where, columns=columns)

    def _find(self, memory_id: Any, ids: Mapping[str, Any], *,
              full: bool = False) -> dict[str, Any]:
        """The stored row with this id inside the caller's scope, or NotFoundError."""
        if not isinstance(memory_id, str) or not memory_id.strip():
            raise ValidationError("'memory_id' must be a non-empty string such as the id "
                                  "returned by add or search.")
        _, query_filters = self._scope(ids)
        where = f"id = {sql_string(memory_id.strip())} AND {compile_where(query_filters)}"
        self.ensure_open()
        columns = None if full else [n for n in self._schema.names if n not in HIDDEN_COLUMNS]
        rows = self.store.select(MEMORIES, where, columns=columns, limit=1)
        if not rows:
            raise NotFoundError(
                f"no memory with id {memory_id!r} in this scope; list or search memories "
                "to find the right id."
            )
        return rows[0]

    def get(self, memory_id: str, *, user_id: str | None = None, agent_id: str | None = None,
            run_id: str | None = None) -> dict[str, Any]:
        """One memory by id, if it is in the caller's scope."""
        ids = {"user_id": user_id, "agent_id": agent_id, "run_id": run_id}
        return to_item(self._find(memory_id, ids))

    def update(self, memory_id: str, *, text: str | None = None,
               metadata: Mapping[str, Any] | None = None, user_id: str | None = None,
               agent_id: str | None = None, run_id: str | None = None) -> dict[str, Any]:
        """Change a memory's text (re-embedded) and/or replace its custom metadata.

        The scope and attribution never change. Returns the updated memory.
        """
        if text is None and metadata is None:
            raise ValidationError("give 'text', 'metadata' or both to update a memory.")
        new_text = check_text(text) if text is not None else None
        custom = check_metadata(metadata) if metadata is not None else None
        ids = {"user_id": user_id, "agent_id": agent_id, "run_id": run_id}
        row = self._find(memory_id, ids, full=True)
        old_text = row["memory"]
        now = datetime.now(UTC)
        if new_text is not None and new_text != old_text:
            row["memory"] = new_text
            row["hash"] = text_hash(new_text)
            row["vector"] = self.embedder.embed_documents([new_text])[0]
        if custom is not None:
            row["metadata"] = json.dumps(custom, ensure_ascii=False)
            row.update(metadata_columns(custom))
        row["updated_at"] = now
        self.store.upsert(MEMORIES, [row], self._schema)
        self.history_log.record(
            [hist.history_row(memory=row, event=hist.UPDATE, old_memory=old_text,
                              new_memory=row["memory"], now=now)]
        )
        return to_item(row)

    def delete(self, memory_id: str, *, user_id: str | None = None,
               agent_id: str | None = None, run_id: str | None = None) -> dict[str, Any]:
        """Delete one memory in the caller's scope; its history is kept."""
        ids = {"user_id": user_id, "agent_id": agent_id, "run_id": run_id}
        row = self._find(memory_id, ids)
        self._delete_rows([row])
        return {"id": row["id"], "deleted": True}

    def delete_all(self, *, user_id: str | None = None, agent_id: str | None = None,
                   run_id: str | None = None, actor_id: str | None = None,
                   filters: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Delete every memory in the scope (no cap) that matches ``filters``, if given.

        At least one of user/agent/run id is required; filters only narrow.
        """
        _, query_filters = self._scope({"user_id": user_id, "agent_id": agent_id,
                                        "run_id": run_id}, actor_id=actor_id, filters=filters)
        rows = self._select(compile_where(query_filters))
        self._delete_rows(rows)
        return {"deleted": len(rows)}

    def _delete_rows(self, rows: list[dict[str, Any]]) -> None:
        now = datetime.now(UTC)
        for start in range(0, len(rows), _ID_CHUNK):
            chunk = rows[start:start + _ID_CHUNK]
            self.history_log.record(
                [hist.history_row(memory=row, event=hist.DELETE, old_memory=row["memory"],
                                  new_memory=None, now=now) for row in chunk]
            )
            wanted = ", ".join(sql_string(row["id"]) for row in chunk)
            self.store.delete(MEMORIES, f"id IN ({wanted})")

    def history(self, memory_id: str, *, user_id: str | None = None,
                agent_id: str | None = None, run_id: str | None = None) -> dict[str, Any]:
        """Every recorded change to one memory in the caller's scope, oldest first."""
        if not isinstance(memory_id, str) or not memory_id.strip():
            raise ValidationError("'memory_id' must be a non-empty string.")
        _, query_filters = self._scope({"user_id": user_id, "agent_id": agent_id,
                                        "run_id": run_id})
        scope = {key: query_filters[key] for key in SCOPE_KEYS if key in query_filters}
        self.ensure_open()
        where = f"memory_id = {sql_string(memory_id.strip())} AND {compile_where(scope)}"
        rows = self.history_log.rows(where)
        if not rows:
            raise NotFoundError(f"no memory with id {memory_id!r} in this scope.")
        return {"results": [hist.entry(row) for row in rows]}

    def reset(self) -> None:
        """Delete every memory and all history, for every scope."""
        self.store.reset()
        self._opened = False
        self.ensure_open()
