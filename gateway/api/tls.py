"""Pass the TLS client certificate to the application (the ASGI TLS extension).

uvicorn terminates TLS but does not hand the peer certificate on; certificate-bound clients
(RFC 8705) need it, so the HTTP protocol fills ``scope["extensions"]["tls"]`` as the ASGI TLS
extension specifies (``client_cert_chain``: PEM strings, leaf first).
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

PROTOCOL = "gateway.api.tls:HttpToolsWithClientCertificate"


class HttpToolsWithClientCertificate(HttpToolsProtocol):
    """uvicorn's httptools protocol plus the connection's client certificate in every scope."""

    _tls: dict[str, Any]

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        ssl_object = transport.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        self._tls = {
            "client_cert_chain": [ssl.DER_cert_to_PEM_cert(der)] if der else [],
            "tls_version": None,
            "cipher_suite": None,
        }

    def on_message_begin(self) -> None:
        super().on_message_begin()
        extensions: dict[str, Any] = self.scope.setdefault("extensions", {})  # type: ignore[assignment]
        extensions["tls"] = self._tls


def client_certificate(scope: Any) -> str | None:
    """The PEM client certificate the connection presented, if any."""
    chain = (scope.get("extensions") or {}).get("tls", {}).get("client_cert_chain") or []
    return str(chain[0]) if chain else None
