"""SMART discovery and the OAuth 2.0 token endpoint."""

from __future__ import annotations

import time
from functools import lru_cache
from html import escape
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse

from gateway.api.tls import client_certificate
from gateway.audit import codes as audit_codes
from gateway.audit.event import Agent, AuditFacts
from gateway.auth.app_launch import (
    AUTHORIZE_FIELDS,
    AuthorizeError,
    AuthorizeRequest,
    user_actor,
)
from gateway.auth.backend_services import ALGORITHMS, OAuthError, claimed_client
from gateway.auth.certificates import thumbprint
from gateway.auth.scopes import parse_scopes
from gateway.context import Actor
from gateway.errors import Unauthorized

router = APIRouter()
_MAX_FORM_BYTES = 64 * 1024
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def public_base(request: Request) -> str:
    configured = request.app.state.settings.base_url
    return (configured or str(request.base_url)).rstrip("/")


async def smart_configuration(request: Request) -> JSONResponse:
    """SMART discovery; served at /fhir/.well-known/smart-configuration (fhir_routes)."""
    base = public_base(request)
    return JSONResponse(
        {
            "issuer": request.app.state.tokens.issuer,
            "token_endpoint": f"{base}/oauth/token",
            "authorization_endpoint": f"{base}/oauth/authorize",
            "code_challenge_methods_supported": ["S256"],
            "response_types_supported": ["code"],
            "token_endpoint_auth_methods_supported": ["private_key_jwt"],
            "token_endpoint_auth_signing_alg_values_supported": ALGORITHMS,
            "grant_types_supported": ["client_credentials", "authorization_code"],
            "scopes_supported": [
                "system/*.read",
                "system/*.write",
                "system/*.cruds",
                "system/*.rs",
            ],
            "capabilities": [
                "client-confidential-asymmetric",
                "launch-standalone",
                "client-public",
                "permission-v1",
                "permission-v2",
                "permission-user",
            ],
        }
    )


_PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "form-action 'self'; frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
}


def _login_page(request: AuthorizeRequest, message: str = "") -> str:
    hidden = "".join(
        f'<input type="hidden" name="{escape(k)}" value="{escape(v)}">'
        for k, v in request.fields().items()
    )
    alert = f'<p role="alert">{escape(message)}</p>' if message else ""
    return (
        '<!doctype html><html lang="nl"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        "<title>Inloggen - Zorgbrug</title></head><body>"
        "<main><h1>Zorgbrug</h1><p>Inloggen / Log in</p>"
        f'{alert}<form method="post" action="/oauth/authorize">{hidden}'
        '<p><label for="username">Gebruikersnaam / Username</label><br>'
        '<input id="username" name="username" autocomplete="username" required autofocus></p>'
        '<p><label for="password">Wachtwoord / Password</label><br>'
        '<input id="password" name="password" type="password" autocomplete="current-password"'
        " required></p>"
        '<p><button type="submit">Inloggen / Log in</button></p></form></main></body></html>'
    )


def _error_page(message: str) -> HTMLResponse:
    body = (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Zorgbrug</title>'
        f"</head><body><main><h1>Cannot log in</h1><p>{escape(message)}</p></main></body></html>"
    )
    return HTMLResponse(body, status_code=400, headers=_PAGE_HEADERS)


@router.get("/oauth/authorize")
async def authorize_form(request: Request) -> HTMLResponse:
    try:
        checked = await request.app.state.app_launch.check(
            dict(request.query_params), public_base(request)
        )
    except AuthorizeError as error:
        return _error_page(str(error))
    return HTMLResponse(_login_page(checked), headers=_PAGE_HEADERS)


@router.post("/oauth/authorize", response_model=None)
async def authorize_login(request: Request) -> HTMLResponse | RedirectResponse:
    body = await request.body()
    if len(body) > _MAX_FORM_BYTES:
        return _error_page("The form is too large.")
    form = dict(parse_qsl(body.decode("utf-8", "replace")))
    launch = request.app.state.app_launch
    try:
        checked = await launch.check(
            {k: form.get(k, "") for k in AUTHORIZE_FIELDS}, public_base(request)
        )
    except AuthorizeError as error:
        return _error_page(str(error))
    username = form.get("username", "")
    outcome = await launch.login(checked, username, form.get("password", ""))
    if isinstance(outcome, tuple):
        url, user = outcome
        await record_auth_event(
            request, "login", user_actor(user), details=(("app", checked.client_id),)
        )
        return RedirectResponse(url, status_code=303, headers={"Cache-Control": "no-store"})
    await record_auth_event(
        request,
        "login",
        Actor("user", username[:200] or "(none)", name=username[:200] or None),
        outcome=audit_codes.MINOR_FAILURE,
        description="account locked after repeated failures" if outcome.locked else "failed",
        details=(("app", checked.client_id),),
    )
    message = (
        "Te veel mislukte pogingen; probeer het later opnieuw. / Too many failed attempts; "
        "try again later."
        if outcome.locked
        else "Gebruikersnaam of wachtwoord onjuist. / Wrong username or password."
    )
    return HTMLResponse(_login_page(checked, message), status_code=401, headers=_PAGE_HEADERS)


@router.post("/oauth/token")
async def token(request: Request) -> JSONResponse:
    media = request.headers.get("content-type", "").split(";")[0].strip()
    if media != "application/x-www-form-urlencoded":
        return _oauth_error(
            OAuthError(
                "invalid_request", "send the token request as application/x-www-form-urlencoded"
            )
        )
    body = await request.body()
    if len(body) > _MAX_FORM_BYTES:
        return _oauth_error(OAuthError("invalid_request", "the token request is too large"))
    form = dict(parse_qsl(body.decode("utf-8", "replace")))
    grant = form.get("grant_type", "")
    try:
        if grant == "authorization_code":
            answer, actor = await request.app.state.app_launch.exchange(form)
        else:
            answer, actor = await request.app.state.backend_services.token(
                form, f"{public_base(request)}/oauth/token", presented_thumbprint(request)
            )
    except OAuthError as error:
        claimed = (
            Actor("user", f"app:{form.get('client_id', '')[:120]}")
            if grant == "authorization_code"
            else Actor("system", claimed_client(form.get("client_assertion", "")) or "(none)")
        )
        await record_auth_event(
            request,
            "token",
            claimed,
            outcome=audit_codes.MINOR_FAILURE,
            description=f"{error.error}: {error.description}",
            details=(("grant_type", grant[:64]),),
        )
        return _oauth_error(error)
    # No record, no token: a failure to audit answers 500 and the token is never sent.
    await record_auth_event(
        request,
        "token",
        actor,
        details=(("grant_type", grant[:64]), ("scope", str(answer.get("scope", ""))[:500])),
    )
    return JSONResponse(answer, headers=_NO_STORE)


async def record_auth_event(
    request: Request,
    kind: str,
    actor: Actor,
    *,
    outcome: str = audit_codes.SUCCESS,
    description: str | None = None,
    details: tuple[tuple[str, str], ...] = (),
) -> None:
    """Record a login or token event before the answer leaves (never a password or token)."""
    role = next(iter(sorted(actor.roles)), None) or ("system" if actor.kind == "system" else None)
    agent = Agent(
        kind=actor.kind,
        id=actor.id,
        organization=actor.organization,
        role=role,
        name=actor.name,
        address=request.client.host if request.client else None,
    )
    facts = AuditFacts(
        kind=kind,
        agent=agent,
        request_id=request.state.request_id,
        correlation_id=getattr(request.state, "correlation_id", None),
        outcome=outcome,
        outcome_desc=description,
        details=details,
        recorded_us=time.time_ns() // 1000,
    )
    await request.app.state.service.audit.record([facts])


def presented_thumbprint(request: Request) -> str | None:
    """The thumbprint of the TLS client certificate of the request's connection, if any."""
    pem = client_certificate(request.scope)
    return thumbprint(pem) if pem else None


def _oauth_error(error: OAuthError) -> JSONResponse:
    headers = dict(_NO_STORE)
    if error.status == 401:
        headers["WWW-Authenticate"] = 'Basic realm="zorgbrug", error="invalid_client"'
    return JSONResponse(error.body(), status_code=error.status, headers=headers)


async def bearer_actor(request: Request) -> Actor:
    """The actor of a request's bearer token; 401 with a challenge when there is none."""
    scheme, _, token_text = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token_text.strip():
        raise Unauthorized(
            "This endpoint needs a bearer access token (see /fhir/.well-known/smart-configuration)",
            headers={"WWW-Authenticate": 'Bearer realm="zorgbrug"'},
        )
    claims = await request.app.state.tokens.verify(token_text.strip())
    bound = (claims.get("cnf") or {}).get("x5t#S256")
    if bound is not None and bound != presented_thumbprint(request):
        raise Unauthorized(
            "The access token is bound to a TLS client certificate this connection did not present",
            headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
        )
    return _actor(
        str(claims.get("kind")),
        str(claims.get("sub")),
        claims.get("org"),
        str(claims.get("scope", "")),
        str(claims.get("role", "")),
        name if isinstance(name := claims.get("name"), str) else None,
    )


@lru_cache(maxsize=4096)
def _actor(
    kind: str, subject: str, organization: str | None, scope: str, role: str, name: str | None
) -> Actor:
    if kind not in ("system", "user"):
        raise Unauthorized("Unsupported kind of access token")
    return Actor(
        kind=kind,
        id=subject,
        organization=organization,
        roles=frozenset([role]) if role else frozenset(),
        scopes=tuple(parse_scopes(scope)),
        name=name,
    )
