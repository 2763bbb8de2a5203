"""Shared fixtures: an isolated HOME and environment, real stores, the real model."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from lancemem.memory.facade import Memory
from lancemem.search.embeddings import FastEmbedder
from lancemem.storage.store import Store
from tests.object_store import S3Server, moto, seaweedfs


@pytest.fixture(autouse=True)
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No test reads the developer's HOME or LANCEMEM_* settings."""
    for key in list(os.environ):
        if key.startswith("LANCEMEM_") or key.startswith("XDG_"):
            monkeypatch.delenv(key)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    yield


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def real_embedder(model_cache: Path) -> FastEmbedder:
    """The real default model, loaded once for the whole session."""
    embedder = FastEmbedder(cache_dir=model_cache)
    embedder.load()
    return embedder


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "db"


@pytest.fixture
def memory(db_path: Path, real_embedder: FastEmbedder) -> Iterator[Memory]:
    """A Memory on real LanceDB in a temporary directory with the real model."""
    with Memory(store=Store(str(db_path)), embedder=real_embedder) as opened:
        yield opened


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """A real S3 server (SeaweedFS, taking only the test key pair) and DynamoDB
    (moto) on loopback, started once a session; each test takes its own store
    with ``new_uri()``."""
    root = tmp_path_factory.mktemp("object-store")
    with seaweedfs(root / "seaweedfs") as endpoint, moto(root / "moto") as dynamodb:
        yield S3Server(endpoint, dynamodb)
