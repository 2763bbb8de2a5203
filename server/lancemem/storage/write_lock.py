"""One writer at a time on a store's relations: threads, and processes on disk.

LanceDB does not notice two commits that insert the same new key: measured
with lancedb 0.40 / pylance 13, four threads running ``merge_insert("id")
.when_not_matched_insert_all()`` with one new id at once left four rows, each
told it had inserted one (with or without a BTree index on ``id``, with or
without ``when_matched_update_all``). Entities and relations have ids derived
from what they say, so two adds of one triple (or one entity spelled two ways)
at once would store copies and both report ADD.

Relation writes are few and small, so they take turns instead: a lock per
store in this process, and on local disk an ``flock`` on a file beside the
tables, which the OS releases if the process dies. On object storage there is
no shared file to lock: servers there take turns through a lease in the store
(leases.py), which a server that dies gives up after RELATION_LEASE_SECONDS.
"""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .leases import Leases

LOCK_FILE = ".relations.lock"
RELATION_LEASE_SECONDS = 30.0  # a relation write takes well under a second
RELATION_LEASE_WAIT = 60.0

_guard = threading.Lock()
_locks: dict[str, threading.Lock] = {}


def _thread_lock(uri: str) -> threading.Lock:
    with _guard:
        return _locks.setdefault(uri, threading.Lock())


@contextmanager
def relation_writer(uri: str, leases: Leases | None = None) -> Iterator[None]:
    """Hold the store's relation write lock for the ``with`` block: with
    ``leases`` (object storage), the store's relations lease."""
    with _thread_lock(uri):
        if leases is not None:
            from .leases import RELATIONS_LEASE

            with leases.held(RELATIONS_LEASE, seconds=RELATION_LEASE_SECONDS,
                             wait=RELATION_LEASE_WAIT):
                yield
            return
        if "://" in uri:
            yield
            return
        path = Path(uri) / LOCK_FILE
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the flock
