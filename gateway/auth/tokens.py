"""Access tokens: short-lived JWTs that every gateway process can issue and verify.

The signing secrets live in the database (HMAC-SHA256): the gateway is both the authorisation
server and the only resource server, so no one else needs to verify them, and HMAC keeps the
cost per request to microseconds (the 10%-of-read-throughput budget of the auth issue).
"""

from __future__ import annotations

import secrets
import time
from typing import Any

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import OctKey
from joserfc.jws import extract_compact
from sqlalchemy import insert, select
from sqlalchemy.engine import Connection

from gateway.errors import Unauthorized
from gateway.store.database import Database
from gateway.store.schema import token_secrets

LIFETIME_S = 300
_CACHE_LIMIT = 10_000


def _challenge(error: str, description: str) -> dict[str, str]:
    return {"WWW-Authenticate": f'Bearer error="{error}", error_description="{description}"'}


class AccessTokens:
    """Issue and verify the gateway's access tokens."""

    def __init__(self, db: Database, issuer: str) -> None:
        self.db = db
        self.issuer = issuer
        self._keys: dict[str, OctKey] = {}
        self._current: str | None = None
        self._verified: dict[str, dict[str, Any]] = {}

    async def load(self) -> None:
        """Load the signing secrets, creating the first one on a new store."""
        rows = await self.db.write(_secrets)
        self._keys = {kid: OctKey.import_key(secret) for kid, secret in rows}
        self._current = rows[-1][0]

    def issue(self, claims: dict[str, Any]) -> tuple[str, int]:
        """A signed token with ``claims`` plus iss, iat, exp and jti; returns it and its expiry."""
        assert self._current is not None, "load() first"
        now = int(time.time())
        body = {
            "iss": self.issuer,
            "iat": now,
            "exp": now + LIFETIME_S,
            "jti": secrets.token_urlsafe(12),
            **claims,
        }
        header = {"alg": "HS256", "kid": self._current}
        return jwt.encode(header, body, self._keys[self._current]), body["exp"]

    async def verify(self, token: str) -> dict[str, Any]:
        """The claims of a valid, unexpired token of ours, or ``Unauthorized``."""
        now = time.time()
        cached = self._verified.get(token)
        if cached is not None and cached["exp"] > now:
            return cached
        try:
            kid = extract_compact(token.encode()).headers().get("kid")
            if kid not in self._keys:  # perhaps a secret another process added since
                await self.load()
            claims = jwt.decode(token, self._keys[str(kid)], algorithms=["HS256"]).claims
        except (JoseError, KeyError, ValueError, TypeError):
            raise Unauthorized(
                "The access token is not valid", headers=_challenge("invalid_token", "not valid")
            ) from None
        if claims.get("iss") != self.issuer or not isinstance(claims.get("exp"), int):
            raise Unauthorized(
                "The access token was not issued here",
                headers=_challenge("invalid_token", "wrong issuer"),
            )
        if claims["exp"] <= now:
            raise Unauthorized(
                "The access token has expired", headers=_challenge("invalid_token", "expired")
            )
        if len(self._verified) > _CACHE_LIMIT:
            self._verified.clear()
        self._verified[token] = claims
        return claims


def _secrets(conn: Connection) -> list[tuple[str, bytes]]:
    rows = conn.execute(
        select(token_secrets.c.kid, token_secrets.c.secret).order_by(token_secrets.c.created_us)
    ).all()
    if not rows:
        kid = secrets.token_hex(8)
        secret = secrets.token_bytes(32)
        conn.execute(
            insert(token_secrets),
            {"kid": kid, "secret": secret, "created_us": time.time_ns() // 1000},
        )
        return [(kid, secret)]
    return [(str(kid), bytes(secret)) for kid, secret in rows]
