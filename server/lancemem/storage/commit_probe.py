"""Whether concurrent writers are safe on a store's object storage, checked at open.

Lance commits a version by writing its manifest only if no manifest of that
version exists. On ``s3://`` that is an S3 conditional write (``PUT`` with
``If-None-Match: *``): AWS S3 honours it, and so do SeaweedFS and recent
MinIO, but an S3-compatible server that ignores the header lets a second
writer overwrite the first's commit, silently losing its rows (FACTS.md: 1
commit of 200 lost this way). ``s3+ddb://`` commits through DynamoDB instead
and is safe on any S3 server; ``gs://`` and ``az://`` have native
preconditions. So for ``s3://`` with a custom endpoint, opening a store writes
one small object twice with ``If-None-Match: *`` and warns if the second
write was accepted. The request is signed here (AWS Signature V4) with the
configured keys, so no AWS SDK is needed.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import logging
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from urllib.parse import quote, urlsplit

from ..core.object_storage import describe

log = logging.getLogger(__name__)

SAFE_SCHEMES = ("s3+ddb", "gs", "az", "abfs", "memory", "file")
TIMEOUT_SECONDS = 5.0
_checked: dict[str, str | None] = {}


def unsafe_for_writers(uri: str, options: Mapping[str, str]) -> str | None:
    """Why several servers writing to ``uri`` could lose writes, or None if they
    cannot (or it could not be told). Checked once per location per process."""
    if uri not in _checked:
        _checked[uri] = _check(uri, options)
    return _checked[uri]


def _check(uri: str, options: Mapping[str, str]) -> str | None:
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    if scheme in SAFE_SCHEMES:
        return None
    if scheme != "s3":
        return (f"LanceDB commits to {scheme}:// without protection against concurrent "
                "writers: run a single server on it, or use s3+ddb://")
    endpoint = options.get("endpoint") or options.get("aws_endpoint")
    if not endpoint:
        return None  # AWS S3 itself honours If-None-Match (since August 2024)
    access, secret = options.get("aws_access_key_id"), options.get("aws_secret_access_key")
    if not access or not secret:
        log.info("could not check whether %s honours conditional writes (no access key "
                 "in the configuration)", describe(uri))
        return None
    probe = _Probe(endpoint, options.get("region") or "us-east-1", access, secret,
                   options.get("aws_session_token"))
    key = f"{parts.path.strip('/')}/_lancemem/commit-probe-{uuid.uuid4().hex}".lstrip("/")
    try:
        first = probe.put(parts.netloc, key)
        second = probe.put(parts.netloc, key) if 200 <= first < 300 else None
        probe.delete(parts.netloc, key)
    except OSError as exc:
        log.info("could not check whether %s honours conditional writes: %s",
                 describe(uri), exc)
        return None
    if second is None or second in (409, 412):
        if second is None:
            log.info("could not check whether %s honours conditional writes (HTTP %s)",
                     describe(uri), first)
        return None
    if 200 <= second < 300:
        return (f"the S3 server at {endpoint} ignores conditional writes (If-None-Match): "
                "several servers writing to this store can overwrite each other's commits "
                "and lose writes. Run one server on it, or use "
                "s3+ddb://BUCKET/PREFIX?ddbTableName=TABLE (README: Running several servers)")
    log.info("could not check whether %s honours conditional writes (HTTP %s)",
             describe(uri), second)
    return None


class _Probe:
    """Signed S3 requests (path style) to one endpoint."""

    def __init__(self, endpoint: str, region: str, access: str, secret: str,
                 token: str | None) -> None:
        self._url = urlsplit(endpoint)
        self._region, self._access, self._secret, self._token = region, access, secret, token

    def put(self, bucket: str, key: str) -> int:
        """PUT a small object only if none exists; returns the HTTP status."""
        return self._send("PUT", bucket, key, b"lancemem commit probe\n", {"if-none-match": "*"})

    def delete(self, bucket: str, key: str) -> int:
        """DELETE the object; returns the HTTP status."""
        return self._send("DELETE", bucket, key, b"", {})

    def _send(self, method: str, bucket: str, key: str, body: bytes,
              extra: Mapping[str, str]) -> int:
        path = "/" + quote(f"{bucket}/{key}", safe="/-_.~")
        headers = self._signed(method, path, body, extra)
        cls = (http.client.HTTPSConnection if self._url.scheme == "https"
               else http.client.HTTPConnection)
        conn = cls(self._url.netloc, timeout=TIMEOUT_SECONDS)
        try:
            conn.request(method, path, body=body, headers=headers)
            answer = conn.getresponse()
            answer.read()
            return answer.status
        finally:
            conn.close()

    def _signed(self, method: str, path: str, body: bytes,
                extra: Mapping[str, str]) -> dict[str, str]:
        """The request's headers with an AWS Signature V4 ``Authorization``."""
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        payload = hashlib.sha256(body).hexdigest()
        headers = {"host": self._url.netloc, "x-amz-content-sha256": payload,
                   "x-amz-date": stamp, **extra}
        if self._token:
            headers["x-amz-security-token"] = self._token
        names = sorted(headers)
        signed = ";".join(names)
        canonical = "\n".join([method, path, "", "".join(f"{n}:{headers[n].strip()}\n"
                                                         for n in names), signed, payload])
        scope = f"{stamp[:8]}/{self._region}/s3/aws4_request"
        to_sign = "\n".join(["AWS4-HMAC-SHA256", stamp, scope,
                             hashlib.sha256(canonical.encode()).hexdigest()])
        key = ("AWS4" + self._secret).encode()
        for part in (stamp[:8], self._region, "s3", "aws4_request"):
            key = hmac.new(key, part.encode(), hashlib.sha256).digest()
        signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
        headers["authorization"] = (f"AWS4-HMAC-SHA256 Credential={self._access}/{scope}, "
                                    f"SignedHeaders={signed}, Signature={signature}")
        return headers
