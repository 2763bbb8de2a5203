"""Authentication on the HTTP transports, through the MCP SDK's resource-server hooks.

``--auth token`` checks ``Authorization: Bearer lmk_...`` against the tokens
in the store (tokens.py); ``--auth jwt`` verifies OAuth 2.1 access tokens
against an issuer's JWKS (jwt_auth.py) and serves Protected Resource
Metadata (RFC 9728). Either way the SDK answers a request without a valid
credential with 401 and ``WWW-Authenticate: Bearer ...`` before anything
runs, and hands the verified credential to the tools, which bind every call
to the Principal it carries (principal.bind_ids).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import anyio.to_thread
from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.provider import AccessToken
from mcp.server.auth.settings import AuthSettings
from mcp.server.mcpserver import MCPServer
from pydantic import ConfigDict
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..core.config import Settings
from ..core.errors import AuthenticationError, LanceMemError
from ..core.principal import Principal

log = logging.getLogger(__name__)
WELL_KNOWN = "/.well-known/oauth-protected-resource"
# The SDK wants an issuer even for a server that only checks its own tokens; it
# is advertised nowhere then (no resource metadata is served for --auth token).
_TOKEN_ISSUER = "http://127.0.0.1/lancemem-tokens"


class PrincipalToken(AccessToken):
    """The SDK's access token, carrying the lancemem Principal it authenticated."""

    model_config = ConfigDict(arbitrary_types_allowed=True)
    principal: Principal


def current_principal() -> Principal | None:
    """Who made the current tool call on an authenticated server (None: unauthenticated)."""
    token = get_access_token()
    return token.principal if isinstance(token, PrincipalToken) else None


class PrincipalVerifier:
    """The SDK's TokenVerifier over a blocking ``authenticate(token) -> Principal``."""

    def __init__(self, authenticate: Callable[[str], Principal], kind: str) -> None:
        """``authenticate`` raises AuthenticationError for a credential to refuse."""
        self._authenticate = authenticate
        self._kind = kind

    async def verify_token(self, token: str) -> AccessToken | None:
        """The credential as a PrincipalToken, or None (the SDK answers 401)."""
        try:
            principal = await anyio.to_thread.run_sync(self._authenticate, token)
        except AuthenticationError as exc:
            log.info("refused a request: %s", exc.message)
            return None
        except LanceMemError as exc:  # the store failed: refuse, and say why in the log
            log.warning("could not check a %s credential: %s", self._kind, exc)
            return None
        except Exception as exc:  # fail closed, one line: a crafted credential must not
            log.warning("refused a request: checking its %s credential failed (%s: %s)",
                        self._kind, type(exc).__name__, str(exc)[:200].encode(
                            "unicode_escape").decode("ascii"))
            return None
        return PrincipalToken(token=token, client_id=principal.name, scopes=[],
                              subject=principal.id, principal=principal)


@dataclass(frozen=True)
class ServerAuth:
    """What build_server needs to require authentication."""

    verifier: PrincipalVerifier
    settings: AuthSettings
    metadata: dict[str, object] | None = None  # RFC 9728 document, for --auth jwt

    def register(self, server: MCPServer) -> None:
        """Serve the resource metadata at the RFC 9728 root path too (the SDK serves
        it under the endpoint's path only)."""
        if self.metadata is None:
            return
        document = self.metadata

        async def metadata(request: Request) -> Response:
            return JSONResponse(document, headers={"Cache-Control": "public, max-age=3600"})

        server.custom_route(WELL_KNOWN, methods=["GET"])(metadata)


def token_auth(authenticate: Callable[[str], Principal]) -> ServerAuth:
    """``--auth token``: bearer tokens from the store."""
    settings = AuthSettings(issuer_url=_TOKEN_ISSUER, resource_server_url=None)
    return ServerAuth(PrincipalVerifier(authenticate, "token"), settings)


def jwt_auth(authenticate: Callable[[str], Principal], settings: Settings,
             resource_url: str) -> ServerAuth:
    """``--auth jwt``: JWTs from ``settings.jwt_issuer``, for the resource at ``resource_url``.

    The audience is checked by the verifier (``--jwt-audience``), so the SDK's
    own resource check stays off.
    """
    assert settings.jwt_issuer  # config refuses --auth jwt without it
    auth = AuthSettings(issuer_url=settings.jwt_issuer, resource_server_url=resource_url,
                        validate_token_resource=False)
    metadata = {"resource": resource_url, "authorization_servers": [settings.jwt_issuer],
                "bearer_methods_supported": ["header"]}
    return ServerAuth(PrincipalVerifier(authenticate, "JWT"), auth, metadata)
