"""``lancemem token create|list|revoke``: API tokens for ``serve --auth token``.

Tokens live in the store (tokens.py), so every server on the store accepts
them and a revoke reaches them all. ``create`` prints the secret once, alone
on stdout (``TOKEN=$(lancemem token create --user-id alice)``), and what it
made on stderr; ``--json`` prints one object with ``id`` and ``token``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from .core.config import Settings
from .storage.store import Store
from .storage.tokens import TokenRecord, TokenTable


def _days(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a number of days; pass e.g. 30 or 0.5") from None


def add_parser(sub: Any, parent: argparse.ArgumentParser) -> None:
    """The ``token`` command and its subcommands; ``parent`` gives --db and --json."""
    token = sub.add_parser("token", help="manage API tokens for `serve --auth token`")
    actions = token.add_subparsers(dest="token_command", required=True)
    create = actions.add_parser("create", parents=[parent],
                                help="make a token bound to a user (and agent/run)")
    create.add_argument("--user-id", dest="token_user_id", required=True, metavar="ID",
                        help="the user every call with this token acts as")
    create.add_argument("--agent-id", dest="token_agent_id", metavar="ID",
                        help="also bind the token to this agent")
    create.add_argument("--run-id", dest="token_run_id", metavar="ID",
                        help="also bind the token to this run")
    create.add_argument("--read-only", action="store_true",
                        help="allow search/list/get/history only")
    create.add_argument("--label", help="a name to recognise the token by, e.g. support-bot")
    create.add_argument("--expires-in", type=_days, metavar="DAYS",
                        help="stop accepting the token after this many days")
    actions.add_parser("list", parents=[parent], help="show every token (never the secrets)")
    revoke = actions.add_parser("revoke", parents=[parent], help="stop accepting a token")
    revoke.add_argument("token_id", metavar="ID", help="the token's id, as `token list` shows")


def _binding(record: TokenRecord) -> str:
    ids = [f"{key}={value!r}" for key, value in (
        ("user_id", record.user_id), ("agent_id", record.agent_id), ("run_id", record.run_id))
        if value is not None]
    return " ".join(ids)


def _print_table(items: list[dict[str, Any]]) -> None:
    if not items:
        print("(no tokens; create one with `lancemem token create --user-id ID`)")
        return
    for item in items:
        scope = " ".join(f"{key}={item[key]}" for key in ("user_id", "agent_id", "run_id")
                         if item[key] is not None)
        access = "read-only" if item["read_only"] else "read-write"
        expires = f" expires {item['expires_at']}" if item["expires_at"] else ""
        label = f" {item['label']!r}" if item["label"] else ""
        revoked = f" revoked {item['revoked_at'][:19]}" if item["revoked_at"] else ""
        print(f"{item['id']}  {item['status']:<7} {access:<10} {scope}{label} "
              f"created {item['created_at'][:19]}{expires}{revoked}")


def run(args: argparse.Namespace, settings: Settings) -> tuple[Any, Callable[[], None]]:
    """Run one ``token`` subcommand; returns its JSON result and how to print it."""
    table = TokenTable(Store.from_settings(settings))
    now = datetime.now(UTC)
    if args.token_command == "create":
        record, secret = table.create(
            user_id=args.token_user_id, agent_id=args.token_agent_id, run_id=args.token_run_id,
            read_only=args.read_only, label=args.label, expires_in_days=args.expires_in)
        result = {**record.to_item(now), "token": secret}

        def show() -> None:
            access = "read-only" if record.read_only else "read-write"
            expiry = f", expires {record.expires_at.isoformat()}" if record.expires_at else ""
            print(f"lancemem: created token {record.id} for {_binding(record)} ({access}"
                  f"{expiry}). It is shown only now: send it as 'Authorization: Bearer "
                  "<token>'.", file=sys.stderr)
            print(secret)

        return result, show
    if args.token_command == "list":
        items = [record.to_item(now) for record in table.records()]
        return {"results": items}, lambda: _print_table(items)
    record = table.revoke(args.token_id)
    assert record.revoked_at is not None
    if record.revoked_at < now:
        return record.to_item(now), lambda: print(
            f"{record.id} ({_binding(record)}) was already revoked at "
            f"{record.revoked_at.isoformat()}")
    return record.to_item(now), lambda: print(
        f"revoked {record.id} ({_binding(record)}); servers on this store refuse it within "
        "a second")
