"""Long memories as several passages, each embedded: pure functions over text.

A text embedded whole is cut off before the model runs: fastembed's tokenizer
for all-MiniLM-L6-v2 truncates at 512 word pieces (measured here), and the
model was tuned for 256 (sentence-transformers' max_seq_length for it), so a
fact at the end of a 22,000-character memory scored -0.05 against a query
naming it (FACTS.md). Measured with the model's own tokenizer, 254 word
pieces (256 with [CLS] and [SEP]) end 766-896 characters into technical
prose (README.md, DESIGN.md) and about 1,175 into plain English.

A memory longer than PASSAGE_CHARS keeps its one ``vector`` (the text as the
model sees it, exactly as a short memory has) and gains ``passages``: the
vectors of overlapping windows of at most PASSAGE_CHARS characters covering
the whole text, cut at a sentence end or else a space where one is near. Its
vector similarity to a query is the best of all its vectors
(retrieval.memory_cosine). A short memory has no passages: nothing changes
for it, on disk or in a search.

Why 750 and 150: a window fits in the 256 word pieces the model was tuned
for even in dense text (766 characters at least, above); the overlap keeps a
fact cut by a window's edge whole in its neighbour. A 32,000-character
memory gets about 53 passages. The bound is in characters, not word pieces:
text that tokenises much more densely (CJK, long digit strings) is still cut
off inside a passage.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .embeddings import Embedder

PASSAGE_CHARS = 750
OVERLAP_CHARS = 150
_SENTENCE_END = re.compile(r"[.!?;:]\s|\n")
Embedded = tuple[list[float], list[list[float]] | None]  # (vector, passages or None)


def is_long(text: str) -> bool:
    """Whether the model would not see all of ``text`` in one vector."""
    return len(text) > PASSAGE_CHARS


def split_passages(text: str) -> list[str]:
    """Overlapping windows covering ``text``, each at most PASSAGE_CHARS long
    (a short text is its own one passage)."""
    if not is_long(text):
        return [text]
    passages: list[str] = []
    start = 0
    while True:
        end = start + PASSAGE_CHARS
        if end >= len(text):
            passages.append(text[start:])
            return passages
        end = _cut(text, start, end)
        passages.append(text[start:end])
        start = _next_start(text, start, end)


def _cut(text: str, start: int, end: int) -> int:
    """Where a window from ``start`` ends: after the last sentence end in its
    second half, else at its last space, else at ``end`` itself."""
    half = start + PASSAGE_CHARS // 2
    ends = [m.end() for m in _SENTENCE_END.finditer(text, half, end)]
    if ends:
        return ends[-1]
    space = text.rfind(" ", half, end)
    return space + 1 if space > 0 else end


def _next_start(text: str, start: int, end: int) -> int:
    """The next window starts OVERLAP_CHARS before ``end``, at a word's start."""
    back = max(end - OVERLAP_CHARS, start + 1)
    space = text.find(" ", back, end)
    return space + 1 if space != -1 and space + 1 < end else back


def embed_memories(embedder: Embedder, documents: Sequence[str]) -> list[Embedded]:
    """Each document's vector, and its passages' vectors when it is long.

    Every text goes to the model in one call, so the embedder's length-sorted
    batches take the passages of every long memory together with the short
    memories (an import embeds as fast as before, per text embedded).
    """
    texts = list(documents)
    owners: list[int] = []
    for index, document in enumerate(documents):
        if is_long(document):
            pieces = split_passages(document)
            texts += pieces
            owners += [index] * len(pieces)
    vectors = embedder.embed_documents(texts)
    passages: dict[int, list[list[float]]] = {}
    for owner, vector in zip(owners, vectors[len(documents):], strict=True):
        passages.setdefault(owner, []).append(vector)
    return [(vectors[i], passages.get(i)) for i in range(len(documents))]
