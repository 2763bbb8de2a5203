"""Long memories are searchable everywhere in their text (issue 16): passages
cut, embedded and scored as the best of a memory's vectors, with the real
model, through every path that writes or ranks a memory."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from lancemem.core.messages import MAX_TEXT
from lancemem.memory.facade import Memory
from lancemem.memory.reindex import reindex
from lancemem.search import passages as passages_module
from lancemem.search.passages import PASSAGE_CHARS, embed_memories, split_passages
from lancemem.search.retrieval import memory_cosine
from lancemem.storage import snapshot
from lancemem.storage.meta import MetaTable
from lancemem.storage.schema import PASSAGES
from lancemem.storage.store import MEMORIES, Store
from tests.embedders import HashEmbedder
from tests.old_stores import old_memories_schema, write_old_store

FACT = "The combination of the padlock on the garden shed is 7391, set by Marguerite."
QUERY = "what is the garden shed padlock combination"
_SENTENCES = [
    "We walked along the {0} for most of the morning and stopped for coffee at noon.",
    "The weather turned {1} by the afternoon, so the plans for the {0} changed.",
    "My cousin told a long story about the {0} and the old {2} he once repaired.",
    "The train to the {0} was late again, and the conductor apologised twice.",
    "In the evening we cooked a {1} soup with beans, carrots and fresh bread.",
    "A neighbour asked whether the {2} could be borrowed for the weekend.",
    "The museum near the {0} had an exhibition about {1} maps and sailing ships.",
    "I finished reading the novel about the {2} maker who moved to the {0}.",
]
_WORDS = (["harbour", "river", "market", "cathedral", "valley", "library"],
          ["rainy", "bright", "windy", "quiet", "spiced", "foggy"],
          ["bicycle", "kettle", "violin", "telescope", "typewriter", "clock"])
DISTRACTORS = [
    "Marguerite likes to paint landscapes on Sunday mornings.",
    "The bakery on the corner sells rye bread on Fridays.",
    "The bicycle lock key is kept in the kitchen drawer.",
    "We planted tomatoes and basil beside the fence.",
    "The wifi password at the office changed on Monday.",
    "My phone's PIN was reset after the update.",
    "The boiler was serviced by a plumber in October.",
    "The car is due for its annual service in March.",
    "Grandma's recipe for apple pie uses cinnamon and nutmeg.",
    "The dentist appointment is on the fourth of June.",
    "The library closes early on Saturdays.",
    "Our flight to Lisbon leaves at seven in the morning.",
    "The neighbours' dog is called Biscuit.",
    "The electricity bill is paid by direct debit.",
    "The spare house key is with the neighbour at number 12.",
    "The lawnmower blade was sharpened last autumn.",
    "The safe in the study opens with a key, not a code.",
    "I started learning Portuguese on an app.",
    "The printer ink is cyan, magenta, yellow and black.",
    "The gym membership renews every January.",
]
# Short memories sharing the query's words: BM25's length normalisation ranks
# "shed" in ten words above "padlock combination" in 3,500 (0.29 of the best
# BM25), so in hybrid mode (0.3 words + 0.7 meaning: retrieval.py) "The shed
# roof leaks" scores 0.50 against the long memory's 0.49. Vector mode must
# still rank the long memory first with them present.
NEAR_MISSES = ["The garden needs watering twice a week in summer.",
               "The shed roof leaks when it rains heavily."]


def filler(size: int, seed: int = 0) -> str:
    """Diary-like prose of exactly ``size`` characters that never names the fact."""
    rng = random.Random(seed)
    parts: list[str] = []
    length = 0
    while length < size:
        sentence = rng.choice(_SENTENCES).format(*(rng.choice(words) for words in _WORDS))
        parts.append(sentence)
        length += len(sentence) + 1
    return " ".join(parts)[:size]


def long_text(size: int = 22_000, fact: str = FACT) -> str:
    """``size`` characters of filler ending with ``fact``."""
    return filler(size - len(fact) - 1) + " " + fact


def texts_first(memory: Memory, mode: str, user_id: str = "alice", **kw: Any) -> list[dict]:
    return memory.search(QUERY, user_id=user_id, mode=mode, **kw)["results"]


def fill(memory: Memory, text: str, user_id: str = "alice", *, near: bool = True) -> str:
    """The distractors (with the near misses unless ``near`` is False), then ``text``."""
    distractors = DISTRACTORS + NEAR_MISSES if near else DISTRACTORS
    memory.add_many([{"text": d, "user_id": user_id} for d in distractors],
                    batch_size=64, progress=None)
    return memory.add(text, user_id=user_id)["results"][0]["id"]


@pytest.mark.parametrize("mode", ["vector", "hybrid"])
def test_a_fact_at_the_end_of_a_long_memory_is_found_first(memory: Memory, mode: str) -> None:
    text = long_text()
    long_id = fill(memory, text, near=mode == "vector")
    bob_id = memory.add(text, user_id="bob")["results"][0]["id"]
    found = texts_first(memory, mode)
    assert found[0]["id"] == long_id
    assert all(item["user_id"] == "alice" and item["id"] != bob_id for item in found)
    if mode == "vector":  # the score is the best passage's cosine, not the head's -0.05
        assert found[0]["score"] > 0.5
    bob_found = memory.search(QUERY, user_id="bob", mode=mode)["results"]
    assert [item["id"] for item in bob_found] == [bob_id]


def test_the_score_is_the_best_passage_cosine(memory: Memory, real_embedder: Any) -> None:
    text = long_text()
    long_id = fill(memory, text)
    query = np.asarray(real_embedder.embed_query(QUERY), dtype=np.float32)
    pieces = np.asarray(real_embedder.embed_documents(split_passages(text)), dtype=np.float32)
    head = np.asarray(real_embedder.embed_documents([text])[0], dtype=np.float32)
    cosines = pieces @ query / np.linalg.norm(pieces, axis=1) / np.linalg.norm(query)
    expected = max(float(cosines.max()), float(head @ query / np.linalg.norm(head)
                                               / np.linalg.norm(query)))
    found = memory.search(QUERY, user_id="alice", mode="vector")["results"]
    assert found[0]["id"] == long_id
    assert found[0]["score"] == pytest.approx(expected, abs=1e-4)


@pytest.mark.parametrize("mode", ["vector", "hybrid"])
def test_scopes_past_flat_rows_find_it_through_lance_scans(
        memory: Memory, mode: str, monkeypatch: pytest.MonkeyPatch) -> None:
    text = long_text()
    long_id = fill(memory, text, near=mode == "vector")
    memory.add(text, user_id="bob")
    whole = texts_first(memory, mode)
    monkeypatch.setattr(snapshot, "FLAT_ROWS", 5)
    scanned = texts_first(memory, mode)
    assert scanned[0]["id"] == long_id
    assert [i["id"] for i in scanned] == [i["id"] for i in whole]
    assert [i["score"] for i in scanned] == pytest.approx([i["score"] for i in whole], abs=1e-5)


def test_update_re_embeds_the_passages(memory: Memory) -> None:
    long_id = fill(memory, long_text())
    moved = "The canoe paddles are stored upside down under the back porch."
    memory.update(long_id, text=long_text(fact=moved), user_id="alice")
    assert texts_first(memory, "vector")[0]["id"] != long_id
    found = memory.search("where are the canoe paddles stored", user_id="alice",
                          mode="vector")["results"]
    assert found[0]["id"] == long_id
    memory.update(long_id, text="a short note now", user_id="alice")
    row = memory.store.select(MEMORIES, f"id = '{long_id}'")[0]
    assert row[PASSAGES] is None


def test_metadata_only_update_keeps_the_passages(memory: Memory) -> None:
    long_id = fill(memory, long_text())
    memory.update(long_id, metadata={"topic": "diary"}, user_id="alice")
    assert texts_first(memory, "vector")[0]["id"] == long_id


def test_text_at_exactly_the_bound_is_searchable_to_its_end(memory: Memory) -> None:
    text = long_text(MAX_TEXT)
    assert len(text) == MAX_TEXT
    long_id = fill(memory, text, near=False)
    for mode in ("vector", "hybrid"):
        assert texts_first(memory, mode)[0]["id"] == long_id, mode


def test_deleted_long_memory_is_gone_from_search(memory: Memory) -> None:
    long_id = fill(memory, long_text())
    memory.delete(long_id, user_id="alice")
    assert long_id not in {i["id"] for i in texts_first(memory, "vector")}


def test_export_and_import_embed_the_passages(memory: Memory, tmp_path: Path,
                                              real_embedder: Any) -> None:
    long_id = fill(memory, long_text())
    lines = list(memory.export(user_id="alice"))
    with Memory(store=Store(str(tmp_path / "other")), embedder=real_embedder) as other:
        other.restore(lines, user_id="alice")
        assert texts_first(other, "vector")[0]["id"] == long_id


def _old_layout_store(db_path: Path, embedder: Any, text: str) -> None:
    """A store as version 3 wrote it: no passages column, one vector per memory."""
    old = old_memories_schema(embedder.dim, 3)
    stamp = pa.scalar(0, pa.timestamp("us", tz="UTC")).as_py()
    rows = []
    for n, memory_text in enumerate([*DISTRACTORS, text]):  # no near misses: hybrid below
        row = {name: None for name in old.names}
        row.update(id=f"m{n}", memory=memory_text, search_text=memory_text, user_id="alice",
                   metadata="{}", meta_str="{}", meta_num="{}", meta_tags="{}",
                   created_at=stamp, updated_at=stamp,
                   vector=embedder.embed_documents([memory_text])[0])
        rows.append(row)
    write_old_store(db_path, embedder, 3, rows)


def test_an_old_store_migrates_and_reindex_fills_its_passages(
        db_path: Path, real_embedder: Any) -> None:
    text = long_text()
    _old_layout_store(db_path, real_embedder, text)
    with Memory(store=Store(str(db_path)), embedder=real_embedder) as old:
        assert texts_first(old, "vector")[0]["id"] != "m20"  # the head alone misses it
        assert old.store.meta()["schema_version"] == "4"
        assert old.get_all(user_id="alice", limit=100)["total"] == 21
    reindex(Store(str(db_path)), real_embedder)
    with Memory(store=Store(str(db_path)), embedder=real_embedder) as done:
        for mode in ("vector", "hybrid"):
            assert texts_first(done, mode)[0]["id"] == "m20", mode
        rows = {r["id"]: r[PASSAGES] for r in done.store.select(MEMORIES, None)}
        assert rows["m0"] is None and len(rows["m20"]) == len(split_passages(text))


def test_reindex_to_another_model_fills_passages(db_path: Path, real_embedder: Any) -> None:
    with Memory(store=Store(str(db_path)), embedder=real_embedder) as first:
        long_id = fill(first, long_text())
    other = HashEmbedder(dim=16)
    reindex(Store(str(db_path)), other)
    rows = {r["id"]: r for r in Store(str(db_path)).select(MEMORIES, None)}
    assert len(rows[long_id][PASSAGES]) == len(split_passages(long_text()))
    assert len(rows[long_id][PASSAGES][0]) == 16
    assert all(rows[i][PASSAGES] is None for i in rows if i != long_id)


def test_passages_cover_the_text_in_bounded_overlapping_windows() -> None:
    for size in (PASSAGE_CHARS + 1, 5_000, 22_000, MAX_TEXT):
        text = long_text(size)
        pieces = split_passages(text)
        assert all(0 < len(p) <= PASSAGE_CHARS for p in pieces)
        at = 0
        for piece in pieces:  # each starts inside the one before it, in order
            start = text.find(piece, max(0, at - PASSAGE_CHARS))
            assert 0 <= start <= at
            at = start + len(piece)
        assert at == len(text) and pieces[-1].endswith(FACT)
    assert split_passages("short") == ["short"]
    unbroken = "x" * 2000  # no space anywhere: cut hard, still covered
    assert "".join(p for p in split_passages(unbroken)) .count("x") >= 2000


def test_short_memories_get_no_passages_and_one_embedding_call() -> None:
    embedder = HashEmbedder()
    out = embed_memories(embedder, ["a short one", long_text(3_000), "another"])
    assert [p is None for _, p in out] == [True, False, True]
    assert len(out[1][1] or []) == len(split_passages(long_text(3_000)))
    assert embedder.calls == 1


def test_memory_cosine_is_the_best_over_a_memory_vectors() -> None:
    vectors = np.asarray([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], dtype=np.float32)
    query = [0.0, 1.0]
    assert memory_cosine(vectors, query).tolist() == pytest.approx([0.0, 1.0, 2 ** -0.5])
    owners = np.asarray([0, 0, 2])
    extra = np.asarray([[-1.0, 0.0], [1.0, 3.0], [0.0, -1.0]], dtype=np.float32)
    assert memory_cosine(vectors, query, (owners, extra)).tolist() == pytest.approx(
        [3 / 10 ** 0.5, 1.0, 2 ** -0.5])


def test_passage_size_fits_what_the_model_sees() -> None:
    assert passages_module.PASSAGE_CHARS < 766  # the densest measured 254 word pieces


@pytest.mark.parametrize("mode", ["vector", "hybrid"])
def test_a_large_indexed_and_resorted_scope_still_finds_it(
        memory: Memory, mode: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Past LARGE_SCOPE, optimize re-sorts the rows by scope (locality.py) and
    builds the vector index: the passages survive the rewrite, and the
    index path still ranks the long memory by its best passage."""
    from lancemem.storage import vector_index

    monkeypatch.setattr(snapshot, "FLAT_ROWS", 10)
    monkeypatch.setattr(vector_index, "LARGE_SCOPE", 10)
    long_id = fill(memory, long_text(), near=mode == "vector")
    memory.add("Bob keeps his padlock codes in a notebook", user_id="bob")
    memory.store.optimize()
    table = memory.store.table(MEMORIES)
    assert vector_index.has_vector_index(table)
    stored = table.to_arrow().to_pylist()
    assert [row["id"] for row in stored if row[PASSAGES]] == [long_id]
    found = texts_first(memory, mode)
    assert found[0]["id"] == long_id
    assert all(item["memory"] != "Bob keeps his padlock codes in a notebook" for item in found)


def test_a_store_scans_passages_once_it_holds_a_long_memory(
        memory: Memory, real_embedder: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Until a memory with passages is written (here: a short one updated to a
    long text), no search reads or scans the passages column; from then on
    every Memory on the store does, one opened before included."""
    scanned: list[str] = []
    real_nearest = snapshot.Snapshot._nearest

    def recording(self: snapshot.Snapshot, column: str, *args: Any, **kw: Any) -> Any:
        scanned.append(column)
        return real_nearest(self, column, *args, **kw)

    monkeypatch.setattr(snapshot.Snapshot, "_nearest", recording)
    monkeypatch.setattr(snapshot, "FLAT_ROWS", 5)
    short_id = fill(memory, "The shed has a padlock.")
    with Memory(store=Store(memory.store.uri), embedder=real_embedder) as other:
        for reader in (memory, other):
            assert texts_first(reader, "vector")
        assert scanned and PASSAGES not in scanned
        assert not MetaTable(memory.store).uses_long_memories()
        memory.update(short_id, text=long_text(), user_id="alice")
        assert MetaTable(memory.store).uses_long_memories()
        for reader in (memory, other):
            scanned.clear()
            found = texts_first(reader, "vector")
            assert found[0]["id"] == short_id and found[0]["score"] > 0.5
            assert PASSAGES in scanned
