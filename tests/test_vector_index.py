"""Big scopes: the ANN index maintenance builds once a scope is too large to
read whole, on real LanceDB (a small synthetic store: thresholds lowered)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest

from lancemem.memory.facade import Memory
from lancemem.memory.reindex import reindex
from lancemem.storage import snapshot, vector_index
from lancemem.storage.schema import MEMORIES
from lancemem.storage.store import Store

DIM = 64
LARGE = 400  # the lowered LARGE_SCOPE / FLAT_ROWS


class ClusteredVectors:
    """A deterministic embedder with structure like a real model's: a text's
    first word picks one of 40 centres, the rest of it adds noise."""

    model_name = "test/clustered"
    dim = DIM
    _centres = np.random.default_rng(7).standard_normal((40, DIM)).astype(np.float32)

    def vector(self, text: str) -> np.ndarray:
        seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
        noise = np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)
        first = text.split()[0]
        centre = self._centres[int(first[1:]) % 40 if first[1:].isdigit() else seed % 40]
        v = centre + 0.7 * noise
        return v / np.linalg.norm(v)

    def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        return [self.vector(text).tolist() for text in texts]

    def embed_query(self, text: str) -> list[float]:
        return self.vector(text).tolist()


@pytest.fixture
def big(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Memory]:
    monkeypatch.setattr(snapshot, "FLAT_ROWS", LARGE)
    monkeypatch.setattr(vector_index, "LARGE_SCOPE", LARGE)
    with Memory(store=Store(str(tmp_path / "db"), auto_compact=False),
                embedder=ClusteredVectors()) as memory:  # type: ignore[arg-type]
        memory.add_many({"text": f"c{n % 40} note {n}", "user_id": "big"}
                        for n in range(3_000))
        memory.add_many({"text": f"c{n % 40} other {n}", "user_id": "small"}
                        for n in range(300))
        yield memory


def exact_top(embedder: ClusteredVectors, texts: list[str], query: str, k: int) -> list[str]:
    matrix = np.stack([embedder.vector(text) for text in texts])
    order = np.argsort(-(matrix @ embedder.vector(query)), kind="stable")[:k]
    return [texts[i] for i in order]


def test_a_large_scope_gets_the_index_and_keeps_recall(big: Memory) -> None:
    table = big.store.table(MEMORIES)
    assert not vector_index.has_vector_index(table)
    big.store.optimize()
    assert vector_index.has_vector_index(table)
    embedder = ClusteredVectors()
    texts = [f"c{n % 40} note {n}" for n in range(3_000)]
    plan = big.store.open_dataset(MEMORIES).scanner(
        filter="user_id = 'big'", prefilter=True,
        nearest={"column": "vector", "q": embedder.vector("c1 x"), "k": 10,
                 **vector_index.nearest_options()}).explain_plan()
    assert "ANN" in plan, plan  # the large-scope query goes through the index
    recalls = []
    for n in range(40):
        query = f"c{n} query {n * 7}"
        found = big.search(query, user_id="big", mode="vector", limit=10)["results"]
        assert all(item["user_id"] == "big" for item in found)
        wanted = exact_top(embedder, texts, query, 10)
        recalls.append(len({item["memory"] for item in found} & set(wanted)) / 10)
        scores = [item["score"] for item in found]
        assert scores == sorted(scores, reverse=True)
    assert float(np.mean(recalls)) >= 0.95, recalls


def test_small_scopes_stay_exact_and_new_rows_are_found_before_reindexing(big: Memory) -> None:
    big.store.optimize()
    embedder = ClusteredVectors()
    small = [f"c{n % 40} other {n}" for n in range(300)]
    for n in range(10):
        query = f"c{n} other probe {n}"
        found = big.search(query, user_id="small", mode="vector", limit=10)["results"]
        assert [item["memory"] for item in found] == exact_top(embedder, small, query, 10)
    # A memory added after the build is not in the index yet: still found at once.
    added = "c3 note written after the index was built"
    big.add(added, user_id="big")
    found = big.search(added, user_id="big", mode="vector", limit=3)["results"]
    assert found[0]["memory"] == added
    assert big.search(added, user_id="small", mode="vector", limit=3)["results"][0][
        "memory"] != added


def test_no_index_while_every_scope_is_small(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(snapshot, "FLAT_ROWS", LARGE)
    monkeypatch.setattr(vector_index, "LARGE_SCOPE", LARGE)
    with Memory(store=Store(str(tmp_path / "db"), auto_compact=False),
                embedder=ClusteredVectors()) as memory:  # type: ignore[arg-type]
        memory.add_many({"text": f"c{n % 40} note {n}", "user_id": f"u{n % 10}"}
                        for n in range(2_000))  # 2,000 rows, 200 per scope
        memory.store.optimize()
        assert not vector_index.has_vector_index(memory.store.table(MEMORIES))


class OtherModel(ClusteredVectors):
    """Another model of another size: a reindex replaces every vector."""

    model_name = "test/clustered-48"
    dim = 48

    def vector(self, text: str) -> np.ndarray:
        return super().vector(text)[:48] / np.linalg.norm(super().vector(text)[:48])


def test_a_reindex_drops_the_old_index_and_maintenance_builds_a_new_one(big: Memory) -> None:
    big.store.optimize()
    assert vector_index.has_vector_index(big.store.table(MEMORIES))
    big.close()
    store = Store(big.store.uri, auto_compact=False)
    assert reindex(store, OtherModel()) == 3_300  # type: ignore[arg-type]
    store.optimize()
    assert vector_index.has_vector_index(store.table(MEMORIES))
    with Memory(store=store, embedder=OtherModel()) as again:  # type: ignore[arg-type]
        texts = [f"c{n % 40} note {n}" for n in range(3_000)]
        query = "c5 query 35"
        found = again.search(query, user_id="big", mode="vector", limit=10)["results"]
        wanted = exact_top(OtherModel(), texts, query, 10)
        assert len({item["memory"] for item in found} & set(wanted)) >= 9


def test_a_scope_found_large_is_not_read_whole_again(big: Memory,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Finding out a scope is too large reads FLAT_ROWS vectors; the next
    search of it goes to Lance at once (and ranks the same)."""
    reads: list[str] = []
    original = snapshot.Snapshot.scope_vectors

    def counted(self: snapshot.Snapshot, where: str) -> object:
        reads.append(where)
        return original(self, where)

    monkeypatch.setattr(snapshot.Snapshot, "scope_vectors", counted)
    first = big.search("c4 probe", user_id="big", mode="vector")["results"]
    again = big.search("c4 probe", user_id="big", mode="hybrid")["results"]
    assert len(reads) == 1
    assert big.search("c4 probe", user_id="big", mode="vector")["results"] == first
    assert again and all(item["user_id"] == "big" for item in again)
    big.search("c4 probe", user_id="small", mode="vector")
    big.search("c4 probe", user_id="small", mode="vector")
    assert len(reads) == 3  # a small scope is read whole every time


def test_the_read_cache_grows_to_hold_the_vector_index(big: Memory) -> None:
    """An HNSW index larger than the read cache is reloaded on every query
    (89 ms instead of 9.6 at 100,000 rows): once maintenance builds one, the
    next read sizes the cache for it, and the estimate matches the files."""
    from lancemem.storage import connection

    big.search("c1 before", user_id="big", mode="vector")
    assert big.store._read_cache_bytes == connection.READ_INDEX_CACHE_BYTES
    big.store.optimize()
    big.search("c1 after", user_id="big", mode="vector")
    dataset = big.store.dataset(MEMORIES)
    [index] = [i for i in dataset.list_indices() if i["fields"] == ["vector"]]
    on_disk = sum(f.stat().st_size for f in
                  (Path(big.store.uri) / "memories.lance" / "_indices" / index["uuid"]).iterdir())
    estimate = vector_index.index_cache_bytes(dataset)
    assert on_disk <= estimate <= 2 * on_disk, (on_disk, estimate)
    assert big.store._read_cache_bytes >= connection.READ_INDEX_CACHE_BYTES + estimate
    found = big.search("c1 after", user_id="big", mode="vector", limit=10)["results"]
    assert len(found) == 10 and all(item["user_id"] == "big" for item in found)


def test_a_large_scope_that_is_a_small_part_of_the_table_is_searched_whole(
        big: Memory) -> None:
    """The index is first searched postfiltered (cheap when the scope is most
    of the table); a large scope that is a small part of it gets too few of
    its own rows that way and is searched again with the prefilter."""
    texts = [f"c{n % 40} mid {n}" for n in range(450)]  # past LARGE, 12% of the rows
    big.add_many({"text": text, "user_id": "mid"} for text in texts)
    big.store.optimize()
    assert vector_index.has_vector_index(big.store.table(MEMORIES))
    embedder = ClusteredVectors()
    recalls = []
    for n in range(20):
        query = f"c{n} mid probe {n}"
        found = big.search(query, user_id="mid", mode="vector", limit=10)["results"]
        assert len(found) == 10 and all(item["user_id"] == "mid" for item in found)
        wanted = exact_top(embedder, texts, query, 10)
        recalls.append(len({item["memory"] for item in found} & set(wanted)) / 10)
        majority = big.search(query, user_id="big", mode="vector", limit=10)["results"]
        assert len(majority) == 10 and all(item["user_id"] == "big" for item in majority)
    assert float(np.mean(recalls)) >= 0.95, recalls
