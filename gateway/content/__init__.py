"""Document content at rest: encrypted blobs, the master keys that wrap their data keys."""

from gateway.content.keyring import KeyRing, MasterKeyError
from gateway.content.vault import BlobInfo, ContentVault, IntegrityFailure, PreparedBlob

__all__ = [
    "BlobInfo",
    "ContentVault",
    "IntegrityFailure",
    "KeyRing",
    "MasterKeyError",
    "PreparedBlob",
]
