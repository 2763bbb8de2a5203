"""Authentication's pure parts and its table: binding, tokens in a real store,
settings, the rate limit. End-to-end through real clients: test_auth_http.py."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from lancemem.core.config import load_settings
from lancemem.core.errors import AuthenticationError, NotFoundError, PermissionDeniedError
from lancemem.core.errors import ValidationError as LanceValidationError
from lancemem.core.principal import (
    Principal,
    bind_ids,
    check_against_server_pins,
    check_may_write,
)
from lancemem.serving.limits import RateLimiter
from lancemem.serving.serve import transport_security
from lancemem.storage.store import Store
from lancemem.storage.tokens import TOKENS, TokenAuthenticator, TokenTable, digest
from tests.attack import ATTACK_IDS, LOOKALIKES

ALICE = Principal(kind="token", id="tk_1", user_id="alice", label="bot")
ALICE_HELPER = Principal(kind="token", id="tk_2", user_id="alice", agent_id="helper")
NO_IDS = {"user_id": None, "agent_id": None, "run_id": None}


# ---------------------------------------------------------------- binding


def test_a_credential_fills_its_ids_and_leaves_the_others_free() -> None:
    assert bind_ids(ALICE, NO_IDS) == {"user_id": "alice", "agent_id": None, "run_id": None}
    assert bind_ids(ALICE, {**NO_IDS, "agent_id": "x", "run_id": "r"}) == {
        "user_id": "alice", "agent_id": "x", "run_id": "r"}
    assert bind_ids(ALICE, {**NO_IDS, "user_id": " alice "})["user_id"] == "alice"
    assert bind_ids(ALICE_HELPER, NO_IDS) == {"user_id": "alice", "agent_id": "helper",
                                              "run_id": None}


@pytest.mark.parametrize("other", [i for i in ATTACK_IDS if i.strip() != "alice"])
def test_naming_another_id_is_refused_as_argument_or_filter(other: str) -> None:
    with pytest.raises(PermissionDeniedError, match="bound to user_id 'alice'"):
        bind_ids(ALICE, {**NO_IDS, "user_id": other})
    with pytest.raises(PermissionDeniedError, match="in filters"):
        bind_ids(ALICE, NO_IDS, {"user_id": other})
    with pytest.raises(PermissionDeniedError, match="agent_id 'helper'"):
        bind_ids(ALICE_HELPER, {**NO_IDS, "agent_id": other})


@pytest.mark.parametrize("lookalike", LOOKALIKES)
def test_look_alikes_of_the_bound_id_are_other_ids(lookalike: str) -> None:
    with pytest.raises(PermissionDeniedError):
        bind_ids(ALICE, {**NO_IDS, "user_id": lookalike})


def test_operator_filters_on_ids_stay_filters() -> None:
    # {"user_id": {"ne": "alice"}} only narrows (it is ANDed with the bound scope).
    assert bind_ids(ALICE, NO_IDS, {"user_id": {"ne": "alice"}})["user_id"] == "alice"


def test_a_credentials_call_naming_another_value_for_a_server_pin_is_refused() -> None:
    pins = {"agent_id": "other-bot"}
    assert bind_ids(ALICE, {**NO_IDS, "agent_id": " other-bot "}, server_pins=pins)[
        "agent_id"] == " other-bot "  # the same id: the server's pin applies it afterwards
    with pytest.raises(PermissionDeniedError, match="this server pins agent_id to 'other-bot'"):
        bind_ids(ALICE, {**NO_IDS, "agent_id": "triage-bot"}, server_pins=pins)
    with pytest.raises(PermissionDeniedError, match="this server pins user_id to 'bob'"):
        bind_ids(ALICE, NO_IDS, server_pins={"user_id": "bob"})


def test_read_only_refuses_writes_and_server_pins_must_agree() -> None:
    reader = Principal(kind="token", id="tk_3", user_id="alice", read_only=True)
    with pytest.raises(PermissionDeniedError, match="read-only, so add_memory is refused"):
        check_may_write(reader, "add_memory")
    check_may_write(ALICE, "add_memory")
    check_against_server_pins(ALICE, {"user_id": "alice"})
    with pytest.raises(PermissionDeniedError, match="this server pins user_id to 'bob'"):
        check_against_server_pins(ALICE, {"user_id": "bob"})
    assert ALICE.name == "token:tk_1" and "('bot')" in ALICE.describe()


# ---------------------------------------------------------------- tokens in a store


def test_tokens_are_stored_hashed_and_authenticate(db_path: Path) -> None:
    table = TokenTable(Store(str(db_path)))
    record, secret = table.create(user_id=" alice ", agent_id="helper", label="bot",
                                  read_only=True, expires_in_days=1)
    assert secret.startswith("lmk_") and len(secret) >= 40
    rows = Store(str(db_path)).select(TOKENS, None)
    assert [row["secret_sha256"] for row in rows] == [digest(secret)]
    assert secret not in repr(rows)  # only the digest is stored
    principal = TokenAuthenticator(table).authenticate(secret)
    assert principal == Principal(kind="token", id=record.id, user_id="alice",
                                  agent_id="helper", read_only=True, label="bot")
    listed = table.records()[0].to_item(datetime.now(UTC))
    assert listed["status"] == "active" and "token" not in listed
    assert not any(secret in str(value) for value in listed.values())


@pytest.mark.parametrize("presented", ["", "lmk_", "lmk_" + "x" * 43, "Bearer lmk_x",
                                       "x" * 10_000, "' OR '1'='1", "*"])
def test_unknown_tokens_are_refused(db_path: Path, presented: str) -> None:
    table = TokenTable(Store(str(db_path)))
    table.create(user_id="alice")
    with pytest.raises(AuthenticationError):
        TokenAuthenticator(table).authenticate(presented)


def test_revoked_and_expired_tokens_stop_working(db_path: Path) -> None:
    table = TokenTable(Store(str(db_path)))
    kept, kept_secret = table.create(user_id="alice")
    doomed, doomed_secret = table.create(user_id="alice", expires_in_days=2 / 86_400)
    other_store = TokenAuthenticator(TokenTable(Store(str(db_path))), refresh_seconds=0.1)
    assert other_store.authenticate(doomed_secret).id == doomed.id
    first = TokenTable(Store(str(db_path))).revoke(doomed.id)
    again = table.revoke(doomed.id)
    assert first.revoked_at == again.revoked_at  # a second revoke keeps the first time
    time.sleep(0.15)
    with pytest.raises(AuthenticationError, match="revoked"):
        other_store.authenticate(doomed_secret)
    assert other_store.authenticate(kept_secret).id == kept.id
    short, short_secret = table.create(user_id="bob", expires_in_days=1 / 86_400)
    time.sleep(1.2)
    with pytest.raises(AuthenticationError, match="expired"):
        TokenAuthenticator(table).authenticate(short_secret)
    assert {r.id: r.status(datetime.now(UTC)) for r in table.records()} == {
        kept.id: "active", doomed.id: "revoked", short.id: "expired"}


def test_token_input_is_checked(db_path: Path) -> None:
    table = TokenTable(Store(str(db_path)))
    for bad in ({"user_id": ""}, {"user_id": "a\nb"}, {"user_id": "x" * 257},
                {"user_id": "a", "agent_id": "  "}):
        with pytest.raises(LanceValidationError):
            table.create(**bad)
    for days in (0, -1, float("nan"), float("inf"), 10**9):
        with pytest.raises(LanceValidationError, match="--expires-in"):
            table.create(user_id="alice", expires_in_days=days)
    with pytest.raises(LanceValidationError, match="--label"):
        table.create(user_id="alice", label="a\tb")
    with pytest.raises(NotFoundError, match="token list"):
        table.revoke("tk_nope")
    assert table.records() == []  # nothing was stored by the refused calls


def test_reading_tokens_creates_nothing(db_path: Path) -> None:
    store = Store(str(db_path))
    table = TokenTable(store)
    assert table.records() == [] and table.version() == -1
    assert TokenAuthenticator(table).count() == 0
    assert not store.has_table(TOKENS)


# ---------------------------------------------------------------- settings and binds


def test_auth_settings_are_checked() -> None:
    http = {"transport": "streamable-http"}
    assert load_settings({}, environ={"LANCEMEM_AUTH": "token"}).auth == "token"  # CLI commands
    with pytest.raises(LanceValidationError, match="--jwt-issuer"):
        load_settings({**http, "auth": "jwt", "jwt_audience": "a"}, environ={})
    with pytest.raises(LanceValidationError, match="--jwt-audience"):
        load_settings({**http, "auth": "jwt", "jwt_issuer": "https://i.test"}, environ={})
    with pytest.raises(LanceValidationError, match="only applies with --auth jwt"):
        load_settings({**http, "auth": "token", "jwt_issuer": "https://i.test"}, environ={})
    with pytest.raises(LanceValidationError, match="not an http"):
        load_settings({**http, "auth": "jwt", "jwt_issuer": "ftp://x", "jwt_audience": "a"},
                      environ={})
    with pytest.raises(LanceValidationError, match="--jwt-user-claim"):
        load_settings({**http, "auth": "jwt", "jwt_issuer": "https://i.test",
                       "jwt_audience": "a", "jwt_user_claim": ""}, environ={})
    with pytest.raises(LanceValidationError, match="unknown auth mode"):
        load_settings(http, environ={"LANCEMEM_AUTH": "basic"})
    with pytest.raises(LanceValidationError, match="rate limit"):
        load_settings({"rate_limit": "fast"}, environ={})
    settings = load_settings(http, environ={"LANCEMEM_AUTH": "TOKEN", "LANCEMEM_RATE_LIMIT": "5"})
    assert (settings.auth, settings.rate_limit) == ("token", 5.0)


def test_auth_on_stdio_is_refused_at_start_and_cli_commands_ignore_it(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    env = {**os.environ, "LANCEMEM_AUTH": "token",
           "LANCEMEM_DB": str(tmp_path / "db")}
    served = subprocess.run([sys.executable, "-m", "lancemem", "serve"], env=env,
                            capture_output=True, text=True, timeout=120,
                            stdin=subprocess.DEVNULL)
    assert served.returncode == 1 and "for the HTTP transports" in served.stderr
    listed = subprocess.run([sys.executable, "-m", "lancemem", "token", "list"], env=env,
                            capture_output=True, text=True, timeout=120)
    assert listed.returncode == 0 and "no tokens" in listed.stdout


def test_authenticated_servers_may_bind_beyond_loopback() -> None:
    with pytest.raises(LanceValidationError, match="--auth token"):
        transport_security("0.0.0.0", allow_remote=False)
    security = transport_security("0.0.0.0", allow_remote=False,
                                  allowed_hosts=["memory.example.com"], authenticated=True)
    assert security.enable_dns_rebinding_protection
    assert "memory.example.com" in security.allowed_hosts


# ---------------------------------------------------------------- rate limit


def test_the_rate_limit_is_a_bucket_per_client() -> None:
    limiter = RateLimiter(app=None, rate=10)  # type: ignore[arg-type]
    now = 100.0
    assert [limiter.take("a", now) for _ in range(20)] == [0.0] * 20  # the burst
    assert limiter.take("a", now) == pytest.approx(0.1)
    assert limiter.take("b", now) == 0.0  # another client has its own budget
    assert limiter.take("a", now + 0.5) == 0.0  # refilled at 10 per second
    small = RateLimiter(app=None, rate=1, max_clients=3)  # type: ignore[arg-type]
    for client in "wxyz":
        small.take(client, now)
    assert len(small._buckets) == 3


def test_history_rows_name_the_principal(memory: object) -> None:
    from lancemem.memory.facade import Memory

    assert isinstance(memory, Memory)
    added = memory.add("likes tea", user_id="alice", principal=ALICE)["results"][0]
    memory.update(added["id"], text="likes green tea", user_id="alice", principal=ALICE_HELPER)
    memory.delete(added["id"], user_id="alice")
    entries = memory.history(added["id"], user_id="alice")["results"]
    assert [(e["event"], e["principal"], e["principal_label"]) for e in entries] == [
        ("ADD", "token:tk_1", "bot"), ("UPDATE", "token:tk_2", None), ("DELETE", None, None)]


def test_the_history_command_says_who(db_path: Path, real_embedder: object,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    from lancemem.cli import main
    from lancemem.memory.facade import Memory

    with Memory(store=Store(str(db_path)), embedder=real_embedder) as memory:  # type: ignore[arg-type]
        added = memory.add("likes tea", user_id="alice", principal=ALICE)["results"][0]
        memory.update(added["id"], text="likes coffee", user_id="alice")
    assert main(["history", added["id"], "--user-id", "alice", "--db", str(db_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].endswith("+ likes tea  [by token:tk_1 ('bot')]"), lines
    assert lines[1].endswith("likes tea -> likes coffee"), lines


def test_an_older_history_table_gains_the_principal_columns(db_path: Path,
                                                            real_embedder: object) -> None:
    import lancedb
    import pyarrow as pa

    from lancemem.storage.store import HISTORY, history_schema

    old = pa.schema([f for f in history_schema() if not f.name.startswith("principal")])
    lancedb.connect(str(db_path)).create_table(HISTORY, schema=old).add(pa.Table.from_pylist(
        [{"id": "h1", "memory_id": "m1", "event": "ADD",
          "created_at": datetime.now(UTC) - timedelta(days=1)}], schema=old))
    store = Store(str(db_path))
    store.open(model_name=real_embedder.model_name, dim=real_embedder.dim)  # type: ignore[attr-defined]
    rows = store.select(HISTORY, None)
    assert rows[0]["principal"] is None and "principal_label" in rows[0]


def test_a_server_with_auth_fails_closed_without_a_principal(db_path: Path,
                                                             real_embedder: object) -> None:
    import anyio
    from mcp import Client

    from lancemem.mcp.auth import token_auth
    from lancemem.mcp.server import build_server
    from lancemem.memory.facade import Memory

    def never(token: str) -> Principal:
        raise AuthenticationError("no")

    settings = load_settings({"db": str(db_path), "transport": "streamable-http"}, environ={})

    async def run() -> str:
        with Memory(store=Store(str(db_path)), embedder=real_embedder) as memory:  # type: ignore[arg-type]
            async with Client(build_server(settings, memory=memory,
                                           auth=token_auth(never))) as client:
                result = await client.call_tool("add_memory", {"text": "x", "user_id": "a"})
                return result.content[0].text

    assert anyio.run(run).startswith("AUTH_001: ")


def test_filter_keys_cannot_forge_log_lines() -> None:
    from lancemem.core.filters import compile_where

    forged = "x\n2026-12-02 07:00:00,000 WARNING lancemem.serving.limits: rate-limited 10.9.9.9"
    with pytest.raises(LanceValidationError) as caught:
        compile_where({forged: 1})
    assert "\n" not in str(caught.value) and "\\n" in str(caught.value)


def test_the_credential_limiter_counts_open_requests() -> None:
    import anyio

    from lancemem.serving.limits import CredentialLimiter

    release = anyio.Event()
    sent: list[int] = []

    async def stream(scope: object, receive: object, send: object) -> None:
        await release.wait()

    limiter = CredentialLimiter(stream, max_open=2)  # type: ignore[arg-type]

    async def request(token: bytes) -> None:
        async def send(message: dict[str, object]) -> None:
            if message["type"] == "http.response.start":
                sent.append(int(message["status"]))  # type: ignore[call-overload]
        scope = {"type": "http", "method": "GET", "headers": [(b"authorization", token)]}
        await limiter(scope, None, send)  # type: ignore[arg-type]

    async def run() -> None:
        async with anyio.create_task_group() as group:
            # One credential however it is spelt (the page accepts these variants).
            for token in (b"Bearer a", b"bearer  a", b"BEARER \ta ", b"Bearer b"):
                group.start_soon(request, token)
            await anyio.sleep(0.2)
            assert sent == [429]  # the third stream of "a"; "b" is unaffected
            release.set()
        assert limiter._open == {}

    anyio.run(run)
