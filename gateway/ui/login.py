"""Logging in to the UI through the gateway's own authorization-code flow with PKCE, and out.

The UI is the built-in public app ``zorgbrug-ui``: it sends the browser to ``/oauth/authorize``
with a fresh ``state`` and S256 code challenge, and redeems the code it gets back at
``/ui/callback`` for a server-side session. The code verifier waits in a short-lived HttpOnly
cookie that only ``/ui/callback`` receives.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from gateway.api.auth_routes import public_base, record_auth_event
from gateway.audit import codes as audit_codes
from gateway.auth.app_launch import UI_CALLBACK_PATH, UI_CLIENT_ID, UI_SCOPE, user_actor
from gateway.auth.backend_services import OAuthError
from gateway.auth.sessions import end_session, end_stale_sessions, open_session
from gateway.context import Actor
from gateway.ui.i18n import LANGUAGES
from gateway.ui.web import (
    HOME_OF_ROLE,
    LANG_COOKIE,
    LOGIN_COOKIE,
    SESSION_COOKIE,
    Page,
    PageError,
    page,
    redirect,
    same,
)

router = APIRouter()
_LOGIN_WINDOW_S = 600


@router.get("/ui/")
async def landing(current: Annotated[Page, Depends(page)]) -> Response:
    if current.session is not None:
        return redirect(HOME_OF_ROLE.get(current.session.role, "/ui/home"))
    return current.render("landing.html")


@router.get("/ui/home")
async def home(current: Annotated[Page, Depends(page)]) -> Response:
    session = current.signed_in
    if session.role in HOME_OF_ROLE:
        return redirect(HOME_OF_ROLE[session.role])
    return current.render("home.html")


@router.get("/ui/login")
async def login(request: Request) -> Response:
    state = secrets.token_urlsafe(24)
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    query = urlencode(
        {
            "response_type": "code",
            "client_id": UI_CLIENT_ID,
            "redirect_uri": f"{public_base(request)}{UI_CALLBACK_PATH}",
            "scope": UI_SCOPE,
            "state": state,
            "code_challenge": challenge.rstrip(b"=").decode(),
            "code_challenge_method": "S256",
        }
    )
    response = redirect(f"/oauth/authorize?{query}")
    response.set_cookie(
        LOGIN_COOKIE,
        f"{state}.{verifier}",
        max_age=_LOGIN_WINDOW_S,
        path=UI_CALLBACK_PATH,
        secure=True,
        httponly=True,
        samesite="lax",
    )
    return response


@router.get(UI_CALLBACK_PATH)
async def callback(request: Request) -> Response:
    state, _, verifier = request.cookies.get(LOGIN_COOKIE, "").partition(".")
    code = request.query_params.get("code", "")
    if not state or not code or not same(state, request.query_params.get("state", "")):
        raise PageError(400, "csrf_failed", "login state does not match; start again")
    launch = request.app.state.app_launch
    form = {
        "code": code,
        "client_id": UI_CLIENT_ID,
        "redirect_uri": f"{public_base(request)}{UI_CALLBACK_PATH}",
        "code_verifier": verifier,
    }
    try:
        user, scope = await launch.redeem(form)
    except OAuthError as error:
        await record_auth_event(
            request,
            "token",
            Actor("user", f"app:{UI_CLIENT_ID}"),
            outcome=audit_codes.MINOR_FAILURE,
            description=f"{error.error}: {error.description}",
            details=(("grant_type", "authorization_code"),),
        )
        raise PageError(400, "session_expired", error.description) from None
    idle_s = request.app.state.settings.ui_idle_timeout_s

    def start(conn: Any) -> str:
        end_stale_sessions(conn, idle_s=idle_s)  # those nobody came back to
        return open_session(conn, user, scope)[0]

    token = await request.app.state.db.write(start)
    await record_auth_event(
        request,
        "token",
        user_actor(user),
        details=(("grant_type", "authorization_code"), ("scope", scope), ("app", UI_CLIENT_ID)),
    )
    response = redirect(HOME_OF_ROLE.get(user.role, "/ui/home"))
    response.delete_cookie(LOGIN_COOKIE, path=UI_CALLBACK_PATH, secure=True, httponly=True)
    response.set_cookie(
        SESSION_COOKIE, token, path="/", secure=True, httponly=True, samesite="strict"
    )
    return response


@router.post("/ui/logout")
async def logout(current: Annotated[Page, Depends(page)]) -> Response:
    await current.form()
    session = current.signed_in
    await current.request.app.state.db.write(lambda conn: end_session(conn, session.token_hash))
    response = redirect("/ui/")
    response.delete_cookie(SESSION_COOKIE, path="/", secure=True, httponly=True)
    return response


@router.get("/ui/lang/{lang}")
async def language(request: Request, lang: str) -> Response:
    target = request.query_params.get("next", "/ui/")
    # Only back into the UI: never an open redirect to another site.
    if not target.startswith("/ui/") or target.startswith("//") or "\\" in target:
        target = "/ui/"
    response = redirect(target)
    if lang in LANGUAGES:
        response.set_cookie(
            LANG_COOKIE, lang, max_age=365 * 86400, secure=True, httponly=True, samesite="lax"
        )
    return response
