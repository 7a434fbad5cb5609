"""The register of system clients: hospital integrations and their public keys."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import insert, select, update
from sqlalchemy.engine import Connection

from gateway.auth.scopes import parse_scopes
from gateway.store.driver_sql import DriverQuery
from gateway.store.schema import system_clients


@dataclass(frozen=True)
class SystemClient:
    client_id: str
    org_ura: str
    name: str
    jwks: dict[str, Any] | None
    jwks_url: str | None
    scopes: str
    disabled: bool
    cert_thumbprint: str | None = None  # the TLS certificate it must present (RFC 8705)


def register_client(
    conn: Connection,
    *,
    org_ura: str,
    name: str,
    jwks: dict[str, Any] | None,
    jwks_url: str | None,
    scopes: str,
    cert_thumbprint: str | None = None,
) -> SystemClient:
    """Register a client; exactly one of ``jwks`` and ``jwks_url`` names its keys.

    With ``cert_thumbprint`` the client is bound to one TLS certificate: it gets tokens, and
    uses them, only over connections that present that certificate.
    """
    if (jwks is None) == (jwks_url is None):
        raise ValueError("give the client's keys as a JWKS file or a JWKS URL, not both")
    if jwks is not None and not isinstance(jwks.get("keys"), list):
        raise ValueError("the JWKS has no 'keys' list")
    if jwks_url is not None and not jwks_url.startswith("https://"):
        raise ValueError("a JWKS URL must use https")
    if not parse_scopes(scopes):
        raise ValueError("give at least one scope, e.g. system/DocumentReference.read")
    client = SystemClient(
        client_id=secrets.token_hex(16),  # never starts with "-", which a shell takes for a flag
        org_ura=org_ura,
        name=name,
        jwks=jwks,
        jwks_url=jwks_url,
        scopes=" ".join(scopes.split()),
        disabled=False,
        cert_thumbprint=cert_thumbprint,
    )
    conn.execute(
        insert(system_clients),
        {
            "client_id": client.client_id,
            "org_ura": org_ura,
            "name": name,
            "jwks": orjson.dumps(jwks).decode() if jwks is not None else None,
            "jwks_url": jwks_url,
            "scopes": client.scopes,
            "disabled": False,
            "created_us": time.time_ns() // 1000,
            "cert_thumbprint": cert_thumbprint,
        },
    )
    return client


def find_client(conn: Connection, client_id: str) -> SystemClient | None:
    row = conn.execute(
        select(system_clients).where(system_clients.c.client_id == client_id)
    ).first()
    return _client(row) if row else None


def list_clients(conn: Connection) -> list[SystemClient]:
    rows = conn.execute(select(system_clients).order_by(system_clients.c.created_us)).all()
    return [_client(row) for row in rows]


def disable_client(conn: Connection, client_id: str) -> bool:
    result = conn.execute(
        update(system_clients).where(system_clients.c.client_id == client_id).values(disabled=True)
    )
    return bool(result.rowcount)


# Whether a client is disabled, by client_id (NULL: no such client).
DISABLED_SQL = "SELECT disabled FROM system_clients WHERE client_id = ?"
_DISABLED = DriverQuery(DISABLED_SQL)


def is_active(conn: Connection, client_id: str) -> bool:
    """Asked on every request, in its transaction: a disabled account is out at once."""
    row = _DISABLED.first(conn, client_id)
    return row is not None and not row[0]


def _client(row: Any) -> SystemClient:
    return SystemClient(
        client_id=row.client_id,
        org_ura=row.org_ura,
        name=row.name,
        jwks=orjson.loads(row.jwks) if row.jwks else None,
        jwks_url=row.jwks_url,
        scopes=row.scopes,
        disabled=bool(row.disabled),
        cert_thumbprint=row.cert_thumbprint,
    )
