"""``lancemem relations add|search|list|delete|history``: relations by hand.

The same Memory methods as the relation tools, scoped by ``--user-id``,
``--agent-id`` and ``--run-id`` (or their LANCEMEM_ variables) like every
memory command.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from .core.config import SCOPE_KEYS
from .memory.facade import Memory


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    """The ``relations`` command and its subcommands; ``common`` gives --db, ids, --json."""
    relations = sub.add_parser("relations", help="remember, find and forget relations "
                               "between entities ('Alice works at Acme')")
    actions = relations.add_subparsers(dest="relations_command", required=True)
    add = actions.add_parser("add", parents=[common], help="store one relation")
    add.add_argument("source", help="e.g. Alice")
    add.add_argument("relationship", help="e.g. 'works at' (stored as works_at)")
    add.add_argument("target", help="e.g. Acme")
    add.add_argument("--source-type", help="what the source is, e.g. person")
    add.add_argument("--target-type", help="what the target is, e.g. company")
    add.add_argument("--actor-id", help="who stated it")
    add.add_argument("--replace", action="store_true",
                     help="invalidate stored relations with the same source and "
                          "relationship but another target")
    search = actions.add_parser("search", parents=[common],
                                help="relations about what a query names or means")
    search.add_argument("query")
    search.add_argument("--limit", type=int, default=10)
    listing = actions.add_parser("list", parents=[common], help="relations, newest first")
    listing.add_argument("--entity", help="only relations touching this entity")
    listing.add_argument("--relationship", help="only relations of this kind")
    listing.add_argument("--limit", type=int, default=100)
    listing.add_argument("--show-invalid", action="store_true",
                         help="also list relations a newer one replaced")
    delete = actions.add_parser("delete", parents=[common],
                                help="delete relations by id, or by --triple")
    delete.add_argument("relation_ids", nargs="*", metavar="ID")
    delete.add_argument("--triple", nargs=3, action="append", metavar=("SOURCE", "REL", "TARGET"),
                        help="a relation by its source, relationship and target; repeatable")
    history = actions.add_parser("history", parents=[common], help="a relation's changes")
    history.add_argument("relation_id", metavar="ID")


def _line(item: dict[str, Any]) -> str:
    score = f"{item['score']:.3f}  " if "score" in item else ""
    event = f"{item['event']:<10} " if "event" in item else ""
    scope = " ".join(f"{key}={item[key]}" for key in (*SCOPE_KEYS, "actor_id") if key in item)
    invalid = "" if item["valid"] else f"  (replaced {item.get('invalidated_at')})"
    return (f"{event}{score}{item['id']}  {item['source']} -[{item['relationship']}]-> "
            f"{item['target']}{invalid}\n    [{scope}]")


def _print(items: list[dict[str, Any]]) -> None:
    print("\n".join(_line(item) for item in items) if items else "(no relations)")


def run(args: argparse.Namespace, memory: Memory) -> tuple[Any, Callable[[], None]]:
    """Run one ``relations`` subcommand; returns its JSON result and its printer."""
    ids = {name: getattr(args, name) for name in SCOPE_KEYS}
    command = args.relations_command
    if command == "add":
        relation = {"source": args.source, "relationship": args.relationship,
                    "target": args.target, "source_type": args.source_type,
                    "target_type": args.target_type}
        result = memory.add_relations([{k: v for k, v in relation.items() if v is not None}],
                                      actor_id=args.actor_id, replace=args.replace, **ids)
        return result, lambda: _print(result["results"])
    if command == "search":
        result = memory.search_relations(args.query, limit=args.limit, **ids)
        return result, lambda: _print(result["results"])
    if command == "list":
        result = memory.list_relations(entity=args.entity, relationship=args.relationship,
                                       limit=args.limit, show_invalid=args.show_invalid, **ids)
        return result, lambda: _print(result["results"])
    if command == "delete":
        triples = [{"source": s, "relationship": r, "target": t} for s, r, t in args.triple or []]
        result = memory.delete_relations(relation_ids=args.relation_ids or None,
                                         relations=triples or None, **ids)
        missing = "".join(f"\nnot found: {item}" for item in result["not_found"])
        return result, lambda: print(f"deleted {result['deleted']}{missing}")
    result = memory.relation_history(args.relation_id, **ids)
    return result, lambda: print("\n".join(
        f"{row['created_at']}  {row['event']:<10} {row['old_relation'] or ''}"
        f"{' -> ' if row['old_relation'] and row['new_relation'] else ''}"
        f"{row['new_relation'] or ''}" for row in result["results"]))
