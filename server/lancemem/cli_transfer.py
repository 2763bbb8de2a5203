"""``lancemem export`` and ``lancemem import``: memories out as JSON Lines, and in.

``export`` writes Memory.export's lines on stdout (the summary and the
progress bar go to stderr). ``import`` takes three kinds of file: add lines
(``{"text": ..., "user_id": ...}``, one Memory.add call each), an export's
lines (``"type": "memory"`` / ``"history"``, restored with their ids), or
with ``--from mem0`` mem0's memories (a ``{"results": [...]}`` or a list as
JSON, or JSON Lines of items). README, "Moving memories in and out".
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

from .core.config import SCOPE_KEYS
from .core.errors import ScopeRequiredError, ValidationError
from .core.exchange import dumps
from .memory.facade import Memory

FORMATS = ("jsonl",)
SOURCES = ("mem0",)


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    """The ``export`` and ``import`` commands; ``common`` gives --db, the ids, --json."""
    export = sub.add_parser("export", parents=[common],
                            help="write the scope's memories as JSON Lines on stdout")
    export.add_argument("memory_ids", nargs="*", metavar="ID",
                        help="only these memories (of the scope)")
    export.add_argument("--all", action="store_true", dest="every_scope",
                        help="every memory of every scope instead of one scope")
    export.add_argument("--include-history", action="store_true",
                        help="each memory's history after it, and that of deleted memories")
    export.add_argument("--format", choices=FORMATS, default="jsonl")
    imp = sub.add_parser("import", parents=[common],
                         help="add or restore memories from a JSON Lines file")
    imp.add_argument("file", help='add lines like {"text": "...", "user_id": "alice"}, or '
                                  "the lines of `lancemem export`; - for stdin")
    imp.add_argument("--from", dest="source", choices=SOURCES,
                     help="the file is mem0's: get_all()'s JSON, the platform export, or "
                          "JSON Lines of its memories")
    imp.add_argument("--batch-size", type=int, default=512)


def _ids(args: argparse.Namespace) -> dict[str, Any]:
    return {name: getattr(args, name) for name in SCOPE_KEYS}


def _progress(label: str) -> Callable[[int, int], None]:
    from .cli import _progress as bar  # imported late: cli imports this module

    return bar(label)


def _read(path: str) -> str:
    try:
        if path == "-":
            return sys.stdin.read()
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except OSError as exc:
        raise ValidationError(f"cannot read {path}: {exc.strerror}.") from None
    except UnicodeDecodeError:
        raise ValidationError(f"{path} is not UTF-8 text.") from None


def _jsonl(path: str, text: str) -> tuple[list[Any], list[str]]:
    """The JSON value of each non-blank line, and each one's label (``FILE line N``)."""
    records, labels = [], []
    # Not splitlines: a JSON string may hold U+2028 or U+0085 as they are.
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise ValidationError(f"{path} line {number} is not JSON: {exc.msg}.") from None
        labels.append(f"{path} line {number}")
    return records, labels


def _mem0(path: str, text: str) -> tuple[list[Any], list[str]]:
    """mem0's items: ``{"results": [...]}`` or a list as one JSON value (labels
    ``FILE item N``), else JSON Lines."""
    try:
        whole = json.loads(text)
    except json.JSONDecodeError:
        return _jsonl(path, text)
    if isinstance(whole, dict) and isinstance(whole.get("results"), list):
        whole = whole["results"]
    if not isinstance(whole, list):
        return _jsonl(path, text)
    return whole, [f"{path} item {number}" for number in range(1, len(whole) + 1)]


def _import(args: argparse.Namespace, memory: Memory) -> tuple[Any, Callable[[], None]]:
    text = _read(args.file)
    records, labels = (_mem0 if args.source == "mem0" else _jsonl)(args.file, text)
    restoring = [isinstance(r, dict) and "type" in r for r in records]
    if args.source == "mem0" or any(restoring):
        if args.source is None and not all(restoring):
            first = labels[restoring.index(False)]
            raise ValidationError(f"{first}: field 'type' is missing, but other lines are an "
                                  "export's; import add lines and exported lines separately.")
        counts = memory.restore(records, source=args.source or "lancemem", labels=labels,
                                batch_size=args.batch_size, progress=_progress("import"),
                                **_ids(args))
        return counts, lambda: print(
            f"restored {counts['restored']} memories ({counts['skipped']} already stored) "
            f"and {counts['history_restored']} history rows")
    defaults = {k: v for k, v in _ids(args).items() if v is not None}
    records = [{**defaults, **record} if isinstance(record, dict) else record
               for record in records]
    counts = memory.add_many(records, batch_size=args.batch_size, progress=_progress("import"))
    return counts, lambda: print(
        f"added {counts['added']}, skipped {counts['skipped']} already stored")


def _export(args: argparse.Namespace, memory: Memory) -> tuple[Any, Callable[[], None]]:
    try:
        lines = memory.export(memory_ids=args.memory_ids or None,
                              include_history=args.include_history,
                              every_scope=args.every_scope, progress=_progress("export"),
                              **_ids(args))
    except ScopeRequiredError as exc:
        raise ScopeRequiredError(f"{exc.message} Give --user-id, --agent-id or --run-id to "
                                 "export one scope, or --all to export every scope.") from None
    counts = {"memories": 0, "history": 0}
    out = sys.stdout
    for line in lines:
        out.write(dumps(line) + "\n")
        counts["memories" if line["type"] == "memory" else "history"] += 1
    out.flush()
    args.json = False  # stdout holds the export: the summary goes to stderr, --json or not
    return counts, lambda: print(
        f"exported {counts['memories']} memories and {counts['history']} history rows",
        file=sys.stderr)


def run(args: argparse.Namespace, memory: Memory) -> tuple[Any, Callable[[], None]]:
    """Run ``export`` or ``import``; returns its JSON result and its printer."""
    if args.command == "export":
        return _export(args, memory)
    return _import(args, memory)
