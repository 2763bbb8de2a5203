"""Search modes and how hybrid search fuses its two rankings: pure functions.

``vector`` ranks by cosine similarity, ``keyword`` by BM25 over the full-text
index, ``hybrid`` fuses the two with weighted reciprocal-rank fusion.

Why these constants (LoCoMo dev set, BENCHMARKS.md): the usual fusion, equal
weights with k = 60, scored *below* BM25 alone (R@10 .439 against .563). With
k = 60 the first and the tenth place of a list score almost alike (1/61 and
1/70), so fusion mostly rewards appearing in both lists, and a weak vector
ranking drags down a strong keyword one. A small k keeps the confidence of a
top keyword hit, and half weight for the vector list lets it fill in where
the keywords miss rather than override them. Both were chosen on the dev
conversations only.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    import numpy as np

K = TypeVar("K", bound=Hashable)
RRF_K = 5
VECTOR_WEIGHT = 0.5
KEYWORD_WEIGHT = 1.0
CANDIDATES = 50  # how deep each ranking is read before fusing


def fuse(keyword_ids: Sequence[K], vector_ids: Sequence[K], *, k: int = RRF_K,
         keyword_weight: float = KEYWORD_WEIGHT,
         vector_weight: float = VECTOR_WEIGHT) -> list[K]:
    """Ids ordered by weighted reciprocal-rank fusion of two rankings, best first.

    Each list adds ``weight / (k + rank)`` (rank from 1) to its ids; ties keep
    the keyword ranking's order, then the vector ranking's.
    """
    scores: dict[K, float] = {}
    for ids, weight in ((keyword_ids, keyword_weight), (vector_ids, vector_weight)):
        for rank, memory_id in enumerate(ids, start=1):
            scores[memory_id] = scores.get(memory_id, 0.0) + weight / (k + rank)
    # sorted() is stable and the dict keeps first-seen order: ties stay in that order.
    return sorted(scores, key=lambda memory_id: -scores[memory_id])


def cosine_scores(vectors: np.ndarray | Sequence[Sequence[float]],
                  query: Sequence[float]) -> list[float]:
    """Cosine similarity of each row of ``vectors`` to ``query`` (0.0 for a zero row)."""
    return [float(score) for score in cosine_array(vectors, query)]


def top_cosine(vectors: np.ndarray, query: Sequence[float], k: int,
               passages: tuple[np.ndarray, np.ndarray] | None = None,
               ) -> tuple[list[int], list[float]]:
    """Positions of the ``k`` memories most similar to ``query``, best first
    (ties in row order), and every memory's similarity (by position), as
    ``memory_cosine`` scores them."""
    import numpy as np

    scores = memory_cosine(vectors, query, passages)
    return np.argsort(-scores, kind="stable")[:k].tolist(), scores.tolist()


def memory_cosine(vectors: np.ndarray | Sequence[Sequence[float]], query: Sequence[float],
                  passages: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """The vector similarity of each memory to ``query``: the best cosine over
    its vectors, i.e. its one vector (row i of ``vectors``) and, for a long
    memory, its passages (search/passages.py).

    ``passages`` is (owner positions, passage matrix): passage j belongs to
    the memory at row ``owners[j]``. Without passages this is the cosine.
    """
    import numpy as np

    scores = cosine_array(vectors, query)
    if passages is not None and len(passages[0]):
        owners, matrix = passages
        np.maximum.at(scores, owners, cosine_array(matrix, query))
    return scores


def cosine_array(vectors: np.ndarray | Sequence[Sequence[float]],
                 query: Sequence[float]) -> np.ndarray:
    """Cosine similarity of each row of ``vectors`` to ``query``, as a numpy array."""
    import numpy as np  # here: config imports this module, and start-up stays lean

    vectors = np.asarray(vectors, dtype=np.float32)
    if not len(vectors):
        return np.zeros(0, dtype=np.float32)
    q = np.asarray(query, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1) * float(np.linalg.norm(q))
    dots = vectors @ q
    return np.divide(dots, norms, out=np.zeros_like(dots), where=norms != 0)
