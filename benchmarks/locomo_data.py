"""LoCoMo data for the retrieval benchmarks: turns, questions, metrics, tables.

No lancemem imports: the mem0 side runs this in its own virtual environment.
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Iterator
from pathlib import Path
from typing import Any

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "bench" / "locomo-dev.json"
CATEGORIES = {1: "multi-hop", 2: "temporal", 3: "open-domain", 4: "single-hop",
              5: "adversarial"}
DEPTH = 50


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
    """Search results to dia_ids (a text said twice in a conversation is one memory;
    stores strip surrounding whitespace, so texts are compared stripped)."""
    out: list[str] = []
    for item in items:
        out.extend(d for d in dias_of[item["user_id"], item["memory"].strip()] if d not in out)
    return out


def questions(samples: list[dict[str, Any]]) -> Iterator[tuple[str, str, str, list[str]]]:
    """(sample_id, question, category name, evidence dia_ids) for questions with evidence."""
    for sample in samples:
        own = {record["metadata"]["dia_id"] for record in turns(sample)}
        for qa in sample["qa"]:
            gold = evidence(qa.get("evidence", []), own)
            if gold:
                yield sample["sample_id"], qa["question"], CATEGORIES[qa["category"]], gold


def dias_by_text(records: list[dict[str, Any]]) -> dict[tuple[str, str], list[str]]:
    """(user_id, text) to the dia_ids that said it: a text said twice is stored once."""
    found: dict[tuple[str, str], list[str]] = {}
    for record in records:
        found.setdefault((record["user_id"], record["text"].strip()), []).append(
            record["metadata"]["dia_id"])
    return found


def average(per: dict[str, dict[str, list[dict[str, float]]]]) -> dict[str, Any]:
    """Mean of each metric per ranking and category, with question counts."""
    return {name: {category: {key: round(statistics.mean(m[key] for m in rows), 3)
                              for key in ("r5", "r10", "hit10", "mrr")} | {"n": len(rows)}
                   for category, rows in by_category.items()}
            for name, by_category in per.items()}


def markdown(report: dict[str, Any]) -> str:
    """Two tables: all four metrics overall, and recall@10 per category."""
    names = list(report["results"])
    lines = ["| ranking | R@5 | R@10 | hit@10 | MRR |", "| --- | ---: | ---: | ---: | ---: |"]
    for name in names:
        overall = report["results"][name]["all"]
        lines.append(f"| {name} | {overall['r5']:.3f} | {overall['r10']:.3f} | "
                     f"{overall['hit10']:.3f} | {overall['mrr']:.3f} |")
    counts = report["results"][names[0]]
    categories = [c for c in [*CATEGORIES.values(), "all"] if c in counts]
    lines += ["", "| R@10 by category | " + " | ".join(
        f"{c} ({counts[c]['n']})" for c in categories) + " |",
        "| --- |" + " ---: |" * len(categories)]
    for name in names:
        row = report["results"][name]
        lines.append(f"| {name} | " + " | ".join(f"{row[c]['r10']:.3f}" for c in categories)
                     + " |")
    return "\n".join(lines)
