"""Paging through list_memories: the cursor rule, then the real store through a real client."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mcp import Client

from lancemem.core.errors import ValidationError
from lancemem.core.paging import decode_cursor, page_of
from tests.mcp_scenario import call, fails
from tests.test_cli import run
from tests.test_mcp_tools import make_server

EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Row:
    created_at: datetime
    id: str


rows = st.builds(Row, st.integers(0, 5).map(lambda s: EPOCH + timedelta(seconds=s)),
                 st.text("abcxyz'%*_\u0430\uff41", min_size=1, max_size=4))
# A change between two pages: add a row (anywhere in time: imports keep created_at),
# or delete the n-th row still stored.
changes = st.one_of(st.tuples(st.just("add"), rows), st.tuples(st.just("delete"), st.integers(0)))


@settings(max_examples=300, deadline=None)
@given(st.lists(rows, unique=True, max_size=40), st.integers(1, 7),
       st.lists(st.lists(changes, max_size=3), max_size=12))
def test_a_memory_there_all_along_is_listed_exactly_once(
    start: list[Row], limit: int, between: list[list[Any]]
) -> None:
    stored, seen, cursor, pages = list(start), [], None, 0
    always = set(start)
    while True:
        page = page_of(stored, limit=limit, after=decode_cursor(cursor))
        assert page.total == len(stored) and len(page.items) <= limit
        seen += page.items
        if page.next_cursor is None:
            break
        assert len(page.items) == limit
        for kind, value in between[pages] if pages < len(between) else []:
            if kind == "add" and value not in stored:
                stored.append(value)
            elif kind == "delete" and stored:
                always.discard(stored.pop(value % len(stored)))
        cursor, pages = page.next_cursor, pages + 1
    keys = [(row.created_at, row.id) for row in seen]
    assert keys == sorted(keys, reverse=True) and len(set(keys)) == len(keys)
    assert always <= set(seen)


def test_without_changes_the_pages_are_the_whole_listing_in_order() -> None:
    everything = [Row(EPOCH + timedelta(seconds=n % 3), f"id{n:02}") for n in range(10)]
    pages, cursor = [], None
    while True:
        page = page_of(everything, limit=3, after=decode_cursor(cursor))
        pages.append([row.id for row in page.items])
        if (cursor := page.next_cursor) is None:
            break
    ordered = sorted(everything, key=lambda r: (r.created_at, r.id), reverse=True)
    assert [i for p in pages for i in p] == [row.id for row in ordered]
    assert [len(p) for p in pages] == [3, 3, 3, 1]
    assert page_of(everything, limit=10, after=None).next_cursor is None


@pytest.mark.parametrize("cursor", [
    "not a cursor", "%%%", "*", "' OR 1=1 --", base64.urlsafe_b64encode(b"[1, 2]").decode(),
    base64.urlsafe_b64encode(json.dumps(["2026-01-01T00:00:00", "x"]).encode()).decode(),
    base64.urlsafe_b64encode(json.dumps(["2026-01-01T00:00:00+00:00", 5]).encode()).decode(),
    base64.urlsafe_b64encode(b"\xff\xfe").decode(), 7, ["a"],
    base64.urlsafe_b64encode(b"[" * 1000 + b"]" * 1000).decode(),  # RecursionError in json
    base64.urlsafe_b64encode(b"[" * 370 + b"]" * 370).decode(),  # nested, within the size
    base64.urlsafe_b64encode(json.dumps(["2026-01-01T00:00:00+00:00", "x" * 900]).encode())
    .decode(),
])
def test_a_cursor_list_memories_did_not_give_is_refused_with_what_to_do(cursor: Any) -> None:
    with pytest.raises(ValidationError) as caught:
        decode_cursor(cursor)
    assert "cursor" in str(caught.value)
    assert decode_cursor(None) is None and decode_cursor("") is None


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_list_memories_pages_through_1001_memories_over_the_client(
    db_path: Path, real_embedder: Any
) -> None:
    """The documented page bound (1,000) and one more, with a write between the pages."""
    server = make_server(db_path, real_embedder)
    async with Client(server) as client:
        await call(client, "add_memory", text="bob's only memory", user_id="bob")
        texts = [f"note number {n} about topic {n % 17}" for n in range(1001)]
        for start in range(0, len(texts), 250):
            await call(client, "add_memory", user_id="alice", messages=[
                {"role": "user", "content": text} for text in texts[start:start + 250]])
        first = await call(client, "list_memories", user_id="alice", limit=1000)
        assert first["total"] == 1001 and len(first["results"]) == 1000
        assert first["next_cursor"]
        newest = await call(client, "add_memory", text="added between pages", user_id="alice")
        second = await call(client, "list_memories", user_id="alice", limit=1000,
                            cursor=first["next_cursor"])
        assert second["total"] == 1002 and second["next_cursor"] is None
        listed = [item["memory"] for item in first["results"] + second["results"]]
        assert sorted(listed) == sorted(texts)
        assert newest["results"][0]["memory"] not in listed
        # Another scope's cursor position shows nothing of that scope.
        bob = await call(client, "list_memories", user_id="bob", cursor=first["next_cursor"])
        assert [item["memory"] for item in bob["results"]] == ["bob's only memory"]
        text = await fails(client, "list_memories", "VALIDATION_005", user_id="alice",
                           cursor="' OR 1=1 --")
        assert "next_cursor of the previous page" in text


def test_cli_list_says_when_more_remain_and_lists_every_page(tmp_path: Path) -> None:
    for n in range(5):
        assert run(tmp_path, "add", f"fact number {n}", "--user-id", "alice").returncode == 0
    page = run(tmp_path, "list", "--user-id", "alice", "--limit", "2", "--json")
    first = json.loads(page.stdout)
    assert first["total"] == 5 and len(first["results"]) == 2 and first["next_cursor"]
    human = run(tmp_path, "list", "--user-id", "alice", "--limit", "2")
    assert "showing 2 of 5 memories; next page: --cursor " in human.stderr
    assert human.stdout.count("fact number") == 2
    rest = json.loads(run(tmp_path, "list", "--user-id", "alice", "--limit", "10",
                          "--cursor", first["next_cursor"], "--json").stdout)
    assert len(rest["results"]) == 3 and rest["next_cursor"] is None
    every = run(tmp_path, "list", "--user-id", "alice", "--limit", "2", "--all", "--json")
    assert len(json.loads(every.stdout)["results"]) == 5 and every.stderr == ""
    listed = [i["memory"] for i in first["results"] + rest["results"]]
    assert sorted(listed) == [f"fact number {n}" for n in range(5)]
    bad = run(tmp_path, "list", "--user-id", "alice", "--cursor", "nonsense")
    assert bad.returncode == 1 and "VALIDATION_005" in bad.stderr and bad.stdout == ""
