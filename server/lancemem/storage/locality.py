"""Scope locality: a scope's memories stored side by side.

Users' adds interleave, so in insertion order a scope's 100 rows lie in 100
places and a search reads them with 100 random reads. Lance's compaction keeps
insertion order; here compaction of the memories table rewrites the fragments
it merges with their rows ordered by scope (``SCOPE_ORDER``: a search filters
by ``user_id`` first, then ``agent_id``, ``run_id``; rows without a user sort
last, grouped by agent), so a scope becomes one run of neighbouring rows.

How it commits: a ``Rewrite`` of the chosen fragments into new, sorted ones
(``lance.LanceOperation.Rewrite``). Lance remaps indexes only for its own
compaction, whose row order it knows; a custom rewrite carries no index
remapping (row addresses are not stable here: the tables were made without
stable row ids), so the indexes keep covering the old fragments only. Queries
stay right meanwhile: Lance masks index entries of fragments that are gone and
scans fragments no index covers (as for any new append). The same pass then
folds the new fragments into every index (``optimize_indices``).

A rewrite is computed at one version and committed against it: a concurrent
append rebases onto it (Lance allows both), while an update or delete that
touched a rewritten fragment makes the commit conflict, and the whole rewrite
is done again on the newest version (``with_retries``), so no write is lost.
A rewrite that lost its commit leaves unreferenced files, which Lance's
version clean-up deletes once they are old enough.

How much is re-sorted (Maintenance uses these):
- the small tier (single-row fragments into SMALL_FRAGMENT rows) stays
  Lance's own compaction: cheap, and it remaps indexes;
- the large tier (fragments below LARGE_FRAGMENT rows merged) sorts what it
  merges: each such pass adds at most one run to a scope;
- the whole table is sorted again when its scopes lie in more than
  ``FULL_SORT_RUNS`` runs each on average (``lancemem optimize``: more than
  one), since each pass above leaves its own sorted run per scope.
Measured costs are in BENCHMARKS.md, "Scope locality (issue 16)".

Memory stays bounded: only the scope columns and row addresses are sorted in
memory; rows are then read by address and written in batches of TAKE_ROWS.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from .retries import with_retries

if TYPE_CHECKING:
    import pyarrow as pa

    from .connection import Connection

log = logging.getLogger(__name__)

SCOPE_ORDER = ("user_id", "agent_id", "run_id")
TAKE_ROWS = 8_192  # rows read by address and written per batch (12 MB of vectors at 384 dims)
# The whole table is re-sorted in the background once scopes average this many runs.
FULL_SORT_RUNS = 4.0

Select = Callable[[Sequence[Any]], list[Any]]


def scope_runs(dataset: Any) -> tuple[int, int]:
    """(runs, scopes): in storage order, how many runs of neighbouring rows of
    one scope the rows form, and how many scopes there are. Sorted: equal."""
    table = dataset.to_table(columns=list(SCOPE_ORDER), scan_in_order=True)
    keys = _scope_keys(table)
    if len(keys) == 0:
        return 0, 0
    import pyarrow.compute as pc

    changes = pc.sum(pc.not_equal(keys[1:], keys[:-1])).as_py() or 0
    return 1 + changes, pc.count_distinct(keys).as_py()


def _scope_keys(table: pa.Table) -> pa.Array:
    """One string per row naming its scope (a null id and an empty one differ)."""
    import pyarrow.compute as pc

    parts = [pc.binary_join_element_wise("v", table.column(c), "")
             for c in SCOPE_ORDER]
    joined = pc.binary_join_element_wise(*parts, "\x1f", null_handling="replace",
                                         null_replacement="-")
    return joined.combine_chunks() if hasattr(joined, "combine_chunks") else joined


def scattered(dataset: Any, *, runs_per_scope: float) -> bool:
    """Whether the table's scopes lie in more than ``runs_per_scope`` runs each on average."""
    runs, scopes = scope_runs(dataset)
    return scopes > 0 and runs > scopes * runs_per_scope


def all_fragments(fragments: Sequence[Any]) -> list[Any]:
    """Every fragment: a full re-sort."""
    return list(fragments)


def below(rows: int) -> Select:
    """The fragments holding fewer than ``rows`` rows: the large tier's merge."""
    return lambda fragments: [f for f in fragments if f.physical_rows < rows]


def sort_fragments(conn: Connection, name: str, *, select: Select,
                   rows_per_fragment: int) -> int:
    """Rewrite the fragments ``select`` picks (if two or more, or one with
    deletions) with their rows ordered by scope, then index the new fragments.
    Returns how many rows were rewritten (0: nothing to do)."""
    rows = with_retries(lambda: _rewrite(conn, name, select, rows_per_fragment),
                        what=f"sorting {name} by scope")
    if rows:
        conn.changed(name)
        with_retries(lambda: conn.open_dataset(name).optimize.optimize_indices(),
                     what=f"indexing {name}")
        conn.changed(name)
    return rows


def _rewrite(conn: Connection, name: str, select: Select, rows_per_fragment: int) -> int:
    """One attempt on the newest version: write the sorted fragments and commit."""
    import lance
    from lance import LanceOperation

    dataset = conn.open_dataset(name)
    old = select(dataset.get_fragments())
    if not old or (len(old) == 1 and old[0].metadata.deletion_file is None
                   and _sorted(dataset, old)):
        return 0
    order = _sorted_addresses(dataset, old)
    if len(order) == 0:
        return 0  # only deleted rows: Lance's own compaction drops them
    new = lance.fragment.write_fragments(
        _reader(dataset, order), dataset, schema=dataset.schema,
        max_rows_per_file=rows_per_fragment,
        data_storage_version=dataset.data_storage_version,
        storage_options=conn.storage_options or None)
    group = LanceOperation.RewriteGroup(old_fragments=[f.metadata for f in old],
                                        new_fragments=new)
    lance.LanceDataset.commit(dataset, LanceOperation.Rewrite(groups=[group],
                                                              rewritten_indices=[]),
                              read_version=dataset.version)
    log.debug("sorted %d rows of %s by scope into %d fragments", len(order), name, len(new))
    return len(order)


def _sorted(dataset: Any, fragments: Sequence[Any]) -> bool:
    """Whether these fragments' rows already run scope by scope."""
    table = dataset.scanner(columns=list(SCOPE_ORDER), fragments=list(fragments),
                            scan_in_order=True).to_table()
    keys = _scope_keys(table)
    if len(keys) < 2:
        return True
    import pyarrow.compute as pc

    runs = 1 + (pc.sum(pc.not_equal(keys[1:], keys[:-1])).as_py() or 0)
    return runs == pc.count_distinct(keys).as_py()


def _sorted_addresses(dataset: Any, fragments: Sequence[Any]) -> pa.Array:
    """The live rows' addresses in these fragments, in scope order (stable:
    within a scope, insertion order stays)."""
    import pyarrow.compute as pc

    table = dataset.scanner(columns=list(SCOPE_ORDER), fragments=list(fragments),
                            with_row_address=True, scan_in_order=True).to_table()
    order = pc.sort_indices(table, sort_keys=[(c, "ascending", "at_end") for c in SCOPE_ORDER])
    return pc.take(table.column("_rowaddr"), order).combine_chunks()


def _batches(dataset: Any, addresses: pa.Array) -> Iterator[pa.RecordBatch]:
    """Every column of the rows at these addresses, in that order, TAKE_ROWS at a time.

    Without stable row ids a row's id is its address, so ``_take_rows`` reads
    them (Snapshot reads rows the same way)."""
    import pyarrow.compute as pc

    columns = dataset.schema.names
    for start in range(0, len(addresses), TAKE_ROWS):
        wanted = addresses[start:start + TAKE_ROWS]
        found = dataset._take_rows(wanted.to_pylist(), columns=[*columns, "_rowid"])
        position = pc.index_in(wanted, value_set=found.column("_rowid"))
        yield from found.select(columns).take(position).to_batches()


def _reader(dataset: Any, addresses: pa.Array) -> pa.RecordBatchReader:
    """The rows at these addresses as one stream (what write_fragments takes)."""
    import pyarrow as pa

    return pa.RecordBatchReader.from_batches(dataset.schema, _batches(dataset, addresses))
