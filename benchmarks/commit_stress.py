"""Concurrent adds on object storage, checked by id: is any acknowledged add lost?

    python -m benchmarks.commit_stress --uri-form s3+ddb --runs 4 --adds 60

Starts its own SeaweedFS and moto on 127.0.0.1 (tests/object_store.py).
Each run makes a fresh store; ``--processes`` processes with ``--threads``
threads each call ``Memory.add`` ``--adds`` times (unique texts, the test
embedder: this measures commits, not the model), with background
compaction on as a server has it. Afterwards a new connection reads the
memories and history tables: every id an add returned as ADD must be in
both. Prints one line per run; failed adds (errors the callers saw) are
counted separately, with how many of them were stored all the same. Exits 1
if any acknowledged add is missing from either table.
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from tests.embedders import HashEmbedder
from tests.object_store import S3Server, moto, seaweedfs

from lancemem.memory.facade import Memory
from lancemem.storage.schema import HISTORY, MEMORIES
from lancemem.storage.store import Store


def _adder(uri: str, options: dict[str, str], process: int, threads: int, adds: int,
           out: Any) -> None:
    """One process: ``threads`` threads adding ``adds`` memories each; puts
    (ids acknowledged as ADD, texts whose add failed) on ``out``."""
    memory = Memory(store=Store(uri, storage_options=options), embedder=HashEmbedder())
    added: list[str] = []
    failed: list[str] = []

    def run(thread: int) -> None:
        for number in range(adds):
            text = f"p{process} t{thread} fact {number}"
            try:
                result = memory.add(text, user_id=f"user-{number % 5}")
            except Exception:  # the caller saw an error: not acknowledged
                failed.append(text)
                continue
            added.extend(r["id"] for r in result["results"] if r["event"] == "ADD")

    workers = [threading.Thread(target=run, args=(t,)) for t in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    memory.close()
    out.put((added, failed))


def run_once(server: S3Server, args: argparse.Namespace) -> dict[str, Any]:
    """One fresh store raced by the configured writers; what was acknowledged and kept."""
    uri, options = server.new_uri(ddb=args.uri_form == "s3+ddb"), server.storage_options()
    Memory(store=Store(uri, storage_options=options), embedder=HashEmbedder()).ensure_open()
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    started = time.perf_counter()
    processes = [context.Process(target=_adder, args=(uri, options, p, args.threads,
                                                      args.adds, results))
                 for p in range(args.processes)]
    for process in processes:
        process.start()
    answers = [results.get() for _ in processes]
    for process in processes:
        process.join()
    acknowledged = {i for added, _ in answers for i in added}
    failed = [text for _, texts in answers for text in texts]
    final = Store(uri, storage_options=options, read_consistency=0)
    rows = final.arrow(MEMORIES, None, columns=["id", "memory"])
    stored, texts = set(rows.column("id").to_pylist()), set(rows.column("memory").to_pylist())
    recorded = set(final.arrow(HISTORY, None, columns=["memory_id"])
                   .column("memory_id").to_pylist())
    return {"uri_form": args.uri_form, "acknowledged": len(acknowledged),
            "lost": len(acknowledged - stored), "without_history": len(acknowledged - recorded),
            "unacknowledged_stored": len(stored - acknowledged),
            "failed": len(failed), "failed_but_stored": len(texts & set(failed)),
            "seconds": round(time.perf_counter() - started, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--uri-form", choices=("s3", "s3+ddb"), default="s3+ddb")
    parser.add_argument("--runs", type=int, default=4)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--adds", type=int, default=60, help="per thread")
    args = parser.parse_args()
    with ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="lancemem-stress-")))
        endpoint = stack.enter_context(seaweedfs(work / "s3"))
        dynamodb = stack.enter_context(moto(work / "ddb")) if args.uri_form == "s3+ddb" else None
        server = S3Server(endpoint, dynamodb)
        lost = 0
        for _ in range(args.runs):
            result = run_once(server, args)
            print(result, flush=True)
            lost += result["lost"] + result["without_history"]
    sys.exit(1 if lost else 0)


if __name__ == "__main__":
    main()
