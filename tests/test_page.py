"""The memory browser in a real browser: Debian's chromium, driven by Playwright,
against `lancemem serve --transport streamable-http` (and `--auth token`) and
`lancemem ui` as subprocesses with the real model. Changes are checked in the
store itself, read beside the server.

Chromium comes from Debian's package (`make test` installs it); Playwright's
own browser downloads are never used.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from lancemem.core.filters import sql_string
from lancemem.memory.facade import Memory
from lancemem.search.embeddings import FastEmbedder
from lancemem.storage.store import MEMORIES, Store
from tests.processes import announced, child_env
from tests.test_mcp_transports import HEADERS, INITIALIZE

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
WRITE = {"Content-Type": "application/json", "X-Lancemem-Page": "1"}
# Markup, quotes, SQL LIKE wildcards, and look-alikes of "alice" (fullwidth, Cyrillic).
HOSTILE = ('<script>window.__pwned = 1; alert("script")</script><img src=x '
           'onerror="window.__pwned = 2; alert(1)"> "double" \'single\' 100% * '
           '\uff41lice \u0430lice')
HOSTILE_META = {"note": "<img src=x onerror=alert(2)>", "pct": "50%*", "q": "\"'"}
HOSTILE_ID = "<b>eve</b>\"'%*"
# More than one page (20) of alice's memories.
ALICE_NOTES = [
    "Alice works at Acme as a data engineer", "Alice lives in Lisbon", "Alice is vegetarian",
    "Alice's daughter Maya was born in 2019", "Alice plays the cello on weekends",
    "Alice is allergic to peanuts", "Alice prefers morning meetings", "Alice speaks Portuguese",
    "Alice runs a half marathon every spring", "Alice's favourite author is Ursula Le Guin",
    "Alice uses Python and Rust at work", "Alice is learning Japanese",
    "Alice takes the train to the office", "Alice's birthday is on 12 March",
    "Alice does not like horror films", "Alice keeps a vegetable garden",
    "Alice wants to visit Patagonia", "Alice reads before sleeping",
    "Alice's team ships on Thursdays", "Alice writes her notes in Markdown",
    "Alice has a cat called Miso", "Alice prefers aisle seats on planes",
    "Alice volunteers at the library", "Alice's manager is called Rui",
]


@dataclass
class Server:
    """A running server: its base URL and its store."""

    url: str
    db: Path
    tokens: dict[str, str] = field(default_factory=dict)


def _env(home: Path) -> dict[str, str]:
    env = {key: value for key, value in child_env().items()
           if not key.startswith(("LANCEMEM_", "XDG_"))}
    return {**env, "HOME": str(home), "HF_HUB_OFFLINE": "1"}


@contextmanager
def _running(args: list[str], home: Path, log: Path) -> Iterator[str]:
    """Run ``lancemem ARGS``; yield the memory browser URL it announces (no slash)."""
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "lancemem", *args], env=_env(home),
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=out)
    with announced(proc, log, r"memory browser at (http://\S+)/") as url:
        yield url


def _seed_open(db: Path, embedder: FastEmbedder) -> None:
    with Memory(store=Store(str(db)), embedder=embedder) as memory:
        memory.add(HOSTILE, user_id="alice", metadata=HOSTILE_META)  # oldest: on page 2
        for i, note in enumerate(ALICE_NOTES):
            memory.add(note, user_id="alice", metadata={"n": i, "source": "chat"})
        memory.add("Alice drinks espresso coffee every morning", user_id="alice")
        memory.add("Alice's standing desk is set to 110 cm", user_id="alice",
                   metadata={"topic": "office"})
        memory.add("Alice owes Rui ten euros for lunch", user_id="alice")
        memory.add_relations([
            {"source": "Alice", "relationship": "works at", "target": "Acme"},
            {"source": "Alice", "relationship": "lives in", "target": "Lisbon"}],
            user_id="alice")
        memory.add("bob secret: the vault code is 1234", user_id="bob")
        memory.add("bob likes coffee with milk", user_id="bob")
        memory.add("eve keeps odd ids", user_id=HOSTILE_ID)


def _token(db: Path, home: Path, *flags: str) -> str:
    done = subprocess.run([sys.executable, "-m", "lancemem", "token", "create", "--db", str(db),
                           "--json", *flags], env=_env(home), capture_output=True, text=True,
                          check=True)
    return json.loads(done.stdout)["token"]


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("home")


@pytest.fixture(scope="module")
def open_server(tmp_path_factory: pytest.TempPathFactory, home: Path,
                real_embedder: FastEmbedder) -> Iterator[Server]:
    """`serve --transport streamable-http`, no auth, alice's, bob's and eve's memories."""
    root = tmp_path_factory.mktemp("open")
    _seed_open(root / "db", real_embedder)
    with _running(["serve", "--db", str(root / "db"), "--transport", "streamable-http",
                   "--port", "0"], home, root / "serve.log") as url:
        yield Server(url, root / "db")


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory: pytest.TempPathFactory, home: Path,
                real_embedder: FastEmbedder) -> Iterator[Server]:
    """`serve --auth token`, with tokens from `lancemem token create`."""
    root = tmp_path_factory.mktemp("auth")
    with Memory(store=Store(str(root / "db")), embedder=real_embedder) as memory:
        memory.add("alice grows tomatoes in her garden", user_id="alice")
        memory.add("bob sails a small boat called Petrel", user_id="bob")
    tokens = {"alice": _token(root / "db", home, "--user-id", "alice", "--label", "alice-page"),
              "reader": _token(root / "db", home, "--user-id", "alice", "--read-only"),
              "bob": _token(root / "db", home, "--user-id", "bob")}
    with _running(["serve", "--db", str(root / "db"), "--transport", "streamable-http",
                   "--port", "0", "--auth", "token"], home, root / "serve.log") as url:
        yield Server(url, root / "db", tokens)


# Playwright waits 5 s by default; a loaded CI machine (the model, LanceDB and
# Chromium on two cores) can take longer to answer a click. Waiting longer
# changes no assertion.
UI_WAIT_MS = 30_000
expect.set_options(timeout=UI_WAIT_MS)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert os.path.exists(CHROMIUM), (
        f"{CHROMIUM} is missing: `make test` installs Debian's chromium "
        "(apt-get install chromium)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@dataclass
class Watched:
    """A browser tab and what it did: every request, dialog, script error and
    Content-Security-Policy violation (a request the policy stopped never shows
    among the requests)."""

    page: Page
    requests: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)

    def off_origin(self, origin: str) -> list[str]:
        """Requests anywhere but ``origin`` (the export's blob: and the data: icon
        are this page's own memory, not requests to a server)."""
        own = (origin + "/", f"blob:{origin}/", "data:")
        return [url for url in self.requests if not url.startswith(own)]


@pytest.fixture
def tab(browser: Browser) -> Iterator[Watched]:
    """A fresh tab (its own sessionStorage) that records what it does."""
    context = browser.new_context(viewport={"width": 1400, "height": 900}, accept_downloads=True)
    context.set_default_timeout(UI_WAIT_MS)
    page = context.new_page()
    watched = Watched(page)
    page.on("request", lambda request: watched.requests.append(request.url))
    page.on("pageerror", lambda error: watched.errors.append(str(error)))
    page.on("console", lambda message: watched.violations.append(message.text)
            if "Content Security Policy" in message.text else None)

    def dismiss(dialog: Any) -> None:
        watched.dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", dismiss)
    yield watched
    context.close()


def stored(db: Path, where: str) -> list[dict[str, Any]]:
    """Memories in the store matching ``where``, read beside the server."""
    return Store(str(db)).select(MEMORIES, where, columns=[
        "id", "memory", "user_id", "metadata", "created_at"])


def stored_one(db: Path, memory_id: str) -> dict[str, Any] | None:
    rows = stored(db, f"id = {sql_string(memory_id)}")
    return rows[0] if rows else None


def newest_first(db: Path, user_id: str) -> list[str]:
    rows = stored(db, f"user_id = {sql_string(user_id)}")
    return [row["memory"] for row in sorted(rows, key=lambda r: (r["created_at"], r["id"]),
                                            reverse=True)]


def shown_memories(page: Page) -> list[str]:
    return [text or "" for text in page.locator("#memories .memory-text").all_text_contents()]


def open_scope(tab: Watched, url: str) -> Page:
    page = tab.page
    page.goto(url)
    expect(page.locator("#status")).to_contain_text(re.compile("newest first|results for"))
    return page


def open_memory(page: Page, text: str) -> None:
    page.locator("#memories .memory-text", has_text=text).first.click()
    expect(page.locator("#detail")).to_be_visible()
    expect(page.locator("#detail-text")).to_have_text(text)


def test_list_newest_first_with_paging(open_server: Server, tab: Watched,
                                       tmp_path: Path) -> None:
    page = open_scope(tab, f"{open_server.url}/?user_id=alice")
    expected = newest_first(open_server.db, "alice")
    assert len(expected) > 20
    expect(page.locator("#page-info")).to_have_text("page 1 of 2")
    assert shown_memories(page) == expected[:20]
    expect(page.locator("#newer")).to_be_disabled()
    page.click("#older")
    expect(page.locator("#page-info")).to_have_text("page 2 of 2")
    assert shown_memories(page) == expected[20:]
    expect(page.locator("#older")).to_be_disabled()
    page.screenshot(path=tmp_path / "list-page-2.png", full_page=True)
    page.click("#newer")
    expect(page.locator("#page-info")).to_have_text("page 1 of 2")
    assert shown_memories(page) == expected[:20]
    assert page.locator("button.scope").count() == 3  # alice, bob and eve
    expect(page.locator("button.scope[data-id='alice'] .count")).to_have_text(
        str(len(expected)))
    assert "bob" not in " ".join(shown_memories(page))
    assert not tab.off_origin(open_server.url) and not tab.errors and not tab.violations


@pytest.mark.parametrize("mode", ["hybrid", "vector", "keyword"])
def test_search_in_each_mode_shows_scores(open_server: Server, tab: Watched, mode: str) -> None:
    page = open_scope(tab, f"{open_server.url}/?user_id=alice")
    page.select_option("#mode", mode)
    page.fill("#q", "espresso coffee")
    page.click("#search-form button[type=submit]")
    expect(page.locator("#status")).to_contain_text(f"results for “espresso coffee” ({mode})")
    rows = page.locator("#memories .memory")
    assert rows.count() >= 1
    assert shown_memories(page)[0] == "Alice drinks espresso coffee every morning"
    scores = [float(text) for text in page.locator("#memories .score").all_text_contents()]
    assert len(scores) == rows.count() and all(0 <= score <= 1 for score in scores)
    assert scores == sorted(scores, reverse=True)  # every mode orders by its score
    assert not any("bob" in text for text in shown_memories(page))  # bob likes coffee too
    assert f"mode={mode}" in page.url or mode == "hybrid"


def test_open_a_memory_edit_it_and_see_its_history(open_server: Server, tab: Watched,
                                                   tmp_path: Path) -> None:
    page = open_scope(tab, f"{open_server.url}/?user_id=alice")
    open_memory(page, "Alice's standing desk is set to 110 cm")
    expect(page.locator("#detail-metadata")).to_contain_text("office")
    expect(page.locator("#detail-fields")).to_contain_text("alice")
    memory_id = page.locator("#detail-fields tr", has_text="id").first.locator(
        "td").text_content()
    page.fill("#edit-text", "Alice's standing desk is set to 115 cm")
    page.fill("#edit-metadata", '{"topic": "office", "cm": [110, 115]}')
    page.click("#save")
    expect(page.locator("#detail-text")).to_have_text("Alice's standing desk is set to 115 cm")
    expect(page.locator("#timeline .event")).to_have_count(2)
    assert page.locator("#timeline .event-name").all_text_contents() == ["ADD", "UPDATE"]
    expect(page.locator("#timeline")).to_contain_text(
        "Alice's standing desk is set to 110 cm → Alice's standing desk is set to 115 cm")
    expect(page.locator("#timeline .metadata-change")).to_have_text(
        'metadata {"topic":"office"} → {"cm":[110,115],"topic":"office"}')
    page.screenshot(path=tmp_path / "memory-open.png")  # the README's (docs/screenshot.png)
    row = stored_one(open_server.db, memory_id or "")
    assert row is not None and row["memory"] == "Alice's standing desk is set to 115 cm"
    assert json.loads(row["metadata"]) == {"topic": "office", "cm": [110, 115]}
    page.fill("#edit-metadata", "{not json")
    page.click("#save")
    expect(page.locator("#error")).to_contain_text("not valid JSON")


def test_delete_asks_first(open_server: Server, tab: Watched) -> None:
    text = "Alice owes Rui ten euros for lunch"
    page = open_scope(tab, f"{open_server.url}/?user_id=alice")
    open_memory(page, text)
    memory_id = page.locator("#detail-fields td").first.text_content() or ""
    page.click("#delete")
    expect(page.locator("#confirm")).to_be_visible()
    expect(page.locator("#confirm-text")).to_contain_text(text)
    page.click("#confirm-cancel")
    expect(page.locator("#confirm")).to_be_hidden()
    assert stored_one(open_server.db, memory_id) is not None
    page.click("#delete")
    page.click("#confirm-ok")
    expect(page.locator("#status")).to_have_text("Deleted.")
    expect(page.locator("#detail")).to_be_hidden()
    assert stored_one(open_server.db, memory_id) is None
    assert text not in shown_memories(page)
    assert not tab.dialogs  # the page's own dialog, never window.confirm


def test_relations_graph_when_relations_exist(open_server: Server, tab: Watched) -> None:
    page = open_scope(tab, f"{open_server.url}/?user_id=alice")
    expect(page.locator("#relations")).to_be_visible()
    assert sorted(page.locator("#graph .node-label").all_text_contents()) == [
        "Acme", "Alice", "Lisbon"]
    assert sorted(page.locator("#graph .edge-label").all_text_contents()) == [
        "lives_in", "works_at"]
    page.locator("button.scope[data-id='alice']").click()  # unpick alice, pick bob
    page.locator("button.scope[data-id='bob']").click()
    expect(page.locator("#scope-shown")).to_have_text("Scope: user_id=bob")
    expect(page.locator("#relations")).to_be_hidden()


def test_export_downloads_the_scope_and_no_other(open_server: Server, tab: Watched) -> None:
    page = open_scope(tab, f"{open_server.url}/?user_id=alice")
    with page.expect_download() as download:
        page.click("#export")
    assert download.value.suggested_filename == "lancemem-alice.jsonl"
    lines = [json.loads(line) for line in
             Path(download.value.path()).read_text().split("\n") if line]
    expected = {row["id"] for row in stored(open_server.db, "user_id = 'alice'")}
    memories = [item for item in lines if item["type"] == "memory"]
    assert {item["id"] for item in memories} == expected
    assert {item["memory_id"] for item in lines if item["type"] == "history"} >= expected
    assert {item["user_id"] for item in lines} == {"alice"}  # history lines too
    assert not tab.off_origin(open_server.url)


def test_deep_links_open_a_scope_or_a_search(open_server: Server, tab: Watched) -> None:
    page = open_scope(tab, f"{open_server.url}/?user_id=alice&q=coffee")
    expect(page.locator("#q")).to_have_value("coffee")
    expect(page.locator("#scope-shown")).to_have_text("Scope: user_id=alice")
    assert shown_memories(page)[0] == "Alice drinks espresso coffee every morning"
    assert page.locator("#memories .score").count() == len(shown_memories(page))
    assert not any("bob" in text for text in shown_memories(page))
    page = open_scope(tab, f"{open_server.url}/?user_id=bob")
    assert sorted(shown_memories(page)) == ["bob likes coffee with milk",
                                            "bob secret: the vault code is 1234"]
    page.fill("#q", "vault")
    page.click("#search-form button[type=submit]")
    expect(page).to_have_url(f"{open_server.url}/?user_id=bob&q=vault")


def test_one_scope_never_shows_another(open_server: Server, tab: Watched) -> None:
    page = open_scope(tab, f"{open_server.url}/?user_id=alice")
    seen = list(shown_memories(page))
    page.click("#older")
    expect(page.locator("#page-info")).to_have_text("page 2 of 2")
    seen += shown_memories(page)
    assert sorted(seen) == sorted(newest_first(open_server.db, "alice"))
    page.locator("button.scope[data-id='alice']").click()
    page.locator(f"button.scope[data-id={json.dumps(HOSTILE_ID)}]").click()
    expect(page.locator("#memories .memory-text")).to_have_text(["eve keeps odd ids"])


def test_hostile_text_is_shown_as_text(open_server: Server, tab: Watched) -> None:
    page = open_scope(tab, f"{open_server.url}/?user_id=alice")
    page.click("#older")
    expect(page.locator("#page-info")).to_have_text("page 2 of 2")
    assert HOSTILE in shown_memories(page)
    assert page.locator("#memories img, #memories script, #memories b").count() == 0
    open_memory(page, HOSTILE)
    cells = page.locator("#detail-metadata td").all_text_contents()
    assert sorted(cells) == sorted(json.dumps(value) for value in HOSTILE_META.values())
    assert page.locator("#detail img, #detail script").count() == 0
    expect(page.locator(f"button.scope[data-id={json.dumps(HOSTILE_ID)}] .scope-id")
           ).to_have_text(HOSTILE_ID)
    page.fill("#q", HOSTILE)
    page.click("#search-form button[type=submit]")
    expect(page.locator("#status")).to_contain_text("results for")
    assert page.evaluate("window.__pwned") is None
    assert not tab.dialogs and not tab.errors and not tab.violations


def test_every_request_stays_on_the_server(open_server: Server, tab: Watched) -> None:
    page = open_scope(tab, f"{open_server.url}/?user_id=alice&q=coffee")
    open_memory(page, "Alice drinks espresso coffee every morning")
    page.click("#clear")
    expect(page.locator("#status")).to_contain_text("newest first")
    with page.expect_download():
        page.click("#export")
    assert len(tab.requests) >= 8
    assert not tab.off_origin(open_server.url), tab.requests
    assert not tab.violations and not tab.errors


def test_headers_csrf_and_origin(open_server: Server) -> None:
    with httpx.Client(base_url=open_server.url) as client:
        page = client.get("/")
        assert page.headers["content-security-policy"] == (
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
        for name, value in (("x-content-type-options", "nosniff"), ("x-frame-options", "DENY"),
                            ("referrer-policy", "no-referrer")):
            assert page.headers[name] == value
        api = client.get("/api/memories", params={"user_id": "bob"})
        assert api.headers["cache-control"] == "no-store"
        assert not any(key.startswith("access-control") for key in api.headers)
        bobs = api.json()["results"][0]
        target = f"/api/memories/{bobs['id']}?user_id=bob"
        change = json.dumps({"text": "changed by a forged request"})
        assert client.patch(target, content=change,
                            headers={"Content-Type": "application/json"}).status_code == 403
        assert client.patch(target, content=change, headers={
            "Content-Type": "text/plain", "X-Lancemem-Page": "1"}).status_code == 403
        assert client.request("DELETE", target, headers={
            "Content-Type": "application/x-www-form-urlencoded"}).status_code == 403
        foreign = {**WRITE, "Origin": "http://evil.example"}
        assert client.patch(target, content=change, headers=foreign).status_code == 403
        assert client.post("/api/memories", content=change, headers=foreign).status_code == 403
        assert stored_one(open_server.db, bobs["id"])["memory"] == bobs["memory"]
        preflight = client.options(target, headers={
            "Origin": open_server.url, "Access-Control-Request-Method": "PATCH"})
        assert "access-control-allow-origin" not in preflight.headers
        assert client.post("/mcp", json=INITIALIZE, headers=HEADERS).status_code == 200


def test_token_login_and_binding(auth_server: Server, tab: Watched, tmp_path: Path) -> None:
    page = tab.page
    page.goto(auth_server.url + "/")
    expect(page.locator("#login")).to_be_visible()
    expect(page.locator("#app")).to_be_hidden()
    page.fill("#token", "lmk_not_a_real_token")
    page.click("#login-form button")
    expect(page.locator("#error")).to_contain_text("AUTH_001")
    expect(page.locator("#login")).to_be_visible()
    page.fill("#token", auth_server.tokens["alice"])
    page.click("#login-form button")
    expect(page.locator("#status")).to_contain_text("1 memory, newest first")
    expect(page.locator("#who")).to_have_text("alice-page")
    assert shown_memories(page) == ["alice grows tomatoes in her garden"]
    assert page.locator("button.scope").all_text_contents() == ["alice1"]
    page.screenshot(path=tmp_path / "logged-in.png")
    page.locator("button.scope[data-id='alice']").click()  # bound: it stays picked
    expect(page.locator("#scope-shown")).to_have_text("Scope: user_id=alice")
    page.goto(auth_server.url + "/?user_id=bob")  # same tab: the token is still there
    expect(page.locator("#error")).to_contain_text("AUTH_002")
    assert "Petrel" not in (page.locator("body").text_content() or "")
    page.click("#logout")
    expect(page.locator("#login")).to_be_visible()
    assert page.evaluate("sessionStorage.length") == 0
    assert not tab.off_origin(auth_server.url)


def test_the_api_is_bound_to_the_token(auth_server: Server) -> None:
    alice, reader, bob = (auth_server.tokens[name] for name in ("alice", "reader", "bob"))
    with httpx.Client(base_url=auth_server.url) as client:
        def as_(token: str, **extra: str) -> dict[str, str]:
            return {"Authorization": f"Bearer {token}", **extra}

        assert client.get("/api/memories", params={"user_id": "alice"}).status_code == 401
        assert client.get("/api/session", headers=as_("lmk_nope")).status_code == 401
        bobs = client.get("/api/memories", headers=as_(bob)).json()["results"][0]["id"]
        for path in ("/api/memories", "/api/export", "/api/search?q=boat", "/api/relations",
                     f"/api/memories/{bobs}"):
            refused = client.get(path, params={"user_id": "bob"}, headers=as_(alice))
            assert refused.status_code == 403, path
            assert refused.json()["error"]["code"] == "AUTH_002"
            assert "Petrel" not in refused.text
        assert client.get(f"/api/memories/{bobs}", headers=as_(alice)).status_code == 404
        assert "Petrel" not in client.get("/api/export", headers=as_(alice)).text
        assert "Petrel" not in client.get("/api/search", params={"q": "boat sailing"},
                                          headers=as_(alice)).text
        assert client.get("/api/scopes", headers=as_(alice)).json()["user_id"] == [
            {"id": "alice", "count": 1}]
        forged = client.patch(f"/api/memories/{bobs}", json={"text": "x"},
                              headers=as_(alice, **WRITE))
        assert forged.status_code == 404
        alices = client.get("/api/memories", headers=as_(alice)).json()["results"][0]["id"]
        read_only = client.patch(f"/api/memories/{alices}", json={"text": "x"},
                                 headers=as_(reader, **WRITE))
        assert read_only.status_code == 403 and "read-only" in read_only.text
        gone = client.request("DELETE", f"/api/memories/{alices}", content=b"{}",
                              headers=as_(reader, **WRITE))
        assert gone.status_code == 403
    assert stored_one(auth_server.db, bobs)["memory"] == "bob sails a small boat called Petrel"
    assert stored_one(auth_server.db, alices)["memory"] == "alice grows tomatoes in her garden"


def test_a_read_only_token_sees_no_edit_form(auth_server: Server, tab: Watched) -> None:
    page = tab.page
    page.goto(auth_server.url + "/")
    page.fill("#token", auth_server.tokens["reader"])
    page.click("#login-form button")
    expect(page.locator("#who")).to_contain_text("(read-only)")
    open_memory(page, "alice grows tomatoes in her garden")
    expect(page.locator("#edit-form")).to_be_hidden()
    expect(page.locator("#read-only")).to_be_visible()


def test_the_page_beside_the_sse_endpoint(tmp_path: Path, home: Path) -> None:
    with _running(["serve", "--db", str(tmp_path / "db"), "--transport", "sse", "--port", "0"],
                  home, tmp_path / "sse.log") as url, httpx.Client(base_url=url) as client:
        assert "lancemem memory browser" in client.get("/").text
        assert client.get("/api/scopes").status_code == 200
        with client.stream("GET", "/sse") as events:
            assert events.status_code == 200
            assert next(events.iter_lines()) == "event: endpoint"


def test_lancemem_ui_serves_the_page_alone(tmp_path: Path, home: Path,
                                          real_embedder: FastEmbedder) -> None:
    with Memory(store=Store(str(tmp_path / "db")), embedder=real_embedder) as memory:
        memory.add("Alice keeps bees", user_id="alice")  # `ui` opens an existing store only
    with _running(["ui", "--db", str(tmp_path / "db"), "--port", "0", "--user-id", "alice"],
                  home, tmp_path / "ui.log") as url, httpx.Client(base_url=url) as client:
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", url)
        page = client.get("/")
        assert page.status_code == 200 and "lancemem memory browser" in page.text
        assert "script-src 'self'" in page.headers["content-security-policy"]
        assert client.get("/api/scopes").json() == {
            "user_id": [{"id": "alice", "count": 1}], "agent_id": [], "run_id": []}
        assert client.get("/api/session").json()["defaults"] == {"user_id": "alice"}
        assert client.post("/mcp", json=INITIALIZE, headers=HEADERS).status_code == 404
        assert client.get("/", headers={"Host": "evil.example"}).status_code == 421
    refused = subprocess.run([sys.executable, "-m", "lancemem", "ui", "--db",
                              str(tmp_path / "db"), "--host", "0.0.0.0"], env=_env(home),
                             capture_output=True, text=True, timeout=60)
    assert refused.returncode == 1
    assert "refusing to serve the memory browser on 0.0.0.0" in refused.stderr
    assert refused.stdout == ""
