"""The whole benchmark suite: speed through the MCP server, LoCoMo retrieval, mem0 beside us.

    make bench                      # installs both environments, then runs this
    python -m benchmarks.suite --memories 100000 --mem0-python .venv-mem0/bin/python
    python -m benchmarks.suite --object-storage   # and local disk against S3 (issue 15)

Writes every report to benchmarks/results/ and prints Markdown for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks import locomo, object_storage, speed
from benchmarks.locomo_data import DEFAULT_DATA, markdown
from lancemem.core.config import load_settings
from lancemem.search.embeddings import assemble_bundled_model

RESULTS = Path(__file__).parent / "results"


def hf_cache(root: Path) -> Path:
    """lancemem's bundled model laid out as fastembed's Hugging Face cache, for mem0."""
    model = assemble_bundled_model(Path(load_settings({}).model_cache_dir))
    repo = root / "models--Qdrant--all-MiniLM-L6-v2-onnx"
    snapshot = repo / "snapshots" / "lancemem-bundled"
    snapshot.mkdir(parents=True, exist_ok=True)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text("lancemem-bundled")
    for source in model.iterdir():
        link = snapshot / source.name
        if not link.exists():
            link.symlink_to(source.resolve())
    return root


MEM0_ROWS = {"hybrid": "mem0 hybrid", "vector": "mem0 (vector only, offline)"}


def run_mem0(python: str, data: Path, search: str) -> dict[str, Any] | None:
    """benchmarks.mem0_side in mem0's environment, one search mode, a fresh model cache."""
    if not Path(python).exists():
        print(f"mem0 skipped: no {python}; `make bench` installs it.", file=sys.stderr)
        return None
    out = RESULTS / f"mem0-locomo-{search}.json"
    cache = hf_cache(Path(tempfile.mkdtemp(prefix="mem0-models-")))
    subprocess.run([python, "-m", "benchmarks.mem0_side", "--data", str(data),
                    "--model-cache", str(cache), "--search", search, "--json", str(out)],
                   cwd=Path(__file__).parent.parent, check=True)
    return json.loads(out.read_text())


def side_by_side(ours: dict[str, Any], hybrid: dict[str, Any],
                 vector: dict[str, Any] | None = None) -> str:
    """Speed and recall: lancemem's hybrid against mem0's hybrid (and its vector fallback)."""
    def recall(report: dict[str, Any], name: str, category: str, key: str) -> float:
        return report["results"][name][category][key]

    theirs = [hybrid] + ([vector] if vector else [])
    columns = ["lancemem hybrid", "mem0 hybrid"] + (["mem0 vector only"] if vector else [])
    rows: list[tuple[str, list[float], bool]] = [
        ("LoCoMo import (memories/s)",
         [ours["import_per_s"]] + [t["import_per_s"] for t in theirs], True),
        ("single add p50 (ms)", [ours["add_p50_ms"]] + [t["add_p50_ms"] for t in theirs], False),
        ("search p50 (ms)", [ours["search_p50_ms"]["hybrid"]]
         + [t["search_p50_ms"]["mem0"] for t in theirs], False)]
    categories = [c for c in ours["results"]["hybrid"] if c != "all"] + ["all"]
    for category in categories:
        n = ours["results"]["hybrid"][category]["n"]
        for key, label in (("r5", "R@5"), ("r10", "R@10")):
            rows.append((f"{label} {category} ({n})",
                         [recall(ours, "hybrid", category, key)]
                         + [recall(t, "mem0", category, key) for t in theirs], True))
    lines = ["| measurement | " + " | ".join(columns) + " | lancemem advantage over mem0 hybrid |",
             "| --- |" + " ---: |" * (len(columns) + 1)]
    for name, values, higher_is_better in rows:
        mine, other = values[0], values[1]
        ratio = (mine / other if higher_is_better else other / mine) if other and mine else 0.0
        lines.append(f"| {name} | " + " | ".join(f"{v:g}" for v in values)
                     + f" | {ratio:.2f}x |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--memories", type=int, default=100_000)
    parser.add_argument("--users", type=int, default=1_000)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--mem0-python", default=".venv-mem0/bin/python")
    parser.add_argument("--db", help="reuse a store filled by an earlier run")
    parser.add_argument("--object-storage", action="store_true",
                        help="also local disk against S3 (SeaweedFS) and s3+ddb (moto), "
                             "benchmarks/object_storage.py; needs the [test] extra")
    args = parser.parse_args()
    if not args.data.is_file():
        sys.exit(f"no LoCoMo data at {args.data}; pass --data PATH (see ../shared/bench).")
    RESULTS.mkdir(exist_ok=True)
    print(f"Machine: {platform.processor() or platform.machine()}, "
          f"Python {platform.python_version()}\n")
    fast = speed.run(argparse.Namespace(
        memories=args.memories, users=args.users, searches=200, adds=100, startup_runs=5,
        import_texts=2_000, data=args.data, db=args.db))
    (RESULTS / f"speed-{args.memories // 1000}k.json").write_text(json.dumps(fast, indent=2))
    print(speed.markdown(fast) + "\n")
    if args.object_storage:
        remote = object_storage.run(object_storage.parse([]))
        (RESULTS / "object-storage.json").write_text(json.dumps(remote, indent=2))
        print(object_storage.markdown(remote) + "\n")
    ours = locomo.run(args.data, list(locomo.MODES))
    (RESULTS / "locomo-dev.json").write_text(json.dumps(ours, indent=2))
    mem0 = {search: run_mem0(args.mem0_python, args.data, search) for search in MEM0_ROWS}
    table = {name: result for name, result in ours["results"].items()}
    for search, report in mem0.items():
        if report:
            table[MEM0_ROWS[search]] = report["results"]["mem0"]
    print(markdown(ours | {"results": table}) + "\n")
    if mem0["hybrid"]:
        print(side_by_side(ours, mem0["hybrid"], mem0["vector"]))


if __name__ == "__main__":
    main()
