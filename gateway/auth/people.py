"""People who log in (clinicians, assistants, DPOs, administrators), their apps, and codes."""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from dataclasses import dataclass

from sqlalchemy import insert, select, update
from sqlalchemy.engine import Connection

from gateway.auth.passwords import hash_password, verify_password
from gateway.store.driver_sql import DriverQuery
from gateway.store.schema import apps, authorization_codes, users

ROLES = ("clinician", "assistant", "dpo", "admin")
MAX_FAILED_LOGINS = 5
LOCKOUT_S = 15 * 60
CODE_LIFETIME_S = 60
_DUMMY_HASH = hash_password(secrets.token_urlsafe(16))  # equalises timing for unknown names


@dataclass(frozen=True)
class User:
    user_id: str
    org_ura: str
    username: str
    role: str
    fhir_user: str


@dataclass(frozen=True)
class LoginResult:
    user: User | None
    failures: int  # consecutive failures so far (0 after a success)
    locked: bool


def add_user(
    conn: Connection, *, org_ura: str, username: str, role: str, password: str, fhir_user: str
) -> User:
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    if len(password) < 12:
        raise ValueError("a password needs at least 12 characters")
    if conn.execute(select(users.c.user_id).where(users.c.username == username)).first():
        raise ValueError(f"the username '{username}' is taken")
    user = User(secrets.token_hex(8), org_ura, username, role, fhir_user)
    conn.execute(
        insert(users),
        {
            "user_id": user.user_id,
            "org_ura": org_ura,
            "username": username,
            "role": role,
            "password_hash": hash_password(password),
            "fhir_user": fhir_user,
            "failed_logins": 0,
            "locked_until_us": 0,
            "disabled": False,
            "created_us": time.time_ns() // 1000,
        },
    )
    return user


def authenticate(conn: Connection, username: str, password: str) -> LoginResult:
    """Check a login; failures are counted and lock the account for a while (committed)."""
    row = conn.execute(select(users).where(users.c.username == username)).first()
    if row is None or row.disabled:
        verify_password(password, _DUMMY_HASH)
        return LoginResult(None, 1, False)
    now_us = time.time_ns() // 1000
    if row.locked_until_us > now_us:
        return LoginResult(None, row.failed_logins, True)
    if verify_password(password, row.password_hash):
        conn.execute(
            update(users)
            .where(users.c.user_id == row.user_id)
            .values(failed_logins=0, locked_until_us=0)
        )
        return LoginResult(
            User(row.user_id, row.org_ura, row.username, row.role, row.fhir_user), 0, False
        )
    failures = row.failed_logins + 1
    locked = failures >= MAX_FAILED_LOGINS
    conn.execute(
        update(users)
        .where(users.c.user_id == row.user_id)
        .values(
            failed_logins=0 if locked else failures,
            locked_until_us=now_us + LOCKOUT_S * 1_000_000 if locked else 0,
        )
    )
    return LoginResult(None, failures, locked)


def disable_user(conn: Connection, username: str) -> bool:
    """Disable a person: no more logins, tokens or UI sessions (checked on every use)."""
    result = conn.execute(update(users).where(users.c.username == username).values(disabled=True))
    return bool(result.rowcount)


# Whether a person's account is disabled, by user_id (NULL: no such account).
DISABLED_SQL = "SELECT disabled FROM users WHERE user_id = ?"
_DISABLED = DriverQuery(DISABLED_SQL)


def is_active_user(conn: Connection, user_id: str) -> bool:
    """Asked on every request, in its transaction: a disabled account is out at once."""
    row = _DISABLED.first(conn, user_id)
    return row is not None and not row[0]


def find_user(conn: Connection, user_id: str) -> User | None:
    row = conn.execute(select(users).where(users.c.user_id == user_id)).first()
    return User(row.user_id, row.org_ura, row.username, row.role, row.fhir_user) if row else None


def add_app(conn: Connection, *, name: str, redirect_uris: list[str]) -> str:
    """Register a public SMART app (PKCE, no secret); returns its client_id."""
    for uri in redirect_uris:
        if not uri.startswith(("https://", "http://127.0.0.1", "http://localhost")):
            raise ValueError(f"redirect URI {uri} must use https (or be on this machine)")
    client_id = secrets.token_hex(12)  # never starts with "-" (a flag to a shell)
    conn.execute(
        insert(apps),
        {
            "client_id": client_id,
            "name": name,
            "redirect_uris": " ".join(redirect_uris),
            "created_us": time.time_ns() // 1000,
        },
    )
    return client_id


def app_redirects(conn: Connection, client_id: str) -> list[str] | None:
    value = conn.execute(
        select(apps.c.redirect_uris).where(apps.c.client_id == client_id)
    ).scalar_one_or_none()
    return value.split() if value is not None else None


def issue_code(
    conn: Connection, *, user: User, client_id: str, redirect_uri: str, challenge: str, scope: str
) -> str:
    code = secrets.token_urlsafe(32)
    conn.execute(
        insert(authorization_codes),
        {
            "code_hash": _sha256(code),
            "user_id": user.user_id,
            "client_id": client_id,
            "redirect_uri": redirect_uri,
            "code_challenge": challenge,
            "scope": scope,
            "expires_us": (time.time_ns() // 1000) + CODE_LIFETIME_S * 1_000_000,
            "used": False,
        },
    )
    return code


def redeem_code(
    conn: Connection, *, code: str, client_id: str, redirect_uri: str, verifier: str
) -> tuple[User, str] | str:
    """The user and scope of a valid code, or why not. A code is spent by any attempt."""
    code_hash = _sha256(code)
    spent = conn.execute(
        update(authorization_codes)
        .where(authorization_codes.c.code_hash == code_hash, authorization_codes.c.used.is_(False))
        .values(used=True)
    )
    row = conn.execute(
        select(authorization_codes).where(authorization_codes.c.code_hash == code_hash)
    ).first()
    if row is None or not spent.rowcount:
        return "the code is unknown or was used before"
    if row.expires_us < time.time_ns() // 1000:
        return "the code has expired"
    if row.client_id != client_id or row.redirect_uri != redirect_uri:
        return "the code was issued to another client or redirect_uri"
    if _pkce_s256(verifier) != row.code_challenge:
        return "code_verifier does not match the code_challenge"
    user = find_user(conn, row.user_id)
    if user is None or not is_active_user(conn, row.user_id):
        return "the user is disabled"
    return user, row.scope


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _pkce_s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii", "replace")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
