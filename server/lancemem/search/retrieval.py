"""Search modes and the one score every mode orders by: pure functions.

A search's ``score`` is a relevance in [0, 1], the same formula in every mode:

    score = KEYWORD_SHARE[mode] * words + (1 - KEYWORD_SHARE[mode]) * meaning

``meaning`` is the cosine similarity of the embeddings, clipped to [0, 1] (the
model puts unrelated texts near 0, so the clip drops nothing a threshold would
keep); ``words`` is the BM25 score over the full-text index divided by the best
BM25 score of the query in the scope, so the best keyword match is 1 and a
memory sharing no word is 0. ``vector`` is meaning alone, ``keyword`` words
alone, ``hybrid`` both with the word ranking at 0.3. Results are ordered by
the score and ``threshold`` keeps those scoring at least it, in every mode.

Why this fusion (LoCoMo dev set, BENCHMARKS.md "One honest score"): the
weighted reciprocal-rank fusion shipped before ordered hybrid results by rank
alone and showed the cosine, so scores went up and down the list and a
threshold dropped keyword hits. Fusing the two scores themselves gave R@10
.687 against .656 for that fusion (share 0.3, picked by
leave-one-conversation-out over 0.2-0.5: .687 held out), with R@5 .577
against .573; the word share of 0.3 keeps a strong keyword hit on top while
the meaning decides among weaker ones.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    import numpy as np

K = TypeVar("K", bound=Hashable)
KEYWORD_SHARE = {"hybrid": 0.3, "vector": 0.0, "keyword": 1.0}
CANDIDATES = 50  # how deep each ranking is read in hybrid search


def meaning_relevance(cosine: float) -> float:
    """A cosine similarity as a relevance in [0, 1]."""
    return min(1.0, max(0.0, cosine))


def fuse(keyword_hits: Sequence[tuple[K, float]], cosines: Mapping[K, float],
         vector_ids: Sequence[K] = (), *, keyword_share: float) -> list[tuple[K, float]]:
    """Candidates with their score, best first (the module docstring's formula).

    ``keyword_hits`` are (id, BM25 score) best first; ``vector_ids`` the
    meaning ranking's candidates, best first; ``cosines`` holds the cosine of
    every candidate when ``keyword_share`` is below 1 (ignored at 1). Ties keep
    the keyword ranking's order, then the meaning ranking's.
    """
    best = max((bm25 for _, bm25 in keyword_hits), default=0.0)
    words = {key: (bm25 / best if best > 0 else 0.0) for key, bm25 in keyword_hits}
    candidates = list(dict.fromkeys([*words, *vector_ids]))
    if keyword_share >= 1.0:
        scored = [(key, words[key]) for key in candidates if key in words]
    else:
        scored = [(key, keyword_share * words.get(key, 0.0)
                   + (1.0 - keyword_share) * meaning_relevance(cosines[key]))
                  for key in candidates]
    # sorted() is stable: ties stay in candidate order.
    return sorted(scored, key=lambda pair: -pair[1])


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
