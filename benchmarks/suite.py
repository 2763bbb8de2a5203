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


def run_mem0(python: str, data: Path) -> dict[str, Any] | None:
    if not Path(python).exists():
        print(f"mem0 skipped: no {python}; `make bench` installs it.", file=sys.stderr)
        return None
    out = RESULTS / "mem0-locomo.json"
    cache = hf_cache(Path(tempfile.mkdtemp(prefix="mem0-models-")))
    subprocess.run([python, "-m", "benchmarks.mem0_side", "--data", str(data),
                    "--model-cache", str(cache), "--json", str(out)],
                   cwd=Path(__file__).parent.parent, check=True)
    return json.loads(out.read_text())


def side_by_side(ours: dict[str, Any], theirs: dict[str, Any]) -> str:
    """Import rate, single add, search and R@10: lancemem (hybrid) against mem0."""
    rows = [("LoCoMo import (memories/s)", ours["import_per_s"], theirs["import_per_s"], True),
            ("single add p50 (ms)", ours["add_p50_ms"], theirs["add_p50_ms"], False),
            ("search p50 (ms)", ours["search_p50_ms"]["hybrid"],
             theirs["search_p50_ms"]["mem0"], False),
            ("R@10", ours["results"]["hybrid"]["all"]["r10"],
             theirs["results"]["mem0"]["all"]["r10"], True)]
    lines = ["| measurement | lancemem | mem0 | lancemem advantage |",
             "| --- | ---: | ---: | ---: |"]
    for name, mine, other, higher_is_better in rows:
        ratio = mine / other if higher_is_better else other / mine
        lines.append(f"| {name} | {mine} | {other} | {ratio:.2f}x |")
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
    theirs = run_mem0(args.mem0_python, args.data)
    if theirs:
        ours["results"]["mem0 (vector only, offline)"] = theirs["results"]["mem0"]
    print(markdown(ours) + "\n")
    if theirs:
        print(side_by_side(ours, theirs))


if __name__ == "__main__":
    main()
