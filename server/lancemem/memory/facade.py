"""Memory: the Python API that the MCP server and the CLI wrap.

Every operation derives its scope from session ids (scoping.py), compiles it
with any filters into one escaped where clause (filters.py), and records
each change in the history table in the same call. Memory itself only owns
its parts and opens the store; writes are memory_writer.py's, reads
memory_searcher.py's.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future
from datetime import date
from typing import Any

from ..core.config import DEFAULT_MODE, Settings, check_mode, load_settings
from ..core.principal import Principal
from ..core.runtime import Runtime
from ..core.scoping import validate_id
from ..search.embeddings import Embedder, FastEmbedder
from ..storage import consistency, relation_consistency
from ..storage import history as hist
from ..storage.memory_table import MemoryTable
from ..storage.relation_history import RelationHistoryTable
from ..storage.relation_table import EntityTable, RelationTable
from ..storage.store import Store
from .context import Context, RelationTables, Tables
from .relations import Relations
from .searcher import Searcher
from .transfer import Transfer
from .writer import Writer

log = logging.getLogger(__name__)


def _ids(user_id: Any, agent_id: Any, run_id: Any) -> dict[str, Any]:
    return {"user_id": user_id, "agent_id": agent_id, "run_id": run_id}


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
            store = store or Store.from_settings(settings)
            embedder = embedder or FastEmbedder(settings.embedding_model,
                                                cache_dir=settings.model_cache_dir)
        self.store = store
        self.embedder = embedder
        self.search_mode = check_mode(search_mode)
        self._runtime = Runtime()
        self.history_log = hist.History(store, self._runtime)
        self.relation_log = hist.History(store, self._runtime,
                                         table=RelationHistoryTable(store))
        context = Context(tables=self._tables, embedder=embedder, runtime=self._runtime,
                          defaults={key: validate_id(key, value)
                                    for key, value in (defaults or {}).items()})
        self._context = context
        self._relations = Relations(context)
        self._writer, self._searcher = Writer(context), Searcher(context, self._relations)
        self._transfer = Transfer(context, store)
        self._open: Tables | None = None
        self._open_lock = threading.Lock()

    @functools.cached_property
    def _schema(self) -> Any:
        """The memories table's schema (a pyarrow Schema) for this Memory's model."""
        return MemoryTable(self.store, self.embedder.dim).schema

    @classmethod
    def from_settings(cls, settings: Settings, *, embedder: Embedder | None = None,
                      embedding_threads: int | None = None) -> Memory:
        """Build a Memory from Settings; nothing is opened or loaded until first use.

        ``embedding_threads`` caps the model's threads per call (None: one per core).
        """
        model = embedder or FastEmbedder(settings.embedding_model, threads=embedding_threads,
                                         cache_dir=settings.model_cache_dir)
        return cls(store=Store.from_settings(settings), embedder=model,
                   defaults=settings.scope_defaults(), search_mode=settings.search_mode)

    def __enter__(self) -> Memory:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Finish the background work: running calls' helpers, the warm-up, pending
        history, a compaction under way. Later calls raise ClosedError
        (CLOSED_001); a second close does nothing."""
        self._runtime.close(before_writer_stops=self._flush_history)
        self.store.wait_for_compaction()

    def _flush_history(self) -> None:
        self.history_log.flush()
        self.relation_log.flush()

    def warm_up(self) -> Future[None]:
        """Open the store, then load the model, in the background (a server does
        this at start, off the handshake path). The Future is done once the store
        is open and raises what opening it raised (a file, an unreadable
        directory, another model), so a server can stop at start; a model that
        fails to load is logged and comes back, with its code, on the first call."""
        opened: Future[None] = Future()

        def run() -> None:
            try:
                self.ensure_open()
            except BaseException as exc:  # the caller reports it (the Future)
                opened.set_exception(exc)
                return
            opened.set_result(None)
            try:
                load = getattr(self.embedder, "load", None)
                if load:
                    load()
            except Exception as exc:
                log.warning("warm-up failed: %s", exc)

        self._runtime.run_soon(run)
        return opened

    def ensure_open(self) -> None:
        """Open the tables, check the model, repair history after a crash (once).

        Every call goes through here before it touches the store, so this is
        where a closed Memory refuses (ClosedError)."""
        self._tables()

    def _tables(self) -> Tables:
        """The one way to the store's tables: opens them on first use."""
        self._runtime.check_open()
        opened = self._open
        if opened is not None:
            return opened
        with self._open_lock:
            if self._open is None:
                self.store.open(model_name=self.embedder.model_name, dim=self.embedder.dim)
                consistency.repair(self.store)
                relation_consistency.repair(self.store)
                self.store.compact_in_background()
                dim = self.embedder.dim
                graph = RelationTables(EntityTable(self.store, dim), RelationTable(self.store, dim),
                                       self.relation_log, RelationHistoryTable(self.store),
                                       self.store.relation_writer)
                self._open = Tables(MemoryTable(self.store, dim), self.history_log, graph)
            return self._open

    def add(self, messages: Any, *, user_id: str | None = None, agent_id: str | None = None,
            run_id: str | None = None, actor_id: str | None = None,
            metadata: Mapping[str, Any] | None = None,
            principal: Principal | None = None,
            expiration_date: str | date | None = None) -> dict[str, Any]:
        """Store each non-system message as one memory.

        ``messages`` is a string, a ``{role, content, name?}`` dict or a list of
        them. A message's ``name`` becomes its ``actor_id`` (``actor_id`` applies
        to messages without a name). Text already stored in the same scope is
        not stored again: its existing id comes back with event ``NONE``, or
        ``UPDATE`` if that copy changed: it had expired and is revived with this
        call's ``expiration_date``, or ``metadata`` was given and differs, and
        replaces the copy's (the result then carries ``metadata``; history
        records both).
        ``principal`` (an authenticated server's caller) is recorded in history;
        binding the ids to it is the caller's job (principal.bind_ids).

        ``expiration_date`` (ISO-8601 date ``"2026-12-31"``, datetime
        ``"2026-12-31T18:00:00+01:00"``, or a ``date``/``datetime``) hides the
        memory from search/get_all/get from then on: a date keeps it through
        that day (UTC), a datetime without an offset is UTC. A moment already
        past is accepted, and the memory is hidden at once.
        """
        return self._writer.add(messages, ids=_ids(user_id, agent_id, run_id),
                                actor_id=actor_id, metadata=metadata, principal=principal,
                                expiration_date=expiration_date)

    def add_many(self, records: Iterable[Mapping[str, Any]], *, batch_size: int = 512,
                 progress: Callable[[int, int], None] | None = None) -> dict[str, int]:
        """Store many records (each the keyword arguments of ``add``, with
        ``messages`` or ``text``, ``expiration_date`` included), embedding and
        writing them in batches; ``added`` counts revived expired copies too.

        Every record is checked before anything is written, so a bad record
        stores nothing; its error names the record's position. Re-running an
        interrupted call stores only what is missing (duplicates are skipped).
        """
        return self._writer.add_many(records, batch_size=batch_size, progress=progress)

    def search(self, query: str, *, user_id: str | None = None, agent_id: str | None = None,
               run_id: str | None = None, actor_id: str | None = None,
               filters: Mapping[str, Any] | None = None, limit: int = 10,
               threshold: float | None = None, mode: str | None = None,
               show_expired: bool = False) -> dict[str, Any]:
        """Memories in scope that best match ``query``, best first, each with a score.

        ``mode`` ranks by meaning (``vector``), by shared words (``keyword``,
        BM25) or by both fused (``hybrid``); None uses the configured default.
        In every mode results are ordered by ``score``, a relevance from 0 to
        1 (search/retrieval.py says how each mode computes it), and
        ``threshold`` drops results scoring below it. The search is exact
        within the scope, except in a scope of over 20,000 memories once
        maintenance has built the vector index (storage/vector_index.py).
        Expired memories are left out unless ``show_expired``. ``relations``
        beside ``results`` holds the scope's relations touching entities that
        the query or the returned memories name (search_relations' score), at
        most ``limit``.
        """
        return self._searcher.search(query, ids=_ids(user_id, agent_id, run_id),
                                     actor_id=actor_id, filters=filters, limit=limit,
                                     threshold=threshold, mode=mode,
                                     default_mode=self.search_mode,
                                     show_expired=show_expired)

    def get_all(self, *, user_id: str | None = None, agent_id: str | None = None,
                run_id: str | None = None, actor_id: str | None = None,
                filters: Mapping[str, Any] | None = None, limit: int = 100,
                cursor: str | None = None, show_expired: bool = False) -> dict[str, Any]:
        """Memories in scope, newest first, ``limit`` (1 to 1,000) a page;
        expired ones only with ``show_expired``.

        Returns ``{"results", "total", "next_cursor"}``: ``total`` counts the
        whole listing, and ``next_cursor`` (None on the last page) passed
        back as ``cursor`` gives the next page. A memory that was there all
        along is never repeated or skipped, whatever is added or deleted
        between pages.
        """
        return self._searcher.get_all(ids=_ids(user_id, agent_id, run_id), actor_id=actor_id,
                                      filters=filters, limit=limit, cursor=cursor,
                                      show_expired=show_expired)

    def scopes(self, *, user_id: str | None = None, agent_id: str | None = None,
               run_id: str | None = None) -> dict[str, Any]:
        """The user, agent and run ids that hold memories (expired ones not
        counted), each with how many: ``{"user_id": [{"id": "alice", "count":
        3}, ...], "agent_id": [...], "run_id": [...]}``, sorted by id.

        Given ids narrow it to the memories they scope (an authenticated
        caller's binding); with none, every memory of the store counts, and
        the configured default ids do not narrow it.
        """
        return self._searcher.scopes(ids=_ids(user_id, agent_id, run_id))

    def get(self, memory_id: str, *, user_id: str | None = None, agent_id: str | None = None,
            run_id: str | None = None, show_expired: bool = False) -> dict[str, Any]:
        """One memory by id, if it is in the caller's scope; an expired one is
        NOT_FOUND_001, like a missing one, unless ``show_expired``."""
        return self._searcher.get(memory_id, ids=_ids(user_id, agent_id, run_id),
                                  show_expired=show_expired)

    def update(self, memory_id: str, *, text: str | None = None,
               metadata: Mapping[str, Any] | None = None, user_id: str | None = None,
               agent_id: str | None = None, run_id: str | None = None,
               principal: Principal | None = None,
               expiration_date: str | date | None = None) -> dict[str, Any]:
        """Change a memory's text (re-embedded), replace its custom metadata,
        and/or give it a new ``expiration_date`` (as for ``add``; ``""``
        removes it, None keeps it). Expired memories can be updated.

        The scope and attribution never change. Returns the updated memory.
        ``principal`` is recorded in history, as for ``add``.
        """
        return self._writer.update(memory_id, text=text, metadata=metadata,
                                   ids=_ids(user_id, agent_id, run_id), principal=principal,
                                   expiration_date=expiration_date)

    def delete(self, memory_id: str, *, user_id: str | None = None,
               agent_id: str | None = None, run_id: str | None = None,
               principal: Principal | None = None) -> dict[str, Any]:
        """Delete one memory in the caller's scope; its history is kept (and
        names ``principal``, as for ``add``)."""
        return self._writer.delete(memory_id, ids=_ids(user_id, agent_id, run_id),
                                   principal=principal)

    def delete_all(self, *, user_id: str | None = None, agent_id: str | None = None,
                   run_id: str | None = None, actor_id: str | None = None,
                   filters: Mapping[str, Any] | None = None,
                   principal: Principal | None = None) -> dict[str, Any]:
        """Delete every memory in the scope (no cap) that matches ``filters``, if given.

        At least one of user/agent/run id is required; filters only narrow.
        Without filters, the scope's relations go too (only that actor's, with
        ``actor_id``; the scope's entities as well without one). Returns
        ``{"deleted": N, "relations_deleted": M}``. History names
        ``principal``, as for ``add``.
        """
        ids = _ids(user_id, agent_id, run_id)
        result = self._writer.delete_all(ids=ids, actor_id=actor_id, filters=filters,
                                         principal=principal)
        relations = 0
        if not filters:  # a filter selects memories by their metadata: relations have none
            scope = self._context.scope(ids, actor_id=actor_id).scope
            relations = self._relations.delete_scope(scope, principal)
        return {**result, "relations_deleted": relations}

    def add_relations(self, relations: Sequence[Mapping[str, Any]], *,
                      user_id: str | None = None, agent_id: str | None = None,
                      run_id: str | None = None, actor_id: str | None = None,
                      replace: bool = False,
                      principal: Principal | None = None) -> dict[str, Any]:
        """Store relations ``{source, relationship, target, source_type?, target_type?}``
        between entities of the scope.

        Names resolve to the scope's entities (case and spacing ignored, or a
        name meaning the same); ``relationship`` becomes lower_snake_case. A
        triple already stored in the scope comes back with event ``NONE``.
        With ``replace``, the scope's valid relations with the same source and
        relationship but another target are invalidated (event
        ``INVALIDATE``). History names ``principal``, as for ``add``.
        """
        return self._relations.add(relations, ids=_ids(user_id, agent_id, run_id),
                                   actor_id=actor_id, replace=replace, principal=principal)

    def search_relations(self, query: str, *, user_id: str | None = None,
                         agent_id: str | None = None, run_id: str | None = None,
                         limit: int = 10) -> dict[str, Any]:
        """Relations in scope whose source or target the query names or means, and
        those of their direct neighbours, best first, each with a ``score`` in [0, 1]."""
        return self._relations.search(query, ids=_ids(user_id, agent_id, run_id), limit=limit)

    def list_relations(self, *, user_id: str | None = None, agent_id: str | None = None,
                       run_id: str | None = None, entity: str | None = None,
                       relationship: str | None = None, limit: int = 100,
                       show_invalid: bool = False) -> dict[str, Any]:
        """Relations in scope, newest first: those touching ``entity`` and/or of
        ``relationship`` only, if given; invalidated ones with ``show_invalid``."""
        return self._relations.list(ids=_ids(user_id, agent_id, run_id), entity=entity,
                                    relationship=relationship, limit=limit,
                                    show_invalid=show_invalid)

    def delete_relations(self, *, relation_ids: Sequence[str] | None = None,
                         relations: Sequence[Mapping[str, Any]] | None = None,
                         user_id: str | None = None, agent_id: str | None = None,
                         run_id: str | None = None,
                         principal: Principal | None = None) -> dict[str, Any]:
        """Delete relations in scope by id, or by ``{source, relationship, target}``.

        Returns ``{"deleted": N, "not_found": [...]}``: ids or triples that
        match no relation in the scope (another scope's look the same).
        """
        return self._relations.delete(relation_ids=relation_ids, relations=relations,
                                      ids=_ids(user_id, agent_id, run_id), principal=principal)

    def relation_history(self, relation_id: str, *, user_id: str | None = None,
                         agent_id: str | None = None,
                         run_id: str | None = None) -> dict[str, Any]:
        """Every recorded change to one relation in scope, oldest first."""
        return self._relations.history(relation_id, ids=_ids(user_id, agent_id, run_id))

    def purge_expired(self) -> dict[str, int]:
        """Delete every memory of every scope whose expiration date has passed,
        each with a DELETE history row; returns ``{"deleted": n}``."""
        return self._writer.purge_expired()

    def history(self, memory_id: str, *, user_id: str | None = None,
                agent_id: str | None = None, run_id: str | None = None) -> dict[str, Any]:
        """Every recorded change to one memory in the caller's scope, oldest first."""
        return self._searcher.history(memory_id, ids=_ids(user_id, agent_id, run_id))

    def export(self, *, user_id: str | None = None, agent_id: str | None = None,
               run_id: str | None = None, memory_ids: Sequence[str] | None = None,
               include_history: bool = False, every_scope: bool = False,
               progress: Callable[[int, int], None] | None = None) -> Iterator[dict[str, Any]]:
        """Every memory in scope (``every_scope``: in the store) as JSON-ready
        dicts, one per export line (README, "Moving memories in and out").

        Memories come oldest first (``created_at``, then id), vectors left
        out; with ``include_history`` each is followed by its history, and the
        history of memories deleted before now comes last. ``memory_ids``
        narrows to those memories (NOT_FOUND_001 for one not in the scope).
        The scope is checked at once; lines are read as they are consumed.
        """
        return self._transfer.export(ids=_ids(user_id, agent_id, run_id), memory_ids=memory_ids,
                                     include_history=include_history, every_scope=every_scope,
                                     progress=progress)

    def export_page(self, *, user_id: str | None = None, agent_id: str | None = None,
                    run_id: str | None = None, include_history: bool = False,
                    limit: int = 100, cursor: str | None = None) -> dict[str, Any]:
        """One page of ``export``'s lines for a client that cannot take a stream
        (the MCP tool): the memories of one ``get_all`` page (newest pages first,
        expired memories included), each with its history when asked, as
        ``{"lines", "total", "next_cursor"}``. History of deleted memories is
        only in the full ``export``."""
        return self._transfer.export_page(ids=_ids(user_id, agent_id, run_id),
                                          include_history=include_history, limit=limit,
                                          cursor=cursor)

    def restore(self, records: Iterable[Any], *, user_id: str | None = None,
                agent_id: str | None = None, run_id: str | None = None,
                source: str = "lancemem", labels: Sequence[str] | None = None,
                batch_size: int = 512,
                progress: Callable[[int, int], None] | None = None) -> dict[str, int]:
        """Store exported lines again, ids and timestamps kept (``source="mem0"``:
        mem0's memory items). Returns ``{"restored", "skipped", "history_restored"}``.

        Every record is checked, and held against the store, before anything
        is written; an error names the record (``labels[i]``, else "record
        N") and the field. Given ids fill records that lack them and must
        equal those they have. A stored memory is never changed: the same id
        with the same text and scope is skipped, with other text or scope it
        is an error. Running it again writes nothing.
        """
        return self._transfer.restore(records, ids=_ids(user_id, agent_id, run_id),
                                      source=source, labels=labels, batch_size=batch_size,
                                      progress=progress)

    def reset(self) -> None:
        """Delete every memory and all history, for every scope."""
        self._runtime.check_open()
        self._flush_history()
        self.store.reset()
        self._open = None
        self.ensure_open()
