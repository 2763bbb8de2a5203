"""Object storage settings, secrets, the read consistency bound and leases.

The settings and secret handling need no server. Read consistency and leases
are the same code on every backend, so they are tested here on local disk
(several processes for leases); tests/test_object_storage.py runs them on a
real S3 server.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from lancemem.core.config import load_settings
from lancemem.core.errors import ConflictError, StorageError, ValidationError
from lancemem.core.object_storage import (
    RedactingFilter,
    describe,
    is_remote,
    read_consistency,
    secrets,
    storage_options,
)
from lancemem.storage.leases import KEYS, MAINTENANCE_LEASE, RELATIONS_LEASE, Leases
from lancemem.storage.retries import _is_retryable, _storage_error, with_retries
from lancemem.storage.store import Store

AWS = {"AWS_ACCESS_KEY_ID": "AKIDEXAMPLE", "AWS_SECRET_ACCESS_KEY": "wJalr-secret-EXAMPLEKEY",
       "AWS_REGION": "eu-west-1", "AWS_ENDPOINT_URL_S3": "http://127.0.0.1:9000",
       "AWS_ENDPOINT_URL_DYNAMODB": "http://127.0.0.1:9001"}


def test_aws_variables_become_lancedb_storage_options() -> None:
    options = storage_options(AWS)
    assert options == {"aws_access_key_id": "AKIDEXAMPLE",
                       "aws_secret_access_key": "wJalr-secret-EXAMPLEKEY",
                       "region": "eu-west-1", "endpoint": "http://127.0.0.1:9000",
                       "dynamodb_endpoint": "http://127.0.0.1:9001", "allow_http": "true"}


def test_specific_variables_win_and_the_general_endpoint_serves_both() -> None:
    env = {"AWS_REGION": "eu-west-1", "AWS_DEFAULT_REGION": "us-east-2",
           "AWS_ENDPOINT_URL": "https://s3.example.com"}
    options = storage_options(env)
    assert options["region"] == "eu-west-1"
    assert options["endpoint"] == options["dynamodb_endpoint"] == "https://s3.example.com"
    assert "allow_http" not in options  # https needs no opt-in
    both = storage_options({**env, "AWS_ENDPOINT_URL_S3": "https://other"})
    assert both["endpoint"] == "https://other"
    assert both["dynamodb_endpoint"] == "https://s3.example.com"


def test_lancemem_storage_options_are_merged_on_top() -> None:
    env = {**AWS, "LANCEMEM_STORAGE_OPTIONS": json.dumps(
        {"allow_http": False, "timeout": "30s", "region": "us-west-2", "retries": 5})}
    options = storage_options(env)
    assert options["allow_http"] == "false"  # an explicit choice is kept
    assert options["timeout"] == "30s" and options["region"] == "us-west-2"
    assert options["retries"] == "5"


@pytest.mark.parametrize("raw", ["{", "[1, 2]", '"s"', '{"a": {"b": 1}}', '{"a": null}',
                                 '{"": "x"}'])
def test_bad_storage_options_are_refused_saying_how(raw: str) -> None:
    with pytest.raises(ValidationError, match="LANCEMEM_STORAGE_OPTIONS") as caught:
        storage_options({"LANCEMEM_STORAGE_OPTIONS": raw})
    assert caught.value.code.startswith("VALIDATION_")


def test_settings_carry_storage_options_without_showing_them(tmp_path: Path) -> None:
    settings = load_settings({"db": "s3://bucket/prefix"}, environ={"HOME": str(tmp_path), **AWS})
    assert settings.storage_options["aws_secret_access_key"] == "wJalr-secret-EXAMPLEKEY"
    assert "wJalr" not in repr(settings)
    assert settings.read_consistency == 1.0
    local = load_settings({"db": str(tmp_path / "db")}, environ={"HOME": str(tmp_path)})
    assert local.read_consistency == 0.0


@pytest.mark.parametrize(("raw", "db", "expected"), [
    (None, "s3://b/p", 1.0), ("", "/tmp/x", 0.0), ("0", "s3://b/p", 0.0), ("2.5", "/x", 2.5),
    (None, "memory://x", 0.0), ("3600", "gs://b", 3600.0)])
def test_read_consistency_defaults_and_values(raw: str | None, db: str, expected: float) -> None:
    assert read_consistency(raw, db) == expected


@pytest.mark.parametrize("raw", ["-1", "nan", "soon", "3601", "inf"])
def test_bad_read_consistency_is_refused(raw: str) -> None:
    with pytest.raises(ValidationError, match="LANCEMEM_READ_CONSISTENCY"):
        load_settings(environ={"HOME": "/h", "LANCEMEM_DB": "s3://b/p",
                               "LANCEMEM_READ_CONSISTENCY": raw})


def test_what_counts_as_object_storage_and_how_it_is_shown() -> None:
    assert is_remote("s3://b/p") and is_remote("s3+ddb://b/p?ddbTableName=t")
    assert not is_remote("/var/db") and not is_remote("memory://x")
    assert describe("s3+ddb://b/p?ddbTableName=t&x=secret") == "s3+ddb://b/p?ddbTableName=t"
    assert describe("s3://user:pw@b/p") == "s3://b/p"


def test_secrets_never_reach_a_log_line_or_an_error(caplog: pytest.LogCaptureFixture) -> None:
    storage_options(AWS)
    record_logger = logging.getLogger("lancemem.test.secrets")
    handler_filter = RedactingFilter()
    caplog.handler.addFilter(handler_filter)
    try:
        record_logger.warning("the store said %s",
                              "bad key wJalr-secret-EXAMPLEKEY for AKIDEXAMPLE")
    finally:
        caplog.handler.removeFilter(handler_filter)
    assert "wJalr" not in caplog.text and "AKIDEXAMPLE" not in caplog.text
    assert "the store said bad key *** for ***" in caplog.text
    error = _storage_error("opening", RuntimeError("403 wJalr-secret-EXAMPLEKEY refused"))
    assert "wJalr" not in error.detail and "wJalr" not in str(error)
    assert secrets.redact("nothing secret here") == "nothing secret here"


def test_an_sdk_bodys_retryable_flag_is_not_a_commit_conflict() -> None:
    missing_table = RuntimeError("ResourceNotFoundException ... retryable: true }")
    assert not _is_retryable(missing_table)
    error = _storage_error("creating table memories", missing_table)
    assert "DynamoDB commit table" in str(error)
    assert _is_retryable(RuntimeError("Retryable commit conflict for version 7"))


def test_reads_see_other_writers_within_the_bound_and_own_writes_at_once(tmp_path: Path) -> None:
    schema = pa.schema([pa.field("id", pa.string())])
    writer = Store(str(tmp_path), read_consistency=0)
    writer.ensure_table("t", schema)
    reader = Store(str(tmp_path), read_consistency=0.6)
    assert reader.count("t") == 0
    writer.insert("t", [{"id": "a"}], schema)
    assert reader.count("t") == 0  # within the bound the reader may be behind
    deadline = time.monotonic() + 5
    while reader.count("t") != 1:
        assert time.monotonic() < deadline, "the reader never saw the write"
        time.sleep(0.05)
    reader.insert("t", [{"id": "b"}], schema)
    assert reader.count("t") == 2  # its own write, at once
    writer.insert("t", [{"id": "c"}], schema)
    reader.refresh()
    assert reader.count("t") == 3



class _CheckInterleaved:
    """A table's cached dataset whose next version check lets other threads
    run in the middle: it reads the newest version, then runs ``meanwhile``
    (as if this thread were paused there), then answers."""

    def __init__(self, dataset: Any, meanwhile: Any) -> None:
        self._dataset, self._meanwhile = dataset, meanwhile

    @property
    def latest_version(self) -> int:
        latest = self._dataset.latest_version
        meanwhile, self._meanwhile = self._meanwhile, None
        if meanwhile is not None:
            meanwhile()
        return latest

    def __getattr__(self, name: str) -> Any:
        return getattr(self._dataset, name)


def test_a_check_that_began_before_an_own_commit_does_not_hide_it(tmp_path: Path) -> None:
    """Thread B checks for a new version; before it stores what it found, thread
    A commits and thread C checks again (seeing A's row). B's older snapshot
    must not replace C's: A's write was acknowledged, and a server shows its
    own writes at once, whatever the read consistency bound."""
    schema = pa.schema([pa.field("id", pa.string())])
    store = Store(str(tmp_path), read_consistency=30)
    store.ensure_table("t", schema)
    store.insert("t", [{"id": "before"}], schema)
    assert store.count("t") == 1

    real = store._datasets["t"]

    def thread_a_commits_then_thread_c_reads() -> None:
        store._datasets["t"] = real  # what the other threads find cached
        store.insert("t", [{"id": "acknowledged"}], schema)
        assert store.count("t") == 2

    store._datasets["t"] = _CheckInterleaved(real, thread_a_commits_then_thread_c_reads)
    store._checked.pop("t")  # B's check is due
    assert store.count("t") == 1  # B answers from what it read before A's commit
    assert store.count("t") == 2, "an acknowledged write of this process went unseen"


def _take_turns(db: str, rounds: int) -> None:
    """Increment a counter under the relations lease, read-modify-write."""
    store = Store(db)
    leases = Leases(store)
    for _ in range(rounds):
        with leases.held(RELATIONS_LEASE, seconds=30, wait=60):
            store.refresh()
            value = store.select("counter", None)[0]["value"]
            store.upsert("counter", [{"id": "c", "value": value + 1}], _COUNTER)


_COUNTER = pa.schema([pa.field("id", pa.string()), pa.field("value", pa.int64())])


def test_a_lease_has_one_holder_across_processes(tmp_path: Path) -> None:
    store = Store(str(tmp_path))
    store.ensure_table_with("counter", _COUNTER, [{"id": "c", "value": 0}])
    Leases(store).ensure()
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_take_turns, args=(str(tmp_path), 8)) for _ in range(3)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=240)
        assert worker.exitcode == 0
    # without the lease, concurrent read-modify-writes lose increments
    assert store.select("counter", None)[0]["value"] == 24


def test_a_lease_is_free_again_after_release_or_expiry(tmp_path: Path) -> None:
    leases = Leases(Store(str(tmp_path)))
    holder = leases.try_take(MAINTENANCE_LEASE, 60)
    assert holder is not None
    assert leases.try_take(MAINTENANCE_LEASE, 60) is None
    assert leases.try_take(RELATIONS_LEASE, 60) is not None  # keys are independent
    leases.release(MAINTENANCE_LEASE, "someone-else")  # not the holder: nothing changes
    assert leases.try_take(MAINTENANCE_LEASE, 60) is None
    leases.release(MAINTENANCE_LEASE, holder)
    short = leases.try_take(MAINTENANCE_LEASE, 0.3)
    assert short is not None
    time.sleep(0.5)  # its holder died, say: the lease expires
    assert leases.try_take(MAINTENANCE_LEASE, 60) is not None
    with pytest.raises(ValueError, match="unknown lease"):
        leases.try_take("other", 1)
    assert set(KEYS) == {RELATIONS_LEASE, MAINTENANCE_LEASE}


@pytest.mark.parametrize(("options", "said"), [
    ({"timeout": "5"}, 'failed to parse "5" as Duration'),
    ({"allow_http": "maybe"}, 'failed to parse "maybe" as boolean'),
])
def test_a_storage_option_lancedb_cannot_read_is_named_with_what_to_do(
        options: dict[str, str], said: str) -> None:
    store = Store("s3://bucket/prefix", storage_options={
        "aws_access_key_id": "AKIDEXAMPLE", "aws_secret_access_key": "wJalr-secret-EXAMPLEKEY",
        "region": "eu-west-1", "endpoint": "http://127.0.0.1:9", **options})
    with pytest.raises(StorageError) as caught:
        store.table_names()
    message = str(caught.value)
    assert "LANCEMEM_STORAGE_OPTIONS" in message and said in message
    assert "wJalr" not in message


def test_a_refused_access_key_names_the_session_token_too() -> None:
    error = _storage_error("opening", RuntimeError("<Code>InvalidAccessKeyId</Code>"))
    assert "AWS_ACCESS_KEY_ID" in str(error) and "AWS_SESSION_TOKEN" in str(error)


def test_lances_own_commit_retries_running_out_is_a_conflict_not_retried_again() -> None:
    calls = []

    def busy() -> None:
        calls.append(1)
        raise OSError("Too many concurrent writers. Attempted 5 times, but failed on "
                      "retry_timeout of 30.000 seconds., lance/src/io/commit.rs:128:5")

    with pytest.raises(ConflictError) as caught:
        with_retries(busy, what="writing to memories")
    assert calls == [1]
    assert caught.value.code == "STORAGE_002" and "try again" in str(caught.value)
