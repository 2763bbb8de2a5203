"""Memory's reads: search, get_all, get, history."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..core.config import check_mode
from ..core.errors import NotFoundError, ValidationError
from ..core.messages import check_limit, check_text, check_threshold
from ..core.paging import decode_cursor, page_of
from ..core.records import MemoryRecord
from ..core.scoping import Scope, scope_where, validate_id
from ..search.retrieval import CANDIDATES, fuse, memory_cosine, top_cosine
from ..storage import history as hist
from ..storage.snapshot import Ranked, Snapshot
from .context import Context, live_at
from .relations import Relations


class Searcher:
    """Every read of one Memory; its public methods are Memory's."""

    def __init__(self, context: Context, relations: Relations) -> None:
        self._ctx = context
        self._relations = relations

    def search(self, query: str, *, ids: Mapping[str, Any], actor_id: Any, filters: Any,
               limit: int, threshold: float | None, mode: str | None,
               default_mode: str, show_expired: bool = False) -> dict[str, Any]:
        """Memory.search: exact within the scope, ranked as ``mode`` says;
        expired memories only with ``show_expired``.

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
        scope = None if chosen == "keyword" else run_soon(snapshot.scope_vectors, where)
        keyword = None if chosen == "vector" else run_soon(snapshot.keyword, text, where,
                                                            limit=depth)
        vector = self._ctx.embedder.embed_query(text)
        by_meaning, scores = Ranked([]), {}
        if scope is not None:
            by_meaning, scores = _rank_by_meaning(snapshot, scope.result(), vector, where, depth)
        by_words = Ranked([]) if keyword is None else keyword.result()
        ranked = fuse(by_words.row_ids, by_meaning.row_ids)[:limit]
        unscored = any(row_id not in scores for row_id in ranked)
        found = snapshot.records(ranked, with_vectors=unscored)
        if unscored:
            scores.update(zip(ranked, _record_scores([record for _, record in found], vector),
                              strict=True))
        items = [record.to_item(score=scores[row_id]) for row_id, record in found]
        if minimum is not None:
            items = [item for item in items if item["score"] >= minimum]
        relations = self._relations.beside(text, vector, scope_where(call.scope.without_actor()),
                                           [item["memory"] for item in items], limit)
        return {"results": items, "relations": relations}

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


def _record_scores(records: list[MemoryRecord], vector: list[float]) -> list[float]:
    """Each record's memory cosine to ``vector`` (its vector and passages)."""
    import numpy as np

    owners = [i for i, record in enumerate(records) for _ in record.passages or ()]
    if not owners:
        return memory_cosine([record.vector for record in records], vector).tolist()
    matrix = np.asarray([p for record in records for p in record.passages or ()],
                        dtype=np.float32)
    return memory_cosine([record.vector for record in records], vector,
                         (np.asarray(owners), matrix)).tolist()


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
