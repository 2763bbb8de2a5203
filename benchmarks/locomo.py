"""LoCoMo retrieval: recall@5, recall@10, hit@10 and MRR@50 per question category.

Follows ../shared/bench/README.md: every turn is one memory scoped to
``user_id = sample_id`` and ``actor_id = speaker``; each question with
evidence searches its conversation's scope. Runs the product's own search in
each mode, plus the reference the README quotes: LanceDB's BM25 over the bare
turn text (no speaker), the baseline the hybrid mode has to beat.

    python -m benchmarks.locomo --json benchmarks/results/locomo-dev.json
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from lancemem.config import load_settings
from lancemem.memory import Memory
from lancemem.retrieval import MODES

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "bench" / "locomo-dev.json"
CATEGORIES = {1: "multi-hop", 2: "temporal", 3: "open-domain", 4: "single-hop",
              5: "adversarial"}
DEPTH = 50
REFERENCE = "bm25 (turn text)"


def turns(sample: dict[str, Any]) -> list[dict[str, Any]]:
    """Every turn of one conversation as an import record, dia_id in its metadata."""
    conversation = sample["conversation"]
    records = []
    for key, session in conversation.items():
        if not re.fullmatch(r"session_\d+", key) or not isinstance(session, list):
            continue
        date = conversation.get(f"{key}_date_time")
        for turn in session:
            text = turn["text"]
            if turn.get("blip_caption"):
                text += f" [shares {turn['blip_caption']}]"
            records.append({"text": text, "user_id": sample["sample_id"],
                            "actor_id": turn["speaker"],
                            "metadata": {"dia_id": turn["dia_id"], "session": key,
                                         "session_date": date}})
    return records


def evidence(raw: list[Any], known: set[str]) -> list[str]:
    """Evidence ids repaired ("D8:6; D9:17", "D:11:26", "D30:05"), unknown turns dropped."""
    found = []
    for entry in raw:
        for part in re.split(r"[;\s]+", str(entry)):
            match = re.fullmatch(r"D:?(\d+):0*(\d+)", part.strip())
            if match:
                dia_id = f"D{int(match.group(1))}:{int(match.group(2))}"
                if dia_id in known and dia_id not in found:
                    found.append(dia_id)
    return found


def scores(ranked: list[str], wanted: list[str]) -> dict[str, float]:
    """The four metrics for one question: ranked dia_ids against its evidence."""
    gold = set(wanted)
    first = next((rank for rank, dia in enumerate(ranked[:DEPTH], 1) if dia in gold), None)
    return {"r5": len(gold & set(ranked[:5])) / len(gold),
            "r10": len(gold & set(ranked[:10])) / len(gold),
            "hit10": float(bool(gold & set(ranked[:10]))),
            "mrr": 1.0 / first if first else 0.0}


def dia_ranking(items: list[dict[str, Any]], dias_of: dict[tuple[str, str], list[str]]
                ) -> list[str]:
    """Search results to dia_ids (a text said twice in a conversation is one memory)."""
    out: list[str] = []
    for item in items:
        out.extend(d for d in dias_of[item["user_id"], item["memory"]] if d not in out)
    return out


class TurnTextBM25:
    """The README's reference: LanceDB BM25 over the turn text alone, no speaker."""

    def __init__(self, path: str, records: list[dict[str, Any]]) -> None:
        import lancedb
        from lancedb.index import FTS

        rows = [{"sample": r["user_id"], "dia": r["metadata"]["dia_id"], "text": r["text"]}
                for r in records]
        self.table = lancedb.connect(path).create_table("turns", data=rows)
        self.table.create_index("text", config=FTS())

    def rank(self, sample: str, question: str) -> list[str]:
        where = "sample = '" + sample.replace("'", "''") + "'"
        hits = (self.table.search(question, query_type="fts").where(where, prefilter=True)
                .select(["dia"]).limit(DEPTH).to_list())
        return [hit["dia"] for hit in hits]


def run(data: Path, modes: list[str]) -> dict[str, Any]:
    """Import every conversation, ask every question in every mode, average the metrics."""
    samples = json.loads(data.read_text())
    workdir = tempfile.mkdtemp(prefix="lancemem-locomo-")
    memory = Memory.from_settings(load_settings({"db": f"{workdir}/store"}))
    records = [record for sample in samples for record in turns(sample)]
    started = time.perf_counter()
    memory.add_many(records)
    imported = time.perf_counter() - started
    dias_of: dict[tuple[str, str], list[str]] = defaultdict(list)
    for record in records:
        dias_of[record["user_id"], record["text"]].append(record["metadata"]["dia_id"])
    reference = TurnTextBM25(f"{workdir}/reference", records)
    known = {(r["user_id"], r["metadata"]["dia_id"]) for r in records}
    per: dict[str, dict[str, list[dict[str, float]]]] = defaultdict(lambda: defaultdict(list))
    questions = 0
    for sample in samples:
        sample_id = sample["sample_id"]
        own = {dia for sid, dia in known if sid == sample_id}
        for qa in sample["qa"]:
            gold = evidence(qa.get("evidence", []), own)
            if not gold:
                continue
            questions += 1
            category = CATEGORIES[qa["category"]]
            rankings = {REFERENCE: reference.rank(sample_id, qa["question"])}
            for mode in modes:
                found = memory.search(qa["question"], user_id=sample_id, limit=DEPTH, mode=mode)
                rankings[mode] = dia_ranking(found["results"], dias_of)
            for name, ranked in rankings.items():
                metric = scores(ranked, gold)
                per[name][category].append(metric)
                per[name]["all"].append(metric)
    table = {name: {category: {key: round(statistics.mean(m[key] for m in rows), 3)
                               for key in ("r5", "r10", "hit10", "mrr")} | {"n": len(rows)}
                    for category, rows in by_category.items()}
             for name, by_category in per.items()}
    return {"data": str(data), "memories": len(records), "questions": questions,
            "import_seconds": round(imported, 1), "results": table}


def markdown(report: dict[str, Any]) -> str:
    """Two tables: all four metrics overall, and recall@10 per category."""
    names = list(report["results"])
    lines = ["| ranking | R@5 | R@10 | hit@10 | MRR |", "| --- | ---: | ---: | ---: | ---: |"]
    for name in names:
        overall = report["results"][name]["all"]
        lines.append(f"| {name} | {overall['r5']:.3f} | {overall['r10']:.3f} | "
                     f"{overall['hit10']:.3f} | {overall['mrr']:.3f} |")
    categories = [*CATEGORIES.values(), "all"]
    counts = report["results"][names[0]]
    lines += ["", "| R@10 by category | " + " | ".join(
        f"{c} ({counts[c]['n']})" for c in categories) + " |",
        "| --- |" + " ---: |" * len(categories)]
    for name in names:
        row = report["results"][name]
        lines.append(f"| {name} | " + " | ".join(f"{row[c]['r10']:.3f}" for c in categories)
                     + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA,
                        help=f"LoCoMo JSON (default {DEFAULT_DATA})")
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--json", type=Path, help="also write the report here")
    args = parser.parse_args()
    if not args.data.is_file():
        sys.exit(f"no LoCoMo data at {args.data}; pass --data PATH (see ../shared/bench).")
    report = run(args.data, args.modes)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(f"{report['memories']} memories, {report['questions']} questions "
          f"(import {report['import_seconds']} s)\n")
    print(markdown(report))


if __name__ == "__main__":
    main()
