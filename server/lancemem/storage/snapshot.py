"""One version of a table, read several ways for one search.

A memory search reads the table up to three times (the scope's vectors, the
keyword hits, the rows it returns); a Snapshot pins one version so that the
three agree. Only row ids and vectors are read while ranking; the few rows a
search returns are read whole at the end, by row id. Relations are ranked the
same way (RelationTable.touching).

Why the scope's vectors are read rather than asked for nearest neighbours:
reading them needs no query vector, so it runs while the query is embedded,
and ranking 100 vectors in numpy takes microseconds. Lance's own exact
nearest-neighbour query has to wait for the vector and cost more than the
read alone (100,000 rows, 100 per scope: 9.9 ms against 4.9 ms for the read).
Scopes larger than FLAT_ROWS fall back to that query, so memory stays bounded.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..core.records import MemoryRecord
from . import sql
from .retries import with_retries
from .schema import SEARCH_TEXT, item_columns
from .vector_index import LARGE_SCOPE, nearest_options

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

FLAT_ROWS = LARGE_SCOPE  # a scope's vectors read into memory at most (30 MB at 384 dims)


@dataclass(frozen=True)
class Ranked:
    """One ranking's candidates, best first: row ids within the snapshot and
    (where known) their scores: cosine similarity for the meaning ranking,
    BM25 for the keyword ranking."""

    row_ids: list[int]
    scores: list[float] | None = None


class Snapshot:
    """The memories table at one version (a pylance dataset).

    Rankings carry row ids, not memory ids: reading the id column of scattered
    rows cost as much again as reading their vectors (4.9 ms against 7.5 ms for
    a scope of 100 rows; full-text 3.3 against 5.4 ms), and a row id is
    unique within a version.
    """

    def __init__(self, dataset: Any, *, visible: str | None = None) -> None:
        """``visible``, if given, is ANDed to every where clause: the rows this
        search may see at all (MemoryTable.snapshot: the unexpired ones)."""
        self._ds = dataset
        self._visible = visible

    def _where(self, where: str) -> str:
        return where if self._visible is None else sql.both(where, self._visible)

    def scope_vectors(self, where: str) -> tuple[list[int], np.ndarray] | None:
        """Row ids and vectors (one float32 matrix) of every row matching
        ``where``, or None when more than FLAT_ROWS match."""
        def run() -> Any:
            return self._ds.to_table(columns=["vector"], filter=self._where(where),
                                     with_row_id=True, limit=FLAT_ROWS + 1)

        found = with_retries(run, what="searching memories")
        if found.num_rows > FLAT_ROWS:
            return None
        return _row_ids(found), vector_matrix(found)

    def columns(self, where: str, columns: Sequence[str]) -> pa.Table:
        """These columns, with ``_rowid``, of every row matching ``where``."""
        return with_retries(lambda: self._ds.to_table(
            columns=list(columns), filter=self._where(where), with_row_id=True),
            what="reading rows")

    def nearest(self, vector: np.ndarray, where: str, *, limit: int) -> Ranked:
        """Cosine top-``limit`` among rows matching ``where``: Lance's exact scan,
        or its vector index once maintenance built one (vector_index.py)."""
        def run() -> Any:
            return self._ds.to_table(
                columns=["_distance"], filter=self._where(where), prefilter=True,
                with_row_id=True,
                nearest={"column": "vector", "q": vector, "k": limit, "metric": "cosine",
                         **nearest_options()},
                disable_scoring_autoprojection=True)

        found = with_retries(run, what="searching memories")
        return Ranked(_row_ids(found), [1.0 - d for d in found.column("_distance").to_pylist()])

    def keyword(self, text: str, where: str, *, limit: int) -> Ranked:
        """BM25 top-``limit`` for ``text`` among rows matching ``where``, with
        their BM25 scores."""
        def run() -> Any:
            return self._ds.to_table(
                columns=["_score"], filter=self._where(where), prefilter=True,
                with_row_id=True,
                full_text_query={"query": text, "columns": [SEARCH_TEXT]}, limit=limit,
                disable_scoring_autoprojection=True)

        found = with_retries(run, what="searching memories by keyword")
        return Ranked(_row_ids(found), found.column("_score").to_pylist())

    def rows(self, row_ids: Sequence[int], columns: Iterable[str]) -> list[dict[str, Any]]:
        """The rows with these row ids, in the order given (``_rowid`` included)."""
        if not row_ids:
            return []
        wanted = [*columns, "_rowid"]
        # _take_rows is pylance's take by row id (pinned in pyproject.toml); pylance
        # 13 has no public equal. Measured at 100,000 rows in 10 fragments, 10 rows
        # with their vectors: _take_rows 1.0 ms, a `_rowid IN (...)` filter (through
        # to_table or a scanner) 2.1-2.4 ms. The public LanceFragment.take takes
        # offsets that shift once a fragment has deletions, so it reads wrong rows.
        by_row = {row["_rowid"]: row for row in self._take(row_ids, wanted).to_pylist()}
        return [by_row[row_id] for row_id in row_ids]

    def vectors_at(self, row_ids: Sequence[int]) -> np.ndarray:
        """The vectors of the rows with these row ids, in the order given (one
        float32 matrix, without a row of Python lists in between)."""
        found = self._take(row_ids, ["vector", "_rowid"])
        position = {row_id: i for i, row_id in enumerate(_row_ids(found))}
        return vector_matrix(found)[[position[row_id] for row_id in row_ids]]

    def _take(self, row_ids: Sequence[int], columns: list[str]) -> pa.Table:
        return with_retries(lambda: self._ds._take_rows(list(row_ids), columns=columns),
                            what="reading rows")

    def records(self, row_ids: Sequence[int], *,
                with_vectors: bool = False) -> list[tuple[int, MemoryRecord]]:
        """The memories at these row ids, in the order given, each with its row
        id; their vectors only when asked for."""
        columns = [*item_columns(), "vector"] if with_vectors else item_columns()
        return [(row["_rowid"], MemoryRecord.from_row(row)) for row in self.rows(row_ids, columns)]


def _row_ids(found: Any) -> list[int]:
    return found.column("_rowid").to_pylist()


def vector_matrix(found: Any) -> np.ndarray:
    """The ``vector`` column of an Arrow table as one float32 matrix, one row
    per table row (zeros where a vector is missing: during a reindex)."""
    vectors = found.column("vector").combine_chunks()
    width = vectors.type.list_size
    values = vectors.flatten().to_numpy(zero_copy_only=False).reshape(-1, width)
    if not vectors.null_count:
        return values
    import numpy as np

    matrix = np.zeros((len(vectors), width), dtype=values.dtype)
    matrix[vectors.is_valid().to_numpy(zero_copy_only=False)] = values
    return matrix
