"""The master keys that wrap every document's data key, kept in one file of mode 0600.

The file holds every key still in use and names the current one. Gateway processes notice
when ``zorgbrug keys rotate`` rewrites it (its size or modification time changed), so a rotation
needs no restart: new content is wrapped with the new key, old content stays readable until
it is re-wrapped.
"""

from __future__ import annotations

import base64
import os
import secrets
import stat
from pathlib import Path

import orjson

KEY_BYTES = 32  # AES-256


class MasterKeyError(Exception):
    """The master key file is missing, unreadable, unsafe or does not hold a needed key."""


class KeyRing:
    """The master keys of one deployment, reloaded when their file changes."""

    def __init__(self, path: Path, current: str, keys: dict[str, bytes]) -> None:
        self.path = path
        self.current = current
        self.keys = keys
        self._stamp = _stamp(path)

    @classmethod
    def open(cls, path: Path, *, create: bool = True) -> KeyRing:
        """The key ring in ``path``; with ``create``, a new file with one fresh key if absent."""
        if not path.exists():
            if not create:
                raise MasterKeyError(f"no master key file at {path}")
            kid = new_key_id()
            write_key_file(path, kid, {kid: secrets.token_bytes(KEY_BYTES)})
        current, keys = read_key_file(path)
        return cls(path, current, keys)

    def refresh(self) -> None:
        """Reload the file if it was rewritten since it was read."""
        stamp = _stamp(self.path)
        if stamp != self._stamp:
            self.current, self.keys = read_key_file(self.path)
            self._stamp = stamp

    def current_key(self) -> tuple[str, bytes]:
        """The key new content is wrapped with (after a cheap check for a rotation)."""
        self.refresh()
        return self.current, self.keys[self.current]

    def key(self, key_id: str) -> bytes:
        """The key ``key_id``; ``MasterKeyError`` when the file does not (or no longer) hold it."""
        if key_id not in self.keys:
            self.refresh()
        try:
            return self.keys[key_id]
        except KeyError:
            raise MasterKeyError(
                f"the master key file {self.path} does not hold key {key_id}, which encrypted "
                "stored documents (wrong ZORGBRUG_MASTER_KEY_FILE?)"
            ) from None


def new_key_id() -> str:
    return secrets.token_hex(8)


def read_key_file(path: Path) -> tuple[str, dict[str, bytes]]:
    """The current key id and every key of a key file, refusing files others can read."""
    try:
        mode = path.stat().st_mode
        raw = path.read_bytes()
    except OSError as exc:
        raise MasterKeyError(f"cannot read the master key file {path}: {exc.strerror}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise MasterKeyError(
            f"the master key file {path} is accessible to others (mode {stat.S_IMODE(mode):o}); "
            "make it private with chmod 600"
        )
    try:
        document = orjson.loads(raw)
        keys = {str(k): base64.b64decode(v, validate=True) for k, v in document["keys"].items()}
        current = str(document["current"])
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
        raise MasterKeyError(f"the master key file {path} is damaged") from None
    if current not in keys or any(len(k) != KEY_BYTES for k in keys.values()):
        raise MasterKeyError(f"the master key file {path} is damaged")
    return current, keys


def write_key_file(path: Path, current: str, keys: dict[str, bytes]) -> None:
    """Write the key file atomically (a new file of mode 0600, then renamed over the old)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "current": current,
        "keys": {k: base64.b64encode(v).decode() for k, v in keys.items()},
    }
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(orjson.dumps(document, option=orjson.OPT_INDENT_2))
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        info = path.stat()
    except OSError:
        return None
    return info.st_mtime_ns, info.st_size
