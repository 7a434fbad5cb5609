"""SMART App Launch (standalone) for people: authorization code with PKCE (S256).

The login form is the gateway's own; a later issue's web UI is one such app. Failed logins are
slowed down and, after ``MAX_FAILED_LOGINS``, the account is locked for a while.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from gateway.auth.backend_services import OAuthError
from gateway.auth.people import (
    LoginResult,
    User,
    app_redirects,
    authenticate,
    issue_code,
    redeem_code,
)
from gateway.auth.scopes import ScopeError, parse_scopes
from gateway.auth.tokens import LIFETIME_S, AccessTokens
from gateway.context import Actor
from gateway.store.database import Database

AUTHORIZE_FIELDS = (
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "code_challenge",
    "code_challenge_method",
)


# The gateway's own web UI is a built-in public app: its redirect URI is /ui/callback on the
# origin the person reached the gateway at, so it needs no registration per host name.
UI_CLIENT_ID = "zorgbrug-ui"
UI_CALLBACK_PATH = "/ui/callback"
UI_SCOPE = "user/*.cruds"


class AuthorizeError(Exception):
    """A request that must not be redirected back (unknown app or redirect URI)."""


@dataclass(frozen=True)
class AuthorizeRequest:
    client_id: str
    redirect_uri: str
    scope: str
    state: str
    code_challenge: str

    def fields(self) -> dict[str, str]:
        return {
            "response_type": "code",
            "client_id": self.client_id,
            "redirect_uri": self.redirect_uri,
            "scope": self.scope,
            "state": self.state,
            "code_challenge": self.code_challenge,
            "code_challenge_method": "S256",
        }


class AppLaunch:
    def __init__(self, db: Database, tokens: AccessTokens) -> None:
        self.db = db
        self.tokens = tokens

    async def check(self, params: dict[str, str], origin: str | None = None) -> AuthorizeRequest:
        """Validate an authorization request before showing the login form; ``origin`` is the
        scheme and host the request reached the gateway at."""
        client_id, redirect_uri = params.get("client_id", ""), params.get("redirect_uri", "")
        registered: list[str] | None
        if client_id == UI_CLIENT_ID:
            registered = [f"{origin}{UI_CALLBACK_PATH}"] if origin else []
        else:
            registered = await self.db.read(lambda conn: app_redirects(conn, client_id))
        if registered is None:
            raise AuthorizeError("Unknown application (client_id).")
        if redirect_uri not in registered:
            raise AuthorizeError("The redirect_uri is not registered for this application.")
        if params.get("response_type") != "code":
            raise AuthorizeError("response_type must be code.")
        if (
            params.get("code_challenge_method") != "S256"
            or len(params.get("code_challenge", "")) < 43
        ):
            raise AuthorizeError(
                "PKCE is required: code_challenge with code_challenge_method=S256."
            )
        try:
            scopes = parse_scopes(params.get("scope", ""))
        except ScopeError as exc:
            raise AuthorizeError(str(exc)) from None
        if not scopes or any(s.context == "system" for s in scopes):
            raise AuthorizeError("Ask for user/… scopes, e.g. user/*.rs.")
        return AuthorizeRequest(
            client_id,
            redirect_uri,
            params.get("scope", ""),
            params.get("state", ""),
            params["code_challenge"],
        )

    async def login(
        self, request: AuthorizeRequest, username: str, password: str
    ) -> tuple[str, User] | LoginResult:
        """The redirect URL carrying a code and the person who logged in, or the failed
        result (after a growing delay)."""
        result = await self.db.write(lambda conn: authenticate(conn, username, password))
        if result.user is None:
            await asyncio.sleep(min(0.25 * 2 ** max(result.failures - 1, 0), 4.0))
            return result
        user = result.user
        code = await self.db.write(
            lambda conn: issue_code(
                conn,
                user=user,
                client_id=request.client_id,
                redirect_uri=request.redirect_uri,
                challenge=request.code_challenge,
                scope=request.scope,
            )
        )
        query = urlencode({"code": code, "state": request.state})
        separator = "&" if "?" in request.redirect_uri else "?"
        return f"{request.redirect_uri}{separator}{query}", user

    async def exchange(self, form: dict[str, str]) -> tuple[dict[str, Any], Actor]:
        """The token response for ``grant_type=authorization_code`` and whom it was issued to."""
        user, scope = await self.redeem(form)
        access_token, _ = self.tokens.issue(
            {
                "sub": user.user_id,
                "name": user.username,
                "kind": "user",
                "org": user.org_ura,
                "role": user.role,
                "fhirUser": user.fhir_user,
                "scope": scope,
            }
        )
        answer = {
            "access_token": access_token,
            "token_type": "bearer",
            "expires_in": LIFETIME_S,
            "scope": scope,
            "fhirUser": user.fhir_user,
            "organization": user.org_ura,
        }
        return answer, user_actor(user)

    async def redeem(self, form: dict[str, str]) -> tuple[User, str]:
        """The person and granted scope of an authorization code (used once, PKCE checked)."""
        for field in ("code", "client_id", "redirect_uri", "code_verifier"):
            if not form.get(field):
                raise OAuthError("invalid_request", f"{field} is required")
        outcome = await self.db.write(
            lambda conn: redeem_code(
                conn,
                code=form["code"],
                client_id=form["client_id"],
                redirect_uri=form["redirect_uri"],
                verifier=form["code_verifier"],
            )
        )
        if isinstance(outcome, str):
            raise OAuthError("invalid_grant", outcome)
        return outcome


def user_actor(user: User) -> Actor:
    return Actor("user", user.user_id, user.org_ura, frozenset({user.role}), name=user.username)
