"""Search modes: fusion logic, and keyword/hybrid search on real LanceDB with the real model."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lancemem.core.config import MODES, check_mode, load_settings
from lancemem.core.errors import ValidationError
from lancemem.core.records import document_text
from lancemem.memory.facade import Memory
from lancemem.search.retrieval import KEYWORD_SHARE, cosine_scores, fuse, top_cosine
from lancemem.storage import snapshot
from lancemem.storage.store import MEMORIES, SEARCH_TEXT, Store
from tests.old_stores import old_memories_schema, write_old_store

# --- pure logic ---------------------------------------------------------------


def test_one_ranking_keeps_its_order_and_its_own_scale() -> None:
    words = fuse([("a", 6.0), ("b", 3.0), ("c", 1.5)], {}, keyword_share=1.0)
    assert words == [("a", 1.0), ("b", 0.5), ("c", 0.25)]  # BM25 over the best BM25
    meaning = fuse([], {"c": 0.9, "b": 0.4, "a": -0.2}, ["c", "b", "a"], keyword_share=0.0)
    assert meaning == [("c", 0.9), ("b", 0.4), ("a", 0.0)]  # the cosine, clipped at 0


def test_hybrid_score_is_the_documented_mix() -> None:
    share = KEYWORD_SHARE["hybrid"]
    fused = dict(fuse([("k", 8.0), ("both", 4.0)], {"k": 0.1, "both": 0.7, "v": 0.8},
                      ["v", "both", "k"], keyword_share=share))
    assert math.isclose(fused["k"], share * 1.0 + (1 - share) * 0.1)
    assert math.isclose(fused["both"], share * 0.5 + (1 - share) * 0.7)
    assert math.isclose(fused["v"], (1 - share) * 0.8)  # no shared word: words = 0


def test_a_strong_keyword_hit_beats_a_close_meaning_and_agreement_wins() -> None:
    share = KEYWORD_SHARE["hybrid"]
    assert fuse([("k", 5.0)], {"k": 0.5, "v": 0.6}, ["v", "k"], keyword_share=share)[0][0] == "k"
    order = fuse([("k", 5.0), ("both", 4.0)], {"k": 0.2, "both": 0.6, "v": 0.65},
                 ["v", "both", "k"], keyword_share=share)
    assert [key for key, _ in order] == ["both", "v", "k"]  # 0.66, 0.455, 0.44


def test_ties_keep_the_keyword_order_first() -> None:
    order = fuse([("a", 2.0), ("b", 2.0)], {"a": 0.0, "b": 0.0, "c": 1.0},
                 ["c", "b", "a"], keyword_share=0.5)
    assert order == [("a", 0.5), ("b", 0.5), ("c", 0.5)]


@settings(max_examples=300, deadline=None)
@given(hits=st.lists(st.floats(0.0, 50.0), max_size=8),
       cosines=st.lists(st.floats(-1.0, 1.0), max_size=8), share=st.floats(0.0, 1.0))
def test_scores_are_relevances_in_0_1_best_first(hits: list[float], cosines: list[float],
                                                share: float) -> None:
    keyword = sorted(((f"k{n}", bm25) for n, bm25 in enumerate(hits)), key=lambda h: -h[1])
    vector = [f"v{n}" for n in range(len(cosines))]
    known = dict(zip(vector, cosines, strict=True)) | {key: 0.3 for key, _ in keyword}
    fused = fuse(keyword, known, vector, keyword_share=share)
    scores = [score for _, score in fused]
    assert all(0.0 <= score <= 1.0 for score in scores)
    assert scores == sorted(scores, reverse=True)
    expected = {key for key, _ in keyword} | (set(vector) if share < 1.0 else set())
    assert [key for key, _ in fused] == list(dict(fused))  # each candidate once
    assert set(dict(fused)) == expected


def test_modes_are_checked_and_normalised() -> None:
    assert [check_mode(m) for m in (" Hybrid", "VECTOR", "keyword ")] == [
        "hybrid", "vector", "keyword"]
    for bad in ("bm25", "", None, 3, ["hybrid"]):
        with pytest.raises(ValidationError, match="choose one of hybrid, vector, keyword"):
            check_mode(bad)


def test_cosine_scores() -> None:
    vectors = np.array([[0.0, 2.0], [2.0, 2.0], [0.0, 0.0]], dtype=np.float32)
    scores = cosine_scores(vectors, [1.0, 1.0])
    assert [round(x, 6) for x in scores] == [round(1 / math.sqrt(2), 6), 1.0, 0.0]
    assert cosine_scores(np.zeros((0, 2), dtype=np.float32), [1.0, 0.0]) == []


def test_top_cosine_orders_by_similarity_ties_in_row_order() -> None:
    vectors = np.array([[1.0, 0.0], [0.0, 1.0], [2.0, 0.0], [1.0, 1.0]], dtype=np.float32)
    best, scores = top_cosine(vectors, [1.0, 0.0], 3)
    assert best == [0, 2, 3]  # rows 0 and 2 tie at 1.0: row order decides
    assert [round(x, 6) for x in scores] == [1.0, 0.0, 1.0, round(1 / math.sqrt(2), 6)]
    assert top_cosine(np.zeros((0, 2), dtype=np.float32), [1.0, 0.0], 3) == ([], [])


def test_document_text_puts_the_actor_first() -> None:
    assert document_text("I adopted a dog", "Caroline") == "Caroline: I adopted a dog"
    assert document_text("I adopted a dog", None) == "I adopted a dog"


def test_search_mode_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings({}).search_mode == "hybrid"
    monkeypatch.setenv("LANCEMEM_SEARCH_MODE", "Keyword")
    assert load_settings({}).search_mode == "keyword"
    monkeypatch.setenv("LANCEMEM_SEARCH_MODE", "semantic")
    with pytest.raises(ValidationError, match="unknown search mode 'semantic'"):
        load_settings({})


# --- real store, real model -------------------------------------------------------


def texts(result: dict[str, Any]) -> list[str]:
    return [item["memory"] for item in result["results"]]


def test_keyword_search_matches_words_and_actors(memory: Memory) -> None:
    memory.add("I adopted a puppy last spring", user_id="u", actor_id="Caroline")
    memory.add("I adopted a kitten from the shelter", user_id="u", actor_id="Melanie")
    memory.add("The quarterly report is due on Friday", user_id="u")
    found = memory.search("What did Caroline adopt?", user_id="u", mode="keyword")
    assert texts(found)[0] == "I adopted a puppy last spring"
    # Only memories sharing a word (stemmed: adopt/adopted) come back.
    assert "The quarterly report is due on Friday" not in texts(found)
    assert texts(memory.search("What did Caroline adopt?", user_id="u"))[0] == (
        "I adopted a puppy last spring")


def test_hybrid_finds_what_only_one_ranking_finds(memory: Memory) -> None:
    memory.add("Order XK-4471 shipped to the Berlin office", user_id="u")
    memory.add("She enjoys long walks by the sea at dawn", user_id="u")
    # A code only keywords can match, a paraphrase only meaning can match.
    assert texts(memory.search("XK-4471", user_id="u", limit=1))[0].startswith("Order XK-4471")
    assert texts(memory.search("strolling along the beach early in the morning",
                               user_id="u", limit=1)) == [
        "She enjoys long walks by the sea at dawn"]
    assert texts(memory.search("strolling along the beach early in the morning",
                               user_id="u", mode="keyword")) == []


def test_every_mode_stays_in_scope_and_applies_filters(memory: Memory) -> None:
    memory.add("blue bicycle with a basket", user_id="alice", metadata={"kind": "thing"})
    memory.add("blue bicycle race on Sunday", user_id="alice", metadata={"kind": "event"})
    memory.add("blue bicycle stolen", user_id="bob", metadata={"kind": "thing"})
    memory.add("blue bicycle in the garage", user_id="alice", agent_id="other")
    for mode in MODES:
        found = memory.search("blue bicycle", user_id="alice", filters={"kind": "thing"},
                              mode=mode)
        assert texts(found) == ["blue bicycle with a basket"], mode
        assert all(item["user_id"] == "alice" for item in found["results"])


def test_every_mode_orders_by_its_score_and_threshold_filters_on_it(
        memory: Memory, real_embedder: Any) -> None:
    """Results come best first by ``score`` (a relevance in [0, 1]); the vector
    score is the clipped cosine; a threshold keeps exactly the results scoring
    at least it, so a strong keyword hit with a low cosine survives one in
    hybrid (it used to be dropped: hybrid showed the cosine)."""
    texts_ = ["Order XK-4471 shipped to the Berlin office",
              "Invoice XK-4471 was paid late", "She enjoys long walks by the sea at dawn",
              "The parcel went out to Germany yesterday", "Berlin is cold in January"]
    memory.add_many({"text": text, "user_id": "u"} for text in texts_)
    query = "where did XK-4471 ship?"
    for mode in MODES:
        found = memory.search(query, user_id="u", mode=mode, limit=10)["results"]
        scores = [item["score"] for item in found]
        assert found and scores == sorted(scores, reverse=True), (mode, scores)
        assert all(0.0 <= score <= 1.0 for score in scores), (mode, scores)
        for cut in sorted(set(scores)):
            kept = memory.search(query, user_id="u", mode=mode, threshold=cut)["results"]
            assert [item["id"] for item in kept] == [
                item["id"] for item in found if item["score"] >= cut], (mode, cut)
    vector = real_embedder.embed_query(query)
    by_meaning = memory.search(query, user_id="u", mode="vector")["results"]
    cosines = cosine_scores(real_embedder.embed_documents([i["memory"] for i in by_meaning]),
                            vector)
    assert all(math.isclose(item["score"], max(0.0, cosine), abs_tol=1e-4)
               for item, cosine in zip(by_meaning, cosines, strict=True))
    keyword = memory.search(query, user_id="u", mode="keyword")["results"]
    assert keyword[0]["score"] == 1.0  # the best keyword match of the query
    hybrid = {item["memory"]: item["score"]
              for item in memory.search(query, user_id="u", mode="hybrid")["results"]}
    code_hit = "Invoice XK-4471 was paid late"
    cosine = cosine_scores(real_embedder.embed_documents([code_hit]), vector)[0]
    assert hybrid[code_hit] > cosine + 0.03  # its shared words count, not its cosine alone
    between = (cosine + hybrid[code_hit]) / 2
    kept = memory.search(query, user_id="u", mode="hybrid", threshold=between)
    assert code_hit in texts(kept)


def test_a_threshold_outside_0_1_is_refused_saying_the_range(memory: Memory) -> None:
    for bad in (-0.5, 1.5, float("nan")):
        with pytest.raises(ValidationError, match="use a threshold from 0 to 1"):
            memory.search("anything", user_id="u", threshold=bad)


def test_keyword_index_follows_updates_deletes_and_compaction(memory: Memory) -> None:
    kept = memory.add("walnut cake recipe", user_id="u")["results"][0]["id"]
    gone = memory.add("walnut bread recipe", user_id="u")["results"][0]["id"]
    memory.store.optimize()  # folds the rows into the full-text index
    memory.add("walnut salad recipe", user_id="u")  # written after: scanned unindexed
    memory.delete(gone, user_id="u")
    memory.update(kept, text="chocolate cake recipe", user_id="u")
    assert texts(memory.search("walnut", user_id="u", mode="keyword")) == ["walnut salad recipe"]
    assert texts(memory.search("chocolate", user_id="u", mode="keyword")) == [
        "chocolate cake recipe"]
    memory.store.optimize()
    assert texts(memory.search("walnut", user_id="u", mode="keyword")) == ["walnut salad recipe"]


def test_query_syntax_is_plain_words(memory: Memory) -> None:
    memory.add("the budget meeting moved to Tuesday", user_id="u")
    for query in ('budget AND "', "budget' OR '1'='1", "(budget", "budget*", "NOT budget",
                  "+budget -meeting", "budget~2", "\\", "the of and"):
        found = memory.search(query, user_id="u", mode="keyword")
        assert all(item["user_id"] == "u" for item in found["results"]), query
    assert texts(memory.search("budget' OR '1'='1", user_id="u", mode="keyword")) == [
        "the budget meeting moved to Tuesday"]


def test_default_mode_comes_from_the_memory(db_path: Path, real_embedder: Any) -> None:
    memory = Memory(store=Store(str(db_path)), embedder=real_embedder, search_mode="keyword")
    memory.add("gardening tips for tomatoes", user_id="u")
    memory.add("how to grow vegetables at home", user_id="u")
    assert texts(memory.search("tomatoes", user_id="u")) == ["gardening tips for tomatoes"]
    assert len(memory.search("tomatoes", user_id="u", mode="vector")["results"]) == 2
    with pytest.raises(ValidationError, match="unknown search mode"):
        memory.search("tomatoes", user_id="u", mode="fuzzy")


def test_version_1_store_gains_search_text(db_path: Path, real_embedder: Any) -> None:
    legacy = old_memories_schema(real_embedder.dim, 1)
    old = Memory(store=Store(str(db_path)), embedder=real_embedder)
    rows = []
    for text, actor in (("I sold my old piano", "Dana"), ("I bought a violin", None)):
        row = {name: None for name in legacy.names}
        row.update(id=text, memory=text, user_id="u", actor_id=actor, metadata="{}",
                   meta_str="{}", meta_num="{}", meta_tags="{}",
                   created_at=pa.scalar(0, pa.timestamp("us", tz="UTC")).as_py(),
                   updated_at=pa.scalar(0, pa.timestamp("us", tz="UTC")).as_py(),
                   vector=real_embedder.embed_documents([text])[0])
        rows.append(row)
    write_old_store(db_path, real_embedder, 1, rows)
    old.ensure_open()
    stored = {r["id"]: r[SEARCH_TEXT] for r in old.store.select(MEMORIES, None)}
    assert stored == {"I sold my old piano": "Dana: I sold my old piano",
                      "I bought a violin": "I bought a violin"}
    assert texts(old.search("Dana piano", user_id="u", mode="keyword")) == ["I sold my old piano"]
    assert texts(old.search("piano", user_id="u", mode="vector"))[0] == "I sold my old piano"
    assert old.store.meta()["schema_version"] == "4"


def test_scopes_too_large_to_read_whole_rank_alike(memory: Memory,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Past FLAT_ROWS a scope is ranked by Lance's own exact scan; same results."""
    topics = ["river", "garden", "violin", "salad", "mountain", "invoice", "puppy"]
    memory.add_many({"text": f"note {n} about the {topics[n % 7]} and the {topics[n % 5]}",
                     "user_id": "u"} for n in range(70))
    memory.add("note about the river and the garden", user_id="other")
    queries = [("river garden", 5), ("a song played on strings", 60), ("puppy", 10)]

    def run() -> list[list[tuple[str, float]]]:
        return [[(item["id"], item["score"]) for item in
                 memory.search(query, user_id="u", mode=mode, limit=limit)["results"]]
                for query, limit in queries for mode in MODES]

    read_whole = run()
    calls: list[int] = []
    scan = snapshot.Snapshot.nearest

    def counted(self: snapshot.Snapshot, *args: Any, **kwargs: Any) -> snapshot.Ranked:
        calls.append(1)
        return scan(self, *args, **kwargs)

    monkeypatch.setattr(snapshot, "FLAT_ROWS", 10)
    monkeypatch.setattr(snapshot.Snapshot, "nearest", counted)
    for by_lance, whole in zip(run(), read_whole, strict=True):
        assert [memory_id for memory_id, _ in by_lance] == [memory_id for memory_id, _ in whole]
        assert all(math.isclose(a, b, abs_tol=1e-5)  # float32 sums in another order
                   for (_, a), (_, b) in zip(by_lance, whole, strict=True))
    assert len(calls) == 2 * len(queries)  # the vector and hybrid searches
    assert all(len(found) == min(limit, 70) for found, (_, limit)
               in zip(read_whole[1::3], queries, strict=True))


def test_search_sees_other_handles_writes_at_once(db_path: Path, real_embedder: Any) -> None:
    reader = Memory(store=Store(str(db_path)), embedder=real_embedder)
    writer = Memory(store=Store(str(db_path)), embedder=real_embedder)
    writer.add("the spare key is under the blue flowerpot", user_id="u")
    for mode in MODES:
        assert texts(reader.search("spare key", user_id="u", mode=mode)) == [
            "the spare key is under the blue flowerpot"], mode
    memory_id = writer.search("spare key", user_id="u")["results"][0]["id"]
    writer.update(memory_id, text="the spare key is with the neighbour", user_id="u")
    assert texts(reader.search("spare key", user_id="u")) == [
        "the spare key is with the neighbour"]
    writer.delete(memory_id, user_id="u")
    for mode in MODES:
        assert reader.search("spare key", user_id="u", mode=mode)["results"] == [], mode


def test_vector_matrix_keeps_one_row_per_row_when_a_vector_is_missing() -> None:
    # During a reindex some vectors are null; the matrix must stay aligned with
    # the table's rows (a null skipped would shift every later vector up).
    column = pa.array([[1.0, 2.0], None, [3.0, 4.0]], type=pa.list_(pa.float32(), 2))
    matrix = snapshot.vector_matrix(pa.table({"vector": column}))
    assert matrix.tolist() == [[1.0, 2.0], [0.0, 0.0], [3.0, 4.0]]
    full = pa.array([[1.0, 2.0], [3.0, 4.0]], type=pa.list_(pa.float32(), 2))
    assert snapshot.vector_matrix(pa.table({"vector": full})).tolist() == [[1.0, 2.0],
                                                                          [3.0, 4.0]]
