"""Memory: the Python API that the MCP server and the CLI wrap.

Every operation derives its scope from session ids (scoping.py), compiles it
with any filters into one escaped where clause (filters.py), and records
each change in the history table in the same call.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from . import consistency
from . import history as hist
from .config import DEFAULT_MODE, Settings, check_mode, load_settings
from .embeddings import Embedder, FastEmbedder
from .errors import ConflictError, NotFoundError, StorageError, ValidationError
from .filters import sql_string, sql_timestamp
from .messages import (
    check_limit,
    check_metadata,
    check_text,
    check_threshold,
    normalise_messages,
)
from .principal import Principal
from .records import (
    MemoryRecord,
    Plan,
    chunks,
    document_text,
    duplicate_query,
    in_scope,
    row_key,
    scope_key,
    split_record,
    text_hash,
    to_item,
)
from .retrieval import CANDIDATES, cosine_scores, fuse, top_cosine
from .runtime import Runtime
from .scoping import SCOPE_KEYS, ScopedCall, build_filters_and_metadata, scope_where, validate_id
from .snapshot import Ranked, Snapshot
from .store import HIDDEN_COLUMNS, MEMORIES, Store, backoff, memories_schema

if TYPE_CHECKING:
    import pyarrow as pa

log = logging.getLogger(__name__)
_ID_CHUNK = 500
EAGER_EMBED = 16  # adds of up to this many texts embed them before the duplicate check
_UPDATE_ATTEMPTS = 8


class Memory:
    """Session-scoped long-term memories over a LanceDB store.

    A Memory owns its background work (runtime.py): close it when done, or
    use it as a context manager, so pending history is written and its
    threads end.
    """

    def __init__(self, *, store: Store | None = None, embedder: Embedder | None = None,
                 defaults: Mapping[str, str] | None = None,
                 search_mode: str = DEFAULT_MODE) -> None:
        """``store`` and ``embedder`` default to what the environment configures
        (``LANCEMEM_DB``, ``LANCEMEM_EMBEDDING_MODEL``, ...; else the default
        store and the bundled model), so ``Memory()`` works as in mem0."""
        if store is None or embedder is None:
            settings = load_settings()
            store = store or Store(settings.db)
            embedder = embedder or FastEmbedder(settings.embedding_model,
                                                cache_dir=settings.model_cache_dir)
        self.store = store
        self.embedder = embedder
        self.search_mode = check_mode(search_mode)
        self._runtime = Runtime()
        self.history_log = hist.History(store, self._runtime)
        self._defaults = {key: validate_id(key, value) for key, value in (defaults or {}).items()}
        self._opened = False
        self._open_lock = threading.Lock()

    @functools.cached_property
    def _schema(self) -> pa.Schema:
        return memories_schema(self.embedder.dim)  # built on first use: pyarrow loads slowly

    @functools.cached_property
    def _item_columns(self) -> list[str]:
        """What callers may see of a row: everything but vectors and typed views."""
        return [n for n in self._schema.names if n not in HIDDEN_COLUMNS]

    @classmethod
    def from_settings(cls, settings: Settings, *, embedder: Embedder | None = None,
                      embedding_threads: int | None = None) -> Memory:
        """Build a Memory from Settings; nothing is opened or loaded until first use.

        ``embedding_threads`` caps the model's threads per call (None: one per core).
        """
        model = embedder or FastEmbedder(settings.embedding_model, threads=embedding_threads,
                                         cache_dir=settings.model_cache_dir)
        return cls(store=Store(settings.db), embedder=model, defaults=settings.scope_defaults(),
                   search_mode=settings.search_mode)

    def __enter__(self) -> Memory:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Finish the background work: running calls' helpers, the warm-up, pending
        history, a compaction under way. Later calls raise ClosedError
        (CLOSED_001); a second close does nothing."""
        self._runtime.close(before_writer_stops=self.history_log.flush)
        self.store.wait_for_compaction()

    def warm_up(self) -> None:
        """Open the store and load the model in the background (a server does this
        at start, off the handshake path); a failure is logged and comes back,
        with its code, on the first call."""
        def run() -> None:
            try:
                self.ensure_open()
                load = getattr(self.embedder, "load", None)
                if load:
                    load()
            except Exception as exc:
                log.warning("warm-up failed: %s", exc)

        self._runtime.run_soon(run)

    def ensure_open(self) -> None:
        """Open the tables, check the model, repair history after a crash (once).

        Every call goes through here before it touches the store, so this is
        where a closed Memory refuses (ClosedError)."""
        self._runtime.check_open()
        if self._opened:
            return
        with self._open_lock:
            if not self._opened:
                self.store.open(model_name=self.embedder.model_name, dim=self.embedder.dim)
                consistency.repair(self.store)
                self.store.compact_in_background()
                self._opened = True

    def _scope(self, ids: Mapping[str, Any], *, actor_id: Any = None, metadata: Any = None,
               filters: Any = None) -> ScopedCall:
        """The call's scope (defaults filling ids it leaves out) and its own filters."""
        return build_filters_and_metadata(
            user_id=ids.get("user_id"), agent_id=ids.get("agent_id"), run_id=ids.get("run_id"),
            actor_id=actor_id, input_metadata=metadata, input_filters=filters,
            defaults=self._defaults,
        )

    def add(self, messages: Any, *, user_id: str | None = None, agent_id: str | None = None,
            run_id: str | None = None, actor_id: str | None = None,
            metadata: Mapping[str, Any] | None = None,
            principal: Principal | None = None) -> dict[str, Any]:
        """Store each non-system message as one memory.

        ``messages`` is a string, a ``{role, content, name?}`` dict or a list of
        them. A message's ``name`` becomes its ``actor_id`` (``actor_id`` applies
        to messages without a name). Text already stored in the same scope is
        not stored again: its existing id comes back with event ``NONE``.
        ``principal`` (an authenticated server's caller) is recorded in history;
        binding the ids to it is the caller's job (principal.bind_ids).
        """
        plan = self._plan(messages, user_id=user_id, agent_id=agent_id, run_id=run_id,
                          actor_id=actor_id, metadata=metadata)
        self.ensure_open()
        return {"results": self._commit([plan], principal=principal)[0]}

    def add_many(self, records: Iterable[Mapping[str, Any]], *, batch_size: int = 512,
                 progress: Callable[[int, int], None] | None = None) -> dict[str, int]:
        """Store many records (each the keyword arguments of ``add``, with
        ``messages`` or ``text``), embedding and writing them in batches.

        Every record is checked before anything is written, so a bad record
        stores nothing; its error names the record's position. Re-running an
        interrupted call stores only what is missing (duplicates are skipped).
        """
        plans = [self._plan_record(record, index) for index, record in enumerate(records)]
        self.ensure_open()
        total = sum(len(plan.messages) for plan in plans)
        done, added = 0, 0
        for chunk in chunks(plans, batch_size):
            results = self._commit(chunk)
            added += sum(r["event"] == "ADD" for batch in results for r in batch)
            done += sum(len(plan.messages) for plan in chunk)
            if progress:
                progress(done, total)
        return {"added": added, "skipped": total - added}

    def _plan_record(self, record: Any, index: int) -> Plan:
        messages, fields = split_record(record, index)
        try:
            return self._plan(messages, **fields)
        except ValidationError as exc:
            raise type(exc)(f"record {index + 1}: {exc.message}") from None

    def _plan(self, messages: Any, *, user_id: Any = None, agent_id: Any = None,
              run_id: Any = None, actor_id: Any = None, metadata: Any = None) -> Plan:
        """Check one add call's input and resolve its scope; nothing is written."""
        items = normalise_messages(messages)
        custom = check_metadata(metadata)
        call = self._scope({"user_id": user_id, "agent_id": agent_id, "run_id": run_id},
                           actor_id=actor_id, metadata=custom)
        return Plan(items, call.scope.ids(), custom, call.scope.actor_id)

    def _commit(self, plans: list[Plan], *,
                principal: Principal | None = None) -> list[list[dict[str, Any]]]:
        """Store planned messages, skipping text already in the same scope.

        A small add embeds its texts while the duplicates are looked up (a
        duplicate's embedding is wasted); a batch looks first and embeds only
        what is new, so that re-running an import costs no embedding.
        """
        eager = None
        if sum(len(plan.messages) for plan in plans) <= EAGER_EMBED:
            documents = list(dict.fromkeys(document_text(m.content, m.name or plan.actor)
                                           for plan in plans for m in plan.messages))
            eager = self._runtime.run_soon(self._embed_documents, documents)
        wanted: dict[tuple[Any, ...], set[str]] = {}
        for plan in plans:
            wanted.setdefault(scope_key(plan), set()).update(
                text_hash(m.content) for m in plan.messages)
        scopes = {scope_key(plan): plan.scope for plan in plans}
        checked_at = self.store.version(MEMORIES)
        known_by_scope = {key: self._existing_hashes(scopes[key], hashes, checked_at)
                          for key, hashes in wanted.items()}
        now = datetime.now(UTC)
        rows: list[dict[str, Any]] = []
        added: dict[str, dict[str, Any]] = {}  # row id -> its result, in case it loses a race
        out = []
        for plan in plans:
            known = known_by_scope[scope_key(plan)]
            scope_fields = {k: v for k, v in plan.scope.items() if v is not None}
            results = []
            for message in plan.messages:
                digest = text_hash(message.content)
                if digest in known:
                    results.append({"id": known[digest], "memory": message.content,
                                    "event": "NONE", **scope_fields})
                    continue
                row = MemoryRecord.new(message, plan, now).to_row()
                known[digest] = row["id"]
                rows.append(row)
                attribution = {k: row[k] for k in ("actor_id", "role") if row[k] is not None}
                added[row["id"]] = {"id": row["id"], "memory": row["memory"], "event": "ADD",
                                    **scope_fields, **attribution}
                results.append(added[row["id"]])
            out.append(results)
        earlier = self._write_new(rows, now, checked_at=checked_at,
                                  embedded=eager.result() if eager and rows else None,
                                  principal=principal)
        for row_id, kept in earlier.items():  # another writer stored the same text first
            result = added[row_id]
            for key in ("actor_id", "role"):
                result.pop(key, None)
            result.update(id=kept, event="NONE")
        return out

    def _embed_documents(self, documents: list[str]) -> dict[str, list[float]]:
        return dict(zip(documents, self.embedder.embed_documents(documents), strict=True))

    def _existing_hashes(self, scope: Mapping[str, Any], hashes: set[str],
                         version: int) -> dict[str, str]:
        """Text hashes already stored in exactly ``scope`` at ``version``, with their ids."""
        where = duplicate_query(scope, hashes)
        if self.store.count(MEMORIES, where, version=version) == 0:  # the usual case, cheaper
            return {}
        rows = self.store.select(MEMORIES, where, columns=["id", "hash", *SCOPE_KEYS],
                                 version=version)
        copies: dict[str, set[str]] = {}
        for row in rows:
            if in_scope(row, scope):
                copies.setdefault(row["hash"], set()).add(row["id"])
        # Two copies: a raced add whose loser has not deleted its copy yet.
        return {text: self._first_committed(ids, version) for text, ids in copies.items()}

    def _write_new(self, rows: list[dict[str, Any]], now: datetime, *, checked_at: int,
                   embedded: Mapping[str, list[float]] | None = None,
                   principal: Principal | None = None) -> dict[str, str]:
        """Append new rows; returns the ones another writer beat (row id -> kept id).

        Two writers (threads or processes) may add the same text to one scope
        at once, both having found no copy. Each then looks at the table as
        of its own commit: a copy committed before it means it lost, and it
        deletes its row again. Commits are ordered, so exactly one copy stays.
        When this commit directly follows the version the duplicates were
        looked up at (``checked_at``), nothing came between and the look is
        skipped: the usual case, and one query fewer per add.
        """
        if not rows:
            return {}
        documents = [row["search_text"] for row in rows]
        vectors = ([embedded[d] for d in documents] if embedded is not None
                   else self.embedder.embed_documents(documents))
        for row, vector in zip(rows, vectors, strict=True):
            row["vector"] = vector
        version = self.store.insert(MEMORIES, rows, self._schema)
        earlier = {} if version == checked_at + 1 else self._earlier_copies(rows, version)
        if earlier:
            self.store.delete(MEMORIES, f"id IN ({', '.join(sql_string(i) for i in earlier)})")
        self.history_log.record_soon(
            [hist.history_row(memory=row, event=hist.ADD, old_memory=None,
                              new_memory=row["memory"], now=now, principal=principal)
             for row in rows if row["id"] not in earlier]
        )
        return earlier

    def _earlier_copies(self, rows: list[dict[str, Any]], version: int) -> dict[str, str]:
        """Of ``rows`` (committed at ``version``), those whose text was already
        in their scope at that version, mapped to the copy that stays."""
        mine = {row["id"] for row in rows}
        wanted = ", ".join(sql_string(h) for h in sorted({row["hash"] for row in rows}))
        found = self.store.select(MEMORIES, f"hash IN ({wanted})",
                                  columns=["id", "hash", *SCOPE_KEYS], version=version)
        if len(found) == len(rows):  # the usual case: only the rows just written
            return {}
        others: dict[tuple[Any, ...], set[str]] = {}
        for other in found:
            if other["id"] not in mine:
                others.setdefault(row_key(other), set()).add(other["id"])
        kept = {key: self._first_committed(ids, version) for key, ids in others.items()}
        return {row["id"]: kept[row_key(row)] for row in rows if row_key(row) in kept}

    def _first_committed(self, ids: set[str], version: int) -> str:
        """Of copies present at ``version``, the one committed first: the copy
        that stays, since every later writer of the text saw it and backs off.

        Other losers may not have deleted their copy yet, so the table is read
        backwards version by version (only in a race, and only as far back as
        the first copy) until one candidate is left.
        """
        candidates = set(ids)
        while len(candidates) > 1 and version > 1:
            version -= 1
            listed = ", ".join(sql_string(i) for i in sorted(candidates))
            try:
                present = {row["id"] for row in self.store.select(
                    MEMORIES, f"id IN ({listed})", columns=["id"], version=version)}
            except (StorageError, ConflictError):  # that version was already cleaned up
                break
            if not present:
                break
            candidates = present
        return min(candidates)

    def search(self, query: str, *, user_id: str | None = None, agent_id: str | None = None,
               run_id: str | None = None, actor_id: str | None = None,
               filters: Mapping[str, Any] | None = None, limit: int = 10,
               threshold: float | None = None, mode: str | None = None) -> dict[str, Any]:
        """Memories in scope that best match ``query``, best first, each with a score.

        ``mode`` ranks by meaning (``vector``), by shared words (``keyword``,
        BM25) or by both fused (``hybrid``); None uses the configured default.
        In every mode the score is the cosine similarity to the query (higher
        is closer) and ``threshold`` drops results scoring below it. The search
        is exact within the scope.
        """
        text = check_text(query, field="query")
        limit = check_limit(limit)
        minimum = check_threshold(threshold)
        chosen = self.search_mode if mode is None else check_mode(mode)
        where = self._scope({"user_id": user_id, "agent_id": agent_id, "run_id": run_id},
                            actor_id=actor_id, filters=filters).where()
        self.ensure_open()
        snapshot = Snapshot(self.store.dataset(MEMORIES))
        depth = max(limit, CANDIDATES) if chosen == "hybrid" else limit
        # Neither read needs the query's vector: both run while it is embedded.
        scope = None if chosen == "keyword" else self._runtime.run_soon(
            snapshot.scope_vectors, where)
        keyword = None if chosen == "vector" else self._runtime.run_soon(
            snapshot.keyword, text, where, limit=depth)
        vector = self.embedder.embed_query(text)
        by_meaning, scores = Ranked([]), {}
        if scope is not None:
            by_meaning, scores = self._rank_by_meaning(snapshot, scope.result(), vector,
                                                       where, depth)
        by_words = Ranked([]) if keyword is None else keyword.result()
        ranked = fuse(by_words.row_ids, by_meaning.row_ids)[:limit]
        unscored = any(row_id not in scores for row_id in ranked)
        columns = [*self._item_columns, "vector"] if unscored else self._item_columns
        rows = snapshot.rows(ranked, columns)
        if unscored:
            scores.update(zip(ranked, cosine_scores([row.pop("vector") for row in rows], vector),
                              strict=True))
        items = [to_item(row, score=scores[row["_rowid"]]) for row in rows]
        if minimum is not None:
            items = [item for item in items if item["score"] >= minimum]
        return {"results": items}

    @staticmethod
    def _rank_by_meaning(snapshot: Snapshot, flat: tuple[list[int], Any] | None,
                         vector: list[float], where: str,
                         depth: int) -> tuple[Ranked, dict[int, float]]:
        """The scope's top ``depth`` row ids by cosine, and every score computed."""
        if flat is None:  # a scope too large to read whole: Lance's exact scan
            import numpy as np

            found = snapshot.nearest(np.asarray(vector, dtype=np.float32), where, limit=depth)
            return found, dict(zip(found.row_ids, found.scores or [], strict=True))
        row_ids, matrix = flat
        best, scores = top_cosine(matrix, vector, depth)
        return Ranked([row_ids[i] for i in best]), dict(zip(row_ids, scores, strict=True))

    def get_all(self, *, user_id: str | None = None, agent_id: str | None = None,
                run_id: str | None = None, actor_id: str | None = None,
                filters: Mapping[str, Any] | None = None, limit: int = 100) -> dict[str, Any]:
        """Memories in scope, newest first, at most ``limit``."""
        limit = check_limit(limit)
        where = self._scope({"user_id": user_id, "agent_id": agent_id, "run_id": run_id},
                            actor_id=actor_id, filters=filters).where()
        rows = self._select(where)
        rows.sort(key=lambda row: (row["created_at"], row["id"]), reverse=True)
        return {"results": [to_item(row) for row in rows[:limit]]}

    def _select(self, where: str) -> list[dict[str, Any]]:
        self.ensure_open()
        return self.store.select(MEMORIES, where, columns=self._item_columns)

    def _find(self, memory_id: Any, ids: Mapping[str, Any], *,
              full: bool = False) -> dict[str, Any]:
        """The stored row with this id inside the caller's scope, or NotFoundError."""
        if not isinstance(memory_id, str) or not memory_id.strip():
            raise ValidationError("'memory_id' must be a non-empty string such as the id "
                                  "returned by add or search.")
        where = f"id = {sql_string(memory_id.strip())} AND {self._scope(ids).where()}"
        self.ensure_open()
        columns = None if full else self._item_columns
        rows = self.store.select(MEMORIES, where, columns=columns, limit=1)
        if not rows:
            raise NotFoundError(_not_found(memory_id))
        return rows[0]

    def get(self, memory_id: str, *, user_id: str | None = None, agent_id: str | None = None,
            run_id: str | None = None) -> dict[str, Any]:
        """One memory by id, if it is in the caller's scope."""
        ids = {"user_id": user_id, "agent_id": agent_id, "run_id": run_id}
        return to_item(self._find(memory_id, ids))

    def update(self, memory_id: str, *, text: str | None = None,
               metadata: Mapping[str, Any] | None = None, user_id: str | None = None,
               agent_id: str | None = None, run_id: str | None = None,
               principal: Principal | None = None) -> dict[str, Any]:
        """Change a memory's text (re-embedded) and/or replace its custom metadata.

        The scope and attribution never change. Returns the updated memory.
        ``principal`` is recorded in history, as for ``add``.
        """
        if text is None and metadata is None:
            raise ValidationError("give 'text', 'metadata' or both to update a memory.")
        new_text = check_text(text) if text is not None else None
        custom = check_metadata(metadata) if metadata is not None else None
        ids = {"user_id": user_id, "agent_id": agent_id, "run_id": run_id}
        vector = None
        for attempt in range(_UPDATE_ATTEMPTS):
            if attempt:
                backoff(attempt - 1)  # another writer won the swap: let it finish
            stored = MemoryRecord.from_row(self._find(memory_id, ids, full=True))
            text_changes = new_text is not None and new_text != stored.memory
            if text_changes and vector is None:  # the actor never changes: one embedding
                document = document_text(new_text, stored.actor_id)
                vector = self.embedder.embed_documents([document])[0]
            record = stored.revised(
                text=new_text if text_changes else None, vector=vector if text_changes else None,
                metadata=custom,
                # Strictly later than the version read, whatever the clocks of other
                # processes say, so history sorts in the order the updates landed.
                updated_at=max(datetime.now(UTC), stored.updated_at + timedelta(microseconds=1)))
            row = record.to_row()
            # Compare-and-swap: replace the row only if nobody changed it since.
            unchanged = f"target.updated_at = {sql_timestamp(stored.updated_at)}"
            if self.store.upsert(MEMORIES, [row], self._schema, only_if=unchanged):
                self.history_log.record_soon(
                    [hist.history_row(memory=row, event=hist.UPDATE, old_memory=stored.memory,
                                      new_memory=record.memory, now=record.updated_at,
                                      principal=principal)])
                return record.to_item()
        raise ConflictError(f"memory {memory_id!r} kept changing while it was being updated; "
                            "try again.")

    def delete(self, memory_id: str, *, user_id: str | None = None,
               agent_id: str | None = None, run_id: str | None = None,
               principal: Principal | None = None) -> dict[str, Any]:
        """Delete one memory in the caller's scope; its history is kept (and
        names ``principal``, as for ``add``)."""
        ids = {"user_id": user_id, "agent_id": agent_id, "run_id": run_id}
        row = self._find(memory_id, ids)
        if not self._delete_rows([row], principal):  # another caller deleted it since it was found
            raise NotFoundError(_not_found(memory_id))
        return {"id": row["id"], "deleted": True}

    def delete_all(self, *, user_id: str | None = None, agent_id: str | None = None,
                   run_id: str | None = None, actor_id: str | None = None,
                   filters: Mapping[str, Any] | None = None,
                   principal: Principal | None = None) -> dict[str, Any]:
        """Delete every memory in the scope (no cap) that matches ``filters``, if given.

        At least one of user/agent/run id is required; filters only narrow.
        History names ``principal``, as for ``add``.
        """
        where = self._scope({"user_id": user_id, "agent_id": agent_id, "run_id": run_id},
                            actor_id=actor_id, filters=filters).where()
        return {"deleted": self._delete_rows(self._select(where), principal)}

    def _delete_rows(self, rows: list[dict[str, Any]],
                     principal: Principal | None = None) -> int:
        """Delete these rows and record it; returns how many this call deleted.

        A row another caller deleted meanwhile counts for that caller only;
        its DELETE history row has the same id either way (history.event_id).
        """
        now = datetime.now(UTC)
        deleted = 0
        for start in range(0, len(rows), _ID_CHUNK):
            chunk = rows[start:start + _ID_CHUNK]
            wanted = ", ".join(sql_string(row["id"]) for row in chunk)
            count = self.store.delete(MEMORIES, f"id IN ({wanted})")
            deleted += count
            if count:
                self.history_log.record_soon(
                    [hist.history_row(memory=row, event=hist.DELETE, old_memory=row["memory"],
                                      new_memory=None, now=now, principal=principal)
                     for row in chunk]
                )
        return deleted

    def history(self, memory_id: str, *, user_id: str | None = None,
                agent_id: str | None = None, run_id: str | None = None) -> dict[str, Any]:
        """Every recorded change to one memory in the caller's scope, oldest first."""
        if not isinstance(memory_id, str) or not memory_id.strip():
            raise ValidationError("'memory_id' must be a non-empty string.")
        scope = self._scope({"user_id": user_id, "agent_id": agent_id, "run_id": run_id}).scope
        self.ensure_open()
        where = f"memory_id = {sql_string(memory_id.strip())} AND {scope_where(scope)}"
        rows = self.history_log.rows(where)
        if not rows:
            raise NotFoundError(f"no memory with id {memory_id!r} in this scope.")
        return {"results": [hist.entry(row) for row in rows]}

    def reset(self) -> None:
        """Delete every memory and all history, for every scope."""
        self._runtime.check_open()
        self.history_log.flush()
        self.store.reset()
        self._opened = False
        self.ensure_open()


def _not_found(memory_id: Any) -> str:
    """The one message for a memory that is missing or outside the caller's scope."""
    return (f"no memory with id {memory_id!r} in this scope; list or search memories "
            "to find the right id.")
