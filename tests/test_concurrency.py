"""Several server processes writing one store at once lose and duplicate nothing."""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client, StdioServerParameters

from lancemem.core.errors import ConflictError
from lancemem.memory.facade import Memory
from lancemem.storage.store import Store
from tests.invariants import check_store, settled
from tests.mcp_scenario import call

pytestmark = pytest.mark.anyio
PROCESSES = 3
ADDS = 24


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def writer(name: str, db: Path, outcome: dict[str, dict[str, str]]) -> None:
    """Add, update every third and delete every fourth of its own memories."""
    params = StdioServerParameters(command=sys.executable,
                                   args=["-m", "lancemem", "serve", "--db", str(db)],
                                   env=dict(os.environ))
    mine: dict[str, str] = {}
    async with Client(params) as client:
        for i in range(ADDS):
            added = await call(client, "add_memory", user_id="shared", run_id=name,
                               text=f"{name} fact {i}")
            memory_id = added["results"][0]["id"]
            mine[memory_id] = f"{name} fact {i}"
            if i % 3 == 0:
                await call(client, "update_memory", memory_id=memory_id, user_id="shared",
                           text=f"{name} fact {i} (revised)")
                mine[memory_id] = f"{name} fact {i} (revised)"
            if i % 4 == 1:
                await call(client, "delete_memory", memory_id=memory_id, user_id="shared")
                del mine[memory_id]
        listed = await call(client, "list_memories", user_id="shared", limit=1000)
        outcome[name] = {r["id"]: r["memory"] for r in listed["results"]}
    outcome[f"{name}-own"] = mine


async def test_concurrent_servers_lose_and_duplicate_nothing(
    tmp_path: Path, real_embedder: Any
) -> None:
    db = tmp_path / "db"
    outcome: dict[str, dict[str, str]] = {}
    with anyio.fail_after(300):
        async with anyio.create_task_group() as group:
            for n in range(PROCESSES):
                group.start_soon(writer, f"w{n}", db, outcome)
    expected: dict[str, str] = {}
    for n in range(PROCESSES):
        expected.update(outcome[f"w{n}-own"])
    assert len(expected) == PROCESSES * (ADDS - ADDS // 4)
    memory = Memory(store=Store(str(db)), embedder=real_embedder)
    stored = {i["id"]: i["memory"] for i in
              memory.get_all(user_id="shared", limit=1000)["results"]}
    assert stored == expected
    check_store(settled(memory))
    # Each writer's last read already saw every other writer's finished work.
    last = outcome[f"w{PROCESSES - 1}"]
    assert set(outcome[f"w{PROCESSES - 1}-own"]) <= set(last)
    found = memory.search("w1 fact 6 (revised)", user_id="shared", limit=1)["results"]
    assert found[0]["memory"] == "w1 fact 6 (revised)"


def test_compaction_racing_deletes_in_other_processes(tmp_path: Path) -> None:
    """optimize() conflicts with concurrent deletes (FACTS.md): nothing is lost."""
    import subprocess

    from tests.embedders import HashEmbedder

    db = tmp_path / "db"
    memory = Memory(store=Store(str(db), auto_compact=False), embedder=HashEmbedder())
    ids = [r["id"] for r in memory.add([f"fact {i}" for i in range(300)],
                                       user_id="u")["results"]]
    for i in range(0, 60):
        memory.add(f"single {i}", user_id="u")
    script = (
        "import sys\n"
        "from lancemem.memory.facade import Memory\nfrom lancemem.storage.store import Store\n"
        "from tests.embedders import HashEmbedder\n"
        "m = Memory(store=Store(sys.argv[1], auto_compact=False), embedder=HashEmbedder())\n"
        "m.ensure_open()\nprint('READY', flush=True)\n"
        "for memory_id in sys.argv[2:]:\n    m.delete(memory_id, user_id='u')\n"
    )
    deleter = subprocess.Popen([sys.executable, "-c", script, str(db), *ids[:80]],
                               cwd=Path(__file__).parent.parent, stdout=subprocess.PIPE,
                               text=True)
    assert deleter.stdout is not None and deleter.stdout.readline().strip() == "READY"
    rounds = 0
    while deleter.poll() is None or rounds < 2:
        memory.add([f"more {rounds} {i}" for i in range(3)], user_id="u")
        # Retries are bounded: a compaction may lose to a stream of deletes.
        with contextlib.suppress(ConflictError):
            memory.store.optimize()
        rounds += 1
    assert deleter.wait(timeout=120) == 0  # the user's deletes never fail
    memory.store.optimize()  # and compaction succeeds once the stream ends
    remaining = {i["id"] for i in memory.get_all(user_id="u", limit=1000)["results"]}
    assert remaining.isdisjoint(ids[:80]) and set(ids[80:]) <= remaining
    assert len(remaining) == 220 + 60 + 3 * rounds
    check_store(settled(memory))


def test_concurrent_updates_of_one_memory_keep_an_unbroken_history(tmp_path: Path) -> None:
    """Updates are compare-and-swap: each applies to the text the previous one left."""
    import subprocess

    from tests.embedders import HashEmbedder

    db = tmp_path / "db"
    memory = Memory(store=Store(str(db), auto_compact=False), embedder=HashEmbedder())
    memory_id = memory.add("version zero", user_id="u")["results"][0]["id"]
    script = (
        "import sys\n"
        "from lancemem.memory.facade import Memory\nfrom lancemem.storage.store import Store\n"
        "from tests.embedders import HashEmbedder\n"
        "m = Memory(store=Store(sys.argv[1]), embedder=HashEmbedder())\n"
        "m.ensure_open()\nprint('READY', flush=True)\nsys.stdin.readline()\n"
        "for i in range(20):\n"
        "    m.update(sys.argv[2], text=f'{sys.argv[3]} version {i}', user_id='u')\n"
    )
    writers = [subprocess.Popen([sys.executable, "-c", script, str(db), memory_id, name],
                                cwd=Path(__file__).parent.parent, stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True) for name in ("a", "b")]
    for writer in writers:
        assert writer.stdout is not None and writer.stdout.readline().strip() == "READY"
    for writer in writers:  # start both at once
        assert writer.stdin is not None
        writer.stdin.write("go\n")
        writer.stdin.flush()
    assert [writer.wait(timeout=120) for writer in writers] == [0, 0]
    events = memory.history(memory_id, user_id="u")["results"]
    updates = events[1:]
    assert len(updates) == 40 and {e["event"] for e in updates} == {"UPDATE"}
    for previous, current in zip(events, updates, strict=False):
        assert current["old_memory"] == previous["new_memory"], (previous, current)
    assert memory.get(memory_id, user_id="u")["memory"] == events[-1]["new_memory"]
    check_store(settled(memory))


def test_processes_opening_a_new_store_at_once_all_succeed(tmp_path: Path) -> None:
    """Clients often start several servers on a store that does not exist yet."""
    import subprocess

    opener = ("import sys\nfrom lancemem.storage.store import Store\n"
              "Store(sys.argv[1]).open(model_name='test/model', dim=8)\n")
    for trial in range(2):
        db = tmp_path / f"db{trial}"
        procs = [subprocess.Popen([sys.executable, "-c", opener, str(db)],
                                  stderr=subprocess.PIPE, text=True) for _ in range(4)]
        errors = [p.communicate(timeout=120)[1] for p in procs]
        assert [p.returncode for p in procs] == [0] * 4, "\n".join(errors)
        store = Store(str(db))
        assert store.meta()["embedding_model"] == "test/model"
        indexed = {tuple(i.columns) for i in store.table("memories").list_indices()}
        assert {("user_id",), ("search_text",)} <= indexed
