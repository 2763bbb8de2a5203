"""Fetching and caching an OAuth issuer's signing keys (its JWKS) for jwt_auth.py.

``discover_jwks_url`` finds the key set from the issuer's metadata (RFC 8414,
then OpenID Connect); ``fetch_json`` gets a document over http(s) only, with a
timeout, a size cap and no redirects to other schemes; ``parse_jwks`` keeps the
keys that may verify a signature (never a symmetric or encryption key).
``KeyCache`` holds the keys, refreshing them after a TTL or when a token names
an unknown key, but at most once per quiet period, so that random key ids
cannot make us hammer the issuer, and a failed refresh keeps the keys we have.
Errors carry text that is safe to log: never key material.
"""

from __future__ import annotations

import http.client
import json
import logging
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from ..core.errors import AuthenticationError

log = logging.getLogger(__name__)

# The key type each allowed algorithm needs, and for ECDSA the curve too.
KEY_TYPE_FOR_ALG = {
    "RS256": "RSA", "RS384": "RSA", "RS512": "RSA",
    "PS256": "RSA", "PS384": "RSA", "PS512": "RSA",
    "ES256": "EC", "ES384": "EC", "ES512": "EC",
    "EdDSA": "OKP",
}
ALLOWED_ALGORITHMS = frozenset(KEY_TYPE_FOR_ALG)
_LOADERS: dict[str, Any] = {"RSA": RSAAlgorithm, "EC": ECAlgorithm, "OKP": OKPAlgorithm}
_PRIVATE_KEYS = (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey,
                 ed25519.Ed25519PrivateKey, ed448.Ed448PrivateKey)

FETCH_TIMEOUT_SECONDS = 5.0
MAX_DOCUMENT_BYTES = 1 << 20  # 1 MiB: a JWKS or metadata document is a few KB
HINT_JWKS = "pass the key set's URL with --jwt-jwks-url"
"""The way out when the issuer's keys cannot be had, for ending error messages."""


class FetchError(Exception):
    """A metadata or JWKS document could not be fetched or used; the text is safe to log."""


def shown(value: Any, limit: int = 80) -> str:
    """A claim or header value for a message: repr, cut short (it is attacker-controlled)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def check_http_url(url: str, what: str) -> None:
    """Raise ValueError, naming ``what``, unless ``url`` is an http(s) URL with a host."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"{what} must be an http(s) URL, got {url!r}")


class _HttpOnlyRedirects(urllib.request.HTTPRedirectHandler):
    """Follow redirects, but never to file:, ftp: or anything not http(s)."""

    def redirect_request(self, req: Any, fp: Any, code: int, msg: str, headers: Any,
                         newurl: str) -> Any:
        if urllib.parse.urlsplit(newurl).scheme not in ("http", "https"):
            fp.close()
            raise FetchError(f"{req.full_url} redirected to a non-http(s) URL; refused")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def fetch_json(url: str) -> dict[str, Any]:
    """GET ``url`` and return its JSON object; raise FetchError saying why not."""
    request = urllib.request.Request(
        url, headers={"Accept": "application/json", "User-Agent": "lancemem"})
    opener = urllib.request.build_opener(_HttpOnlyRedirects)
    try:
        with opener.open(request, timeout=FETCH_TIMEOUT_SECONDS) as response:
            body = response.read(MAX_DOCUMENT_BYTES + 1)
    except urllib.error.HTTPError as error:
        error.close()
        raise FetchError(f"{url} answered HTTP {error.code}") from None
    except urllib.error.URLError as error:
        raise FetchError(f"cannot reach {url}: {error.reason}") from None
    except (OSError, http.client.HTTPException, ValueError) as error:
        raise FetchError(f"fetching {url} failed: {type(error).__name__}: {error}") from None
    if len(body) > MAX_DOCUMENT_BYTES:
        raise FetchError(f"{url} sent more than 1 MiB; refused")
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        raise FetchError(f"{url} did not send JSON") from None
    if not isinstance(document, dict):
        raise FetchError(f"{url} sent JSON that is not an object")
    return document


def discovery_urls(issuer: str) -> list[str]:
    """Where metadata for ``issuer`` may live: RFC 8414 first, then OpenID Connect."""
    parts = urllib.parse.urlsplit(issuer)
    path = parts.path.rstrip("/")
    rfc8414 = f"{parts.scheme}://{parts.netloc}/.well-known/oauth-authorization-server{path}"
    return [rfc8414, issuer.rstrip("/") + "/.well-known/openid-configuration"]


def _jwks_uri_from(metadata: Mapping[str, Any], issuer: str, url: str) -> str:
    # RFC 8414 section 3.3: metadata naming another issuer must not be used,
    # or one tenant's metadata could point us at another's keys.
    if metadata.get("issuer") != issuer:
        raise FetchError(
            f"{url} names issuer {shown(metadata.get('issuer'))}, not {issuer!r}")
    jwks_uri = metadata.get("jwks_uri")
    if not isinstance(jwks_uri, str):
        raise FetchError(f"{url} has no jwks_uri")
    try:
        check_http_url(jwks_uri, "jwks_uri")
    except ValueError as error:
        raise FetchError(f"{url}: {error}") from None
    return jwks_uri


def discover_jwks_url(issuer: str) -> str:
    """The issuer's ``jwks_uri`` from its metadata; raise FetchError listing each failure."""
    problems = []
    for url in discovery_urls(issuer):
        try:
            return _jwks_uri_from(fetch_json(url), issuer, url)
        except FetchError as error:
            problems.append(str(error))
    raise FetchError("; ".join(problems))


@dataclass(frozen=True)
class Key:
    """One usable signing key from the JWKS."""

    kid: str | None
    kty: str
    alg: str | None
    crv: str | None
    public_key: Any


def _parse_jwk(entry: Any) -> Key | None:
    """The JWK as a verification key, or None when it is not one we may use."""
    if not isinstance(entry, dict) or entry.get("use", "sig") != "sig":
        return None  # an encryption key ("use": "enc") never verifies a signature
    kty, alg, kid = entry.get("kty"), entry.get("alg"), entry.get("kid")
    ops = entry.get("key_ops")
    if kty not in _LOADERS or (alg is not None and alg not in ALLOWED_ALGORITHMS):
        return None  # never a symmetric ("oct") key: that is what HS* confusion needs
    if (kid is not None and not isinstance(kid, str)) or (
            isinstance(ops, list) and "verify" not in ops):
        return None
    try:
        key = _LOADERS[kty].from_jwk(entry)
    except (jwt.PyJWTError, ValueError, TypeError, KeyError, AttributeError) as error:
        # Not the error text: PyJWT's can quote the key.
        log.warning("skipping JWK %s: cannot load it (%s)", shown(kid), type(error).__name__)
        return None
    if isinstance(key, _PRIVATE_KEYS):  # a JWKS that leaks a private key still verifies
        key = key.public_key()
    crv = entry.get("crv") if isinstance(entry.get("crv"), str) else None
    return Key(kid=kid, kty=kty, alg=alg, crv=crv, public_key=key)


def parse_jwks(document: Mapping[str, Any], url: str) -> list[Key]:
    """The usable signing keys of a JWKS document; raise FetchError if it is not one."""
    entries = document.get("keys")
    if not isinstance(entries, list):
        raise FetchError(f"{url} is not a JWKS (no 'keys' list)")
    keys = [key for key in map(_parse_jwk, entries) if key is not None]
    if not keys:
        log.warning("the JWKS at %s has no usable signing keys", url)
    return keys


class KeyCache:
    """The issuer's keys, fetched lazily, refreshed after a TTL or on demand.

    Every fetch attempt, successful or not, starts a ``min_refresh`` quiet
    period; a failed refresh keeps the keys we have.
    """

    def __init__(self, url: Callable[[], str], ttl: float, min_refresh: float) -> None:
        self._url, self._ttl, self._min_refresh = url, ttl, min_refresh
        self._fetch_lock = threading.Lock()  # one fetch at a time; waiters reuse its result
        self._keys: list[Key] | None = None
        self._fetched_at = float("-inf")
        self._attempted_at = float("-inf")
        self._last_error = ""

    def current(self) -> list[Key]:
        """The cached keys, refreshed first when missing or older than the TTL."""
        keys = self._keys
        if keys is None:
            keys = self.refresh(wait=True)
        elif time.monotonic() - self._fetched_at >= self._ttl:
            # Stale but usable: if another thread is already fetching, don't wait on it.
            keys = self.refresh(wait=False)
        if keys is None:
            raise AuthenticationError(
                f"no signing keys from the issuer yet: {self._last_error}; check that the "
                f"issuer is reachable, or {HINT_JWKS}.")
        return keys

    def refresh(self, *, wait: bool) -> list[Key] | None:
        """Fetch the JWKS again unless one was tried within ``min_refresh``; the keys after."""
        if not self._fetch_lock.acquire(blocking=wait):
            return self._keys
        try:
            if time.monotonic() - self._attempted_at < self._min_refresh:
                return self._keys
            url = self._url()
            self._attempted_at = time.monotonic()
            self._fetch(url)
            return self._keys
        finally:
            self._fetch_lock.release()

    def _fetch(self, url: str) -> None:
        try:
            keys = parse_jwks(fetch_json(url), url)
        except FetchError as error:
            self._last_error = str(error)
            if self._keys is not None:
                log.warning("JWKS refresh failed, keeping %d cached key(s): %s",
                            len(self._keys), error)
            return
        # Readers take these without a lock: each assignment is atomic, and a reader
        # that pairs new keys with the old time only triggers a throttled refresh.
        self._keys, self._fetched_at = keys, time.monotonic()

