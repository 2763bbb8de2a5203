"""The threads one Memory owns, and their end.

A Memory overlaps work within one call (a search reads the scope while it
embeds the query; a small add embeds while it looks for duplicates), writes
history rows from one background writer, and warms up in the background when
a server starts. All of it runs on the two executors here, created per
Memory, so ``close()`` can wait for every piece: nothing is left to the
interpreter's exit.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

from .errors import ClosedError

T = TypeVar("T")

WORKERS = 4
CLOSED = "this Memory is closed; create a new one to go on."


class Runtime:
    """A worker pool for overlapping reads and embeddings, and one ordered writer."""

    def __init__(self, *, workers: int = WORKERS) -> None:
        self._workers = ThreadPoolExecutor(max_workers=workers,
                                           thread_name_prefix="lancemem-worker")
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lancemem-writer")
        self._lock = threading.Lock()
        self._workers_open = True
        self._writer_open = True

    def check_open(self) -> None:
        """Raise ClosedError once ``close()`` was called."""
        if not self._workers_open:
            raise ClosedError(CLOSED)

    def run_soon(self, action: Callable[..., T], *args: Any, **kwargs: Any) -> Future[T]:
        """Run ``action(*args, **kwargs)`` on a worker; its Future carries the result."""
        with self._lock:
            self.check_open()
            return self._workers.submit(action, *args, **kwargs)

    def write_soon(self, action: Callable[[], T]) -> Future[T]:
        """Run ``action`` on the one writer thread, after what was handed over before."""
        with self._lock:
            if not self._writer_open:
                raise ClosedError(CLOSED)
            return self._writer.submit(action)

    def close(self, before_writer_stops: Callable[[], None] | None = None) -> None:
        """Wait for the workers, then call ``before_writer_stops`` (which may still
        hand work to the writer, e.g. a last flush), then wait for the writer.
        A second call does nothing."""
        with self._lock:
            if not self._workers_open:
                return
            self._workers_open = False
        self._workers.shutdown(wait=True)
        try:
            if before_writer_stops is not None:
                before_writer_stops()
        finally:
            with self._lock:
                self._writer_open = False
            self._writer.shutdown(wait=True)
