"""JwtVerifier with real keys against a real JWKS server on 127.0.0.1 (tests/jwt_issuer.py).

No mocks: tokens are minted with PyJWT (or forged by hand where PyJWT would
refuse to), and the verifier fetches keys and metadata over HTTP.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import random
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from lancemem.core.errors import AuthenticationError
from lancemem.core.principal import Principal
from lancemem.serving.jwt_auth import JwtVerifier
from tests.jwt_issuer import (
    JwtIssuer,
    SigningKey,
    b64url,
    b64url_json,
    ec_key,
    ed25519_key,
    rsa_key,
    unsigned_token,
)

MIN_REFRESH = 0.2
LOGGER = "lancemem.serving.jwks"  # where key-cache warnings are logged


@pytest.fixture(scope="module")
def rsa_a() -> SigningKey:
    return rsa_key("rsa-a")


@pytest.fixture(scope="module")
def rsa_b() -> SigningKey:
    return rsa_key("rsa-b")


@pytest.fixture(scope="module")
def ec_a() -> SigningKey:
    return ec_key("ec-a")


@pytest.fixture
def issuer(rsa_a: SigningKey, ec_a: SigningKey) -> Iterator[JwtIssuer]:
    with JwtIssuer([rsa_a, ec_a]) as running:
        yield running


@pytest.fixture
def tenant(rsa_a: SigningKey) -> Iterator[JwtIssuer]:
    """An issuer whose identifier has a path, to check where metadata is looked for."""
    with JwtIssuer([rsa_a], path="/tenant") as running:
        yield running


def verifier_for(issuer: JwtIssuer, **options: Any) -> JwtVerifier:
    settings: dict[str, Any] = {"issuer": issuer.issuer, "audience": issuer.audience,
                                "jwks_url": issuer.jwks_url,
                                "min_refresh_seconds": MIN_REFRESH, **options}
    return JwtVerifier(**settings)


@pytest.fixture
def verifier(issuer: JwtIssuer) -> JwtVerifier:
    return verifier_for(issuer)


def refused(verifier: JwtVerifier, token: Any, *says: str) -> str:
    """Assert the token is refused with AuthenticationError saying each of ``says``."""
    with pytest.raises(AuthenticationError) as caught:
        verifier.verify(token)
    message = caught.value.message
    for part in says:
        assert part in message, message
    if isinstance(token, str):  # the log must never carry the token
        assert all(part not in message for part in token.split(".") if len(part) > 16)
    return message


def hs256_token(secret: bytes, claims: dict[str, Any], kid: str) -> str:
    """An HS256 JWT made by hand: PyJWT refuses a PEM as an HMAC secret."""
    signing_input = f"{b64url_json({'alg': 'HS256', 'typ': 'JWT', 'kid': kid})}."
    signing_input += b64url_json(claims)
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(signature)}"


def forged(header: dict[str, Any], claims: dict[str, Any]) -> str:
    """A JWT with any header and a junk signature, for checks made before the signature."""
    return f"{b64url_json(header)}.{b64url_json(claims)}.{b64url(b'x' * 64)}"


# -- valid tokens ----------------------------------------------------------


def test_a_valid_rs256_token_gives_the_principal(
        issuer: JwtIssuer, verifier: JwtVerifier, rsa_a: SigningKey) -> None:
    token = issuer.token(rsa_a, sub="alice", azp="web-app")
    assert verifier.verify(token) == Principal(
        kind="jwt", id="alice", user_id="alice", label="web-app", read_only=False)


def test_a_valid_es256_token_gives_the_principal(
        issuer: JwtIssuer, verifier: JwtVerifier, ec_a: SigningKey) -> None:
    token = issuer.token(ec_a, sub="bob", client_id="cli-tool")
    assert verifier.verify(token) == Principal(
        kind="jwt", id="bob", user_id="bob", label="cli-tool")


def test_the_label_is_none_without_a_string_azp_or_client_id(
        issuer: JwtIssuer, verifier: JwtVerifier) -> None:
    assert verifier.verify(issuer.token(azp=42, client_id=["x"])).label is None


@pytest.mark.parametrize("alg", ["RS384", "RS512", "PS256", "PS384", "PS512"])
def test_an_rsa_jwk_without_alg_verifies_each_rsa_algorithm(
        issuer: JwtIssuer, verifier: JwtVerifier, rsa_a: SigningKey, alg: str) -> None:
    key = SigningKey(kid="rsa-any", alg=alg, private_key=rsa_a.private_key)
    issuer.set_jwks({"keys": [key.public_jwk(alg=None)]})
    assert verifier.verify(issuer.token(key, sub="carol")).user_id == "carol"


@pytest.mark.parametrize("make", [lambda: ec_key(alg="ES384"), lambda: ec_key(alg="ES512"),
                                  ed25519_key], ids=["ES384", "ES512", "EdDSA"])
def test_other_allowed_algorithms_verify(
        issuer: JwtIssuer, verifier: JwtVerifier, make: Any) -> None:
    key = make()
    issuer.set_keys(key)
    assert verifier.verify(issuer.token(key)).id == "alice"


# -- issuer, audience, time ------------------------------------------------


@pytest.mark.parametrize("iss", ["https://evil.example", "{}/", "{}/other", " {}", "{}?"])
def test_a_wrong_issuer_is_refused(issuer: JwtIssuer, verifier: JwtVerifier, iss: str) -> None:
    token = issuer.token(iss=iss.format(issuer.issuer))
    refused(verifier, token, "wrong issuer", repr(issuer.issuer))


def test_a_token_without_iss_is_refused(issuer: JwtIssuer, verifier: JwtVerifier) -> None:
    refused(verifier, issuer.token(iss=None), "no 'iss' claim")


def test_a_wrong_audience_is_refused(issuer: JwtIssuer, verifier: JwtVerifier) -> None:
    refused(verifier, issuer.token(aud="other-api"), "wrong audience", "'other-api'")
    refused(verifier, issuer.token(aud=None), "no 'aud' claim")


def test_an_audience_list_must_contain_ours(issuer: JwtIssuer, verifier: JwtVerifier) -> None:
    assert verifier.verify(issuer.token(aud=["other-api", "lancemem"])).id == "alice"
    refused(verifier, issuer.token(aud=["other-api", "lancemem-2"]), "wrong audience")


def test_an_expired_token_is_refused(issuer: JwtIssuer, verifier: JwtVerifier) -> None:
    now = int(time.time())
    refused(verifier, issuer.token(iat=now - 600, exp=now - 120), "expired")
    refused(verifier, issuer.token(exp=None), "no 'exp' claim")


def test_leeway_forgives_a_little_clock_skew(issuer: JwtIssuer) -> None:
    token = issuer.token(exp=int(time.time()) - 10)
    assert verifier_for(issuer, leeway_seconds=30).verify(token).id == "alice"
    refused(verifier_for(issuer, leeway_seconds=0), token, "expired")


@pytest.mark.parametrize("claim", ["nbf", "iat"])
def test_a_token_not_valid_yet_is_refused(
        issuer: JwtIssuer, verifier: JwtVerifier, claim: str) -> None:
    future = int(time.time()) + 300
    refused(verifier, issuer.token(exp=future + 300, **{claim: future}),
            "not valid yet", f"'{claim}'")


@pytest.mark.parametrize("claims", [{"exp": "soon"}, {"nbf": "later"}, {"iat": [1]}])
def test_malformed_time_claims_are_refused(
        issuer: JwtIssuer, verifier: JwtVerifier, claims: dict[str, Any]) -> None:
    refused(verifier, issuer.token(**claims), "malformed")


# -- signatures and algorithms ---------------------------------------------


def test_a_signature_by_another_key_under_the_same_kid_is_refused(
        issuer: JwtIssuer, verifier: JwtVerifier, rsa_a: SigningKey, rsa_b: SigningKey) -> None:
    token = rsa_b.sign(issuer.claims(), headers={"kid": rsa_a.kid})
    refused(verifier, token, "bad signature", "'rsa-a'")


def test_a_tampered_payload_is_refused(issuer: JwtIssuer, verifier: JwtVerifier) -> None:
    header, _, signature = issuer.token(sub="alice").split(".")
    refused(verifier, f"{header}.{b64url_json(issuer.claims(sub='root'))}.{signature}",
            "bad signature")


@pytest.mark.parametrize("alg", ["none", "None", "NONE", ""])
@pytest.mark.parametrize("with_kid", [True, False])
def test_alg_none_is_refused(issuer: JwtIssuer, verifier: JwtVerifier, rsa_a: SigningKey,
                             alg: str, with_kid: bool) -> None:
    header = {"alg": alg, **({"kid": rsa_a.kid} if with_kid else {})}
    refused(verifier, unsigned_token(issuer.claims(), header), "is not allowed", repr(alg))


def test_hs256_signed_with_the_public_key_pem_is_refused(
        issuer: JwtIssuer, verifier: JwtVerifier, rsa_a: SigningKey) -> None:
    token = hs256_token(rsa_a.public_pem(), issuer.claims(), rsa_a.kid)
    refused(verifier, token, "'HS256' is not allowed")


def test_the_header_alg_must_match_the_jwk_alg(
        issuer: JwtIssuer, verifier: JwtVerifier, rsa_a: SigningKey) -> None:
    # The very key the JWKS has, but its JWK says RS256 and the token PS256.
    token = rsa_a.sign(issuer.claims(), alg="PS256")
    refused(verifier, token, "PS256 does not fit key 'rsa-a'", "disallowed alg")


def test_the_header_alg_must_match_the_key_type(
        issuer: JwtIssuer, verifier: JwtVerifier, rsa_a: SigningKey, ec_a: SigningKey) -> None:
    token = ec_a.sign(issuer.claims(), headers={"kid": rsa_a.kid})
    refused(verifier, token, "ES256 does not fit", "RSA key")


def test_the_ec_curve_must_match_the_alg(issuer: JwtIssuer, verifier: JwtVerifier) -> None:
    p384 = ec_key("p384", alg="ES384")
    issuer.set_jwks({"keys": [p384.public_jwk(alg=None)]})
    refused(verifier, forged({"alg": "ES256", "kid": "p384"}, issuer.claims()),
            "ES256 does not fit key 'p384'")


def test_keys_we_may_not_use_are_skipped(
        issuer: JwtIssuer, verifier: JwtVerifier, rsa_a: SigningKey, rsa_b: SigningKey) -> None:
    secret = b"s" * 32
    issuer.set_jwks({"keys": [
        {"kty": "oct", "k": b64url(secret), "kid": "sym", "use": "sig"},
        rsa_b.public_jwk(use="enc"),
        rsa_b.public_jwk(kid="ops", key_ops=["encrypt"]),
        rsa_b.public_jwk(kid="hs", alg="HS256"),
        rsa_b.public_jwk(kid="broken", n="!!"),
        {"kid": "no-kty"}, "not an object", 7,
        rsa_a.public_jwk(),
    ]})
    # Only rsa_a is usable, so a token without kid is unambiguous.
    assert verifier.verify(issuer.token(rsa_a, headers={"kid": None})).id == "alice"
    refused(verifier, issuer.token(rsa_b), "unknown key", "'rsa-b'")
    refused(verifier, issuer.token(rsa_b, headers={"kid": "ops"}), "unknown key")
    # HS256 with the symmetric key the JWKS offers is refused just the same.
    refused(verifier, hs256_token(secret, issuer.claims(), "sym"), "'HS256' is not allowed")


def test_a_token_without_kid_needs_exactly_one_key(
        issuer: JwtIssuer, verifier: JwtVerifier, rsa_a: SigningKey) -> None:
    token = issuer.token(rsa_a, headers={"kid": None})
    refused(verifier, token, "no 'kid' header", "2 usable")
    issuer.set_keys(rsa_a)
    assert verifier_for(issuer).verify(token).id == "alice"


# -- the user claim --------------------------------------------------------


@pytest.mark.parametrize("sub", [None, "", "   ", 42, ["alice"], "a" * 300, "ali\nce"],
                         ids=["missing", "empty", "blank", "int", "list", "long", "newline"])
def test_a_bad_user_claim_is_refused(issuer: JwtIssuer, verifier: JwtVerifier, sub: Any) -> None:
    refused(verifier, issuer.token(sub=sub), "'sub'")


def test_a_custom_user_claim(issuer: JwtIssuer) -> None:
    verifier = verifier_for(issuer, user_claim="email")
    token = issuer.token(sub="u-123", email="alice@example.com", azp="app")
    assert verifier.verify(token) == Principal(
        kind="jwt", id="u-123", user_id="alice@example.com", label="app")
    # Without a subject the principal is named by the user claim.
    token = issuer.token(sub=None, email="bob@example.com")
    assert verifier.verify(token) == Principal(
        kind="jwt", id="bob@example.com", user_id="bob@example.com")
    # Exactly as given: " bob@example.com " is not bob@example.com (an editable claim
    # must not reach another user's memories by padding).
    refused(verifier, issuer.token(sub=None, email=" bob@example.com "), "whitespace")


@pytest.mark.parametrize("email", [None, "", 42, "x\ty"])
def test_a_bad_custom_user_claim_is_refused(issuer: JwtIssuer, email: Any) -> None:
    refused(verifier_for(issuer, user_claim="email"), issuer.token(email=email), "'email'")


# -- the key cache ---------------------------------------------------------


def test_key_rotation(issuer: JwtIssuer, rsa_a: SigningKey, rsa_b: SigningKey) -> None:
    verifier = verifier_for(issuer)
    old, new = issuer.token(rsa_a), issuer.token(rsa_b, sub="bob")
    assert verifier.verify(old).id == "alice"
    issuer.set_keys(rsa_b)
    assert verifier.verify(old).id == "alice"  # still cached
    assert issuer.jwks_fetches == 1
    time.sleep(MIN_REFRESH + 0.05)
    assert verifier.verify(new).id == "bob"  # the unknown kid made it look again
    assert issuer.jwks_fetches == 2
    # The issuer withdrew the old key: once the key set is re-read, its tokens are refused.
    refused(verifier, old, "unknown key", "'rsa-a'")


def test_the_key_set_is_refetched_after_its_ttl(
        issuer: JwtIssuer, rsa_a: SigningKey, ec_a: SigningKey) -> None:
    verifier = verifier_for(issuer, jwks_ttl_seconds=0.3)
    token = issuer.token(rsa_a)
    verifier.verify(token)
    verifier.verify(token)
    assert issuer.jwks_fetches == 1
    issuer.set_keys(ec_a)
    time.sleep(0.35)
    refused(verifier, token, "unknown key")
    assert issuer.jwks_fetches == 2


def test_unknown_kids_do_not_hammer_the_issuer(issuer: JwtIssuer, rsa_a: SigningKey) -> None:
    verifier = verifier_for(issuer, min_refresh_seconds=1.0)
    tokens = [issuer.token(rsa_a, headers={"kid": uuid.uuid4().hex}) for _ in range(100)]
    for token in tokens:
        refused(verifier, token, "unknown key")
    assert 1 <= issuer.jwks_fetches <= 2


def test_concurrent_first_use_fetches_once(
        issuer: JwtIssuer, rsa_a: SigningKey, ec_a: SigningKey) -> None:
    verifier = verifier_for(issuer)
    tokens = [issuer.token(ec_a if i % 2 else rsa_a, sub=f"user-{i}") for i in range(16)]
    start = threading.Barrier(len(tokens))

    def verify(token: str) -> str:
        start.wait()
        return verifier.verify(token).user_id

    with ThreadPoolExecutor(len(tokens)) as pool:
        assert list(pool.map(verify, tokens)) == [f"user-{i}" for i in range(16)]
    assert issuer.jwks_fetches == 1


def test_cached_keys_outlive_the_jwks_server(
        issuer: JwtIssuer, rsa_a: SigningKey, caplog: pytest.LogCaptureFixture) -> None:
    verifier = verifier_for(issuer, jwks_ttl_seconds=0.3)
    token = issuer.token(rsa_a)
    assert verifier.verify(token).id == "alice"
    issuer.stop()
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert verifier.verify(token).id == "alice"
        time.sleep(0.35)  # past the TTL and the quiet period: the next use re-fetches
        refused(verifier, issuer.token(rsa_a, headers={"kid": "rsa-new"}), "unknown key")
        assert verifier.verify(token).id == "alice"
    warnings = [r.getMessage() for r in caplog.records
                if r.name == LOGGER and r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings
    assert "keeping 2 cached key(s)" in warnings[0] and "cannot reach" in warnings[0]


def test_an_unreachable_issuer_is_an_authentication_error(
        issuer: JwtIssuer, rsa_a: SigningKey) -> None:
    verifier = verifier_for(issuer)
    issuer.stop()
    refused(verifier, issuer.token(rsa_a), "no signing keys", "cannot reach")
    refused(verifier, issuer.token(rsa_a), "no signing keys", "cannot reach")  # throttled


@pytest.mark.parametrize(("body", "says"), [
    (b"not json", "did not send JSON"),
    (b"[1, 2]", "not an object"),
    (b'{"keys": 3}', "no 'keys' list"),
    (b"{" + b" " * (1 << 20) + b"}", "more than 1 MiB"),
], ids=["not-json", "array", "no-keys", "oversized"])
def test_a_broken_key_set_is_an_authentication_error(
        issuer: JwtIssuer, verifier: JwtVerifier, body: bytes, says: str) -> None:
    issuer.set_jwks_body(body)
    refused(verifier, issuer.token(), "no signing keys", says)


def test_a_failing_jwks_endpoint_is_an_authentication_error(
        issuer: JwtIssuer, verifier: JwtVerifier) -> None:
    issuer.jwks_status = 500
    refused(verifier, issuer.token(), "HTTP 500")


def test_a_redirect_off_http_is_refused(issuer: JwtIssuer, verifier: JwtVerifier) -> None:
    issuer.redirects["/jwks.json"] = "ftp://127.0.0.1:1/jwks.json"
    refused(verifier, issuer.token(), "non-http(s)")


# -- discovery -------------------------------------------------------------


def discovering(issuer: JwtIssuer) -> JwtVerifier:
    return JwtVerifier(issuer=issuer.issuer, audience=issuer.audience,
                       min_refresh_seconds=MIN_REFRESH)


def test_discovery_via_rfc8414_metadata(tenant: JwtIssuer) -> None:
    tenant.serve_oidc_metadata = False
    verifier = discovering(tenant)
    assert tenant.hits("/.well-known/oauth-authorization-server/tenant") == 0  # lazy
    assert verifier.verify(tenant.token()).id == "alice"
    assert verifier.jwks_url() == tenant.jwks_url
    assert tenant.hits("/.well-known/oauth-authorization-server/tenant") == 1
    assert tenant.hits("/tenant/.well-known/openid-configuration") == 0
    assert tenant.jwks_fetches == 1


def test_discovery_falls_back_to_openid_configuration(tenant: JwtIssuer) -> None:
    tenant.serve_oauth_metadata = False
    verifier = discovering(tenant)
    assert verifier.verify(tenant.token()).id == "alice"
    assert verifier.jwks_url() == tenant.jwks_url
    assert tenant.hits("/.well-known/oauth-authorization-server/tenant") == 1
    assert tenant.hits("/tenant/.well-known/openid-configuration") == 1


def test_discovery_for_an_issuer_without_a_path(issuer: JwtIssuer) -> None:
    issuer.serve_oidc_metadata = False
    assert discovering(issuer).verify(issuer.token()).id == "alice"
    assert issuer.hits("/.well-known/oauth-authorization-server") == 1


def test_metadata_naming_another_issuer_is_refused(tenant: JwtIssuer) -> None:
    tenant.metadata_issuer = "https://evil.example"
    verifier = discovering(tenant)
    refused(verifier, tenant.token(), "cannot discover", "'https://evil.example'",
            "--jwt-jwks-url")
    with pytest.raises(AuthenticationError, match="--jwt-jwks-url"):
        verifier.jwks_url()
    assert tenant.jwks_fetches == 0


def test_missing_metadata_says_to_pass_the_jwks_url(tenant: JwtIssuer) -> None:
    tenant.serve_oauth_metadata = tenant.serve_oidc_metadata = False
    refused(discovering(tenant), tenant.token(), "HTTP 404", "--jwt-jwks-url")


# -- not JWTs at all -------------------------------------------------------


@pytest.mark.parametrize("token", [
    "abc", "", "x" * 10240, "a.b.c", "..", "a.b", "a.b.c.d.e",
    # Fixed bytes: every xdist worker must collect the same test ids.
    ".".join(b64url(random.Random(n).randbytes(3000)) for n in range(3)),
    f"{b64url_json({'alg': 'RS256', 'kid': 'rsa-a'})}..",
    f"{b64url_json(['not', 'an', 'object'])}.e30.",
    "\x00.\x00.\x00", "é.é.é", None, b"bytes", 42,
], ids=lambda token: repr(token)[:20])
def test_a_token_that_is_not_a_jwt_is_refused(verifier: JwtVerifier, token: Any) -> None:
    refused(verifier, token)


# -- configuration ---------------------------------------------------------


@pytest.mark.parametrize("options", [
    {"jwks_url": "file:///etc/passwd"}, {"jwks_url": "ftp://issuer.example/jwks"},
    {"issuer": "urn:example:issuer", "jwks_url": None}, {"issuer": ""}, {"audience": " "},
    {"user_claim": ""}, {"min_refresh_seconds": -1},
])
def test_bad_configuration_is_a_value_error(options: dict[str, Any]) -> None:
    settings = {"issuer": "https://issuer.example", "audience": "lancemem",
                "jwks_url": "https://issuer.example/jwks.json", **options}
    with pytest.raises(ValueError):
        JwtVerifier(**settings)


def test_an_issuer_that_is_not_a_url_works_with_a_jwks_url(
        issuer: JwtIssuer, rsa_a: SigningKey) -> None:
    verifier = JwtVerifier(issuer="urn:example:issuer", audience=issuer.audience,
                           jwks_url=issuer.jwks_url)
    assert verifier.jwks_url() == issuer.jwks_url
    assert verifier.verify(issuer.token(rsa_a, iss="urn:example:issuer")).id == "alice"


# -- what an attack found ----------------------------------------------------


@pytest.mark.parametrize("alg", [[], {}, ["RS256"], 256, None])
def test_an_unhashable_or_odd_alg_is_refused_not_crashed(verifier: JwtVerifier,
                                                         alg: Any) -> None:
    refused(verifier, forged({"alg": alg, "kid": "a"}, {"sub": "alice"}), "algorithm")


@pytest.mark.parametrize("sub", [" alice ", "alice\n", "\u2028alice", "alice\u3000",
                                 "alice\xa0", "\x1calice"])
def test_an_id_claim_with_edges_is_not_the_id_without_them(issuer: JwtIssuer,
                                                          verifier: JwtVerifier,
                                                          sub: str) -> None:
    refused(verifier, issuer.token(sub=sub), "'sub'")


def test_a_label_that_would_break_a_log_line_is_dropped(issuer: JwtIssuer,
                                                        verifier: JwtVerifier) -> None:
    assert verifier.verify(issuer.token(azp="web\napp")).label is None
    assert verifier.verify(issuer.token(azp="x" * 201)).label is None
    assert verifier.verify(issuer.token(azp="web-app")).label == "web-app"


def test_unknown_kids_never_wait_for_a_fetch_under_way(issuer: JwtIssuer,
                                                       verifier: JwtVerifier) -> None:
    assert verifier.verify(issuer.token()).user_id == "alice"  # keys cached
    time.sleep(MIN_REFRESH * 2)
    stranger = rsa_key("not-published")
    outcome: list[str] = []

    def attempt() -> None:
        outcome.append(refused(verifier, stranger.sign(issuer.claims()), "not-published"))

    with verifier._keys._fetch_lock:  # as if a slow fetch were under way, forever
        worker = threading.Thread(target=attempt, daemon=True)
        worker.start()
        worker.join(timeout=10)
        assert not worker.is_alive(), "an unknown kid queued behind the fetch under way"
    assert outcome
