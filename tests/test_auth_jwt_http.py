"""`lancemem serve --auth jwt` as an OAuth 2.1 resource server, end to end: an
issuer with keys and a JWKS of our own on 127.0.0.1 (tests/jwt_issuer.py), the
server as a subprocess, real MCP clients, the store checked directly."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx
import pytest

from tests.jwt_issuer import JwtIssuer, rsa_key, unsigned_token
from tests.test_auth_http import TIMEOUT, call, client_for, settled, status_of
from tests.test_mcp_transports import HEADERS, INITIALIZE, http_server

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def issuer() -> Iterator[JwtIssuer]:
    with JwtIssuer([rsa_key("key-1")], path="/tenant", audience="lancemem") as running:
        yield running


def jwt_args(issuer: JwtIssuer, *extra: str) -> list[str]:
    return ["--auth", "jwt", "--jwt-issuer", issuer.issuer, "--jwt-audience", "lancemem",
            *extra]


def test_unauthenticated_requests_are_pointed_at_the_resource_metadata(
        tmp_path: Path, issuer: JwtIssuer) -> None:
    with http_server(tmp_path, "streamable-http", *jwt_args(issuer)) as url:
        base = url.removesuffix("/mcp")
        refused = httpx.post(url, json=INITIALIZE, headers=HEADERS, timeout=10)
        assert refused.status_code == 401
        challenge = refused.headers["www-authenticate"]
        assert challenge.startswith("Bearer ")
        found = re.search(r'resource_metadata="([^"]+)"', challenge)
        assert found and found.group(1) == f"{base}/.well-known/oauth-protected-resource/mcp"
        for path in ("/.well-known/oauth-protected-resource",
                     "/.well-known/oauth-protected-resource/mcp"):
            document = httpx.get(base + path, timeout=10).json()
            assert document["resource"] == url, document
            assert document["authorization_servers"] == [issuer.issuer], document
            assert "header" in document["bearer_methods_supported"]


@pytest.mark.parametrize("transport", ["streamable-http", "sse"])
async def test_a_valid_jwt_binds_the_call_to_its_subject(tmp_path: Path, issuer: JwtIssuer,
                                                         transport: str) -> None:
    with http_server(tmp_path, transport, *jwt_args(issuer)) as url:
        with anyio.fail_after(TIMEOUT):
            async with client_for(url, issuer.token(sub="alice", azp="web-app")) as client:
                error, added = await call(client, "add_memory", text="alice via OAuth")
                assert not error and added["results"][0]["user_id"] == "alice"
                error, text = await call(client, "list_memories", user_id="bob")
                assert error and text.startswith("AUTH_002: ") and "JWT subject alice" in text
                _, history = await call(client, "memory_history",
                                        memory_id=added["results"][0]["id"])
                entry = history["results"][0]
                assert (entry["principal"], entry["principal_label"]) == ("jwt:alice", "web-app")
            async with client_for(url, issuer.token(sub="bob")) as client:
                _, listed = await call(client, "list_memories")
                assert listed["results"] == []
    memories, _ = settled(tmp_path)
    assert [(m["memory"], m["user_id"]) for m in memories] == [("alice via OAuth", "alice")]


def test_forged_and_misdirected_jwts_are_refused(tmp_path: Path, issuer: JwtIssuer) -> None:
    impostor = rsa_key("key-1")  # same kid, another key
    now = int(time.time())
    refused = {
        "wrong issuer": issuer.token(iss="http://127.0.0.1:1/evil"),
        "wrong audience": issuer.token(aud="another-api"),
        "no audience": issuer.token(aud=None),
        "bad signature": impostor.sign(issuer.claims()),
        "expired": issuer.token(exp=now - 600, iat=now - 1200),
        "not yet valid": issuer.token(nbf=now + 600),
        "alg none": unsigned_token(issuer.claims(), {"alg": "none", "kid": "key-1"}),
        "HS256 with the public key": _hmac_forgery(issuer),
        "no subject": issuer.token(sub=None),
        "not a JWT": "abc.def.ghi",
    }
    with http_server(tmp_path, "streamable-http", *jwt_args(issuer)) as url:
        for name, token in refused.items():
            assert status_of(url, token) == 401, name
        assert status_of(url, issuer.token()) == 200
    memories, history = settled(tmp_path)
    assert memories == [] and history == []


def _hmac_forgery(issuer: JwtIssuer) -> str:
    """An HS256 token whose secret is the issuer's public key (algorithm confusion)."""
    import base64
    import hashlib
    import hmac
    import json

    def segment(value: object) -> str:
        raw = json.dumps(value, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    signing_input = f"{segment({'alg': 'HS256', 'kid': 'key-1'})}.{segment(issuer.claims())}"
    mac = hmac.new(issuer.keys[0].public_pem(), signing_input.encode(), hashlib.sha256)
    return f"{signing_input}.{base64.urlsafe_b64encode(mac.digest()).rstrip(b'=').decode()}"


def test_a_rotated_key_is_picked_up_from_the_jwks(tmp_path: Path, issuer: JwtIssuer) -> None:
    with http_server(tmp_path, "streamable-http", *jwt_args(issuer)) as url:
        assert status_of(url, issuer.token()) == 200
        rotated = rsa_key("key-2")
        issuer.set_keys(rotated, issuer.keys[0])
        deadline = time.monotonic() + 10
        while status_of(url, issuer.token(rotated)) != 200:
            assert time.monotonic() < deadline, "the new key was never fetched"
            time.sleep(0.2)
        issuer.set_keys(rotated)


def test_another_claim_can_be_the_user_id(tmp_path: Path, issuer: JwtIssuer) -> None:
    args = jwt_args(issuer, "--jwt-user-claim", "email", "--jwt-jwks-url", issuer.jwks_url)
    with http_server(tmp_path, "streamable-http", *args) as url:
        assert status_of(url, issuer.token(email="alice@example.com")) == 200
        assert status_of(url, issuer.token()) == 401  # no email claim

        async def add() -> None:
            async with client_for(url, issuer.token(email="alice@example.com")) as client:
                error, added = await call(client, "add_memory", text="by email")
                assert not error and added["results"][0]["user_id"] == "alice@example.com"

        anyio.run(add)
