"""How tests start Python subprocesses: on the lancemem under test."""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import lancemem

ROOT = Path(__file__).parent.parent
SERVER = str(Path(lancemem.__file__).resolve().parent.parent)


def child_env() -> dict[str, str]:
    """This process's environment with the folder of the lancemem it imported
    first on PYTHONPATH: a child started from a worktree runs that worktree's
    server, not the one installed in the virtualenv."""
    rest = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p != SERVER]
    return {**os.environ, "PYTHONPATH": os.pathsep.join([SERVER, *rest])}


def started_on_this_server(ready_line: str) -> bool:
    """Whether a child's ``READY <lancemem folder>`` line names this server."""
    word, _, where = ready_line.strip().partition(" ")
    return word == "READY" and where == SERVER


@contextmanager
def announced(proc: subprocess.Popen[bytes], log: Path, pattern: str) -> Iterator[str]:
    """Wait (60 s at most) until the server ``proc`` writes a line matching
    ``pattern`` to ``log``; yield the pattern's first group (its URL), and stop
    the server afterwards."""
    try:
        deadline = time.monotonic() + 60
        while not (found := re.search(pattern, log.read_text())):
            assert proc.poll() is None, f"server exited: {log.read_text()}"
            assert time.monotonic() < deadline, f"server never announced: {log.read_text()}"
            time.sleep(0.05)
        yield found.group(1)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
