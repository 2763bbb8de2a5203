"""An ANN index for the scopes too large to read whole.

A search reads a scope's vectors and ranks them in numpy (snapshot.py); past
FLAT_ROWS it asks Lance for the nearest rows instead, and without an index
that is an exact scan of the whole scope, whose cost grows with it (a
90,000-row scope: 58 ms a query on this machine). So once some scope holds
more than LARGE_SCOPE memories, maintenance builds an IVF_HNSW_SQ index on the
memories' vectors, off the write path (the background compaction thread, or
``lancemem optimize``), and the large-scope path searches through it with
EF candidates and the best REFINE_FACTOR x k re-ranked by their exact vectors.
Small scopes never use it: their flat read is exact and cheaper.

Measured (benchmarks/big_scope.py, BENCHMARKS.md "Big scopes"): one scope of
90,000 clustered vectors, prefiltered on the scope, HNSW without refinement
recall@10 .958, with ef 200 and refine 2 1.0 against the exact scan, 7.7 ms
against 58 ms; the build took 123 s for 100,000 rows on the loaded 2-core
machine. FACTS.md: IVF_PQ in a scope recalled .28-.58, hence HNSW_SQ. Rows
written after the build are scanned exactly beside the index by Lance until
compaction folds them in (optimize_indices), so nothing is missed meanwhile.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from ..core.scoping import SCOPE_KEYS
from .retries import unless_done_elsewhere, with_retries
from .schema import MEMORIES

if TYPE_CHECKING:
    from .connection import Connection

log = logging.getLogger(__name__)

# A scope past this is not read whole but searched by Lance (snapshot.FLAT_ROWS),
# through the index once one is built.
LARGE_SCOPE = 20_000
EF = 200  # candidates HNSW keeps while searching
REFINE_FACTOR = 2  # rows re-ranked by their exact vector, per row asked for
ROWS_PER_PARTITION = 500_000  # one HNSW graph per this many rows: bounds build memory
RECHECK_GROWTH = 1.1  # a background check looks at scope sizes again after 10% more rows


# A large scope is first searched over the whole index for this many times the
# rows asked for, its rows kept afterwards (a postfilter): Lance's prefilter
# builds the scope's row list on every query, 37 ms of 43 for a scope of
# 1,000,000 rows. When fewer than asked for are the scope's (a large scope that
# is a small part of the table), the query is made again with the prefilter.
POSTFILTER_WIDTH = 4


def nearest_options(k: int = 0) -> dict[str, Any]:
    """What a large-scope nearest query for ``k`` rows passes to Lance (ignored
    without an index): HNSW keeps at least EF candidates, and never fewer than
    the k x REFINE_FACTOR rows it hands to the refine step (Lance refuses that)."""
    return {"use_index": True, "ef": max(EF, k * REFINE_FACTOR),
            "refine_factor": REFINE_FACTOR}


INDEX_ROW_BYTES = 256  # an index row beyond its 8-bit vector: HNSW links and ids


def index_cache_bytes(dataset: Any) -> int:
    """Room a pylance dataset's vector index takes in the read cache (0 without
    one): an 8-bit vector and INDEX_ROW_BYTES a row (57 MB measured at 100,000
    rows of 384 dimensions, estimated 64 MB)."""
    if not dataset_has_vector_index(dataset):
        return 0
    dim = dataset.schema.field("vector").type.list_size
    return int(dataset.count_rows()) * (dim + INDEX_ROW_BYTES)


def dataset_has_vector_index(dataset: Any) -> bool:
    """Whether a pylance dataset of the memories has its vector index (read
    from the manifest it already holds: about 0.2 ms)."""
    return any(index["fields"] == ["vector"] for index in dataset.list_indices())


def has_vector_index(table: Any) -> bool:
    """Whether the memories table has its vector index."""
    return any(tuple(index.columns) == ("vector",)
               for index in with_retries(table.list_indices, what="listing indexes"))


def largest_scope(conn: Connection) -> int:
    """The most memories any one user, agent or run id holds (one read of the
    scope columns: a where clause may name one id alone)."""
    table = conn.arrow(MEMORIES, None, columns=list(SCOPE_KEYS))
    largest = 0
    for column in SCOPE_KEYS:
        counts = table.column(column).drop_null().value_counts()
        if len(counts):
            largest = max(largest, max(counts.field("counts").to_pylist()))
    return largest


class VectorIndexRule:
    """Decides, from maintenance passes, when the memories table needs the index.

    A background pass re-reads the scope sizes only when the table has grown by
    a tenth since the last look, so the check stays off the hot path.
    """

    def __init__(self) -> None:
        self._looked_at_rows = 0

    def due(self, conn: Connection, *, force: bool) -> bool:
        """Whether to build the index now (it is missing and some scope is large)."""
        table = conn.table(MEMORIES)
        rows = with_retries(table.count_rows, what="counting memories")
        if rows <= LARGE_SCOPE:
            return False
        if not force and rows < self._looked_at_rows * RECHECK_GROWTH:
            return False
        self._looked_at_rows = rows
        return not has_vector_index(table) and largest_scope(conn) > LARGE_SCOPE


def build_vector_index(conn: Connection) -> None:
    """Build the memories' vector index (minutes at a million rows: maintenance only)."""
    from lancedb.index import HnswSq

    table = conn.table(MEMORIES)
    rows = with_retries(table.count_rows, what="counting memories")
    config = HnswSq(distance_type="cosine", num_partitions=max(1, rows // ROWS_PER_PARTITION))
    started = time.perf_counter()
    unless_done_elsewhere(
        lambda: table.create_index("vector", config=config, replace=False),
        done=lambda: has_vector_index(table), what="indexing memories.vector")
    conn.changed(MEMORIES)
    conn.index_built()
    log.info("built the vector index of %s (%d memories) in %.1f s: a scope holds over "
             "%d memories", conn.uri, rows, time.perf_counter() - started, LARGE_SCOPE)
