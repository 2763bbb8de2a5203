"""A tiny OAuth authorization server for tests: metadata and a JWKS on 127.0.0.1.

``JwtIssuer`` serves, from a thread, on an ephemeral port:

    /.well-known/oauth-authorization-server<path>   RFC 8414 metadata
    <path>/.well-known/openid-configuration         OpenID Connect metadata
    /jwks.json                                      the key set

where ``issuer == base_url + path``. The key set can be swapped while it runs
(``set_keys``, or raw JSON/bytes for hostile cases), each metadata document
can be switched off or made to name another issuer, any path can redirect,
and requests are counted per path. Use it as a context manager, or start and
stop it from a fixture; a stopped issuer can start again on the same port.
``rsa_key``/``ec_key``/``ed25519_key`` make signing keys, ``SigningKey.sign``
and ``JwtIssuer.token`` mint tokens (PyJWT), ``unsigned_token`` crafts an
``alg: none`` one by hand.
"""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

JWKS_PATH = "/jwks.json"
_CURVES: dict[str, type[ec.EllipticCurve]] = {
    "ES256": ec.SECP256R1, "ES384": ec.SECP384R1, "ES512": ec.SECP521R1}


def b64url(data: bytes) -> str:
    """Unpadded base64url, as JOSE uses it."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_json(value: Any) -> str:
    """A JSON value as a base64url JOSE segment."""
    return b64url(json.dumps(value, separators=(",", ":")).encode())


@dataclass(frozen=True)
class SigningKey:
    """A private key and the ``kid``/``alg`` it signs under."""

    kid: str
    alg: str
    private_key: Any

    def public_jwk(self, **overrides: Any) -> dict[str, Any]:
        """The public half as a JWK with ``kid``, ``alg`` and ``use: sig``.

        Keyword overrides replace fields; an override of None drops the field
        (``public_jwk(alg=None)`` for a JWK without ``alg``).
        """
        algorithm = {"RS": RSAAlgorithm, "PS": RSAAlgorithm, "ES": ECAlgorithm}.get(
            self.alg[:2], OKPAlgorithm)
        jwk: dict[str, Any] = algorithm.to_jwk(self.private_key.public_key(), as_dict=True)
        jwk.update(kid=self.kid, alg=self.alg, use="sig")
        for name, value in overrides.items():
            if value is None:
                jwk.pop(name, None)
            else:
                jwk[name] = value
        return jwk

    def public_pem(self) -> bytes:
        """The public key as PEM (SubjectPublicKeyInfo), e.g. as a forged HMAC secret."""
        return self.private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)

    def sign(self, claims: dict[str, Any], *, headers: dict[str, Any] | None = None,
             alg: str | None = None) -> str:
        """A JWT of ``claims`` signed by this key; header ``kid`` is ours unless overridden.

        A header override of None drops it (``headers={"kid": None}``).
        """
        merged = {"kid": self.kid, **(headers or {})}
        merged = {name: value for name, value in merged.items() if value is not None}
        return jwt.encode(claims, self.private_key, algorithm=alg or self.alg, headers=merged)


def _kid(alg: str, kid: str | None) -> str:
    return kid or f"{alg.lower()}-{uuid.uuid4().hex[:8]}"


def rsa_key(kid: str | None = None, *, alg: str = "RS256", bits: int = 2048) -> SigningKey:
    """A fresh RSA key for RS*/PS* (2048 bits by default)."""
    private = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    return SigningKey(kid=_kid(alg, kid), alg=alg, private_key=private)


def ec_key(kid: str | None = None, *, alg: str = "ES256") -> SigningKey:
    """A fresh EC key on the curve ``alg`` needs (P-256, P-384 or P-521)."""
    private = ec.generate_private_key(_CURVES[alg]())
    return SigningKey(kid=_kid(alg, kid), alg=alg, private_key=private)


def ed25519_key(kid: str | None = None) -> SigningKey:
    """A fresh Ed25519 key for EdDSA."""
    return SigningKey(kid=_kid("EdDSA", kid), alg="EdDSA",
                      private_key=ed25519.Ed25519PrivateKey.generate())


def unsigned_token(claims: dict[str, Any], header: dict[str, Any] | None = None) -> str:
    """An ``alg: none`` JWT built by hand (PyJWT would not help forge one)."""
    jose = {"alg": "none", "typ": "JWT", **(header or {})}
    return f"{b64url_json(jose)}.{b64url_json(claims)}."


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        status, body = self.server.issuer.respond(path)
        self.send_response(status)
        if status in (301, 302, 303, 307, 308):
            self.send_header("Location", self.server.issuer.redirects[path])
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # keep pytest output clean
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], issuer: JwtIssuer) -> None:
        super().__init__(address, _Handler)
        self.issuer = issuer


class JwtIssuer:
    """A JWKS and metadata server for one issuer; see the module docstring."""

    def __init__(self, keys: Iterable[SigningKey] = (), *, path: str = "",
                 audience: str = "lancemem", host: str = "127.0.0.1") -> None:
        self.keys = list(keys)  # signing keys; ``token()`` uses the first by default
        self.path, self.audience, self.host = path.rstrip("/"), audience, host
        self.serve_oauth_metadata = True
        self.serve_oidc_metadata = True
        self.metadata_issuer: str | None = None  # set to make the metadata lie
        self.jwks_status = 200  # set to e.g. 500 to make the JWKS fail
        self.redirects: dict[str, str] = {}  # path -> Location, answered with 302
        self._lock = threading.Lock()
        self._hits: Counter[str] = Counter()
        self._jwks_body = b""
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._port = 0
        self.set_keys(*self.keys)

    # -- running -------------------------------------------------------------

    def start(self) -> JwtIssuer:
        """Serve in a background thread (on the same port as before, after a stop)."""
        if self._server is None:
            self._server = _Server((self.host, self._port), self)
            self._port = self._server.server_address[1]
            self._thread = threading.Thread(
                target=self._server.serve_forever, kwargs={"poll_interval": 0.01},
                name=f"jwt-issuer-{self._port}", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; the port then refuses connections until ``start()``."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            if self._thread is not None:
                self._thread.join(timeout=5)
            self._server = self._thread = None

    def __enter__(self) -> JwtIssuer:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()

    # -- addresses -----------------------------------------------------------

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>``; known once started."""
        if not self._port:
            raise RuntimeError("start the JwtIssuer first")
        return f"http://{self.host}:{self._port}"

    @property
    def issuer(self) -> str:
        """The issuer identifier tokens carry in ``iss``."""
        return self.base_url + self.path

    @property
    def jwks_url(self) -> str:
        """Where the key set is served."""
        return self.base_url + JWKS_PATH

    @property
    def oauth_metadata_path(self) -> str:
        """The RFC 8414 metadata path (the issuer's path goes after the well-known part)."""
        return "/.well-known/oauth-authorization-server" + self.path

    @property
    def oidc_metadata_path(self) -> str:
        """The OpenID Connect discovery path (appended to the issuer)."""
        return self.path + "/.well-known/openid-configuration"

    # -- what it serves ------------------------------------------------------

    def set_keys(self, *keys: SigningKey) -> None:
        """Publish the public JWKs of ``keys`` (the signing keys stay as they are)."""
        self.set_jwks({"keys": [key.public_jwk() for key in keys]})

    def set_jwks(self, document: Any) -> None:
        """Publish any JSON value as the key set (for hostile or odd JWKS)."""
        self.set_jwks_body(json.dumps(document).encode())

    def set_jwks_body(self, body: bytes) -> None:
        """Publish raw bytes as the key set (not JSON, oversized, ...)."""
        with self._lock:
            self._jwks_body = body

    def metadata(self) -> dict[str, Any]:
        """The authorization-server metadata both well-known paths serve."""
        issuer = self.metadata_issuer if self.metadata_issuer is not None else self.issuer
        return {"issuer": issuer, "jwks_uri": self.jwks_url,
                "response_types_supported": ["code"],
                "id_token_signing_alg_values_supported": ["RS256", "ES256"]}

    def respond(self, path: str) -> tuple[int, bytes]:
        """Status and body for a GET of ``path``, counting the request."""
        with self._lock:
            self._hits[path] += 1
            jwks_body = self._jwks_body
        if path in self.redirects:
            return 302, b""
        if path == JWKS_PATH:
            return self.jwks_status, jwks_body
        served = {self.oauth_metadata_path: self.serve_oauth_metadata,
                  self.oidc_metadata_path: self.serve_oidc_metadata}
        if served.get(path):
            return 200, json.dumps(self.metadata()).encode()
        return 404, b'{"error": "not_found"}'

    # -- counting ------------------------------------------------------------

    def hits(self, path: str) -> int:
        """How many GETs ``path`` has had."""
        with self._lock:
            return self._hits[path]

    @property
    def jwks_fetches(self) -> int:
        """How many times the key set was fetched."""
        return self.hits(JWKS_PATH)

    def reset_counts(self) -> None:
        """Forget the request counts."""
        with self._lock:
            self._hits.clear()

    # -- tokens --------------------------------------------------------------

    def claims(self, *, lifetime: float = 300, **overrides: Any) -> dict[str, Any]:
        """Valid claims (iss, aud, sub "alice", iat, exp); overrides of None drop a claim."""
        now = int(time.time())
        claims: dict[str, Any] = {"iss": self.issuer, "aud": self.audience, "sub": "alice",
                                  "iat": now, "exp": now + int(lifetime)}
        claims.update(overrides)
        return {name: value for name, value in claims.items() if value is not None}

    def token(self, key: SigningKey | None = None, *, headers: dict[str, Any] | None = None,
              lifetime: float = 300, **claims: Any) -> str:
        """A token from this issuer signed by ``key`` (default: the first key given)."""
        signer = key or self.keys[0]
        return signer.sign(self.claims(lifetime=lifetime, **claims), headers=headers)
