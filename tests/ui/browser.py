"""Helpers of the browser tests: Debian's Chromium through Playwright, logging in through the
real login pages, screenshots, axe-core accessibility checks, and raw HTTP with the UI's session
cookie (httpx keeps no Secure cookies over plain http, so the cookie travels by hand)."""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http.cookies import Morsel, SimpleCookie
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urljoin, urlsplit

import httpx
import pytest

CHROMIUM = Path("/usr/bin/chromium")
ROOT = Path(__file__).resolve().parents[2]
# Installed by `make axe` (npm install --prefix .cache/axe axe-core@4).
AXE_JS = ROOT / ".cache" / "axe" / "node_modules" / "axe-core" / "axe.min.js"
SCREENSHOTS = Path(__file__).resolve().parent / "screenshots"

SESSION_COOKIE = "__Host-zb_session"
LOGIN_COOKIE = "zb_login"
# Where each role lands after logging in.
HOME_OF_ROLE = {"clinician": "/ui/patients", "assistant": "/ui/send", "dpo": "/ui/dpo"}
TIMEOUT_MS = 20_000
T = TypeVar("T")


def off_loop(function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Call a harness helper that uses ``asyncio.run`` (``server.hospital``, ``add_person``) in a
    thread of its own: while a test process holds the browser, Playwright's sync API keeps an
    event loop running in the main thread, and ``asyncio.run`` refuses to start under it."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(function, *args, **kwargs).result()


def path_of(url: str) -> str:
    return urlsplit(url).path


def log_in(
    browser: Any,
    base_url: str,
    username: str,
    password: str,
    *,
    role: str | None = None,
    **context_options: Any,
) -> Any:
    """A page in a fresh browser context, logged in through the UI: the landing page's
    "Inloggen" link, the gateway's login form, back through /ui/callback to the role's home
    (exactly ``HOME_OF_ROLE[role]`` when ``role`` is given). ``context_options`` go to
    ``browser.new_context`` (``bypass_csp=True`` for :func:`axe`)."""
    context = browser.new_context(**context_options)
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    page.goto(f"{base_url}/ui/")
    page.get_by_role("link", name="Inloggen", exact=True).click()
    page.wait_for_url(lambda url: path_of(url) == "/oauth/authorize")
    page.fill("#username", username)
    page.fill("#password", password)
    page.locator("form button[type=submit]").click()
    homes = {HOME_OF_ROLE[role]} if role else set(HOME_OF_ROLE.values())
    try:
        page.wait_for_url(lambda url: path_of(url) in homes)
    except Exception as error:  # a clearer message than a bare timeout
        raise AssertionError(
            f"login of {username} did not land on {sorted(homes)} but on {page.url}"
        ) from error
    return page


def screenshot(page: Any, name: str) -> Path:
    """A full-page PNG at tests/ui/screenshots/<name>.png."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    target = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(target), full_page=True)
    return target


def axe(page: Any) -> list[dict[str, Any]]:
    """The axe-core violations of the page as it is now. The page's context must have been made
    with ``bypass_csp=True``: the script is injected inline, which ``script-src 'self'`` blocks."""
    if not AXE_JS.is_file():
        pytest.skip(f"axe-core is not installed at {AXE_JS.relative_to(ROOT)}: run `make axe`")
    page.add_script_tag(path=str(AXE_JS))
    violations: list[dict[str, Any]] = page.evaluate("async () => (await axe.run()).violations")
    return violations


def summary(violations: list[dict[str, Any]]) -> list[str]:
    """One line per violation: impact, rule and the first offending element."""
    return [
        f"{v.get('impact')}: {v['id']} ({v.get('help')}) at "
        f"{(v.get('nodes') or [{}])[0].get('target')}"
        for v in violations
    ]


# -- raw HTTP --------------------------------------------------------------------------------


def set_cookies(response: httpx.Response) -> dict[str, Morsel[str]]:
    """The cookies a response sets, with their attributes."""
    found: dict[str, Morsel[str]] = {}
    for header in response.headers.get_list("set-cookie"):
        jar: SimpleCookie = SimpleCookie()
        jar.load(header)
        found.update(jar)
    return found


def hidden_fields(page_html: str) -> dict[str, str]:
    return {
        html.unescape(name): html.unescape(value)
        for name, value in re.findall(
            r'<input type="hidden" name="([^"]*)" value="([^"]*)">', page_html
        )
    }


@dataclass
class UiSession:
    """A UI session reached over raw HTTP: its cookie's token and its CSRF token."""

    base_url: str
    token: str
    csrf: str
    cookie: Morsel[str]  # as /ui/callback set it

    def headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        return {"Cookie": f"{SESSION_COOKIE}={self.token}"} | (extra or {})

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        headers = self.headers(kwargs.pop("headers", None))
        return httpx.get(f"{self.base_url}{path}", headers=headers, timeout=60, **kwargs)

    def post(self, path: str, data: dict[str, str], **kwargs: Any) -> httpx.Response:
        headers = self.headers(kwargs.pop("headers", None))
        return httpx.post(
            f"{self.base_url}{path}", data=data, headers=headers, timeout=60, **kwargs
        )


def http_log_in(base_url: str, username: str, password: str) -> UiSession:
    """A UI session over raw HTTP, through the same steps the browser takes."""
    start = httpx.get(f"{base_url}/ui/login", timeout=60)
    assert start.status_code == 303, start.text
    login_cookie = set_cookies(start)[LOGIN_COOKIE].value
    form_page = httpx.get(urljoin(base_url, start.headers["location"]), timeout=60)
    assert form_page.status_code == 200, form_page.text
    fields = hidden_fields(form_page.text) | {"username": username, "password": password}
    sent = httpx.post(f"{base_url}/oauth/authorize", data=fields, timeout=60)
    assert sent.status_code == 303, sent.text
    back = httpx.get(
        urljoin(base_url, sent.headers["location"]),
        headers={"Cookie": f"{LOGIN_COOKIE}={login_cookie}"},
        timeout=60,
    )
    assert back.status_code == 303, back.text
    cookie = set_cookies(back)[SESSION_COOKIE]
    home = httpx.get(
        urljoin(base_url, back.headers["location"]),
        headers={"Cookie": f"{SESSION_COOKIE}={cookie.value}"},
        timeout=60,
    )
    # The token sits in every signed-in page (the logout form).
    csrf = hidden_fields(home.text).get("csrf", "")
    assert csrf, (home.status_code, home.text[:300])
    return UiSession(base_url, cookie.value, csrf, cookie)
