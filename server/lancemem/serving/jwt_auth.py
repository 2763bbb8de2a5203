"""Verifying OAuth 2.1 access tokens (JWTs) for lancemem as a resource server.

``JwtVerifier.verify`` turns a bearer token into a ``Principal`` or raises
AuthenticationError saying what was wrong (for the server's log; never the
token or key material). Signatures are checked against the issuer's JWKS,
which jwks.py fetches lazily over http(s), caches, and re-fetches when a token
names an unknown key, at most once per ``min_refresh_seconds`` so that random
key ids cannot make us hammer the issuer. Only asymmetric algorithms are
accepted, and the token's ``alg`` must fit the key it names: no ``none``, no
HS* (an HMAC "signed" with a public key is the classic algorithm-confusion
attack).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import Any

import jwt

from ..core.errors import AuthenticationError, InvalidIdError
from ..core.principal import Principal
from ..core.scoping import validate_id
from .jwks import (
    ALLOWED_ALGORITHMS,
    HINT_JWKS,
    KEY_TYPE_FOR_ALG,
    FetchError,
    Key,
    KeyCache,
    check_http_url,
    discover_jwks_url,
    shown,
)

_CURVE_FOR_ALG = {"ES256": "P-256", "ES384": "P-384", "ES512": "P-521"}
MAX_TOKEN_CHARS = 64 * 1024  # far above real tokens; bounds work done on junk
_REQUIRED_CLAIMS = ["exp", "iss", "aud"]
_MAX_LABEL_CHARS = 200


def _select(keys: list[Key], kid: str | None) -> list[Key]:
    """The keys a token's ``kid`` may mean; without a kid, only an unambiguous key set."""
    if kid is None:
        return keys if len(keys) == 1 else []
    return [key for key in keys if key.kid == kid]


def _fits(key: Key, alg: str) -> bool:
    """Whether a token signed with ``alg`` may be verified by ``key``."""
    if key.alg is not None and key.alg != alg:
        return False
    if key.kty != KEY_TYPE_FOR_ALG[alg]:
        return False
    return alg not in _CURVE_FOR_ALG or key.crv == _CURVE_FOR_ALG[alg]


def _read_header(token: Any) -> dict[str, Any]:
    """The token's JOSE header, or AuthenticationError for anything that is not a JWS."""
    if not isinstance(token, str) or not token:
        raise AuthenticationError("the bearer token is empty or not text; send a JWT.")
    if len(token) > MAX_TOKEN_CHARS or token.count(".") != 2:
        raise AuthenticationError(
            "the bearer token is not a JWT (expected three dot-separated base64url parts).")
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise AuthenticationError(
            "the bearer token is not a JWT: its header is not valid base64url JSON "
            "(or names an unsupported 'crit' extension or a non-string 'kid').") from None
    if header.get("b64", True) is not True or "crit" in header:
        raise AuthenticationError("the JWT uses JWS extensions ('b64'/'crit') we do not accept.")
    return header


def _algorithm(header: Mapping[str, Any]) -> str:
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in ALLOWED_ALGORITHMS:
        raise AuthenticationError(
            f"the JWT's algorithm {shown(alg)} is not allowed; the issuer must sign with "
            f"one of {', '.join(sorted(ALLOWED_ALGORITHMS))}.")
    return str(alg)


def _id_claim(claims: Mapping[str, Any], claim: str, name: str) -> str:
    """A claim as a stored id, or AuthenticationError naming the claim."""
    value = claims.get(claim)
    if value is None:
        raise AuthenticationError(
            f"the JWT has no '{claim}' claim, which this server reads the {name} from.")
    if not isinstance(value, str):
        raise AuthenticationError(
            f"the JWT's '{claim}' claim is a {type(value).__name__}, not a string, so it "
            f"cannot be the {name}.")
    if value != value.strip():  # " alice " must not become alice: ids are compared exactly
        raise AuthenticationError(
            f"the JWT's '{claim}' claim has whitespace around it, so it cannot be the {name}.")
    try:
        return validate_id(name, value)
    except InvalidIdError as error:
        raise AuthenticationError(
            f"the JWT's '{claim}' claim cannot be the {name}: {error.message}") from None


def _label(claims: Mapping[str, Any]) -> str | None:
    """The client the token was issued to (``azp`` or ``client_id``), for logs and history."""
    for claim in ("azp", "client_id"):
        value = claims.get(claim)
        if isinstance(value, str) and value.strip() and len(value) <= _MAX_LABEL_CHARS and (
                value.isprintable()):  # it lands in history and logs: no line breaks
            return value.strip()
    return None


def _unverified_claims(token: str) -> dict[str, Any]:
    """The payload without checks, only to word an error after the signature passed."""
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return {}
    return claims if isinstance(claims, dict) else {}


class JwtVerifier:
    """Verifies access tokens from one issuer for one audience; thread-safe and blocking.

    ``user_claim`` names the claim that becomes the principal's ``user_id``;
    ``leeway_seconds`` allows for clock skew on ``exp``/``nbf``/``iat``. The
    JWKS is cached ``jwks_ttl_seconds`` and fetched at most once per
    ``min_refresh_seconds``. Without ``jwks_url``, it is discovered from the
    issuer's metadata on first use.
    """

    def __init__(self, *, issuer: str, audience: str, jwks_url: str | None = None,
                 user_claim: str = "sub", leeway_seconds: float = 30.0,
                 jwks_ttl_seconds: float = 300.0, min_refresh_seconds: float = 1.0) -> None:
        for what, value in (("issuer", issuer), ("audience", audience),
                            ("user_claim", user_claim)):
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"JwtVerifier needs a non-empty {what}")
        if min(leeway_seconds, jwks_ttl_seconds, min_refresh_seconds) < 0:
            raise ValueError("leeway, JWKS TTL and minimum refresh interval cannot be negative")
        if jwks_url is not None:
            check_http_url(jwks_url, "the JWKS URL")
        else:
            check_http_url(issuer, "without a JWKS URL, the issuer (to discover it)")
        self._issuer, self._audience, self._user_claim = issuer, audience, user_claim
        self._leeway = leeway_seconds
        self._min_refresh = min_refresh_seconds
        self._jwks_url = jwks_url
        self._discovery_lock = threading.Lock()
        self._discovered_at = float("-inf")
        self._discovery_error = ""
        self._keys = KeyCache(self.jwks_url, jwks_ttl_seconds, min_refresh_seconds)

    def jwks_url(self) -> str:
        """The configured JWKS URL, or the one discovered from the issuer's metadata.

        Discovery runs on first use and, after a failure, is retried at most once
        per ``min_refresh_seconds``; failure raises AuthenticationError.
        """
        with self._discovery_lock:
            if self._jwks_url is not None:
                return self._jwks_url
            if time.monotonic() - self._discovered_at >= self._min_refresh:
                self._discovered_at = time.monotonic()
                try:
                    self._jwks_url = discover_jwks_url(self._issuer)
                    return self._jwks_url
                except FetchError as error:
                    self._discovery_error = str(error)
            raise AuthenticationError(
                f"cannot discover the JWKS of issuer {self._issuer!r}: "
                f"{self._discovery_error}. Check --jwt-issuer, or {HINT_JWKS}.")

    def verify(self, token: str) -> Principal:
        """The principal a valid access token stands for; AuthenticationError otherwise."""
        header = _read_header(token)
        alg = _algorithm(header)
        key = self._key_for(header.get("kid"), alg)
        claims = self._decode(token, key, alg)
        user_id = _id_claim(claims, self._user_claim, "user_id")
        subject = _id_claim(claims, "sub", "subject") if "sub" in claims else user_id
        return Principal(kind="jwt", id=subject, user_id=user_id, label=_label(claims))

    def _key_for(self, kid: str | None, alg: str) -> Key:
        keys = self._keys.current()
        found = _select(keys, kid)
        if not found and kid is not None:
            # Perhaps the issuer rotated its keys; the cache throttles how often we ask.
            # Never wait for a fetch another request started: with a slow issuer, a
            # flood of made-up kids would otherwise hold every worker thread.
            refreshed = self._keys.refresh(wait=False)
            found = _select(keys if refreshed is None else refreshed, kid)
        if not found:
            raise AuthenticationError(self._no_key_message(kid, len(keys)))
        fitting = [key for key in found if _fits(key, alg)]
        if not fitting:
            key = found[0]
            raise AuthenticationError(
                f"the JWT's algorithm {alg} does not fit key {shown(key.kid)} "
                f"(a {key.kty} key{' for ' + key.alg if key.alg else ''}); disallowed alg.")
        return fitting[0]

    def _no_key_message(self, kid: str | None, count: int) -> str:
        if kid is None:
            return (f"the JWT has no 'kid' header and the issuer's JWKS has {count} usable "
                    "signing keys, so the key is ambiguous; the issuer must set 'kid'.")
        return (f"unknown key: the JWT's kid {shown(kid)} is not in the issuer's JWKS "
                f"({self.jwks_url()}); the token is forged or from another issuer.")

    def _decode(self, token: str, key: Key, alg: str) -> dict[str, Any]:
        try:
            return jwt.decode(
                token, key.public_key, algorithms=[alg], audience=self._audience,
                issuer=self._issuer, leeway=self._leeway,
                options={"require": _REQUIRED_CLAIMS, "enforce_minimum_key_length": True})
        except jwt.PyJWTError as error:
            raise AuthenticationError(self._explain(error, token, key)) from None
        except (ValueError, TypeError, OverflowError):
            raise AuthenticationError("the JWT is malformed (bad claim values).") from None

    def _explain(self, error: jwt.PyJWTError, token: str, key: Key) -> str:
        """Word a PyJWT refusal for the log; claims are read only after the signature passed."""
        if isinstance(error, jwt.InvalidSignatureError):
            return f"bad signature: the JWT was not signed by the issuer's key {shown(key.kid)}."
        if isinstance(error, jwt.InvalidKeyError):
            return (f"the issuer's key {shown(key.kid)} is unfit to verify {key.kty} "
                    "signatures (e.g. an RSA key under 2048 bits or the wrong curve).")
        return self._claim_problem(error, _unverified_claims(token))

    def _claim_problem(self, error: jwt.PyJWTError, claims: Mapping[str, Any]) -> str:
        if isinstance(error, jwt.MissingRequiredClaimError):
            return f"the JWT has no '{error.claim}' claim; an access token must have one."
        if isinstance(error, jwt.ExpiredSignatureError):
            ago = time.time() - float(claims.get("exp", 0))
            return f"the JWT expired {ago:.0f} s ago (leeway {self._leeway:g} s); get a new token."
        if isinstance(error, jwt.ImmatureSignatureError):
            which = "nbf" if "nbf" in str(error) else "iat"
            return f"the JWT is not valid yet: its '{which}' is in the future (check clocks)."
        if isinstance(error, jwt.InvalidIssuerError):
            return (f"wrong issuer: the JWT's iss is {shown(claims.get('iss'))}, "
                    f"this server trusts {self._issuer!r}.")
        if isinstance(error, jwt.InvalidAudienceError):
            return (f"wrong audience: the JWT is for {shown(claims.get('aud'))}, "
                    f"this server is {self._audience!r}.")
        if isinstance(error, jwt.exceptions.InvalidSubjectError):
            return "the JWT's 'sub' claim is not a string."
        return f"the JWT is malformed ({type(error).__name__}: {shown(str(error), 120)})."
