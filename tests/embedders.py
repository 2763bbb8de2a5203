"""A deterministic bag-of-words embedder for unit tests of logic.

It stands in for a *different* model (another name and size) in tests of
model mismatch and reindex; every user path is also tested with the real one.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Sequence


class HashEmbedder:
    """Hashes words into a small normalised vector; same text, same vector."""

    def __init__(self, model_name: str = "test/hash-bow", dim: int = 32) -> None:
        self._model_name = model_name
        self._dim = dim
        self.calls = 0

    @property
    def model_name(self) -> str:
        return self._model_name

    @property
    def dim(self) -> int:
        return self._dim

    def _embed(self, text: str) -> list[float]:
        vector = [0.0] * self._dim
        for word in re.findall(r"\w+", text.lower()):
            digest = hashlib.md5(word.encode()).digest()
            vector[digest[0] % self._dim] += 1.0
        norm = math.sqrt(sum(v * v for v in vector)) or 1.0
        return [v / norm for v in vector]

    def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        self.calls += 1
        return [self._embed(text) for text in texts]

    def embed_query(self, text: str) -> list[float]:
        self.calls += 1
        return self._embed(text)
