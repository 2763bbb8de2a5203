"""The memory browser's JSON API in process (serving/page.py over a real store and
the real model, through httpx's ASGI transport), and Memory.scopes behind its
scope picker. The browser itself is tests/test_page.py's."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from lancemem.core.config import Settings, load_settings
from lancemem.mcp.auth import jwt_auth, token_auth
from lancemem.memory.facade import Memory
from lancemem.serving.jwt_auth import JwtVerifier
from lancemem.serving.page import page_app
from lancemem.serving.page_http import CONTENT_SECURITY_POLICY, is_page_path
from lancemem.storage.tokens import TokenAuthenticator, TokenTable
from tests.jwt_issuer import JwtIssuer, rsa_key

pytestmark = pytest.mark.anyio
WRITE = {"Content-Type": "application/json", "X-Lancemem-Page": "1"}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def seeded(memory: Memory) -> Memory:
    memory.add("alice likes coffee", user_id="alice", metadata={"topic": "drinks"})
    memory.add("alice runs on sundays", user_id="alice", agent_id="coach", run_id="r1")
    memory.add("bob likes tea", user_id="bob")
    memory.add("an old plan", user_id="bob", expiration_date="2001-01-01")
    return memory


def _settings(memory: Memory, **overrides: Any) -> Settings:
    return load_settings({"db": memory.store.uri, **overrides})


@pytest.fixture
async def client(seeded: Memory) -> AsyncIterator[httpx.AsyncClient]:
    app = page_app(seeded, _settings(seeded), None)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://127.0.0.1") as opened:
        yield opened


def test_scopes_count_live_memories_per_id(seeded: Memory) -> None:
    assert seeded.scopes() == {
        "user_id": [{"id": "alice", "count": 2}, {"id": "bob", "count": 1}],
        "agent_id": [{"id": "coach", "count": 1}],
        "run_id": [{"id": "r1", "count": 1}],
    }
    assert seeded.scopes(user_id="bob") == {"user_id": [{"id": "bob", "count": 1}],
                                            "agent_id": [], "run_id": []}
    assert seeded.scopes(agent_id="coach")["user_id"] == [{"id": "alice", "count": 1}]


def test_scopes_of_an_empty_store(memory: Memory) -> None:
    assert memory.scopes() == {"user_id": [], "agent_id": [], "run_id": []}


@pytest.mark.parametrize(("path", "ours"), [
    ("/", True), ("/api/scopes", True), ("/page/app.js", True), ("/api", True),
    ("/mcp", False), ("/sse", False), ("/messages/", False), ("/pages", False),
    ("/.well-known/oauth-protected-resource", False)])
def test_which_paths_are_the_page(path: str, ours: bool) -> None:
    assert is_page_path(path) is ours


async def test_list_pages_newest_first(client: httpx.AsyncClient, seeded: Memory) -> None:
    first = (await client.get("/api/memories", params={"user_id": "alice", "limit": 1})).json()
    assert first["total"] == 2 and first["next_cursor"]
    second = (await client.get("/api/memories", params={
        "user_id": "alice", "limit": 1, "cursor": first["next_cursor"]})).json()
    shown = [item["memory"] for item in first["results"] + second["results"]]
    assert shown == [item["memory"] for item in seeded.get_all(user_id="alice")["results"]]
    assert second["next_cursor"] is None


async def test_search_modes_and_scores(client: httpx.AsyncClient) -> None:
    for mode in ("hybrid", "vector", "keyword"):
        found = (await client.get("/api/search", params={
            "user_id": "alice", "q": "coffee", "mode": mode})).json()["results"]
        assert found[0]["memory"] == "alice likes coffee"
        assert all(isinstance(item["score"], float) for item in found)
        assert all(item["user_id"] == "alice" for item in found)


@pytest.mark.parametrize(("params", "code"), [
    ({"user_id": "alice", "limit": "ten"}, "VALIDATION_005"),
    ({"user_id": "alice", "colour": "red"}, "VALIDATION_005"),
    ({}, "VALIDATION_001"),
    ({"user_id": "alice", "cursor": "not-a-cursor"}, "VALIDATION_005"),
])
async def test_bad_requests_are_400_with_a_code(client: httpx.AsyncClient,
                                                params: dict[str, str], code: str) -> None:
    response = await client.get("/api/memories", params=params)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == code


async def test_an_id_given_twice_is_refused(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/memories?user_id=alice&user_id=bob")
    assert response.status_code == 400
    assert "twice" in response.json()["error"]["message"]


async def test_get_history_update_delete(client: httpx.AsyncClient, seeded: Memory) -> None:
    memory_id = seeded.get_all(user_id="bob")["results"][0]["id"]
    assert (await client.get(f"/api/memories/{memory_id}",
                             params={"user_id": "alice"})).status_code == 404
    changed = await client.patch(f"/api/memories/{memory_id}", params={"user_id": "bob"},
                                 headers=WRITE, json={"text": "bob likes green tea",
                                                      "metadata": {"cup": 2}})
    assert changed.status_code == 200, changed.text
    assert seeded.get(memory_id, user_id="bob")["metadata"] == {"cup": 2}
    events = (await client.get(f"/api/memories/{memory_id}/history",
                               params={"user_id": "bob"})).json()["results"]
    assert [event["event"] for event in events] == ["ADD", "UPDATE"]
    deleted = await client.request("DELETE", f"/api/memories/{memory_id}",
                                   params={"user_id": "bob"}, headers=WRITE, content=b"{}")
    assert deleted.status_code == 200
    assert seeded.get_all(user_id="bob")["total"] == 0


@pytest.mark.parametrize("body", [{}, {"text": "x", "user_id": "bob"}, [1], "x"])
async def test_an_edit_must_be_text_and_or_metadata(client: httpx.AsyncClient, seeded: Memory,
                                                    body: Any) -> None:
    memory_id = seeded.get_all(user_id="bob")["results"][0]["id"]
    response = await client.patch(f"/api/memories/{memory_id}", params={"user_id": "bob"},
                                  headers=WRITE, content=json.dumps(body))
    assert response.status_code == 400
    assert seeded.get(memory_id, user_id="bob")["memory"] == "bob likes tea"


@pytest.mark.parametrize("headers", [
    {}, {"Content-Type": "application/json"}, {"X-Lancemem-Page": "1"},
    {"Content-Type": "text/plain", "X-Lancemem-Page": "1"},
    {"Content-Type": "application/x-www-form-urlencoded", "X-Lancemem-Page": "1"},
    {"Content-Type": "application/json", "X-Lancemem-Page": "yes"}])
async def test_a_write_without_the_page_headers_is_403(client: httpx.AsyncClient,
                                                       seeded: Memory,
                                                       headers: dict[str, str]) -> None:
    memory_id = seeded.get_all(user_id="bob")["results"][0]["id"]
    for method in ("PATCH", "DELETE"):
        response = await client.request(method, f"/api/memories/{memory_id}",
                                        params={"user_id": "bob"}, headers=headers,
                                        content=b'{"text": "changed"}')
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "PAGE_001"
    assert seeded.get(memory_id, user_id="bob")["memory"] == "bob likes tea"


async def test_export_is_the_scope_as_json_lines(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/export", params={"user_id": "bob"})
    assert response.status_code == 200
    assert "attachment" in response.headers["content-disposition"]
    lines = [json.loads(line) for line in response.text.split("\n") if line]
    assert sorted(item["memory"] for item in lines if item["type"] == "memory") == [
        "an old plan", "bob likes tea"]
    assert {item["user_id"] for item in lines} == {"bob"}
    assert {item["type"] for item in lines} == {"memory", "history"}  # export --include-history
    refused = await client.get("/api/export")
    assert refused.status_code == 400


async def test_headers_and_files(client: httpx.AsyncClient) -> None:
    page = await client.get("/")
    assert page.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["referrer-policy"] == "no-referrer"
    assert "access-control-allow-origin" not in page.headers
    assert (await client.get("/api/scopes")).headers["cache-control"] == "no-store"
    script = await client.get("/page/app.js")
    assert script.headers["content-type"].startswith("text/javascript")
    for path in ("/page/index.html", "/page/..%2Fcli.py", "/page/../serving/page.py",
                 "/page/%2e%2e/cli.py", "/page/"):
        assert (await client.get(path)).status_code == 404, path
    missing = await client.get("/api/nothing")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "HTTP_404"
    wrong_method = await client.post("/api/scopes", headers=WRITE, content=b"{}")
    assert wrong_method.status_code == 405


async def test_with_a_token_the_api_is_bound_to_it(seeded: Memory) -> None:
    tokens = TokenTable(seeded.store)
    _, alice = tokens.create(user_id="alice")
    _, reader = tokens.create(user_id="bob", read_only=True)
    auth = token_auth(TokenAuthenticator(tokens).authenticate)
    app = page_app(seeded, _settings(seeded, auth="token"), auth)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://127.0.0.1") as client:
        def as_(token: str) -> dict[str, str]:
            return {"Authorization": f"Bearer {token}"}

        assert (await client.get("/api/session")).status_code == 401
        assert (await client.get("/api/scopes", headers=as_("lmk_wrong"))).status_code == 401
        scopes = (await client.get("/api/scopes", headers=as_(alice))).json()
        assert scopes["user_id"] == [{"id": "alice", "count": 2}]
        mine = (await client.get("/api/memories", headers=as_(alice))).json()
        assert {item["user_id"] for item in mine["results"]} == {"alice"}
        refused = await client.get("/api/memories", params={"user_id": "bob"},
                                   headers=as_(alice))
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "AUTH_002"
        bobs = seeded.get_all(user_id="bob")["results"][0]["id"]
        assert (await client.get(f"/api/memories/{bobs}", headers=as_(alice))).status_code == 404
        write = await client.patch(f"/api/memories/{bobs}", headers={**WRITE, **as_(reader)},
                                   json={"text": "changed"})
        assert write.status_code == 403 and write.json()["error"]["code"] == "AUTH_002"
        assert seeded.get(bobs, user_id="bob")["memory"] == "bob likes tea"



async def test_pinned_ids_apply_to_the_page_as_to_the_tools(seeded: Memory) -> None:
    settings = _settings(seeded, user_id="alice", pinned=frozenset({"user_id"}))
    app = page_app(seeded, settings, None)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://127.0.0.1") as client:
        asked_for_bob = (await client.get("/api/memories", params={"user_id": "bob"})).json()
        assert {item["user_id"] for item in asked_for_bob["results"]} == {"alice"}
        assert (await client.get("/api/scopes")).json()["user_id"] == [
            {"id": "alice", "count": 2}]
        session = (await client.get("/api/session")).json()
        assert session == {"auth": "none", "principal": None, "pinned": {"user_id": "alice"},
                           "defaults": {"user_id": "alice"}}


async def test_with_a_jwt_the_api_is_bound_to_its_subject(seeded: Memory) -> None:
    key = rsa_key("page-key")
    with JwtIssuer([key]) as issuer:
        settings = _settings(seeded, auth="jwt", jwt_issuer=issuer.issuer,
                             jwt_audience=issuer.audience, jwt_jwks_url=issuer.jwks_url)
        verifier = JwtVerifier(issuer=issuer.issuer, audience=issuer.audience,
                               jwks_url=issuer.jwks_url)
        auth = jwt_auth(verifier.verify, settings, "http://127.0.0.1/mcp")
        app = page_app(seeded, settings, auth)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://127.0.0.1") as client:
            bearer = {"Authorization": f"Bearer {issuer.token(key, sub='bob')}"}
            mine = (await client.get("/api/memories", headers=bearer)).json()["results"]
            assert [item["memory"] for item in mine] == ["bob likes tea"]
            refused = await client.get("/api/memories", params={"user_id": "alice"},
                                       headers=bearer)
            assert refused.status_code == 403
            forged = {"Authorization": f"Bearer {issuer.token(rsa_key('other'), sub='bob')}"}
            assert (await client.get("/api/memories", headers=forged)).status_code == 401


async def test_a_hostile_path_is_logged_escaped_and_cut(client: httpx.AsyncClient,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="lancemem")
    hostile = "A\u001b[31mRED\u2028B\u0085C" + "x" * 5000
    response = await client.get(f"/api/memories/{quote(hostile)}", params={"user_id": "bob"})
    assert response.status_code in (400, 404)
    [line] = [r.getMessage() for r in caplog.records if "page request" in r.getMessage()]
    assert "\u001b" not in line and "\u2028" not in line and "\u0085" not in line
    assert "\\x1b[31mRED" in line and len(line) < 600


async def test_a_bad_query_is_explained_as_a_search(client: httpx.AsyncClient) -> None:
    empty = await client.get("/api/search", params={"user_id": "bob", "q": " "})
    long = await client.get("/api/search", params={"user_id": "bob", "q": "x" * 40_000})
    assert "give the text to search for" in empty.json()["error"]["message"]
    assert "Search with a shorter text" in long.json()["error"]["message"]
