"""How tests start Python subprocesses: on the lancemem under test."""

from __future__ import annotations

import os
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
