"""The Ed25519 key that signs the audit chain's checkpoints, kept in one file of mode 0600.

A checkpoint binds a sequence number to the chain hash up to it. Whoever can change the
database but not read this key cannot rewrite the log and re-sign it; a DPO can verify with the
public key alone (``zorgbrug audit verify --public-key``), away from the gateway's secrets.
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

_DOMAIN = b"zorgbrug-audit-checkpoint/1\x00"


class SigningKeyError(Exception):
    """The checkpoint key file is unreadable, unsafe or damaged."""


def checkpoint_message(kind: str, seq: int, chain_hash: bytes, recorded_us: int) -> bytes:
    """The bytes a checkpoint's signature covers."""
    return b"".join(
        (
            _DOMAIN,
            kind.encode(),
            b"\x00",
            seq.to_bytes(8, "big", signed=True),
            chain_hash,
            recorded_us.to_bytes(8, "big", signed=True),
        )
    )


class CheckpointVerifier:
    """Checks checkpoint signatures with a public key."""

    def __init__(self, public_key: Ed25519PublicKey) -> None:
        self.public_key = public_key
        raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        self.key_id = hashlib.sha256(raw).hexdigest()[:16]

    @classmethod
    def from_pem(cls, pem: bytes) -> CheckpointVerifier:
        try:
            key = serialization.load_pem_public_key(pem)
        except ValueError:
            raise SigningKeyError("not a PEM public key") from None
        if not isinstance(key, Ed25519PublicKey):
            raise SigningKeyError("the public key is not an Ed25519 key")
        return cls(key)

    def public_pem(self) -> bytes:
        return self.public_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def verify(self, signature: bytes, message: bytes) -> bool:
        try:
            self.public_key.verify(signature, message)
        except InvalidSignature:
            return False
        return True


class CheckpointSigner(CheckpointVerifier):
    """Signs checkpoints with the deployment's private key."""

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        super().__init__(private_key.public_key())
        self._private_key = private_key

    @classmethod
    def open(cls, path: Path) -> CheckpointSigner:
        """The key in ``path``, created (mode 0600) on first use."""
        if not path.exists():
            _create(path)
        try:
            mode = path.stat().st_mode
            pem = path.read_bytes()
        except OSError as exc:
            raise SigningKeyError(
                f"cannot read the audit key file {path}: {exc.strerror}"
            ) from None
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise SigningKeyError(
                f"the audit key file {path} is accessible to others (mode {stat.S_IMODE(mode):o}); "
                "make it private with chmod 600"
            )
        try:
            key = serialization.load_pem_private_key(pem, password=None)
        except (ValueError, TypeError):
            raise SigningKeyError(f"the audit key file {path} is damaged") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise SigningKeyError(f"the audit key file {path} does not hold an Ed25519 key")
        return cls(key)

    def sign(self, message: bytes) -> bytes:
        return self._private_key.sign(message)


def _create(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(pem)
            out.flush()
            os.fsync(out.fileno())
        # A hard link never replaces: of several processes starting at once, the first key
        # stays and the others read it, never a half-written file.
        os.link(temporary, path)
    except FileExistsError:
        pass
    finally:
        temporary.unlink(missing_ok=True)
