"""The ``lancemem`` command: serve the MCP server, or manage memories by hand.

A thin layer: flags become Settings, Settings build a Memory, and domain
errors become a one-line message on stderr with exit status 1.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from . import __version__, cli_relations, cli_tokens, cli_transfer, cli_ui
from .core.config import AUTH_MODES, MODES, SCOPE_KEYS, TRANSPORTS, Settings, load_settings
from .core.errors import LanceMemError, ValidationError
from .core.messages import MAX_LIMIT
from .core.object_storage import RedactingFilter, secrets
from .memory.facade import Memory


class _Parser(argparse.ArgumentParser):
    """argparse, except that a bad value for a known flag (``--limit abc``, JSON that
    does not parse, a mode it does not offer) is a VALIDATION_005 line and exit 1, as
    for every other bad input; an unknown flag or command still gets the usage text
    and exit 2."""

    def _get_value(self, action: argparse.Action, arg_string: str) -> Any:
        try:
            return super()._get_value(action, arg_string)
        except argparse.ArgumentError as exc:
            raise ValidationError(f"{exc}; see `{self.prog} --help`.") from None

    def _check_value(self, action: argparse.Action, value: Any) -> None:
        if isinstance(action, argparse._SubParsersAction):  # an unknown command: usage
            super()._check_value(action, value)
            return
        try:
            super()._check_value(action, value)
        except argparse.ArgumentError as exc:
            raise ValidationError(f"{exc}.") from None


def _json_object(text: str) -> Any:
    """An argparse type: a JSON value, with a message that shows what was wrong."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(
            f"not valid JSON ({exc.msg}): {text!r}; quote it for the shell, e.g. "
            '\'{"topic": "food"}\'') from None


def _common() -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
    common.add_argument("--db", help="store path or LanceDB URI (env LANCEMEM_DB)")
    common.add_argument("--model", dest="embedding_model",
                        help="fastembed model name (env LANCEMEM_EMBEDDING_MODEL)")
    for name in SCOPE_KEYS:
        flag = name.replace("_", "-")
        common.add_argument(f"--{flag}", dest=name,
                            help=f"{name} scope (env LANCEMEM_{name.upper()})")
    common.add_argument("--json", action="store_true", help="print JSON instead of text")
    return common


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every subcommand."""
    common = _common()
    parser = _Parser(prog="lancemem", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"lancemem {__version__}")
    parser.add_argument("--db", dest="global_db", metavar="DB",
                        help="store path or LanceDB URI, before or after the command "
                             "(env LANCEMEM_DB)")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", parents=[common], help="run the MCP server")
    serve.add_argument("--transport", choices=TRANSPORTS)
    serve.add_argument("--host", help="address for HTTP transports (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port for HTTP transports (default 8765)")
    serve.add_argument("--search-mode", choices=MODES,
                       help="default ranking for search (env LANCEMEM_SEARCH_MODE)")
    serve.add_argument("--allow-remote", action="store_true", default=None,
                       help="allow binding a non-loopback address")
    serve.add_argument("--allowed-host", dest="allowed_hosts", action="append", metavar="NAME",
                       help="a host name or address clients use in the URL, e.g. "
                            "memory.example.com or memory.example.com:8765; accepted in "
                            "Host/Origin headers; repeatable (env LANCEMEM_ALLOWED_HOSTS, "
                            "comma-separated)")
    for name in SCOPE_KEYS:
        serve.add_argument(f"--pin-{name.replace('_', '-')}", dest=f"pin_{name}",
                           metavar="ID",
                           help=f"fix {name} for every call; callers cannot change it")
    _auth_flags(serve)
    add = sub.add_parser("add", parents=[common], help="remember a text, or each message "
                         "of a conversation")
    add.add_argument("text", nargs="?", help="the text (or give --messages)")
    add.add_argument("--messages", metavar="JSON", help='a JSON list of messages, e.g. '
                     '\'[{"role": "user", "content": "I moved to Lisbon"}]\'; - reads it '
                     "from stdin; system messages are skipped, a message's name is its actor")
    add.add_argument("--actor-id")
    _metadata_flags(add)
    update = sub.add_parser("update", parents=[common],
                            help="change a memory's text, metadata or expiration date")
    update.add_argument("memory_id")
    update.add_argument("--text", help="the new text (re-embedded)")
    _metadata_flags(update)
    update.add_argument("--no-expiration", action="store_true",
                        help="remove the memory's expiration date")
    delete_all = sub.add_parser("delete-all", parents=[common],
                                help="delete every memory of the scope (and its relations)")
    delete_all.add_argument("--actor-id", help="only what this actor said")
    delete_all.add_argument("--filters", type=_json_object,
                            help="JSON filter object: only the memories it matches")
    delete_all.add_argument("--yes", action="store_true",
                            help="really delete (without it, says how many would go)")
    search = sub.add_parser("search", parents=[common], help="search memories")
    search.add_argument("query")
    search.add_argument("--limit", type=int, default=10)
    search.add_argument("--threshold", type=float,
                        help="least score to show (a relevance from 0 to 1, e.g. 0.3)")
    search.add_argument("--mode", choices=MODES,
                        help="ranking: hybrid, vector or keyword (env LANCEMEM_SEARCH_MODE)")
    search.add_argument("--actor-id")
    search.add_argument("--filters", type=_json_object, help="JSON filter object")
    listing = sub.add_parser("list", parents=[common], help="list memories, newest first")
    listing.add_argument("--limit", type=int, default=100, help="a page of at most this many "
                         "(1 to 1000, default 100)")
    pages = listing.add_mutually_exclusive_group()
    pages.add_argument("--cursor", help="the page after the one that printed this cursor")
    pages.add_argument("--all", action="store_true", dest="every_page",
                       help="every memory in the scope (read in pages of 1000)")
    listing.add_argument("--actor-id")
    listing.add_argument("--filters", type=_json_object, help="JSON filter object")
    by_id = {name: sub.add_parser(name, parents=[common], help=text)
             for name, text in (("get", "show one memory"), ("delete", "delete one memory"),
                                ("history", "show a memory's history"))}
    for parser_by_id in by_id.values():
        parser_by_id.add_argument("memory_id")
    for reader in (search, listing, by_id["get"]):
        reader.add_argument("--show-expired", action="store_true",
                            help="include memories whose expiration date has passed")
    sub.add_parser("reindex", parents=[common], help="re-embed every memory with --model")
    cli_transfer.add_parser(sub, common)
    optimize = sub.add_parser("optimize", parents=[common],
                              help="compact the store and drop old versions (also done "
                                   "automatically)")
    optimize.add_argument("--purge-expired", action="store_true",
                          help="first delete every expired memory of every scope (each "
                               "recorded in history)")
    store_only = _Parser(add_help=False)
    store_only.add_argument("--db", help="store path or LanceDB URI (env LANCEMEM_DB)")
    store_only.add_argument("--json", action="store_true", help="print JSON instead of text")
    cli_tokens.add_parser(sub, store_only)
    cli_relations.add_parser(sub, common)
    cli_ui.add_parser(sub, common)
    return parser


def _metadata_flags(parser: argparse.ArgumentParser) -> None:
    """``--metadata`` and ``--expiration-date``, shared by add and update."""
    parser.add_argument("--metadata", type=_json_object,
                        help='JSON object, e.g. \'{"topic": "food"}\'')
    parser.add_argument("--expiration-date", metavar="WHEN",
                        help="hide the memory from then on: 2026-12-31 (kept through that "
                             "day, UTC) or 2026-12-31T18:00:00+01:00")


def _auth_flags(serve: argparse.ArgumentParser) -> None:
    """``serve``'s authentication and rate-limit flags (README, "Serving a team")."""
    serve.add_argument("--auth", choices=AUTH_MODES,
                       help="require a credential on HTTP: token (`lancemem token create`) or "
                            "jwt (OAuth access tokens); env LANCEMEM_AUTH")
    serve.add_argument("--jwt-issuer", metavar="URL", help="with --auth jwt: the token issuer")
    serve.add_argument("--jwt-audience", metavar="AUD",
                       help="with --auth jwt: the audience tokens must name")
    serve.add_argument("--jwt-jwks-url", metavar="URL",
                       help="with --auth jwt: the issuer's JWKS (default: discovered)")
    serve.add_argument("--jwt-user-claim", metavar="CLAIM",
                       help="with --auth jwt: the claim that is the user_id (default sub)")
    serve.add_argument("--public-url", metavar="URL",
                       help="this server's URL as clients see it, e.g. "
                            "https://memory.example.com (OAuth metadata; its host is allowed)")
    serve.add_argument("--rate-limit", type=float, metavar="N",
                       help="requests per second per client address on HTTP, 0 for no limit "
                            "(default 100; env LANCEMEM_RATE_LIMIT)")
    serve.add_argument("--stateless", action="store_true", default=None,
                       help="streamable HTTP without sessions: any of several servers behind "
                            "a load balancer can answer any request (env LANCEMEM_STATELESS)")


def _settings(args: argparse.Namespace) -> Settings:
    overrides: dict[str, Any] = {
        key: getattr(args, key, None)
        for key in ("db", "embedding_model", "transport", "host", "port", "allow_remote",
                    "allowed_hosts", "search_mode", "auth", "jwt_issuer", "jwt_audience",
                    "jwt_jwks_url", "jwt_user_claim", "public_url", "rate_limit", "stateless",
                    *SCOPE_KEYS)
    }
    pinned = set()
    for name in SCOPE_KEYS:
        value = getattr(args, f"pin_{name}", None)
        if value is None:
            continue
        if overrides[name] is not None and overrides[name] != value:
            flag = name.replace("_", "-")
            raise ValidationError(
                f"--pin-{flag} {value!r} and --{flag} {overrides[name]!r} contradict each "
                f"other; pass only --pin-{flag}.")
        overrides[name] = value
        pinned.add(name)
    overrides["pinned"] = frozenset(pinned)
    return load_settings(overrides)


def _messages(args: argparse.Namespace) -> Any:
    """``add``'s text, or the messages of ``--messages`` (JSON, or - for stdin)."""
    if (args.text is None) == (args.messages is None):
        raise ValidationError("give the text to remember or --messages JSON, not both or "
                              'neither: lancemem add "I love pizza" --user-id alice')
    if args.messages is None:
        return args.text
    raw = sys.stdin.read() if args.messages == "-" else args.messages
    try:
        messages = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValidationError(f"--messages is not valid JSON ({exc.msg}); pass a list like "
                              '\'[{"role": "user", "content": "..."}]\'.') from None
    if not isinstance(messages, list):
        raise ValidationError("--messages must be a JSON list of {role, content} objects.")
    return messages


def _update(args: argparse.Namespace, memory: Memory) -> dict[str, Any]:
    """``update``: at least one change; --no-expiration removes the expiration date."""
    if args.no_expiration and args.expiration_date is not None:
        raise ValidationError("--expiration-date and --no-expiration contradict each other; "
                              "pass one.")
    expiration = "" if args.no_expiration else args.expiration_date
    if args.text is None and args.metadata is None and expiration is None:
        raise ValidationError("nothing to change: pass --text, --metadata, --expiration-date "
                              "or --no-expiration.")
    return memory.update(args.memory_id, text=args.text, metadata=args.metadata,
                         expiration_date=expiration, **_ids(args))


def _delete_all(args: argparse.Namespace, memory: Memory) -> dict[str, Any]:
    """``delete-all``: without --yes only says how many memories would go."""
    if not args.yes:
        count = memory.get_all(actor_id=args.actor_id, filters=args.filters, limit=1,
                               show_expired=True, **_ids(args))["total"]
        raise ValidationError(f"this would delete {count} memories (and, without --filters, "
                              "the scope's relations); nothing was deleted. Run it again "
                              "with --yes.")
    return memory.delete_all(actor_id=args.actor_id, filters=args.filters, **_ids(args))


def _print_items(items: list[dict[str, Any]]) -> None:
    if not items:
        print("(no memories)")
    for item in items:
        score = f"{item['score']:.3f}  " if "score" in item else ""
        scope = " ".join(f"{k}={item[k]}" for k in ("user_id", "agent_id", "run_id", "actor_id")
                         if k in item)
        expires = f"  expires {item['expiration_date']}" if "expiration_date" in item else ""
        print(f"{score}{item['id']}  {item['memory']}\n    [{scope}] {item['created_at']}"
              f"{expires}")


def _list(args: argparse.Namespace, memory: Memory) -> dict[str, Any]:
    """One page of ``list``, or with --all every page joined into one."""
    size = MAX_LIMIT if args.every_page else args.limit

    def page(cursor: str | None) -> dict[str, Any]:
        return memory.get_all(actor_id=args.actor_id, filters=args.filters, limit=size,
                              cursor=cursor, show_expired=args.show_expired, **_ids(args))

    result = page(args.cursor)
    shown = result["results"]
    while args.every_page and result["next_cursor"] is not None:
        result = page(result["next_cursor"])
        shown += result["results"]
    return {**result, "results": shown}


def _print_page(result: dict[str, Any]) -> None:
    """The memories, then (on stderr, so stdout stays the list) whether more remain."""
    _print_items(result["results"])
    if result["next_cursor"] is not None:
        print(f"showing {len(result['results'])} of {result['total']} memories; next page: "
              f"--cursor {result['next_cursor']} (or --all for every page)", file=sys.stderr)


def _print_history(entries: list[dict[str, Any]]) -> None:
    for entry in entries:
        change = {"ADD": f"+ {entry['new_memory']}", "DELETE": f"- {entry['old_memory']}"}.get(
            entry["event"], f"{entry['old_memory']} -> {entry['new_memory']}")
        label = f" ({entry['principal_label']!r})" if entry.get("principal_label") else ""
        who = f"  [by {entry['principal']}{label}]" if entry.get("principal") else ""
        old, new = entry.get("old_metadata"), entry.get("new_metadata")
        relabel = (f"  metadata {json.dumps(old)} -> {json.dumps(new)}"
                   if entry["event"] == "UPDATE" and old != new else "")
        print(f"{entry['created_at']}  {entry['event']:<6} {change}{relabel}{who}")


def _ids(args: argparse.Namespace) -> dict[str, Any]:
    return {name: getattr(args, name) for name in SCOPE_KEYS}


def _run_command(args: argparse.Namespace, memory: Memory) -> tuple[Any, Callable[[], None]]:
    """Run one subcommand; returns its JSON result and how to print it for people."""
    ids = _ids(args)
    if args.command == "add":
        result = memory.add(_messages(args), actor_id=args.actor_id, metadata=args.metadata,
                            expiration_date=args.expiration_date, **ids)
        return result, lambda: [print(f"{r['event']:<6} {r['id']}  {r['memory']}"
                                      + (f"  (metadata now {json.dumps(r['metadata'])})"
                                         if "metadata" in r else ""))
                                for r in result["results"]]
    if args.command == "update":
        result = _update(args, memory)
        return result, lambda: _print_items([result])
    if args.command == "delete-all":
        result = _delete_all(args, memory)
        return result, lambda: print(f"deleted {result['deleted']} memories and "
                                     f"{result['relations_deleted']} relations")
    if args.command == "search":
        result = memory.search(args.query, actor_id=args.actor_id, filters=args.filters,
                               limit=args.limit, threshold=args.threshold, mode=args.mode,
                               show_expired=args.show_expired, **ids)
        return result, lambda: _print_items(result["results"])
    if args.command == "list":
        result = _list(args, memory)
        return result, lambda: _print_page(result)
    if args.command == "get":
        result = memory.get(args.memory_id, show_expired=args.show_expired, **ids)
        return result, lambda: _print_items([result])
    if args.command == "delete":
        result = memory.delete(args.memory_id, **ids)
        return result, lambda: print(f"deleted {result['id']}")
    result = memory.history(args.memory_id, **ids)
    return result, lambda: _print_history(result["results"])


def _progress(label: str) -> Callable[[int, int], None]:
    """A progress bar on stderr (stdout stays clean for --json)."""
    def show(done: int, total: int) -> None:
        width = 30
        filled = width * done // max(total, 1)
        end = "\n" if done >= total else ""
        print(f"\r{label} [{'#' * filled}{'.' * (width - filled)}] {done}/{total}",
              end=end, file=sys.stderr, flush=True)

    return show


def _reindex(settings: Settings) -> dict[str, Any]:
    from .memory.reindex import reindex
    from .search.embeddings import FastEmbedder
    from .storage.store import Store

    embedder = FastEmbedder(settings.embedding_model, cache_dir=settings.model_cache_dir)
    count = reindex(Store.from_settings(settings), embedder, progress=_progress("reindex"))
    return {"reindexed": count, "model": settings.embedding_model}


def _optimize(memory: Memory, *, purge_expired: bool) -> dict[str, Any]:
    memory.ensure_open()
    before = memory.store.disk_bytes()
    purged = {}
    if purge_expired:
        purged = {"purged": memory.purge_expired()["deleted"]}
        memory.history_log.flush()  # their DELETE rows, compacted below with the rest
    memory.store.optimize()
    return {**purged, "bytes_before": before, "bytes_after": memory.store.disk_bytes()}


def _print_optimized(sizes: dict[str, Any]) -> None:
    if "purged" in sizes:
        print(f"purged {sizes['purged']} expired memories")
    if sizes["bytes_before"] is None:  # object storage: no directory to measure
        print("optimized (the size of a store on object storage is not measured)")
        return
    print(f"store size {sizes['bytes_before']:,} -> {sizes['bytes_after']:,} bytes")


# Commands that only read or delete: on a missing store they say so, creating nothing.
NEEDS_STORE = frozenset({"list", "search", "get", "history", "delete", "delete-all",
                         "export"})
NEEDS_STORE_RELATIONS = frozenset({"search", "list", "history", "delete"})


def _check_store_exists(args: argparse.Namespace, settings: Settings) -> None:
    """A command that only reads (or deletes) on a local store that is not there
    says so, instead of creating an empty store and finding nothing."""
    reads = args.command in NEEDS_STORE or (
        args.command == "relations" and args.relations_command in NEEDS_STORE_RELATIONS)
    scoped = getattr(args, "every_scope", False) or any(
        getattr(args, name, None) or getattr(settings, name) for name in SCOPE_KEYS)
    if reads and scoped:  # unscoped, the call itself is incomplete: VALIDATION_001
        _check_store_path(settings)


def _check_store_path(settings: Settings) -> None:
    """Refuse a local store path that does not exist (a typo would open an empty store)."""
    if "://" not in settings.db and not os.path.exists(settings.db):
        raise ValidationError(
            f"there is no store at {settings.db}; check --db (LANCEMEM_DB), or add a memory "
            "first (`lancemem add ...` creates the store).")


def _dispatch(args: argparse.Namespace, settings: Settings) -> tuple[Any, Callable[[], None]]:
    """Run a maintenance command or a memory command; returns result and printer."""
    if args.command == "token":
        return cli_tokens.run(args, settings)
    if args.command == "reindex":
        done = _reindex(settings)
        return done, lambda: print(
            f"re-embedded {done['reindexed']} memories with {done['model']}")
    _check_store_exists(args, settings)
    with Memory.from_settings(settings) as memory:
        if args.command in ("export", "import"):
            return cli_transfer.run(args, memory)
        if args.command == "relations":
            return cli_relations.run(args, memory)
        if args.command == "optimize":
            sizes = _optimize(memory, purge_expired=args.purge_expired)
            return sizes, lambda: _print_optimized(sizes)
        return _run_command(args, memory)


def _take_global_db(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """``lancemem --db X list`` means ``lancemem list --db X``."""
    if args.global_db is None:
        return
    if getattr(args, "db", None) not in (None, args.global_db):
        parser.error(f"--db is given twice ({args.global_db!r} before the command, "
                     f"{args.db!r} after it): give it once")
    args.db = args.global_db


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``lancemem`` console script."""
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:  # no secret in any log line
        handler.addFilter(RedactingFilter())
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        _take_global_db(parser, args)
        settings = _settings(args)
        logging.getLogger("lancemem").setLevel(settings.log_level.upper())
        if args.command == "serve":
            from .serving.serve import serve

            serve(settings)
            return 0
        if args.command == "ui":
            _check_store_path(settings)
            return cli_ui.run(args, settings)
        result, show = _dispatch(args, settings)
    except LanceMemError as exc:
        print(f"lancemem: {secrets.redact(str(exc))}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(result, ensure_ascii=False, indent=2))
    else:
        show()
    return 0


if __name__ == "__main__":
    sys.exit(main())
