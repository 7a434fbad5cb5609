"""Server-side sessions of the web UI.

The browser holds a random token in an HttpOnly cookie; the store keeps only its SHA-256, so a
copy of the database opens no session. A session ends at logout, after ``idle_s`` without a
request, after ``max_s`` in all, or as soon as its person's account is disabled.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import delete, insert, select, update
from sqlalchemy.engine import Connection

from gateway.auth.people import User
from gateway.store.schema import ui_sessions, users

# Writing "last seen" on every request would make each page view a write; a minute of slack on
# an idle timeout of many minutes is harmless.
_TOUCH_AFTER_US = 30 * 1_000_000


@dataclass(frozen=True)
class Session:
    token_hash: str
    user_id: str
    org_ura: str
    username: str
    role: str
    scope: str
    csrf: str
    data: dict[str, Any] = field(default_factory=dict)

    def csrf_matches(self, presented: str) -> bool:
        return hmac.compare_digest(self.csrf.encode(), presented.encode("utf-8", "replace"))


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


def open_session(conn: Connection, user: User, scope: str) -> tuple[str, Session]:
    """A new session for ``user``; returns the cookie's token and the session."""
    token = secrets.token_urlsafe(32)
    now = time.time_ns() // 1000
    session = Session(
        token_hash(token),
        user.user_id,
        user.org_ura,
        user.username,
        user.role,
        scope,
        secrets.token_urlsafe(32),
    )
    conn.execute(
        insert(ui_sessions),
        {
            "token_hash": session.token_hash,
            "user_id": user.user_id,
            "org_ura": user.org_ura,
            "username": user.username,
            "role": user.role,
            "scope": scope,
            "csrf": session.csrf,
            "data": "{}",
            "created_us": now,
            "seen_us": now,
        },
    )
    return token, session


def find_session(
    conn: Connection, token: str, *, idle_s: float, max_s: float
) -> tuple[Session | None, str]:
    """The live session of ``token`` or None, and what the store must do about it: "" nothing,
    "touch" (move its last-seen time on) or "end" (expired, or its person was disabled). A
    read, so that most page views write nothing; ``settle`` carries out the verdict."""
    row = conn.execute(
        select(ui_sessions, users.c.disabled)
        .join(users, users.c.user_id == ui_sessions.c.user_id, isouter=True)
        .where(ui_sessions.c.token_hash == token_hash(token))
    ).first()
    if row is None:
        return None, ""
    now = time.time_ns() // 1000
    if (
        row.disabled is not False
        or now - row.seen_us > idle_s * 1_000_000
        or now - row.created_us > max_s * 1_000_000
    ):
        return None, "end"
    session = Session(
        row.token_hash,
        row.user_id,
        row.org_ura,
        row.username,
        row.role,
        row.scope,
        row.csrf,
        orjson.loads(row.data),
    )
    stale = now - row.seen_us > min(_TOUCH_AFTER_US, idle_s * 250_000)  # a quarter of idle_s
    return session, "touch" if stale else ""


def settle(conn: Connection, token: str, verdict: str) -> None:
    """Carry out ``find_session``'s verdict."""
    digest = token_hash(token)
    if verdict == "end":
        end_session(conn, digest)
    elif verdict == "touch":
        now = time.time_ns() // 1000
        conn.execute(
            update(ui_sessions).where(ui_sessions.c.token_hash == digest).values(seen_us=now)
        )


def save_data(conn: Connection, digest: str, data: dict[str, Any]) -> None:
    conn.execute(
        update(ui_sessions)
        .where(ui_sessions.c.token_hash == digest)
        .values(data=orjson.dumps(data).decode())
    )


def end_session(conn: Connection, digest: str) -> None:
    conn.execute(delete(ui_sessions).where(ui_sessions.c.token_hash == digest))


def end_stale_sessions(conn: Connection, *, idle_s: float) -> int:
    """Remove sessions idle for longer than ``idle_s`` (sessions nobody came back to, e.g.
    after a closed browser); returns how many."""
    cutoff = time.time_ns() // 1000 - int(idle_s * 1_000_000)
    return conn.execute(delete(ui_sessions).where(ui_sessions.c.seen_us < cutoff)).rowcount or 0
