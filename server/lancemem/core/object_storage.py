"""Where a store lives when it is not on local disk: LanceDB storage options
from the standard AWS variables and ``LANCEMEM_STORAGE_OPTIONS``, the read
consistency bound, and keeping secrets out of every message.

``s3://bucket/prefix`` commits with S3 conditional writes (``If-None-Match``),
``s3+ddb://bucket/prefix?ddbTableName=T`` through a DynamoDB table; ``gs://``
and ``az://`` work as LanceDB does. The variables are the ones the AWS tools
read, so a shell set up for ``aws s3`` is set up for lancemem.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Mapping
from urllib.parse import urlsplit

from .errors import ValidationError

ENV_OPTIONS = "LANCEMEM_STORAGE_OPTIONS"
ENV_CONSISTENCY = "LANCEMEM_READ_CONSISTENCY"
# A server re-reads a table's version at most this often on object storage, so it
# sees another server's writes within this many seconds (its own at once). On
# local disk the check costs 0.05 ms and is made before every read.
OBJECT_STORE_CONSISTENCY = 1.0
MAX_CONSISTENCY = 3600.0

# AWS variable -> LanceDB storage option; the first variable set wins for an option.
_AWS_VARIABLES = (
    ("AWS_ACCESS_KEY_ID", "aws_access_key_id"),
    ("AWS_SECRET_ACCESS_KEY", "aws_secret_access_key"),
    ("AWS_SESSION_TOKEN", "aws_session_token"),
    ("AWS_REGION", "region"),
    ("AWS_DEFAULT_REGION", "region"),
    ("AWS_ENDPOINT_URL_S3", "endpoint"),
    ("AWS_ENDPOINT_URL", "endpoint"),
    ("AWS_ENDPOINT_URL_DYNAMODB", "dynamodb_endpoint"),
)
# Options whose values are never shown (matched on the option's name).
_SECRET_WORDS = ("secret", "token", "password", "key", "sas", "credential")


def is_remote(uri: str) -> bool:
    """Whether ``uri`` is an object store (``scheme://``) rather than a local path;
    ``memory://`` is neither shared nor durable and counts as local."""
    return "://" in uri and not uri.startswith("memory://")


def storage_options(environ: Mapping[str, str]) -> dict[str, str]:
    """LanceDB storage options from the AWS variables, then ``LANCEMEM_STORAGE_OPTIONS``
    (a JSON object of strings) over them. An ``http://`` endpoint turns on
    ``allow_http`` unless the options say otherwise."""
    options: dict[str, str] = {}
    for variable, option in _AWS_VARIABLES:
        value = environ.get(variable, "").strip()
        if value and option not in options:
            options[option] = value
    if "dynamodb_endpoint" not in options and environ.get("AWS_ENDPOINT_URL", "").strip():
        options["dynamodb_endpoint"] = environ["AWS_ENDPOINT_URL"].strip()
    options.update(_parse_options(environ.get(ENV_OPTIONS, "")))
    endpoints = (options.get("endpoint", ""), options.get("dynamodb_endpoint", ""))
    if any(url.lower().startswith("http://") for url in endpoints):
        options.setdefault("allow_http", "true")
    secrets.remember(options)
    return options


def _parse_options(raw: str) -> dict[str, str]:
    if not raw.strip():
        return {}
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        raise ValidationError(
            f"{ENV_OPTIONS} is not JSON; set it to an object of strings, e.g. "
            '{"allow_http": "true", "region": "eu-west-1"}.') from None
    if not isinstance(value, dict):
        raise ValidationError(f"{ENV_OPTIONS} must be a JSON object of option names to "
                              f"strings, not {type(value).__name__}.")
    options: dict[str, str] = {}
    for key, item in value.items():
        if isinstance(item, bool):
            item = "true" if item else "false"
        elif isinstance(item, int | float):
            item = str(item)
        if not isinstance(item, str) or not key.strip():
            raise ValidationError(f"{ENV_OPTIONS}: option {key!r} must be a non-empty name "
                                  "with a string value (LanceDB storage options are strings).")
        options[key.strip()] = item
    return options


def read_consistency(raw: object, db: str) -> float:
    """The read consistency bound in seconds: ``raw`` if given (0 to 3600), else
    1 s on object storage and 0 on local disk."""
    if raw is None or raw == "":
        return OBJECT_STORE_CONSISTENCY if is_remote(db) else 0.0
    try:
        seconds = float(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        seconds = -1.0
    if not 0 <= seconds <= MAX_CONSISTENCY:  # also refuses NaN
        raise ValidationError(
            f"read consistency {raw!r} is not a number of seconds from 0 to 3600 "
            f"({ENV_CONSISTENCY}); 0 re-reads before every read, the default on object "
            f"storage is {OBJECT_STORE_CONSISTENCY:g}.")
    return seconds


def describe(uri: str) -> str:
    """``uri`` as logs show it: any query other than ``ddbTableName`` and any
    user info are left out."""
    if not is_remote(uri):
        return uri
    parts = urlsplit(uri)
    host = parts.hostname or ""
    query = "&".join(pair for pair in parts.query.split("&") if pair.startswith("ddbTableName="))
    return f"{parts.scheme}://{host}{parts.path}" + (f"?{query}" if query else "")


class _Secrets:
    """Every secret value lancemem was given, so that no message shows one."""

    def __init__(self) -> None:
        self._values: set[str] = set()
        self._lock = threading.Lock()

    def remember(self, options: Mapping[str, str]) -> None:
        """Note the values of the options whose names say they are secret."""
        found = {value for name, value in options.items()
                 if any(word in name.lower() for word in _SECRET_WORDS)
                 and len(value) >= 4}
        with self._lock:
            self._values |= found

    def redact(self, text: str) -> str:
        """``text`` with every remembered secret replaced by ``***``."""
        with self._lock:
            values = sorted(self._values, key=len, reverse=True)
        for value in values:
            text = text.replace(value, "***")
        return text


secrets = _Secrets()


class RedactingFilter(logging.Filter):
    """A log filter that blanks secrets out of every record's message."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = secrets.redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        return True
