"""Isolation as a property for authenticated callers, over real HTTP.

One ``lancemem serve --transport streamable-http --auth token`` subprocess
serves one store for the whole test; before it starts, API tokens are made
with ``lancemem token create`` for users whose ids are attack strings
(``alice``, ``bob``, ``*``, ``%``, ``o'brien``, a Cyrillic look-alike of
``alice``), for ``alice`` bound to agent ``helper`` and to run ``r1``, and
read-only for ``alice`` and ``*``. Each token gets its own SDK client
(``Authorization: Bearer``), kept open for the whole run. A case is a random
sequence of (token, step) pairs, the steps drawn from the unauthenticated
property (tests/test_isolation_property.py): all twelve tools, memories
and relations, ids from the attack lists (as arguments or plain-string
filter entries), random filters, targets that include other users' memory
and relation ids. Half of the steps are made friendly to their token (its
pinned ids left out, repeated, or padded with spaces; targets among its own
memories and relations), so that not nearly every call is refused.

The oracle works from the token and the arguments alone, not from the server:

- a call naming another value for an id the token pins (as an argument or
  a plain-string filter entry, compared stripped) fails with ``AUTH_002``
  and changes nothing; so does every write with a read-only token;
- any other call is checked as in the unauthenticated property, its scope
  being the token's pins (like a server's pins) plus the call's other ids:
  nothing outside the scope returned, changed, deleted or given history,
  new rows have exactly the scope, errors are lancemem codes other than
  ``STORAGE_``/``INTERNAL_`` (an ``AUTH_`` error there is a failure too);
- every history row a call writes (of memories and of relations) names its
  token: ``principal`` is ``token:<the token's id>`` and ``principal_label``
  the token's label;
- the server still answers after every step.

History is written by a background writer after a call returns, so each
"after" snapshot waits (up to ``HISTORY_WAIT`` seconds) until every change
has its history row (``missing_history`` of memories and of relations). The case count and
seed are printed; set ``LANCEMEM_PROPERTY_SEED`` to replay a run and
``LANCEMEM_AUTH_PROPERTY_CASES`` to run more cases. A replay draws the same
steps, but token and memory ids are random and cases share the store, so its
targets may differ; shrinking is therefore off, and the first failing step is
printed in full.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import logging
import os
import time
from collections import Counter
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import anyio.from_thread
import anyio.to_thread
import pytest
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from lancemem.cli import main as lancemem_cli
from lancemem.storage import relation_consistency
from lancemem.storage.consistency import missing_history
from lancemem.storage.relation_schema import RELATION_HISTORY
from lancemem.storage.store import HISTORY, Store
from tests.attack import LOOKALIKES
from tests.mcp_scenario import TOOLS
from tests.test_isolation_property import (
    MAX_STEPS,
    SEED,
    Snapshot,
    Step,
    arguments,
    call_scope,
    check_step,
    read_store,
    step_strategy,
)
from tests.test_mcp_transports import http_server

CASES = int(os.environ.get("LANCEMEM_AUTH_PROPERTY_CASES") or 40)
HISTORY_WAIT = 5.0
WRITES = frozenset({"add_memory", "update_memory", "delete_memory", "delete_all_memories",
                    "add_relations", "delete_relations"})
READS = frozenset({"search_memories", "list_memories", "get_memory", "memory_history",
                   "export_memories",
                   "search_relations", "list_relations"})
CALL_TIMEOUT = 60


# ---------------------------------------------------------------- the tokens


@dataclass(frozen=True)
class Credential:
    """One token the test makes: what it binds, and (once made) its id and secret."""

    name: str
    user_id: str
    agent_id: str | None = None
    run_id: str | None = None
    read_only: bool = False
    label: str | None = None

    def pins(self) -> dict[str, str]:
        ids = {"user_id": self.user_id, "agent_id": self.agent_id, "run_id": self.run_id}
        return {key: value for key, value in ids.items() if value is not None}

    def as_config(self) -> dict[str, Any]:
        """The token's pins in the shape ``call_scope`` takes a server's pins."""
        return {**self.pins(), "pinned": frozenset(self.pins())}


CREDENTIALS = [
    Credential("alice", "alice", label="alice's laptop"),
    Credential("bob", "bob"),  # no label: history records None
    Credential("star", "*", label="*"),
    Credential("percent", "%", label="%"),
    Credential("obrien", "o'brien", label="o'brien"),
    Credential("cyrillic-alice", LOOKALIKES[1], label="look-alike"),
    Credential("alice-helper", "alice", agent_id="helper", label="helper bot"),
    Credential("alice-r1", "alice", run_id="r1", label="run r1"),
    Credential("alice-ro", "alice", read_only=True, label="alice read-only"),
    Credential("star-ro", "*", read_only=True, label="star read-only"),
]


def create_token(db: Path, credential: Credential) -> dict[str, Any]:
    """``lancemem token create ... --json`` (the CLI's entry point, in this process:
    ten interpreter start-ups would cost 20 s); returns its JSON object."""
    argv = ["token", "create", "--db", str(db), "--json", "--user-id", credential.user_id]
    for flag, value in (("--agent-id", credential.agent_id), ("--run-id", credential.run_id),
                        ("--label", credential.label)):
        if value is not None:
            argv += [flag, value]
    if credential.read_only:
        argv.append("--read-only")
    out, err = io.StringIO(), io.StringIO()
    level = logging.getLogger("lancemem").level  # the CLI sets it; leave it as it was
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = lancemem_cli(argv)
    finally:
        logging.getLogger("lancemem").setLevel(level)
    assert code == 0, err.getvalue()
    made: dict[str, Any] = json.loads(out.getvalue())
    assert made["token"] and made["id"].startswith("tk_"), made
    return made


@dataclass(frozen=True)
class TokenStep:
    """One step of a case: the token it is called with, and the call."""

    credential: Credential
    step: Step
    own_target: bool  # name a memory in the token's scope, as its owner


def token_step(credential: Credential, step: Step, friendly: bool, spelling: str) -> TokenStep:
    """A step for ``credential``. Half of the steps are friendly: each id the token
    pins is left out, named, or named with surrounding whitespace (all accepted),
    and a step ``as_owner`` targets a memory in the token's scope, so that calls
    are not almost all refused. The rest name ids at random or as their target's
    owner (any user's)."""
    if not friendly:
        return TokenStep(credential, step, own_target=False)
    ids = dict(step.ids)
    for key, pinned in credential.pins().items():
        ids[key] = {"omit": None, "same": pinned, "padded": f" {pinned} "}[spelling]
    return TokenStep(credential, dataclasses.replace(step, ids=ids), own_target=step.as_owner)


def token_step_strategy() -> st.SearchStrategy[TokenStep]:
    return st.builds(token_step, st.sampled_from(CREDENTIALS), step_strategy(), st.booleans(),
                     st.sampled_from(["omit", "same", "padded"]))


def step_arguments(item: TokenStep, before: Snapshot) -> dict[str, Any]:
    """``arguments``, choosing the target among the token's own memories if asked."""
    if not item.own_target:
        return arguments(item.step, before)
    return arguments(item.step, before.within(item.credential.pins()))


# ---------------------------------------------------------------- the oracle


def refusal(credential: Credential, tool: str, args: dict[str, Any]) -> str | None:
    """Why the server must refuse this call with AUTH_002 (None: it must not)."""
    if credential.read_only and tool in WRITES:
        return "a write with a read-only token"
    filters = args.get("filters") or {}
    for key, pinned in credential.pins().items():
        named = [args.get(key), filters.get(key) if isinstance(filters.get(key), str) else None]
        for value in named:
            if value is not None and value.strip() != pinned:
                return f"names {key} {value!r}, the token pins {pinned!r}"
    return None


@dataclass
class AuthSnapshot:
    """Both tables as ``read_store`` reads them, and who wrote each history row."""

    tables: Snapshot
    # (history table, row id) -> principal, label
    principals: dict[tuple[str, str], tuple[str | None, str | None]]


def read_snapshot(store: Store) -> AuthSnapshot:
    """Wait until every change has its history row, then read the store."""
    deadline = time.monotonic() + HISTORY_WAIT
    while missing := missing_history(store) + relation_consistency.missing_history(store):
        assert time.monotonic() < deadline, (
            f"history still lacks {len(missing)} row(s) after {HISTORY_WAIT} s: {missing}")
        time.sleep(0.02)
    tables = read_store(store)
    principals = {}
    for table in (HISTORY, RELATION_HISTORY):
        rows = store.select(table, None, columns=["id", "principal", "principal_label"])
        principals.update({(table, row["id"]): (row["principal"], row["principal_label"])
                           for row in rows})
    return AuthSnapshot(tables, principals)


def check_auth_step(credential: Credential, token_id: str, step: Step, args: dict[str, Any],
                    result: Any, before: AuthSnapshot, after: AuthSnapshot) -> None:
    """The refusal rules, then the unauthenticated checks in the token's scope,
    then: new history rows name this token."""
    why = refusal(credential, step.tool, args)
    if why is not None:
        where = f"{step.tool}({args!r}) refused ({why})"
        assert result.is_error, f"{where} but it succeeded: {result.structured_content}"
        text = result.content[0].text
        assert text.startswith("AUTH_002: "), f"{where} but failed with: {text}"
        assert after.tables == before.tables, f"{where} but changed the store"
        assert after.principals == before.principals, f"{where} but wrote history"
        return
    check_step(step, args, call_scope(step.tool, args, credential.as_config()), result,
               before.tables, after.tables)
    new = {i: who for i, who in after.principals.items() if i not in before.principals}
    assert not new or (step.tool in WRITES and not result.is_error), (
        f"{step.tool}({args!r}) wrote history {new}")
    expected = (f"token:{token_id}", credential.label)
    for row_id, who in new.items():
        assert who == expected, (
            f"{step.tool}({args!r}) wrote history row {row_id} as {who}, not {expected}")


# ---------------------------------------------------------------- the run


@dataclass
class Tally:
    """How much the property ran, and whether it ran every kind of outcome."""

    cases: int = 0
    steps: int = 0
    refused: int = 0
    writes: int = 0  # successful calls that wrote history
    reads: int = 0  # successful reads that returned a memory or history
    outcomes: Counter[str] = field(default_factory=Counter)
    first_failure: str | None = None


def _returned_something(tool: str, content: dict[str, Any]) -> bool:
    if tool == "get_memory":
        return True
    return bool(content.get("results") or content.get("lines"))


@dataclass
class Session:
    """The running server as the cases see it: a client per token, and the store."""

    clients: dict[str, Client]
    token_ids: dict[str, str]
    reader: Store
    last: AuthSnapshot


async def run_case(session: Session, items: list[TokenStep],
                   tally: Tally) -> None:
    """Run one case's steps, each through its token's client, checking each."""
    for item in items:
        credential, step = item.credential, item.step
        before = session.last
        args = step_arguments(item, before.tables)
        client = session.clients[credential.name]
        with anyio.fail_after(CALL_TIMEOUT):
            result = await client.call_tool(step.tool, args)
        after = await anyio.to_thread.run_sync(read_snapshot, session.reader)
        try:
            check_auth_step(credential, session.token_ids[credential.name], step, args,
                            result, before, after)
            with anyio.fail_after(CALL_TIMEOUT):
                tools = (await client.list_tools()).tools
            assert len(tools) == len(TOOLS), "the server stopped answering"
        except AssertionError as exc:
            message = (f"token {credential.name!r} (pins {credential.pins()}, read_only="
                       f"{credential.read_only}, id {session.token_ids[credential.name]}): "
                       f"{exc}")
            tally.first_failure = tally.first_failure or message
            raise AssertionError(message) from None
        session.last = after
        tally.steps += 1
        outcome = result.content[0].text.split(":")[0] if result.is_error else "ok"
        tally.outcomes[f"{step.tool} {outcome}"] += 1
        if outcome == "AUTH_002":
            tally.refused += 1
        elif outcome == "ok" and step.tool in WRITES and len(after.principals) > len(
                before.principals):
            tally.writes += 1
        elif outcome == "ok" and step.tool in READS and _returned_something(
                step.tool, result.structured_content):
            tally.reads += 1
    tally.cases += 1


async def serve_and_check(url: str, db: Path, token_ids: dict[str, str],
                          secrets: dict[str, str], run_cases: Callable[[Session], None]) -> None:
    """Open one client per token, then run the cases (in a worker thread, as
    hypothesis drives them) against this event loop."""
    async with AsyncExitStack() as stack:
        clients: dict[str, Client] = {}
        for credential in CREDENTIALS:
            http = await stack.enter_async_context(create_mcp_http_client(
                headers={"Authorization": f"Bearer {secrets[credential.name]}"}))
            clients[credential.name] = await stack.enter_async_context(
                Client(streamable_http_client(url, http_client=http), mode="auto"))
        reader = Store(str(db))
        last = await anyio.to_thread.run_sync(read_snapshot, reader)
        session = Session(clients=clients, token_ids=token_ids, reader=reader, last=last)
        await anyio.to_thread.run_sync(run_cases, session)


def test_no_authenticated_call_reaches_outside_its_token(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "db"  # where http_server serves from
    made = {credential.name: create_token(db, credential) for credential in CREDENTIALS}
    token_ids = {name: item["id"] for name, item in made.items()}
    secrets = {name: item["token"] for name, item in made.items()}
    tally = Tally()

    def run_cases(session: Session) -> None:
        @seed(SEED)
        @settings(max_examples=CASES, deadline=None, database=None,
                  phases=[Phase.explicit, Phase.generate],  # no shrinking: cases share state
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
        @given(items=st.lists(token_step_strategy(), min_size=4, max_size=MAX_STEPS))
        def isolation_holds(items: list[TokenStep]) -> None:
            anyio.from_thread.run(run_case, session, items, tally)

        isolation_holds()

    started = time.monotonic()
    try:
        with http_server(tmp_path, "streamable-http", "--auth", "token",
                         "--rate-limit", "0") as url:
            anyio.run(serve_and_check, url, db, token_ids, secrets, run_cases)
    finally:
        with capsys.disabled():
            print(f"\nauth isolation property: {tally.cases} cases, {tally.steps} steps, "
                  f"seed {SEED} (replay: LANCEMEM_PROPERTY_SEED={SEED}), "
                  f"{time.monotonic() - started:.1f} s; refused {tally.refused}, "
                  f"writes {tally.writes}, reads {tally.reads}; "
                  + ", ".join(f"{k}: {v}" for k, v in sorted(tally.outcomes.items())))
            if tally.first_failure:
                print(f"first failing step: {tally.first_failure}")
    assert tally.cases > 0 and tally.steps >= 4 * tally.cases
    assert tally.refused > 0 and tally.writes > 0 and tally.reads > 0, tally
