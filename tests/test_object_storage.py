"""lancemem on object storage: a real S3 server (SeaweedFS) and DynamoDB (moto).

What is proven here, each on its own fresh store of the session's servers
(conftest.py ``s3_server``), with the real model wherever a server serves:

- Scale-out (issue 15): three ``lancemem serve --transport streamable-http``
  processes on one ``s3://`` or ``s3+ddb://`` store, each fed concurrently by
  its own MCP client with adds, updates, deletes and searches. Afterwards each
  of the three servers lists every acknowledged write exactly once (no
  duplicate, no acknowledged add missing, no acknowledged delete present, the
  last acknowledged text of each update), every memory's history is exactly
  the acknowledged events, one text added through all three at once is stored
  once, and after a write is acknowledged by one server another sees it on
  its first read once the documented bound (1 s) has passed.
- Crashes: a writer SIGKILLed at random moments on an ``s3://`` store leaves
  a store that the next open repairs as on disk (tests/test_crash.py's
  checks: every acknowledged write kept, at most the in-flight one half-done,
  history and relations in agreement).
- Isolation: tests/test_isolation.py's star-id and attack-id checks hold
  through an MCP server whose store is on ``s3://``.
- Capabilities: scoping, filters, every search mode, history, relations and
  reindex through the Python API (both URI forms); ``lancemem optimize``
  (one fragment, nothing unindexed), ``reindex``, ``export`` and ``import``;
  tokens created by the CLI and ``serve --auth token`` accepting only them.
- Maintenance: three ``lancemem optimize`` at once beside a writer fail no
  write and all exit 0.
- Start-up warning and secrets: ``serve`` warns, naming s3+ddb, only where
  conditional writes are ignored; the secret key shows in no output of
  ``serve`` or the CLI, errors included.

tests/test_object_storage_config.py covers the settings and secret handling
without a server, tests/test_commit_safety.py which URI forms keep racing
commits, tests/test_stateless.py servers behind a balancer.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from mcp import Client

from lancemem.core.config import load_settings
from lancemem.mcp.server import build_server
from lancemem.memory.facade import Memory
from lancemem.memory.reindex import reindex
from lancemem.storage.maintenance import unindexed_rows
from lancemem.storage.relation_schema import ENTITIES, RELATIONS
from lancemem.storage.store import MEMORIES, Store
from tests.invariants import check_store
from tests.mcp_scenario import call, fails
from tests.object_store import (
    SECRET_KEY,
    S3Server,
    ensure_commit_table,
    no_conditional_writes,
    seaweedfs,
)
from tests.processes import announced, child_env
from tests.test_auth_http import client_for
from tests.test_crash import check_after_kill, open_after_crash, read_journal, run_until_killed
from tests.test_isolation import (
    HOSTILE_IDS,
    SCOPE_ARGS,
    VICTIM_TEXTS,
    hostile_id_is_literal,
    seed_victims,
    star_is_literal,
    stored,
)
from tests.test_mcp_transports import HEADERS, INITIALIZE

pytestmark = pytest.mark.anyio
READ_BOUND = 1.0  # LANCEMEM_READ_CONSISTENCY's default on object storage (README)
SERVERS = 3


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def s3_env(s3: S3Server, **extra: str) -> dict[str, str]:
    """The environment of a lancemem child process on ``s3``: this worktree's
    server, the AWS variables, and ``extra``."""
    return {**child_env(), **s3.env(), **extra}


@contextmanager
def serving(tmp_path: Path, s3: S3Server, uri: str, *extra: str,
            count: int = 1) -> Iterator[list[str]]:
    """Start ``count`` ``lancemem serve --transport streamable-http`` processes
    on ``uri`` at once (on 127.0.0.1, ephemeral ports); yield their MCP URLs
    and stop them afterwards."""
    with ExitStack() as stack:
        started = []
        for number in range(count):
            log = tmp_path / f"serve-{number}-{len(list(tmp_path.glob('serve-*')))}.log"
            with log.open("w") as out:
                proc = subprocess.Popen(
                    [sys.executable, "-m", "lancemem", "serve", "--db", uri, "--transport",
                     "streamable-http", "--port", "0", *extra],
                    env=s3_env(s3), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                    stderr=out)
            started.append((proc, log))
        yield [stack.enter_context(announced(proc, log, r"serving \S+ at (http://\S+)"))
               for proc, log in started]


# ---------------------------------------------------------------- scale-out

TOPICS = ["the heron nests by the northern lake", "invoices go out on the first Monday",
          "the staging database lives in Frankfurt", "Priya prefers tea to coffee",
          "the printer on floor two jams with thick paper", "backups run at 3 am UTC",
          "the API key rotates every ninety days", "lunch on Fridays is tacos"]
# 13 operations a client: 6 adds, 3 updates, 2 deletes, 2 searches (each
# write then waits the read bound, so this sets the test's length).
PLAN = ["add", "add", "search", "update", "add", "delete", "add", "update", "add",
        "delete", "update", "search", "add"]
NAMES = ("Ada", "Grace", "Linus")  # one a client: no two texts share every word
SHARED = "The team offsite is in Lisbon in May"


@dataclass
class Acked:
    """What one client's server acknowledged: each memory's events, in order,
    as (event, text) pairs, and which of them are still alive."""

    events: dict[str, list[tuple[str, str | None]]] = field(default_factory=dict)
    alive: dict[str, str] = field(default_factory=dict)


async def seen_by(other: Client, user: str, memory_id: str, text: str | None) -> None:
    """After the read bound, ``other`` (another server) must show ``memory_id``
    with ``text`` (or, for None, not at all) on its first read."""
    await anyio.sleep(READ_BOUND)
    if text is None:
        await fails(other, "get_memory", "NOT_FOUND_001", memory_id=memory_id, user_id=user)
    else:
        got = await call(other, "get_memory", memory_id=memory_id, user_id=user)
        assert got["memory"] == text, (memory_id, got["memory"], text)


async def feed(number: int, own: Client, other: Client, user: str, acked: Acked) -> None:
    """Run PLAN through ``own``, touching only the memories this client added
    (so the last acknowledged text of each is known), checking each write
    through ``other`` after the read bound."""
    for step, op in enumerate(PLAN):
        mine = sorted(acked.alive)
        if op == "add":
            text = f"{NAMES[number]} noted at step {step}: {TOPICS[step % len(TOPICS)]}"
            item = (await call(own, "add_memory", text=text, user_id=user))["results"][0]
            assert item["event"] == "ADD", item
            acked.events[item["id"]] = [("ADD", text)]
            acked.alive[item["id"]] = text
            await seen_by(other, user, item["id"], text)
        elif op == "update":
            target = mine[step % len(mine)]
            text = f"{NAMES[number]} revised it at step {step}: {TOPICS[-step % len(TOPICS)]}"
            await call(own, "update_memory", memory_id=target, user_id=user, text=text)
            acked.events[target].append(("UPDATE", text))
            acked.alive[target] = text
            await seen_by(other, user, target, text)
        elif op == "delete":
            target = mine[step % len(mine)]
            assert (await call(own, "delete_memory", memory_id=target, user_id=user))["deleted"]
            acked.events[target].append(("DELETE", None))
            del acked.alive[target]
            await seen_by(other, user, target, None)
        else:
            target = mine[step % len(mine)]
            found = await call(own, "search_memories", query=acked.alive[target], user_id=user,
                               limit=5)
            assert found["results"][0]["id"] == target, (acked.alive[target], found)


async def check_everywhere(clients: list[Client], user: str, acked: list[Acked],
                           shared_id: str) -> None:
    """Each server lists exactly the acknowledged memories once, and every
    memory's history is exactly its acknowledged events."""
    expected = {shared_id: SHARED}
    events: dict[str, list[tuple[str, str | None]]] = {shared_id: [("ADD", SHARED)]}
    for one in acked:
        expected.update(one.alive)
        events.update(one.events)
    await anyio.sleep(READ_BOUND)  # the last writes of the other servers
    for number, client in enumerate(clients):
        listed = (await call(client, "list_memories", user_id=user, limit=1000))["results"]
        ids = [item["id"] for item in listed]
        assert len(ids) == len(set(ids)), f"server {number} lists a memory twice"
        assert {item["id"]: item["memory"] for item in listed} == expected, number
    for index, (memory_id, wanted) in enumerate(sorted(events.items())):
        client = clients[index % len(clients)]
        history = (await call(client, "memory_history", memory_id=memory_id,
                              user_id=user))["results"]
        assert [(h["event"], h["new_memory"]) for h in history] == wanted, memory_id


@pytest.mark.parametrize("ddb", [False, True], ids=["s3", "s3+ddb"])
async def test_three_servers_on_one_store_lose_nothing(
        tmp_path: Path, s3_server: S3Server, ddb: bool) -> None:
    user = "team"
    uri = s3_server.new_uri(ddb=ddb)
    acked = [Acked() for _ in range(SERVERS)]
    shared: list[dict[str, Any]] = []
    with serving(tmp_path, s3_server, uri, count=SERVERS) as urls, anyio.fail_after(150):
        async with Client(urls[0], mode="legacy") as first, \
                Client(urls[1], mode="legacy") as second, \
                Client(urls[2], mode="legacy") as third:
            clients = [first, second, third]

            async def add_shared(client: Client) -> None:
                shared.append((await call(client, "add_memory", text=SHARED,
                                          user_id=user))["results"][0])

            async with anyio.create_task_group() as group:  # the same text, at once
                for client in clients:
                    group.start_soon(add_shared, client)
            assert len({item["id"] for item in shared}) == 1, shared
            assert sorted(item["event"] for item in shared) == ["ADD", "NONE", "NONE"]
            async with anyio.create_task_group() as group:
                for number, client in enumerate(clients):
                    group.start_soon(feed, number, client, clients[(number + 1) % SERVERS],
                                     user, acked[number])
            await check_everywhere(clients, user, acked, shared[0]["id"])


# ---------------------------------------------------------------- crashes

CRASH_KILLS = 2


def test_a_server_killed_mid_write_on_s3_is_repaired_on_open(
        tmp_path: Path, s3_server: S3Server, real_embedder: Any) -> None:
    """tests/test_crash.py's worker and checks, on an s3:// store."""
    uri, expected, relations, seen_ops = s3_server.new_uri(), {}, {}, set()
    rng = random.Random(15)
    acknowledged = 0
    for kill in range(1, CRASH_KILLS + 1):
        journal = tmp_path / f"journal-{kill}.jsonl"
        run_until_killed(uri, journal, seed=kill, delay=rng.uniform(1.0, 2.5),
                         env=s3_server.env())
        acknowledged += len(read_journal(journal)[0])
        memory = open_after_crash(uri, real_embedder,
                                  storage_options=s3_server.storage_options())
        with memory:
            expected, relations = check_after_kill(journal, memory, expected, relations,
                                                   seen_ops)
    assert acknowledged > CRASH_KILLS and expected, (acknowledged, seen_ops)


# ---------------------------------------------------------------- isolation

async def test_the_isolation_checks_hold_on_s3(s3_server: S3Server, real_embedder: Any) -> None:
    """tests/test_isolation.py's star and attack-id checks, one after another
    on one s3:// store (each leaves the store as it found it)."""
    uri = s3_server.new_uri()
    options = s3_server.storage_options()
    settings = load_settings({"db": uri}, environ={"HOME": "/nonexistent", **s3_server.env()})
    assert settings.storage_options == options
    memory = Memory(store=Store.from_settings(settings), embedder=real_embedder,
                    defaults=settings.scope_defaults())
    with anyio.fail_after(120):
        async with Client(build_server(settings, memory=memory)) as client:
            victims = await seed_victims(client)
            for key in SCOPE_ARGS:
                await star_is_literal(client, victims, key)
            for hostile in HOSTILE_IDS:
                await hostile_id_is_literal(client, hostile)
    rows = stored(uri, options)
    assert set(rows) == victims
    assert {row["memory"] for row in rows.values()} == VICTIM_TEXTS


# ---------------------------------------------------------------- capabilities

def cli(s3: S3Server, *args: str, check: bool = True,
        timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run ``lancemem ARGS`` with the AWS variables of ``s3``; with ``check``
    it must exit 0."""
    done = subprocess.run([sys.executable, "-m", "lancemem", *args], env=s3_env(s3),
                          capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)
    if check:
        assert done.returncode == 0, (args, done.stdout, done.stderr)
    return done


@pytest.mark.parametrize("ddb", [False, True], ids=["s3", "s3+ddb"])
def test_the_python_api_works_on_object_storage(
        s3_server: S3Server, real_embedder: Any, ddb: bool) -> None:
    """Scoping, filters, every search mode, history, relations and reindex
    (right after reads, within the read bound) through Memory on S3."""
    uri, options = s3_server.new_uri(ddb=ddb), s3_server.storage_options()
    with Memory(store=Store(uri, storage_options=options), embedder=real_embedder) as memory:
        def first(text: str, **scope: Any) -> str:
            return memory.add(text, **scope)["results"][0]["id"]

        pizza = first("I love pizza with olives", user_id="alice", metadata={"topic": "food"})
        dog = first("My dog is called Rex", user_id="alice", agent_id="helper",
                    metadata={"topic": "pets"})
        first("Bob keeps the spare key under the blue pot", user_id="bob")
        listed = memory.get_all(user_id="alice")["results"]
        assert [item["id"] for item in listed] == [dog, pizza]
        assert [item["id"] for item in memory.get_all(user_id="alice",
                                                      agent_id="helper")["results"]] == [dog]
        assert [item["id"] for item in memory.get_all(
            user_id="alice", filters={"topic": {"in": ["pets"]}})["results"]] == [dog]
        for mode in ("hybrid", "vector", "keyword"):
            found = memory.search("pizza olives", user_id="alice", mode=mode)["results"]
            assert found[0]["id"] == pizza, mode
            assert "spare key" not in str(found)
        memory.update(pizza, text="I love pizza with mushrooms", user_id="alice")
        assert [(h["event"], h["new_memory"]) for h in memory.history(
            pizza, user_id="alice")["results"]] == [("ADD", "I love pizza with olives"),
                                                    ("UPDATE", "I love pizza with mushrooms")]
        memory.add_relations([{"source": "Alice", "relationship": "works at",
                               "target": "Acme"}], user_id="alice")
        assert memory.search_relations("Alice works at", user_id="alice")["results"]
        assert reindex(memory.store, real_embedder, batch_size=16) == 3
    fresh = Store(uri, storage_options=options)
    for table in (MEMORIES, ENTITIES, RELATIONS):  # the reindex embedded every row
        assert fresh.count(table, "vector IS NULL") == 0, table
    with Memory(store=fresh, embedder=real_embedder) as again:
        assert again.search("mushrooms", user_id="alice")["results"][0]["id"] == pizza
        assert again.search_relations("Alice works at", user_id="alice")["results"]


def test_the_cli_optimizes_exports_and_imports_on_s3(
        s3_server: S3Server, real_embedder: Any) -> None:
    """``lancemem optimize / reindex / export / import`` with the AWS
    variables: optimize leaves one fragment and nothing unindexed, an export
    with history imports into another store as it was."""
    source, target = s3_server.new_uri(ddb=True), s3_server.new_uri()
    with Memory(store=Store(source, storage_options=s3_server.storage_options()),
                embedder=real_embedder) as memory:
        for number in range(3):
            memory.add(f"fact number {number} about herons", user_id="alice")
    cli(s3_server, "optimize", "--db", source)
    store = Store(source, storage_options=s3_server.storage_options())
    assert len(store.dataset(MEMORIES).get_fragments()) == 1
    assert unindexed_rows(store.table(MEMORIES)) == 0
    cli(s3_server, "reindex", "--db", source)
    exported = cli(s3_server, "export", "--db", source, "--user-id", "alice",
                   "--include-history").stdout
    lines = [json.loads(line) for line in exported.splitlines()]
    assert [line["type"] for line in lines].count("memory") == 3
    path = Path(tempfile.mkdtemp()) / "alice.jsonl"
    path.write_text(exported)
    cli(s3_server, "import", str(path), "--db", target)
    again = cli(s3_server, "export", "--db", target, "--user-id", "alice",
                "--include-history").stdout
    assert sorted(json.loads(line)["id"] for line in again.splitlines()) == sorted(
        line["id"] for line in lines)
    assert Store(target, storage_options=s3_server.storage_options()).count(
        MEMORIES, "vector IS NULL") == 0


async def test_tokens_on_s3_let_in_only_their_bearer(
        tmp_path: Path, s3_server: S3Server) -> None:
    """``lancemem token create`` on S3; ``serve --auth token`` on that store
    accepts the token (bound to its user) and refuses a request without one."""
    uri = s3_server.new_uri(ddb=True)
    secret = cli(s3_server, "token", "create", "--user-id", "alice", "--label", "laptop",
                 "--db", uri).stdout.strip()
    assert secret.startswith("lmk_")
    assert "laptop" in cli(s3_server, "token", "list", "--db", uri).stdout
    with serving(tmp_path, s3_server, uri, "--auth", "token") as (url,), anyio.fail_after(60):
        refused = httpx.post(url, json=INITIALIZE, headers=HEADERS, timeout=10)
        assert refused.status_code == 401
        async with client_for(url, secret) as client:
            added = await call(client, "add_memory", text="alice's token works")
            assert added["results"][0]["user_id"] == "alice"  # the token's id
            await fails(client, "add_memory", "AUTH_002", text="as bob", user_id="bob")
    rows = Store(uri, storage_options=s3_server.storage_options()).select(MEMORIES, None)
    assert [(row["user_id"], row["memory"]) for row in rows] == [("alice",
                                                                  "alice's token works")]


# ---------------------------------------------------------------- maintenance

OPTIMIZERS = 3


def test_optimizers_at_once_beside_a_writer_fail_no_write(
        s3_server: S3Server, real_embedder: Any) -> None:
    """Three ``lancemem optimize`` processes at once while this process adds:
    every add succeeds, every optimize exits 0, every memory and its history
    is there afterwards."""
    uri, options = s3_server.new_uri(), s3_server.storage_options()
    with Memory(store=Store(uri, storage_options=options), embedder=real_embedder) as memory:
        added = [memory.add(f"seeded fact {n} about rivers", user_id="u")["results"][0]["id"]
                 for n in range(6)]
        optimizers = [subprocess.Popen(
            [sys.executable, "-m", "lancemem", "optimize", "--db", uri], env=s3_env(s3_server),
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(OPTIMIZERS)]
        while any(proc.poll() is None for proc in optimizers) and len(added) < 60:
            added.append(memory.add(f"fact {len(added)} added while optimizing",
                                    user_id="u")["results"][0]["id"])
        outputs = [proc.communicate(timeout=120) for proc in optimizers]
    assert [proc.returncode for proc in optimizers] == [0] * OPTIMIZERS, outputs
    assert len(added) > 6, "no add ran beside the optimizers"
    fresh = Store(uri, storage_options=options)
    assert sorted(check_store(fresh)) == sorted(added)
    assert len(fresh.dataset(MEMORIES).get_fragments()) < len(added)  # they compacted


# ---------------------------------------------------------------- warnings and secrets

async def serve_log(tmp_path: Path, s3: S3Server, uri: str) -> str:
    """Start ``serve`` on ``uri``, make one call (so the store is open), and
    return what it wrote on stderr."""
    with serving(tmp_path, s3, uri) as (url,), anyio.fail_after(60):
        async with Client(url, mode="legacy") as client:
            await call(client, "add_memory", text="a first note", user_id="u")
    return "\n".join(log.read_text() for log in tmp_path.glob("serve-*.log"))


def fresh_dir(path: Path) -> Path:
    """``path``, created."""
    path.mkdir(parents=True)
    return path


async def test_serve_warns_only_where_conditional_writes_are_ignored(
        tmp_path: Path, s3_server: S3Server) -> None:
    """The start-up probe's warning names s3+ddb behind a server that drops
    If-None-Match, and is absent on SeaweedFS itself; no secret in any log."""
    logs: dict[str, str] = {}

    async def log_of(name: str, server: S3Server) -> None:
        logs[name] = await serve_log(fresh_dir(tmp_path / name), server, server.new_uri())

    with seaweedfs(tmp_path / "open-s3", authenticated=False) as endpoint, \
            no_conditional_writes(endpoint) as dropping:
        async with anyio.create_task_group() as group:
            group.start_soon(log_of, "safe", s3_server)
            group.start_soon(log_of, "unsafe", S3Server(dropping, authenticated=False))
    safe, unsafe = logs["safe"], logs["unsafe"]
    assert "conditional writes" not in safe and "serving" in safe
    warning = [line for line in unsafe.splitlines() if "ignores conditional writes" in line]
    assert warning and "s3+ddb" in warning[0], unsafe
    assert SECRET_KEY not in safe + unsafe


def run_at_once(commands: list[tuple[list[str], dict[str, str]]]
               ) -> list[subprocess.CompletedProcess[str]]:
    """Run ``lancemem ARGS`` for each (ARGS, environment) at the same time;
    return each one's result once all have ended."""
    procs = [subprocess.Popen([sys.executable, "-m", "lancemem", *args], env=env,
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for args, env in commands]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        results.append(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
    return results


def test_the_secret_key_appears_in_no_output_even_of_errors(s3_server: S3Server) -> None:
    """CLI commands that work and ones that fail (no such bucket, a wrong
    secret, an endpoint nobody listens on) never print the secret key."""
    uri, wrong, env = s3_server.new_uri(ddb=True), "wrong-secret-never-printed", s3_env(s3_server)
    worked = cli(s3_server, "add", "a secretless note", "--db", uri, "--user-id", "u",
                 "--json")
    listing = ["list", "--user-id", "u", "--db"]
    failed = run_at_once([
        ([*listing, "s3://no-such-bucket-here/p"], env),
        ([*listing, s3_server.new_uri()], {**env, "AWS_SECRET_ACCESS_KEY": wrong}),
        ([*listing, s3_server.new_uri()], {**env, "AWS_ENDPOINT_URL_S3": "http://127.0.0.1:9"})])
    for done in failed:
        assert done.returncode != 0 and "STORAGE_" in done.stderr, (done.args, done.stderr)
    for done in [worked, *failed]:
        assert SECRET_KEY not in done.stdout + done.stderr, done.args
        assert wrong not in done.stdout + done.stderr, done.args


def test_an_s3_ddb_store_is_refused_through_another_commit_form(s3_server: S3Server) -> None:
    """A store opened as ``s3+ddb://`` records its DynamoDB table; opening the
    same prefix as ``s3://`` (whose commits DynamoDB never sees) or with
    another table is refused before anything is written, naming the URI to
    use. A store used as ``s3://`` first may move to ``s3+ddb://``."""
    from lancemem.core.errors import ValidationError
    from tests.embedders import HashEmbedder

    options = s3_server.storage_options()
    ddb_uri = s3_server.new_uri(ddb=True)
    plain_uri = "s3://" + ddb_uri.removeprefix("s3+ddb://").split("?")[0]
    with Memory(store=Store(ddb_uri, storage_options=options),
                embedder=HashEmbedder()) as memory:
        memory.add("kept through DynamoDB", user_id="alice")
    ensure_commit_table(s3_server.client("dynamodb"), "lancemem-other-commits")
    other_table = ddb_uri.split("?")[0] + "?ddbTableName=lancemem-other-commits"
    for wrong in (plain_uri, other_table):
        store = Store(wrong, storage_options=options)
        with pytest.raises(ValidationError) as refused:
            Memory(store=store, embedder=HashEmbedder()).ensure_open()
        assert ddb_uri in str(refused.value), str(refused.value)
    versions = Store(ddb_uri, storage_options=options, read_consistency=0)
    assert [r["memory"] for r in Memory(store=versions, embedder=HashEmbedder()).get_all(
        user_id="alice")["results"]] == ["kept through DynamoDB"]

    moved = s3_server.new_uri(ddb=True)
    first_plain = "s3://" + moved.removeprefix("s3+ddb://").split("?")[0]
    with Memory(store=Store(first_plain, storage_options=options),
                embedder=HashEmbedder()) as memory:
        memory.add("written before the move", user_id="bob")
    with Memory(store=Store(moved, storage_options=options),
                embedder=HashEmbedder()) as memory:
        assert len(memory.get_all(user_id="bob")["results"]) == 1
        memory.add("written after the move", user_id="bob")
    with pytest.raises(ValidationError):
        Memory(store=Store(first_plain, storage_options=options),
               embedder=HashEmbedder()).ensure_open()
