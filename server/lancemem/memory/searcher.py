"""Memory's reads: search, get_all, get, history."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from ..core.config import check_mode
from ..core.errors import NotFoundError, ValidationError
from ..core.messages import check_limit, check_text, check_threshold
from ..core.paging import decode_cursor, page_of
from ..core.scoping import Scope, scope_where, validate_id
from ..search.retrieval import CANDIDATES, KEYWORD_SHARE, fuse, memory_cosine, top_cosine
from ..storage import history as hist
from ..storage.snapshot import Ranked, Snapshot
from .context import Context, live_at
from .relations import Relations

LARGE_SCOPES_KEPT = 1_024


class Searcher:
    """Every read of one Memory; its public methods are Memory's."""

    def __init__(self, context: Context, relations: Relations) -> None:
        self._ctx = context
        self._relations = relations
        # Where clauses of scopes found too large to read whole: searched by
        # Lance at once next time, instead of reading FLAT_ROWS vectors first
        # to find out again (a scope that shrank is still ranked correctly).
        self._large: dict[str, None] = {}
        self._large_lock = threading.Lock()

    def search(self, query: str, *, ids: Mapping[str, Any], actor_id: Any, filters: Any,
               limit: int, threshold: float | None, mode: str | None,
               default_mode: str, show_expired: bool = False) -> dict[str, Any]:
        """Memory.search: exact within the scope, ordered by the score of
        ``mode`` (search/retrieval.py), ``threshold`` a least score; expired
        memories only with ``show_expired``.

        The scope's vectors and the keyword hits are read while the query is
        embedded (neither needs its vector); the few rows returned are read
        last, by row id, from the same snapshot.
        """
        text = check_text(query, field="query")
        limit = check_limit(limit)
        minimum = check_threshold(threshold)
        chosen = default_mode if mode is None else check_mode(mode)
        call = self._ctx.scope(ids, actor_id=actor_id, filters=filters)
        where = call.where()
        snapshot = self._ctx.tables().memories.snapshot(live_at=live_at(show_expired))
        depth = max(limit, CANDIDATES) if chosen == "hybrid" else limit
        run_soon = self._ctx.runtime.run_soon
        flat = chosen != "keyword" and where not in self._large
        scope = run_soon(snapshot.scope_vectors, where) if flat else None
        keyword = None if chosen == "vector" else run_soon(snapshot.keyword, text, where,
                                                            limit=depth)
        vector = self._ctx.embedder.embed_query(text)
        by_meaning, cosines = Ranked([]), {}
        if chosen != "keyword":
            read = None if scope is None else scope.result()
            if read is None:
                self._remember_large(where)
            by_meaning, cosines = _rank_by_meaning(snapshot, read, vector, where, depth)
        by_words = Ranked([], []) if keyword is None else keyword.result()
        if chosen == "hybrid":
            _add_cosines(snapshot, by_words.row_ids, vector, cosines)
        ranked = fuse(list(zip(by_words.row_ids, by_words.scores or [], strict=True)), cosines,
                      by_meaning.row_ids, keyword_share=KEYWORD_SHARE[chosen])
        if minimum is not None:
            ranked = [(row_id, score) for row_id, score in ranked if score >= minimum]
        ranked = ranked[:limit]
        score_of = dict(ranked)
        items = [record.to_item(score=score_of[row_id])
                 for row_id, record in snapshot.records([row_id for row_id, _ in ranked])]
        relations = self._relations.beside(text, vector, scope_where(call.scope.without_actor()),
                                           [item["memory"] for item in items], limit)
        return {"results": items, "relations": relations}

    def _remember_large(self, where: str) -> None:
        with self._large_lock:  # searches run on several threads
            self._large[where] = None
            if len(self._large) > LARGE_SCOPES_KEPT:
                del self._large[next(iter(self._large))]  # the oldest

    def get_all(self, *, ids: Mapping[str, Any], actor_id: Any, filters: Any,
                limit: int, cursor: Any = None, show_expired: bool = False) -> dict[str, Any]:
        """Memory.get_all: newest first, ``limit`` a page, the page after
        ``cursor``; expired memories only with ``show_expired``."""
        limit = check_limit(limit)
        after = decode_cursor(cursor)  # a bad cursor fails before the store is read
        where = self._ctx.scope(ids, actor_id=actor_id, filters=filters).where()
        records = self._ctx.tables().memories.select(where, live_at=live_at(show_expired))
        page = page_of(records, limit=limit, after=after)
        return {"results": [record.to_item() for record in page.items], "total": page.total,
                "next_cursor": page.next_cursor}

    def scopes(self, *, ids: Mapping[str, Any]) -> dict[str, Any]:
        """Memory.scopes: the ids that hold live memories, with their counts,
        among the memories matching the given ids (every memory when none is
        given: the configured defaults do not narrow it)."""
        given = {key: validate_id(key, value) for key, value in ids.items() if value is not None}
        where = scope_where(Scope(**given)) if given else None
        counts = self._ctx.tables().memories.scope_counts(where, live_at=live_at(False))
        return {key: [{"id": name, "count": count} for name, count in sorted(found.items())]
                for key, found in counts.items()}

    def get(self, memory_id: str, *, ids: Mapping[str, Any],
            show_expired: bool = False) -> dict[str, Any]:
        """Memory.get: one memory, if it is in the caller's scope (and not
        expired, unless ``show_expired``)."""
        return self._ctx.find(memory_id, ids, live_at=live_at(show_expired)).to_item()

    def history(self, memory_id: str, *, ids: Mapping[str, Any]) -> dict[str, Any]:
        """Memory.history: one memory's changes, oldest first."""
        if not isinstance(memory_id, str) or not memory_id.strip():
            raise ValidationError("'memory_id' must be a non-empty string.")
        scope = self._ctx.scope(ids).scope
        rows = self._ctx.tables().history.of_memory(memory_id.strip(), scope_where(scope))
        if not rows:
            raise NotFoundError(f"no memory with id {memory_id!r} in this scope.")
        return {"results": [hist.entry(row) for row in rows]}


def _rank_by_meaning(snapshot: Snapshot, flat: tuple[list[int], Any, Any] | None,
                     vector: list[float], where: str,
                     depth: int) -> tuple[Ranked, dict[int, float]]:
    """The scope's top ``depth`` row ids by cosine, and every score computed."""
    if flat is None:  # a scope too large to read whole: Lance's exact scan
        import numpy as np

        found = snapshot.nearest(np.asarray(vector, dtype=np.float32), where, limit=depth)
        return found, dict(zip(found.row_ids, found.scores or [], strict=True))
    row_ids, matrix, passages = flat
    best, scores = top_cosine(matrix, vector, depth, passages)
    return Ranked([row_ids[i] for i in best]), dict(zip(row_ids, scores, strict=True))


def _add_cosines(snapshot: Snapshot, row_ids: list[int], vector: list[float],
                 cosines: dict[int, float]) -> None:
    """Fill in the cosine of the keyword hits the meaning ranking did not score
    (only when a scope was too large to read whole)."""
    missing = [row_id for row_id in row_ids if row_id not in cosines]
    if missing:
        matrix, passages = snapshot.memory_vectors_at(missing)
        cosines.update(zip(missing, memory_cosine(matrix, vector, passages).tolist(),
                           strict=True))
