"""Which object-storage forms keep every commit of concurrent writers, found by test.

Four processes append 50 rows each, one LanceDB commit per row, to one table
on a real SeaweedFS S3 gateway: directly (``s3://``, Lance's conditional
writes) every row stays; through a proxy that drops ``If-None-Match`` (an
S3-compatible server without conditional writes) commits overwrite each
other: acknowledged rows vanish without an error (67 of 200 stayed when
measured), or a writer reads a manifest another is overwriting and fails
("Invalid range ... for object of size ..."); either way fewer rows stay than
were acknowledged.
That is the case lancemem's start-up probe warns about (commit_probe.py),
and it checks here that the probe tells the two apart.
"""

from __future__ import annotations

import multiprocessing
from pathlib import Path
from typing import Any

import pyarrow as pa

from lancemem.storage.commit_probe import _check
from tests.object_store import S3Server, no_conditional_writes, seaweedfs

WRITERS, COMMITS = 4, 50


def _append(uri: str, options: dict[str, str], writer: int, acked: Any) -> None:
    """Append COMMITS rows, one commit each, counting those LanceDB acknowledged;
    stop at the first error (the writer then exits non-zero)."""
    import lancedb

    table = lancedb.connect(uri, storage_options=options).open_table("t")
    for commit in range(COMMITS):
        table.add(pa.table({"id": [f"{writer}-{commit}"]}))
        acked[writer] += 1


def _rows_after_racing_writers(server: S3Server) -> tuple[int, int, int]:
    """(rows stored, commits acknowledged, writers that failed) after WRITERS
    processes raced on one table."""
    import lancedb

    uri, options = server.new_uri(), server.storage_options()
    db = lancedb.connect(uri, storage_options=options)
    db.create_table("t", schema=pa.schema([pa.field("id", pa.string())]))
    context = multiprocessing.get_context("spawn")
    acked = context.Array("i", WRITERS)
    workers = [context.Process(target=_append, args=(uri, options, i, acked))
               for i in range(WRITERS)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=300)
        assert worker.exitcode is not None, "a writer hung"
    failed = sum(worker.exitcode != 0 for worker in workers)
    return int(db.open_table("t").count_rows()), sum(acked), failed


def test_conditional_writes_keep_every_commit_and_their_absence_loses_some(
        tmp_path: Path) -> None:
    with seaweedfs(tmp_path / "s3", authenticated=False) as endpoint, \
            no_conditional_writes(endpoint) as unsafe:
        safe_server, unsafe_server = S3Server(endpoint), S3Server(unsafe)
        assert _check(safe_server.new_uri(), safe_server.storage_options()) is None
        warning = _check(unsafe_server.new_uri(), unsafe_server.storage_options())
        assert warning is not None and "ignores conditional writes" in warning
        assert _rows_after_racing_writers(safe_server) == (WRITERS * COMMITS,
                                                           WRITERS * COMMITS, 0)
        rows, acknowledged, _ = _rows_after_racing_writers(unsafe_server)
        assert rows < acknowledged, "no acknowledged commit was lost without conditional writes"
