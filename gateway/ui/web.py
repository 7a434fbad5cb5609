"""What every UI page needs: the session, the person as an actor, forms with CSRF checks, the
templates, and the security headers of a page that shows patient data."""

from __future__ import annotations

import hmac
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.datastructures import FormData, UploadFile

from gateway.api.auth_routes import public_base
from gateway.auth.scopes import parse_scopes
from gateway.auth.sessions import Session, find_session, save_data, settle
from gateway.context import Actor, RequestContext
from gateway.ui.i18n import LANGUAGES, translator

SESSION_COOKIE = "__Host-zb_session"
LANG_COOKIE = "zb_lang"
LOGIN_COOKIE = "zb_login"
AMSTERDAM = ZoneInfo("Europe/Amsterdam")

# No inline script or style anywhere: a document that smuggled markup in would still run nothing.
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "frame-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    # Not no-referrer: with it, browsers send "Origin: null" on our own form posts.
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
HOME_OF_ROLE = {"clinician": "/ui/patients", "assistant": "/ui/send", "dpo": "/ui/dpo"}

_templates = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    trim_blocks=True,
    lstrip_blocks=True,
)


class LoginRequired(Exception):
    """No live session: the person is sent to log in (again)."""

    def __init__(self, expired: bool = False) -> None:
        self.expired = expired


class PageError(Exception):
    """A page that cannot be shown: a status and the key of the message."""

    def __init__(self, status: int, key: str, detail: str | None = None) -> None:
        self.status, self.key, self.detail = status, key, detail


@dataclass
class Page:
    """One request to the UI."""

    request: Request
    session: Session | None
    lang: str
    flash: list[str] = field(default_factory=list)
    expired: bool = False  # a session cookie came, but its session has ended

    @property
    def t(self) -> Callable[..., str]:
        return translator(self.lang)

    @property
    def signed_in(self) -> Session:
        if self.session is None:
            raise LoginRequired(self.expired)
        return self.session

    def require(self, *roles: str) -> Session:
        session = self.signed_in
        if session.role not in roles:
            raise PageError(403, "forbidden")
        return session

    @property
    def actor(self) -> Actor:
        session = self.signed_in
        return Actor(
            kind="user",
            id=session.user_id,
            organization=session.org_ura,
            roles=frozenset({session.role}),
            scopes=tuple(parse_scopes(session.scope)),
            name=session.username,
        )

    def context(self, *, consulting: bool = False) -> RequestContext:
        """The service layer's request context for this page, as the logged-in person."""
        state = self.request.state
        return RequestContext(
            actor=self.actor,
            base_url=f"{public_base(self.request)}/fhir",
            request_id=state.request_id,
            correlation_id=getattr(state, "correlation_id", None),
            client_address=self.request.client.host if self.request.client else None,
            consulting=consulting,
        )

    @property
    def service(self) -> Any:
        return self.request.app.state.service

    async def form(self) -> FormData:
        """The posted form, refused unless it carries this session's CSRF token and comes
        from this site."""
        session = self.signed_in
        origin = self.request.headers.get("origin")
        if origin is not None and origin != public_base(self.request):
            raise PageError(403, "csrf_failed")
        limit = self.request.app.state.settings.max_body_bytes
        form = await self.request.form(max_part_size=limit)
        presented = form.get("csrf")
        if not isinstance(presented, str) or not session.csrf_matches(presented):
            raise PageError(403, "csrf_failed")
        return form

    async def remember(self, **values: Any) -> None:
        """Keep small state (the patient in view) in the server-side session."""
        session = self.signed_in
        session.data.update(values)
        await self.request.app.state.db.write(
            lambda conn: save_data(conn, session.token_hash, session.data)
        )

    def render(self, template: str, status: int = 200, **values: Any) -> HTMLResponse:
        body = _templates.get_template(template).render(
            t=self.t,
            lang=self.lang,
            session=self.session,
            path=self.request.url.path,
            flash=self.flash,
            when=when,
            **values,
        )
        return HTMLResponse(body, status_code=status, headers=PAGE_HEADERS)


async def page(request: Request) -> Page:
    """The FastAPI dependency of every UI route."""
    lang = request.cookies.get(LANG_COOKIE, "nl")
    lang = lang if lang in LANGUAGES else "nl"
    session = None
    token = request.cookies.get(SESSION_COOKIE)
    expired = False
    if token:
        settings, db = request.app.state.settings, request.app.state.db
        session, verdict = await db.read(
            lambda conn: find_session(
                conn, token, idle_s=settings.ui_idle_timeout_s, max_s=settings.ui_session_max_s
            )
        )
        if verdict:
            await db.write(lambda conn: settle(conn, token, verdict))
        expired = session is None
    current = Page(request, session, lang, expired=expired)
    if expired or (session is None and request.query_params.get("expired")):
        current.flash.append(current.t("session_expired"))
    if session is not None and "notice" in session.data:  # said once, after a redirect
        current.flash.append(current.t(str(session.data.pop("notice"))))
        await current.remember()
    return current


def redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303, headers={"Cache-Control": "no-store"})


def error_page(request: Request, status: int, key: str, detail: str | None = None) -> Response:
    """An HTML error page for the UI (the FHIR API answers OperationOutcomes instead)."""
    lang = request.cookies.get(LANG_COOKIE, "nl")
    current = Page(request, None, lang if lang in LANGUAGES else "nl")
    return current.render("error.html", status=status, message=current.t(key), detail=detail)


def login_redirect(request: Request, expired: bool) -> Response:
    response = redirect("/ui/?expired=1" if expired else "/ui/")
    if expired:
        response.delete_cookie(SESSION_COOKIE, path="/", secure=True, httponly=True)
    return response


def same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def when(value: str | None, with_time: bool = True) -> str:
    """A FHIR date or instant as Dutch local time, e.g. ``14-03-2026 09:30``."""
    if not value:
        return ""
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return value
    if len(value) <= 10:
        return moment.strftime("%d-%m-%Y")
    if moment.tzinfo is not None:
        moment = moment.astimezone(AMSTERDAM)
    return moment.strftime("%d-%m-%Y %H:%M" if with_time else "%d-%m-%Y")


def upload(form: FormData, name: str) -> UploadFile | None:
    value = form.get(name)
    return value if isinstance(value, UploadFile) and value.filename else None


def iso_date(value: str) -> str:
    """A form's date as YYYY-MM-DD, or "" when it is none."""
    try:
        return date.fromisoformat(value.strip()).isoformat()
    except ValueError:
        return ""


def text(form: FormData, name: str, limit: int = 500) -> str:
    value = form.get(name)
    return value.strip()[:limit] if isinstance(value, str) else ""
