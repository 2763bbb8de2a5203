"""The store's key/value records: which model made its vectors, its schema
version, the mark a reindex leaves until it has finished, and two flags:
whether any memory was ever given an expiration date, and whether any memory
was ever long enough for passages.

``lancemem reindex`` (reindex.py) marks the store with its target model
before it touches a vector and clears the mark when every memory has a new
one; ``check_model`` refuses a store whose mark is still there.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..core.errors import ModelMismatchError
from .schema import META, SCHEMA_VERSION, meta_schema

if TYPE_CHECKING:
    from .connection import Connection

PREPARE, EMBED = "prepare", "embed"  # a reindex's phases
# Set (to "1") before the first memory with an expiration date is written, and
# never cleared: until then no search needs the clause that hides expired
# memories, which cost 0.6-1.1 ms a search at 100,000 memories (BENCHMARKS.md).
EXPIRATIONS = "expirations"
# Set before the first memory with passages (search/passages.py) is written,
# and never cleared: until then no search scans the passages column, which
# Lance reads whole to find no long memory in it (26.7-38.8 ms a search of a
# 1,000,000-memory scope, BENCHMARKS.md).
LONG_MEMORIES = "long_memories"


class MetaTable:
    """The meta table of one store."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._records: tuple[int, dict[str, str]] | None = None  # (meta version, records)

    def read(self) -> dict[str, str]:
        """Every record that has a value."""
        rows = self._conn.select(META, None)
        return {row["key"]: row["value"] for row in rows if row["value"] is not None}

    def write(self, values: dict[str, str | None]) -> None:
        """Write records, replacing existing values (None clears one)."""
        self._conn.merge_by_key(META, [{"key": k, "value": v} for k, v in values.items()],
                                meta_schema(), replace=True, what="writing store metadata")

    def write_defaults(self, values: dict[str, str]) -> dict[str, str]:
        """Write records only where no value exists yet (safe under races).

        Returns the records as they now stand (defaults filled in).
        """
        existing = self.read()
        missing = {k: v for k, v in values.items() if k not in existing}
        if not missing:  # the usual case: no commit, no new version
            return existing
        self._conn.merge_by_key(META, [{"key": k, "value": v} for k, v in missing.items()],
                                meta_schema(), replace=False, what="writing store metadata")
        return self.read()

    def uses_expirations(self) -> bool:
        """Whether a memory of this store was ever given an expiration date."""
        return self._flag(EXPIRATIONS)

    def mark_expirations(self) -> None:
        """Record that memories may expire, before the first such memory is
        written (so a reader that sees the memory sees the mark too)."""
        self._mark(EXPIRATIONS)

    def uses_long_memories(self) -> bool:
        """Whether a memory of this store was ever stored with passages."""
        return self._flag(LONG_MEMORIES)

    def mark_long_memories(self) -> None:
        """Record that memories may have passages, before the first such memory
        is written (so a reader that sees the memory scans its passages)."""
        self._mark(LONG_MEMORIES)

    def _flag(self, key: str) -> bool:
        """Whether flag ``key`` is set; the records are read again only when the
        meta table has a new version (a 0.05 ms check)."""
        version = self._conn.version(META)
        cached = self._records
        if cached is None or cached[0] != version:
            cached = (version, self.read())
            self._records = cached
        return cached[1].get(key) == "1"

    def _mark(self, key: str) -> None:
        if not self._flag(key):
            self.write_defaults({key: "1"})

    def stamp(self, *, model_name: str, dim: int) -> None:
        """Record the model of a new store, and the current schema version."""
        meta = self.write_defaults({"embedding_model": model_name, "embedding_dim": str(dim),
                                    "schema_version": SCHEMA_VERSION})
        if meta.get("schema_version") != SCHEMA_VERSION:
            self.write({"schema_version": SCHEMA_VERSION})

    def check_model(self, *, model_name: str, dim: int) -> None:
        """Raise ModelMismatchError unless the store was built with this model."""
        meta = self.read()
        if meta.get("reindex_target"):
            raise ModelMismatchError(
                f"a reindex to {meta['reindex_target']!r} was interrupted; "
                f"run `lancemem reindex --model {meta['reindex_target']}` to finish it."
            )
        stored = meta.get("embedding_model")
        stored_dim = meta.get("embedding_dim")
        if stored != model_name or stored_dim != str(dim):
            raise ModelMismatchError(
                f"this store's vectors were made by {stored!r} ({stored_dim} dims), but the "
                f"configured embedding model is {model_name!r} ({dim} dims). Either configure "
                f"{stored!r} again (--model / LANCEMEM_EMBEDDING_MODEL), or run "
                f"`lancemem reindex --model {model_name}` to re-embed every memory."
            )

    def reindex_embedding(self, model_name: str) -> bool:
        """Whether a reindex to this model got as far as embedding (its vector
        column was replaced already)."""
        meta = self.read()
        return meta.get("reindex_target") == model_name and meta.get("reindex_phase") == EMBED

    def mark_reindex(self, model_name: str, phase: str) -> None:
        """Mark the store as being reindexed to ``model_name``, now in ``phase``."""
        values = {"reindex_phase": phase}
        if phase == PREPARE:
            values = {"reindex_target": model_name, **values}
        self.write(values)

    def finish_reindex(self, *, model_name: str, dim: int) -> None:
        """Record the new model and clear the reindex mark, in one commit."""
        self.write({"embedding_model": model_name, "embedding_dim": str(dim),
                    "reindex_target": None, "reindex_phase": None})
