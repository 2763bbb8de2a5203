"""A process that runs Memory calls read from stdin, for the races in test_races.py.

It prints ``READY <lancemem folder>`` once the store is open and the model
loaded, then for each line ``{"call": name, "kwargs": {...}}`` runs
``memory.<name>(**kwargs)``, waits until its history is written, and prints
the result (or ``{"error": type, "message": ...}``) as one JSON line. The
test writes one line to every worker at once: they race.
Run as: python -m tests.relation_worker DB
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import lancemem
from lancemem.core.config import load_settings
from lancemem.memory.facade import Memory

CALLS = {"add_relations", "delete_relations", "list_relations"}


def main() -> None:
    memory = Memory.from_settings(load_settings({"db": sys.argv[1]}))
    memory.ensure_open()
    memory.embedder.load()  # type: ignore[attr-defined]
    print("READY", Path(lancemem.__file__).resolve().parent.parent, flush=True)
    for line in sys.stdin:
        command = json.loads(line)
        assert command["call"] in CALLS, command
        try:
            result = getattr(memory, command["call"])(**command["kwargs"])
        except Exception as exc:  # reported to the test, which fails on it
            result = {"error": type(exc).__name__, "message": str(exc)}
        memory.relation_log.flush()
        print(json.dumps(result), flush=True)
    memory.close()


if __name__ == "__main__":
    main()
