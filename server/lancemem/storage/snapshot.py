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

A long memory's passages (search/passages.py) are read beside the vectors: a
short memory's null passages cost the read only their validity bits, and a
scope with no long memory gets no passages matrix at all. A store that never
held a long memory (its meta mark) reads and scans no passages.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..core.records import MemoryRecord
from . import sql
from .retries import with_retries
from .schema import PASSAGES, SEARCH_TEXT, item_columns
from .vector_index import LARGE_SCOPE, POSTFILTER_WIDTH, dataset_has_vector_index, nearest_options

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

FLAT_ROWS = LARGE_SCOPE  # a scope's vectors read into memory at most (30 MB at 384 dims)
# A scope's long memories' passage vectors: for each passage the position of
# its memory among the scope's rows, and the passages as one float32 matrix.
Passages = tuple["np.ndarray", "np.ndarray"]


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

    def __init__(self, dataset: Any, *, visible: str | None = None,
                 passages: bool = True) -> None:
        """``visible``, if given, is ANDed to every where clause: the rows this
        search may see at all (MemoryTable.snapshot: the unexpired ones).
        ``passages`` False: no row has passages (the store's mark, meta.py), so
        none are read or scanned."""
        self._ds = dataset
        self._visible = visible
        self._passages = passages

    def _where(self, where: str) -> str:
        return where if self._visible is None else sql.both(where, self._visible)

    def _has_passages(self) -> bool:
        return self._passages and PASSAGES in self._ds.schema.names

    def scope_vectors(self, where: str
                      ) -> tuple[list[int], np.ndarray, Passages | None] | None:
        """Row ids, vectors (one float32 matrix) and long memories' passages
        (None when the scope has none) of every row matching ``where``, or
        None when more than FLAT_ROWS match."""
        columns = ["vector", PASSAGES] if self._has_passages() else ["vector"]

        def run() -> Any:
            return self._ds.to_table(columns=columns, filter=self._where(where),
                                     with_row_id=True, limit=FLAT_ROWS + 1)

        found = with_retries(run, what="searching memories")
        if found.num_rows > FLAT_ROWS:
            return None
        return _row_ids(found), vector_matrix(found), passage_matrix(found)

    def columns(self, where: str, columns: Sequence[str]) -> pa.Table:
        """These columns, with ``_rowid``, of every row matching ``where``."""
        return with_retries(lambda: self._ds.to_table(
            columns=list(columns), filter=self._where(where), with_row_id=True),
            what="reading rows")

    def nearest(self, vector: np.ndarray, where: str, *, limit: int) -> Ranked:
        """Top-``limit`` among rows matching ``where`` by memory cosine (the
        best of a row's vector and passages), through Lance: on the vectors its
        exact scan, or its vector index once maintenance built one
        (vector_index.py); on the few long memories' passages an exact scan."""
        best = self._nearest_vectors(vector, where, limit)
        if self._has_passages():
            long_ones = self._nearest(PASSAGES, vector, sql.both(where, f"{PASSAGES} IS NOT NULL"),
                                      limit, {"use_index": False})
            for row_id, score in long_ones.items():
                best[row_id] = max(score, best.get(row_id, score))
        ranked = sorted(best, key=lambda row_id: -best[row_id])[:limit]
        return Ranked(ranked, [best[row_id] for row_id in ranked])

    def _nearest_vectors(self, vector: np.ndarray, where: str, limit: int) -> dict[int, float]:
        """Row id -> cosine of at least the top ``limit`` vectors matching
        ``where``: through the index, postfiltered first where one exists
        (vector_index.POSTFILTER_WIDTH); the postfilter only ever drops rows,
        so no other scope's row is returned either way."""
        if dataset_has_vector_index(self._ds):
            wide = limit * POSTFILTER_WIDTH
            found = self._nearest("vector", vector, where, wide, nearest_options(wide),
                                  prefilter=False)
            if len(found) >= limit:  # then the scope's top ``limit`` are among them
                return found
        return self._nearest("vector", vector, where, limit, nearest_options(limit))


    def _nearest(self, column: str, vector: np.ndarray, where: str, limit: int,
                 options: dict[str, Any], *, prefilter: bool = True) -> dict[int, float]:
        """Row id -> cosine for Lance's top-``limit`` on ``column``; on a list of
        vectors (passages) Lance's distance is 1 - the best one's cosine."""
        def run() -> Any:
            return self._ds.to_table(
                columns=["_distance"], filter=self._where(where), prefilter=prefilter,
                with_row_id=True,
                nearest={"column": column, "q": vector, "k": limit, "metric": "cosine",
                         **options},
                disable_scoring_autoprojection=True)

        found = with_retries(run, what="searching memories")
        return dict(zip(_row_ids(found), (1.0 - d for d in found.column("_distance").to_pylist()),
                        strict=True))

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
        return vector_matrix(self._take_in_order(row_ids, ["vector"]))

    def memory_vectors_at(self, row_ids: Sequence[int]) -> tuple[np.ndarray, Passages | None]:
        """The vectors of the rows with these row ids, in the order given, and
        their passages (owners are positions in ``row_ids``), as
        ``retrieval.memory_cosine`` takes them."""
        if not self._has_passages():
            return self.vectors_at(row_ids), None
        found = self._take_in_order(row_ids, ["vector", PASSAGES])
        return vector_matrix(found), passage_matrix(found)

    def _take_in_order(self, row_ids: Sequence[int], columns: list[str]) -> pa.Table:
        """These columns of the rows with these row ids, in the order given."""
        found = self._take(row_ids, [*columns, "_rowid"])
        position = {row_id: i for i, row_id in enumerate(_row_ids(found))}
        return found.take([position[row_id] for row_id in row_ids])

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


def passage_matrix(found: Any) -> Passages | None:
    """The ``passages`` column of an Arrow table as (owner row positions, one
    float32 matrix), or None when no row has passages (or there is no column)."""
    if PASSAGES not in found.column_names:
        return None
    lists = found.column(PASSAGES).combine_chunks()
    if lists.null_count == len(lists):  # the usual case: short memories only
        return None
    import pyarrow.compute as pc

    owners = pc.list_parent_indices(lists).to_numpy(zero_copy_only=False)
    vectors = lists.flatten()
    width = vectors.type.list_size
    return owners, vectors.flatten().to_numpy(zero_copy_only=False).reshape(-1, width)
