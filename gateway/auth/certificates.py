"""Certificate thumbprints for certificate-bound clients and tokens (RFC 8705 ``x5t#S256``)."""

from __future__ import annotations

import base64
import hashlib

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding


def thumbprint(pem: str | bytes) -> str:
    """The base64url SHA-256 of a PEM certificate's DER form, as in a token's ``cnf``."""
    data = pem.encode() if isinstance(pem, str) else pem
    try:
        der = x509.load_pem_x509_certificate(data).public_bytes(Encoding.DER)
    except ValueError:
        raise ValueError("not a PEM X.509 certificate") from None
    return base64.urlsafe_b64encode(hashlib.sha256(der).digest()).rstrip(b"=").decode()
