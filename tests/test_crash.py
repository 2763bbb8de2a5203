"""SIGKILL at random moments of add, update, delete, delete_all, import and reindex.

After each kill the store must open, hold every acknowledged write, show at
most the one in-flight operation half-done, and keep history in agreement.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from lancemem.core.errors import ModelMismatchError
from lancemem.memory.facade import Memory
from lancemem.memory.reindex import reindex
from lancemem.storage.store import Store
from tests.crash_worker import USER
from tests.invariants import check_store

KILLS = 12
ROOT = Path(__file__).parent.parent


def run_until_killed(db: Path, journal: Path, seed: int, delay: float) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "tests.crash_worker", str(db), str(journal),
                             str(seed)], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "READY", "worker did not start"
        time.sleep(delay)
        assert proc.poll() is None, "worker stopped by itself"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)


def read_journal(path: Path) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    acked, pending = [], None
    if path.exists():
        for line in path.read_text().splitlines():
            entry = json.loads(line)
            if "intent" in entry:
                pending = entry["intent"]
            else:
                acked.append(entry["ack"])
                pending = None
    return acked, pending


def apply(expected: dict[str, tuple[str, str]], op: dict[str, Any]) -> None:
    if op["op"] in ("add", "import"):
        for memory_id, text in zip(op["ids"], op["texts"], strict=True):
            expected[memory_id] = (text, op["run"])
    elif op["op"] == "update":
        expected[op["id"]] = (op["text"], expected[op["id"]][1])
    elif op["op"] == "delete":
        del expected[op["id"]]
    elif op["op"] == "delete_all":
        for memory_id in [i for i, (_, run) in expected.items() if run == op["run"]]:
            del expected[memory_id]


def open_after_crash(db: Path, embedder: Any) -> Memory:
    memory = Memory(store=Store(str(db)), embedder=embedder)
    try:
        memory.ensure_open()
    except ModelMismatchError as exc:
        assert "interrupted" in str(exc)
        reindex(Store(str(db)), embedder, batch_size=16)
        memory = Memory(store=Store(str(db)), embedder=embedder)
        memory.ensure_open()
    return memory


def verify(expected: dict[str, tuple[str, str]], pending: dict[str, Any] | None,
           actual: dict[str, tuple[str, str]]) -> None:
    kind = pending["op"] if pending else None
    for memory_id, (text, run) in expected.items():
        if memory_id not in actual:
            assert (kind == "delete" and pending["id"] == memory_id) or (
                kind == "delete_all" and pending["run"] == run), f"lost {text!r}"
            continue
        got = actual[memory_id][0]
        assert got == text or (kind == "update" and pending["id"] == memory_id
                               and got == pending["text"]), f"{got!r} should be {text!r}"
    for memory_id, (text, _) in actual.items():
        if memory_id not in expected:
            assert kind in ("add", "import") and text in pending["texts"], f"stray {text!r}"


def test_sigkill_at_random_moments_loses_nothing_acknowledged(
    tmp_path: Path, real_embedder: Any
) -> None:
    db = tmp_path / "db"
    rng = random.Random(int(os.environ.get("LANCEMEM_CRASH_SEED", "7")))
    expected: dict[str, tuple[str, str]] = {}
    seen_ops: set[str] = set()
    wanted = {"add", "update", "delete", "import"}
    kill = 0
    # At least KILLS rounds, more (up to 3x) on a slow machine until every kind
    # of write has been acknowledged at least once.
    while kill < KILLS or (not wanted <= seen_ops and kill < 3 * KILLS):
        kill += 1
        journal = tmp_path / f"journal-{kill}.jsonl"
        run_until_killed(db, journal, seed=kill, delay=rng.uniform(0.05, 1.5))
        acked, pending = read_journal(journal)
        for op in acked:
            apply(expected, op)
            seen_ops.add(op["op"])
        memory = open_after_crash(db, real_embedder)
        rows = check_store(memory.store)
        items = memory.get_all(user_id=USER, limit=1000)["results"]
        actual = {i["id"]: (i["memory"], i.get("run_id", "")) for i in items}
        assert set(actual) == set(rows)
        verify(expected, pending, actual)
        memory.search("added", user_id=USER, limit=3)
        expected = actual
    assert wanted <= seen_ops, seen_ops
