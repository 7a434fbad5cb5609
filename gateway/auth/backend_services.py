"""SMART Backend Services: the client-credentials grant with a signed JWT client assertion.

RFC 6749 §4.4 with RFC 7523 client authentication (private_key_jwt), as profiled by SMART App
Launch 2.x "Backend Services". Written on joserfc (JWS/JWT/JWK) rather than authlib's server
framework, which is built around Flask/Django request objects.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from joserfc.jws import extract_compact
from sqlalchemy import delete, insert
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from gateway.auth.clients import SystemClient, find_client, is_active
from gateway.auth.scopes import ScopeError, covered, parse_scopes
from gateway.auth.tokens import LIFETIME_S, AccessTokens
from gateway.context import Actor
from gateway.store.database import Database
from gateway.store.schema import used_assertions

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ALGORITHMS = ["RS384", "ES384"]
MAX_ASSERTION_LIFETIME_S = 300
CLOCK_SKEW_S = 30


@dataclass
class OAuthError(Exception):
    """An RFC 6749 §5.2 error response."""

    error: str
    description: str
    status: int = 400

    def body(self) -> dict[str, str]:
        return {"error": self.error, "error_description": self.description}


class BackendServices:
    """The token endpoint for system clients."""

    def __init__(self, db: Database, tokens: AccessTokens) -> None:
        self.db = db
        self.tokens = tokens
        self._jwks_cache: dict[str, tuple[float, dict[str, Any]]] = {}

    async def token(
        self, form: dict[str, str], token_url: str, certificate: str | None = None
    ) -> tuple[dict[str, Any], Actor]:
        """Answer a token request: the access token response and whom it was issued to, or
        raise ``OAuthError``.

        ``certificate`` is the thumbprint of the TLS client certificate the request came with.
        """
        if form.get("grant_type") != "client_credentials":
            raise OAuthError("unsupported_grant_type", "grant_type must be client_credentials")
        if form.get("client_assertion_type") != ASSERTION_TYPE:
            raise OAuthError("invalid_request", f"client_assertion_type must be {ASSERTION_TYPE}")
        assertion = form.get("client_assertion") or ""
        try:
            requested = parse_scopes(form.get("scope", ""))
        except ScopeError as exc:
            raise OAuthError("invalid_scope", str(exc)) from None
        if not requested:
            raise OAuthError("invalid_scope", "ask for at least one scope, e.g. system/*.read")
        client_id = _claimed_client(assertion)
        client = await self.db.read(lambda conn: find_client(conn, client_id))
        if client is None or client.disabled:
            raise OAuthError("invalid_client", "unknown or disabled client", 401)
        claims = self._verified_claims(assertion, await self._keys(client), client_id, token_url)
        if client.cert_thumbprint is not None and certificate != client.cert_thumbprint:
            raise OAuthError(
                "invalid_client", "this client must present its registered TLS certificate", 401
            )
        allowed = parse_scopes(client.scopes)
        refused = [
            s
            for s in form["scope"].split()
            if "/" in s and not covered(parse_scopes(s)[0], allowed)
        ]
        if refused:
            raise OAuthError("invalid_scope", f"not granted to this client: {' '.join(refused)}")
        granted = " ".join(s for s in form["scope"].split() if "/" in s)
        await self.db.write(lambda conn: _remember(conn, client_id, claims["jti"], claims["exp"]))
        bound: dict[str, Any] = {}
        if client.cert_thumbprint is not None:  # RFC 8705 §3: a certificate-bound token
            bound["cnf"] = {"x5t#S256": client.cert_thumbprint}
        access_token, _ = self.tokens.issue(
            {
                "sub": client_id,
                "name": client.name,
                "kind": "system",
                "org": client.org_ura,
                "scope": granted,
            }
            | bound
        )
        answer = {
            "access_token": access_token,
            "token_type": "bearer",
            "expires_in": LIFETIME_S,
            "scope": granted,
        }
        return answer, Actor("system", client_id, client.org_ura, name=client.name)

    def _verified_claims(
        self, assertion: str, keys: dict[str, Any], client_id: str, token_url: str
    ) -> dict[str, Any]:
        try:
            key_set = KeySet.import_key_set(keys)  # type: ignore[arg-type]
            claims = jwt.decode(assertion, key_set, algorithms=ALGORITHMS).claims
        except (JoseError, ValueError, TypeError, KeyError):
            raise OAuthError(
                "invalid_client", "the client assertion's signature is not valid", 401
            ) from None
        now = time.time()
        audience = claims.get("aud")
        if audience != token_url and not (isinstance(audience, list) and token_url in audience):
            raise OAuthError("invalid_client", f"the assertion's aud must be {token_url}", 401)
        if claims.get("iss") != client_id or claims.get("sub") != client_id:
            raise OAuthError(
                "invalid_client", "the assertion's iss and sub must be the client_id", 401
            )
        exp = claims.get("exp")
        if not isinstance(exp, int) or exp <= now - CLOCK_SKEW_S:
            raise OAuthError("invalid_client", "the client assertion has expired", 401)
        if exp > now + MAX_ASSERTION_LIFETIME_S + CLOCK_SKEW_S:
            raise OAuthError(
                "invalid_client", "the assertion's exp may be at most 5 minutes ahead", 401
            )
        if not isinstance(claims.get("jti"), str) or not claims["jti"]:
            raise OAuthError("invalid_client", "the client assertion has no jti", 401)
        return claims

    async def _keys(self, client: SystemClient) -> dict[str, Any]:
        if client.jwks is not None:
            return client.jwks
        assert client.jwks_url is not None
        cached = self._jwks_cache.get(client.jwks_url)
        if cached and cached[0] > time.monotonic():
            return cached[1]
        try:
            async with httpx.AsyncClient(timeout=5) as http:
                response = await http.get(client.jwks_url)
                response.raise_for_status()
                keys = orjson.loads(response.content)
        except (httpx.HTTPError, orjson.JSONDecodeError):
            raise OAuthError(
                "invalid_client", "the client's JWKS URL could not be read", 401
            ) from None
        self._jwks_cache[client.jwks_url] = (time.monotonic() + 300, keys)
        return dict(keys)


def claimed_client(assertion: str) -> str | None:
    """Who an assertion claims to be, for the audit record of a refused request."""
    try:
        return _claimed_client(assertion)[:200]
    except OAuthError:
        return None


def _claimed_client(assertion: str) -> str:
    """The client an assertion claims to come from, checked before any key is looked up."""
    try:
        token = extract_compact(assertion.encode())
        algorithm = token.headers().get("alg")
        claims = orjson.loads(token.payload)
    except (JoseError, ValueError, TypeError):
        raise OAuthError("invalid_client", "client_assertion is not a signed JWT", 401) from None
    if algorithm not in ALGORITHMS:
        raise OAuthError(
            "invalid_client", f"the assertion must be signed with {' or '.join(ALGORITHMS)}", 401
        )
    client_id = claims.get("iss") if isinstance(claims, dict) else None
    if not isinstance(client_id, str):
        raise OAuthError("invalid_client", "the client assertion has no iss", 401)
    return client_id


def _remember(conn: Connection, client_id: str, jti: str, exp: int) -> None:
    """Record the assertion's jti; a second use (in any process, after restarts) is refused."""
    now_us = time.time_ns() // 1000
    conn.execute(delete(used_assertions).where(used_assertions.c.expires_us < now_us))
    if not is_active(conn, client_id):
        raise OAuthError("invalid_client", "unknown or disabled client", 401)
    try:
        with conn.begin_nested():
            conn.execute(
                insert(used_assertions),
                {
                    "client_id": client_id,
                    "jti": jti[:255],
                    "expires_us": (exp + CLOCK_SKEW_S) * 1_000_000,
                },
            )
    except IntegrityError:
        raise OAuthError("invalid_client", "this client assertion was used before", 401) from None
