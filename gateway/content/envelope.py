"""Envelope encryption with AES-256-GCM: a data key per blob, wrapped by a master key.

Content is split into chunks, each sealed with its own random nonce and bound to its blob,
position and whether it is the last one (associated data), so chunks cannot be swapped between
blobs, reordered or cut off without the authentication failing.
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

NONCE_BYTES = 12
CHUNK_BYTES = 1 << 20

__all__ = [
    "CHUNK_BYTES",
    "InvalidTag",
    "new_data_key",
    "open_chunk",
    "seal_chunk",
    "unwrap",
    "wrap",
]


def new_data_key() -> bytes:
    return AESGCM.generate_key(bit_length=256)


def wrap(master_key: bytes, blob_id: str, data_key: bytes) -> bytes:
    """The data key of ``blob_id`` encrypted with a master key."""
    nonce = os.urandom(NONCE_BYTES)
    return nonce + AESGCM(master_key).encrypt(nonce, data_key, b"zorgbrug-dek|" + blob_id.encode())


def unwrap(master_key: bytes, blob_id: str, wrapped: bytes) -> bytes:
    """The data key of ``blob_id``; ``InvalidTag`` when the master key is not the right one."""
    nonce, sealed = wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:]
    return AESGCM(master_key).decrypt(nonce, sealed, b"zorgbrug-dek|" + blob_id.encode())


def _aad(blob_id: str, seq: int, last: bool) -> bytes:
    return f"zorgbrug-chunk|{blob_id}|{seq}|{int(last)}".encode()


def seal_chunk(data_key: bytes, blob_id: str, seq: int, last: bool, plaintext: bytes) -> bytes:
    nonce = os.urandom(NONCE_BYTES)
    return nonce + AESGCM(data_key).encrypt(nonce, plaintext, _aad(blob_id, seq, last))


def open_chunk(data_key: bytes, blob_id: str, seq: int, last: bool, sealed: bytes) -> bytes:
    """A chunk's plaintext; ``InvalidTag`` when it was changed, moved or truncated."""
    nonce, body = sealed[:NONCE_BYTES], sealed[NONCE_BYTES:]
    return AESGCM(data_key).decrypt(nonce, body, _aad(blob_id, seq, last))
