"""One store, one way of committing: ``s3+ddb://`` and ``s3://`` are not mixed.

A store opened as ``s3+ddb://bucket/prefix?ddbTableName=T`` commits through
the DynamoDB table T; the same prefix opened as ``s3://bucket/prefix``
commits with S3 conditional writes and never tells DynamoDB. The two then
disagree on each table's newest version: the DynamoDB side does not see the
other's writes (until it commits again), and can commit over them. So the
first ``s3+ddb://`` open records the commit table in the meta table, and any
later open by another form or another table is refused, saying which URI to
use. A store used as ``s3://`` before may move to ``s3+ddb://`` (every
server stopped first, as the README says); the record then keeps it there.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from urllib.parse import parse_qs, urlsplit

from ..core.errors import ValidationError
from ..core.object_storage import describe
from .meta import MetaTable
from .retries import with_retries
from .schema import META

log = logging.getLogger(__name__)

COMMIT_STORE = "commit_store"  # meta key: "dynamodb:<table>" once opened as s3+ddb://


def commit_table(uri: str) -> str | None:
    """The DynamoDB commit table an ``s3+ddb://`` URI names (None for other URIs)."""
    if not uri.startswith("s3+ddb://"):
        return None
    names = parse_qs(urlsplit(uri).query).get("ddbTableName") or [""]
    return names[0]


def _plain(uri: str) -> str:
    """The ``s3://`` location of a store, whatever form names it."""
    return describe(uri).split("?")[0].replace("s3+ddb://", "s3://", 1).rstrip("/")


def _recorded(uri: str, storage_options: Mapping[str, str]) -> str | None:
    """The commit store the store's meta table records, read from the plain
    S3 path (every committed manifest is there, whichever form wrote it, and
    reading commits nothing); None for a new store."""
    import lance

    def read() -> list[dict[str, str | None]]:
        try:
            dataset = lance.dataset(f"{_plain(uri)}/{META}.lance",
                                    storage_options=dict(storage_options) or None)
        except ValueError as exc:  # Lance: "Dataset at path ... was not found"
            if "was not found" in str(exc).lower():
                return []  # a new store (or one without a meta table yet)
            raise
        return dataset.to_table(filter=f"key = '{COMMIT_STORE}'").to_pylist()

    rows = with_retries(read, what=f"opening the database at {describe(uri)}")
    return next((row["value"] for row in rows if row["value"]), None)


def refuse_another_commit_form(uri: str, storage_options: Mapping[str, str]) -> None:
    """Refuse to open ``uri`` if the store records another commit form; called
    before anything is opened or written through ``uri``."""
    if not uri.startswith(("s3://", "s3+ddb://")):
        return
    recorded = _recorded(uri, storage_options)
    table = commit_table(uri)
    if recorded is None or recorded == f"dynamodb:{table}":
        return
    base, recorded_table = _plain(uri), recorded.removeprefix("dynamodb:")
    raise ValidationError(
        f"the store at {base} commits through the DynamoDB table {recorded_table!r}, but "
        f"it was opened as {describe(uri)}: open it as "
        f"{base.replace('s3://', 's3+ddb://', 1)}?ddbTableName={recorded_table} on every "
        "server and command (writes through another form are not seen by the servers that "
        "use that table, and can overwrite theirs).")


def record_commit_store(meta: MetaTable, uri: str) -> None:
    """At a store's first ``s3+ddb://`` open, record its DynamoDB table."""
    table = commit_table(uri)
    if table is None or meta.read().get(COMMIT_STORE):
        return
    meta.write_defaults({COMMIT_STORE: f"dynamodb:{table}"})
    log.info("%s now commits through the DynamoDB table %s: open it only as %s from now on",
             _plain(uri), table, describe(uri))
