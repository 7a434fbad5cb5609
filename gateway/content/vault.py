"""Encrypted document content in the store: write, read with integrity checks, re-wrap keys.

Every base64 ``data`` element of a resource (Binary.data, Attachment.data, Signature.data) is
moved into a blob before the resource is stored, and the stored JSON keeps a marker in its
place; reads put the content back. Document content therefore never lies in the database in
plaintext, whatever path wrote it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import orjson
import pybase64
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import Integer, bindparam, delete, insert, select, update
from sqlalchemy.engine import Connection

from gateway.content import envelope
from gateway.content.keyring import KeyRing, MasterKeyError
from gateway.errors import GatewayError, InvalidResource
from gateway.store.driver_sql import DriverQuery, insert_into
from gateway.store.keys import new_key
from gateway.store.schema import blob_chunks, blobs, master_key_checks

MARKER = "zorgbrug-blob:"  # not base64, so no client can send one that passes validation
_MARKER_BYTES = b'"data":"' + MARKER.encode()
_CHECK = b"zorgbrug master key check"


class IntegrityFailure(GatewayError):
    """Stored content failed its authentication or hash check: it is never served."""

    status, default_code = 500, "exception"


@dataclass(frozen=True)
class BlobInfo:
    blob_id: str
    size: int
    sha256: str  # hex
    sha1: str  # base64, as FHIR R4 ``Attachment.hash``
    owner_org: str | None = None
    deprecated: bool = False


@dataclass
class PreparedBlob:
    """Content encrypted chunk by chunk as it arrives, before any database work."""

    owner_org: str | None
    blob_id: str = field(default_factory=new_key)
    size: int = 0
    _key: bytes = field(default_factory=envelope.new_data_key, repr=False)
    _sha256: Any = field(default_factory=hashlib.sha256, repr=False)
    _sha1: Any = field(default_factory=lambda: _sha1(), repr=False)
    _pending: bytearray = field(default_factory=bytearray, repr=False)
    sealed_chunks: list[bytes] = field(default_factory=list, repr=False)
    closed: bool = False

    def write(self, data: bytes) -> None:
        """Add plaintext; full chunks are sealed at once so plaintext is never held whole."""
        self._sha256.update(data)
        self._sha1.update(data)
        self.size += len(data)
        view = memoryview(data)
        # A chunk is sealed only once more data follows it: the last one is marked as last.
        while len(self._pending) + len(view) > envelope.CHUNK_BYTES:
            take = envelope.CHUNK_BYTES - len(self._pending)
            self._seal(bytes(self._pending) + bytes(view[:take]), last=False)
            self._pending = bytearray()
            view = view[take:]
        self._pending += view

    def close(self) -> BlobInfo:
        if not self.closed:
            self._seal(bytes(self._pending), last=True)
            self._pending = bytearray()
            self.closed = True
        return self.info

    @property
    def info(self) -> BlobInfo:
        return BlobInfo(
            self.blob_id,
            self.size,
            self._sha256.hexdigest(),
            base64.b64encode(self._sha1.digest()).decode(),
            self.owner_org,
        )

    def _seal(self, plaintext: bytes, *, last: bool) -> None:
        seq = len(self.sealed_chunks)
        self.sealed_chunks.append(
            envelope.seal_chunk(self._key, self.blob_id, seq, last, plaintext)
        )


def prepare(data: bytes | Iterable[bytes], owner_org: str | None) -> PreparedBlob:
    """Encrypt ``data`` (bytes or an iterable of pieces) into a blob ready to insert."""
    prepared = PreparedBlob(owner_org)
    for piece in [data] if isinstance(data, bytes | bytearray) else data:
        prepared.write(bytes(piece))
    prepared.close()
    return prepared


def prepare_base64(text: str, owner_org: str | None) -> PreparedBlob:
    """``prepare`` for base64 text (a FHIR ``data`` value), decoded strictly a slice at a
    time so that the plaintext is never held whole; ``InvalidResource`` when it is not base64.
    """
    try:
        return _prepared_from_base64(text, owner_org)
    except (binascii.Error, ValueError):
        pass
    stripped = "".join(text.split())  # whitespace is allowed in FHIR base64Binary
    if stripped != text:
        try:
            return _prepared_from_base64(stripped, owner_org)
        except (binascii.Error, ValueError):
            pass
    raise InvalidResource("A data element is not valid base64", code="value") from None


# Base64 characters of one chunk's worth of plaintext (a multiple of 4, so slices decode alone).
_BASE64_SLICE = envelope.CHUNK_BYTES // 3 * 4


def _prepared_from_base64(text: str, owner_org: str | None) -> PreparedBlob:
    # pybase64 (SIMD): the standard library took 0.35 ms for a 100 KiB document, 7 us here.
    if text.find("=", 0, max(0, len(text) - 2)) != -1:  # padding inside: a slice would hide it
        raise ValueError("padding before the end")
    prepared = PreparedBlob(owner_org)
    for start in range(0, len(text), _BASE64_SLICE):
        prepared.write(pybase64.b64decode(text[start : start + _BASE64_SLICE], validate=True))
    prepared.close()
    return prepared


def seal_ahead(resource: dict[str, Any], owner_org: str | None) -> tuple[PreparedBlob, ...]:
    """Encrypt every base64 ``data`` element of a validated resource now, before its
    transaction, putting blob markers in their place. The transaction then only inserts the
    blobs (``ContentVault.insert``) and names them as presealed: decoding, hashing and
    encrypting a document no longer happen while it holds the store's write lock."""
    return tuple(prepared for _element, prepared in _prepared_elements(resource, owner_org))


def _prepared_elements(
    resource: dict[str, Any], owner_org: str | None, presealed: Iterable[str] = ()
) -> Iterator[tuple[dict[str, Any], PreparedBlob]]:
    """Each ``data`` element not yet in a ``presealed`` blob, encrypted, its marker in place."""
    skip = set(presealed)
    for element in list(_data_elements(resource)):
        if blob_id_of(element["data"]) in skip:
            continue
        prepared = prepare_base64(element["data"], owner_org)
        element["data"] = MARKER + prepared.blob_id
        yield element, prepared


class ContentVault:
    """Blobs in the store, encrypted under the deployment's master keys."""

    def __init__(self, keyring: KeyRing) -> None:
        self.keyring = keyring

    # -- master keys -------------------------------------------------------------------------

    def check_keys(self, conn: Connection) -> None:
        """Fail loudly unless every master key the store needs is in the key file and right."""
        rows = conn.execute(select(master_key_checks)).all()
        for row in rows:
            key = self.keyring.key(row.key_id)
            if not _opens_check(key, row.key_id, bytes(row.sealed_check)):
                raise MasterKeyError(
                    f"master key {row.key_id} in {self.keyring.path} is not the key that "
                    "encrypted the stored documents (wrong or damaged ZORGBRUG_MASTER_KEY_FILE)"
                )
        kid, key = self.keyring.current_key()
        if kid not in {row.key_id for row in rows}:
            conn.execute(
                insert(master_key_checks),
                {"key_id": kid, "sealed_check": _seal_check(key, kid), "created_us": _now_us()},
            )

    def forget_keys(self, conn: Connection, key_ids: Iterable[str]) -> None:
        """Drop the checks of keys no blob uses any more (the end of a rotation)."""
        conn.execute(delete(master_key_checks).where(master_key_checks.c.key_id.in_(list(key_ids))))

    def rewrap(self, conn: Connection, retired: dict[str, bytes], batch: int = 500) -> int:
        """Re-wrap up to ``batch`` data keys that are not under the current key; how many."""
        kid, master = self.keyring.current_key()
        statement = (
            select(blobs.c.blob_id, blobs.c.key_id, blobs.c.wrapped_key)
            .where(blobs.c.key_id != kid)
            .limit(batch)
        )
        if conn.dialect.name == "postgresql":
            statement = statement.with_for_update(skip_locked=True)
        rows = conn.execute(statement).all()
        for row in rows:
            old = retired.get(row.key_id) or self.keyring.key(row.key_id)
            data_key = envelope.unwrap(old, row.blob_id, bytes(row.wrapped_key))
            conn.execute(
                update(blobs)
                .where(blobs.c.blob_id == row.blob_id, blobs.c.key_id == row.key_id)
                .values(key_id=kid, wrapped_key=envelope.wrap(master, row.blob_id, data_key))
            )
        return len(rows)

    def key_usage(self, conn: Connection) -> dict[str, int]:
        """How many blobs each master key wraps."""
        from sqlalchemy import func

        rows = conn.execute(select(blobs.c.key_id, func.count()).group_by(blobs.c.key_id)).all()
        return {str(k): int(n) for k, n in rows}

    # -- blobs -------------------------------------------------------------------------------

    def insert(self, conn: Connection, prepared: PreparedBlob) -> BlobInfo:
        """Store a prepared blob in the caller's transaction."""
        info = prepared.close()
        kid, master = self.keyring.current_key()
        wrapped = envelope.wrap(master, info.blob_id, prepared._key)
        chunks = prepared.sealed_chunks
        row = (
            info.blob_id,
            info.owner_org,
            info.size,
            info.sha256,
            info.sha1,
            envelope.CHUNK_BYTES,
            len(chunks),
            kid,
            wrapped,
            _now_us(),
        )
        if len(chunks) == 1 and conn.dialect.name == "postgresql":  # with the next statement
            _INSERT_BLOB_WITH_CHUNK.run_later(conn, *row, info.blob_id, chunks[0])
            return info
        _INSERT_BLOB.run(conn, *row)
        _INSERT_CHUNK.run_many(conn, [(info.blob_id, seq, data) for seq, data in enumerate(chunks)])
        return info

    def describe(self, conn: Connection, blob_id: str) -> BlobInfo | None:
        row = _blob_row(conn, blob_id)
        return _info_of(row) if row is not None else None

    def fetch(self, conn: Connection, blob_id: str) -> tuple[BlobInfo, bytes | None] | None:
        """A blob described and, when it is one chunk and not deprecated, its plaintext after
        every check (None: read it with ``read`` or ``chunks``): one statement, where
        ``describe`` and ``read`` take three."""
        found = _BLOB_WITH_ONLY_CHUNK.first(conn, blob_id)
        if found is None:
            return None
        row, sealed = _BlobRow(*found[:-1]), found[-1]
        if sealed is None:
            return _info_of(row), None
        return _info_of(row), b"".join(self._opened(row, [(0, sealed)], 0, whole=True))

    def deprecate(self, conn: Connection, blob_ids: Iterable[str]) -> None:
        """Mark content whose document was superseded, entered in error or deleted (ITI-68
        answers 410 for it)."""
        if not (blob_ids := list(blob_ids)):
            return
        conn.execute(
            update(blobs)
            .where(blobs.c.blob_id.in_(blob_ids), blobs.c.deprecated_us.is_(None))
            .values(deprecated_us=_now_us())
        )

    def reinstate(self, conn: Connection, blob_ids: Iterable[str]) -> None:
        """Serve content again whose document is current again."""
        if not (blob_ids := list(blob_ids)):
            return
        conn.execute(
            update(blobs)
            .where(blobs.c.blob_id.in_(blob_ids), blobs.c.deprecated_us.is_not(None))
            .values(deprecated_us=None)
        )

    def read(self, conn: Connection, blob_id: str) -> bytes:
        """The plaintext, after checking authentication, size and both hashes."""
        return b"".join(self.chunks(conn, blob_id))

    def chunks(
        self, conn: Connection, blob_id: str, *, first: int = 0, count: int | None = None
    ) -> Iterator[bytes]:
        """Plaintext chunks ``first``… of a blob; hashes are checked when the whole is read."""
        return self._chunks_of(conn, _blob_row(conn, blob_id), blob_id, first=first, count=count)

    def _chunks_of(
        self,
        conn: Connection,
        row: _BlobRow | None,
        blob_id: str,
        *,
        first: int = 0,
        count: int | None = None,
    ) -> Iterator[bytes]:
        if row is None:
            raise IntegrityFailure(f"stored content {blob_id} is missing; it cannot be served")
        wanted = max(0, row.chunks - first if count is None else min(count, row.chunks - first))
        # More chunks than one fetch holds come through a server-side cursor on PostgreSQL
        # (psycopg would otherwise fetch them all at once); fewer in one round trip.
        if wanted > _CHUNKS_PER_FETCH:
            values = {"blob_id": blob_id, "first": first, "wanted": wanted}
            found: Iterable[Any] = conn.execute(_CHUNKS_STREAMED, values)
        else:
            found = _FEW_CHUNKS.all(conn, blob_id, first, wanted)
        yield from self._opened(row, found, first, whole=first == 0 and count is None)

    def _opened(
        self, row: _BlobRow, found: Iterable[Any], first: int, *, whole: bool
    ) -> Iterator[bytes]:
        """The plaintext of sealed chunks ``found`` (seq, data) from ``first`` on; ``whole``:
        they are all of the blob, whose size and hashes are then checked at the end."""
        blob_id = row.blob_id
        data_key = self._data_key(row)
        last = row.chunks - 1
        sha256, sha1, size, expected = hashlib.sha256(), _sha1(), 0, first
        for seq, sealed in found:
            if seq != expected:
                raise IntegrityFailure(f"stored content {blob_id} lost chunk {expected}")
            try:
                plaintext = envelope.open_chunk(data_key, blob_id, seq, seq == last, bytes(sealed))
            except envelope.InvalidTag:
                raise IntegrityFailure(
                    f"stored content {blob_id} failed its authentication check; not served"
                ) from None
            if whole:
                sha256.update(plaintext)
                sha1.update(plaintext)
                size += len(plaintext)
            expected += 1
            yield plaintext
        if whole:
            digest = base64.b64encode(sha1.digest()).decode()
            if expected != row.chunks or size != row.size:
                raise IntegrityFailure(f"stored content {blob_id} is incomplete; not served")
            if sha256.hexdigest() != row.sha256 or digest != row.sha1:
                raise IntegrityFailure(f"stored content {blob_id} failed its hash check")

    def _data_key(self, row: Any) -> bytes:
        try:
            return envelope.unwrap(
                self.keyring.key(row.key_id), row.blob_id, bytes(row.wrapped_key)
            )
        except envelope.InvalidTag:
            raise MasterKeyError(
                f"master key {row.key_id} does not open the data key of {row.blob_id} "
                "(wrong or damaged ZORGBRUG_MASTER_KEY_FILE)"
            ) from None

    # -- resources ----------------------------------------------------------------------------

    def seal(
        self,
        conn: Connection,
        resource: dict[str, Any],
        owner_org: str | None,
        presealed: set[str] | frozenset[str] = frozenset(),
    ) -> list[tuple[dict[str, Any], BlobInfo]]:
        """Move every base64 ``data`` element into a blob; returns (element, blob) pairs.

        ``presealed`` names blobs the caller stored itself and already put markers of.
        """
        return [
            (element, self.insert(conn, prepared))
            for element, prepared in _prepared_elements(resource, owner_org, presealed)
        ]

    def reveal(self, conn: Connection, content: bytes) -> bytes:
        """Stored resource JSON with every blob marker replaced by its content again; content
        no longer served (``deprecate``) is left out, its ``data`` element with it."""
        if _MARKER_BYTES not in content:
            return content
        resource = orjson.loads(content)
        for element in _data_elements(resource):
            marker = element["data"]
            if marker.startswith(MARKER):
                row = _blob_row(conn, marker[len(MARKER) :])
                if row is not None and row.deprecated_us is not None:
                    del element["data"]
                    continue
                plaintext = b"".join(self._chunks_of(conn, row, marker[len(MARKER) :]))
                element["data"] = pybase64.b64encode(plaintext).decode()
        return orjson.dumps(resource)


def has_content(resource: dict[str, Any]) -> bool:
    """Whether a resource has any base64 ``data`` element (document content to seal)."""
    return next(_data_elements(resource), None) is not None


def blob_id_of(value: Any) -> str | None:
    """The blob a stored ``data`` value stands for, or None."""
    return value[len(MARKER) :] if isinstance(value, str) and value.startswith(MARKER) else None


def _data_elements(node: Any) -> Iterator[dict[str, Any]]:
    """Every object with a string ``data`` (in FHIR R4 always a base64Binary)."""
    if isinstance(node, dict):
        if isinstance(node.get("data"), str):
            yield node
        for value in node.values():
            if isinstance(value, dict | list):
                yield from _data_elements(value)
    elif isinstance(node, list):
        for value in node:
            yield from _data_elements(value)


def _seal_check(key: bytes, key_id: str) -> bytes:
    nonce = os.urandom(envelope.NONCE_BYTES)
    return nonce + AESGCM(key).encrypt(nonce, _CHECK, key_id.encode())


def _opens_check(key: bytes, key_id: str, sealed: bytes) -> bool:
    try:
        nonce, body = sealed[: envelope.NONCE_BYTES], sealed[envelope.NONCE_BYTES :]
        return AESGCM(key).decrypt(nonce, body, key_id.encode()) == _CHECK
    except envelope.InvalidTag:
        return False


class _BlobRow(NamedTuple):
    blob_id: str
    owner_org: str | None
    size: int
    sha256: str
    sha1: str
    chunks: int
    key_id: str
    wrapped_key: bytes
    deprecated_us: int | None


def _blob_row(conn: Connection, blob_id: str) -> _BlobRow | None:
    row = _BLOB.first(conn, blob_id)
    return _BlobRow(*row) if row is not None else None


def _info_of(row: _BlobRow) -> BlobInfo:
    return BlobInfo(
        row.blob_id, row.size, row.sha256, row.sha1, row.owner_org, row.deprecated_us is not None
    )


# Every pushed document and every retrieve runs these: on the driver's cursor (see
# gateway.store.driver_sql).
_INSERT_BLOB = insert_into(
    "blobs",
    (
        "blob_id",
        "owner_org",
        "size",
        "sha256",
        "sha1",
        "chunk_size",
        "chunks",
        "key_id",
        "wrapped_key",
        "created_us",
    ),
)
_INSERT_CHUNK = insert_into("blob_chunks", ("blob_id", "seq", "data"))
# A document of one chunk (up to a MiB): its blob and its chunk in one statement.
_INSERT_BLOB_WITH_CHUNK = DriverQuery(
    f"WITH blob AS ({_INSERT_BLOB.sql}) "  # noqa: S608 - our own statement
    "INSERT INTO blob_chunks (blob_id, seq, data) VALUES (?, 0, ?)"
)
_BLOB = DriverQuery(f"SELECT {', '.join(_BlobRow._fields)} FROM blobs WHERE blob_id = ?")  # noqa: S608
# A blob and its chunk when it has only one and is not deprecated (served, then, whole).
_BLOB_WITH_ONLY_CHUNK = DriverQuery(
    f"SELECT {', '.join('b.' + name for name in _BlobRow._fields)}, c.data FROM blobs AS b "  # noqa: S608
    "LEFT JOIN blob_chunks AS c ON b.chunks = 1 AND b.deprecated_us IS NULL "
    "AND c.blob_id = b.blob_id AND c.seq = 0 WHERE b.blob_id = ?",
    binary=True,
)
_CHUNKS_SQL = (
    "SELECT seq, data FROM blob_chunks WHERE blob_id = ? AND seq >= ? ORDER BY seq LIMIT ?"
)
_FEW_CHUNKS = DriverQuery(_CHUNKS_SQL, binary=True)
# More chunks than this come a few at a time through SQLAlchemy's streaming.
_CHUNKS_PER_FETCH = 2
_CHUNKS_STREAMED = (
    select(blob_chunks.c.seq, blob_chunks.c.data)
    .where(blob_chunks.c.blob_id == bindparam("blob_id"), blob_chunks.c.seq >= bindparam("first"))
    .order_by(blob_chunks.c.seq)
    .limit(bindparam("wanted", type_=Integer))
    .execution_options(stream_results=True, yield_per=_CHUNKS_PER_FETCH)
)


def _sha1(data: bytes = b"") -> Any:
    # FHIR R4 Attachment.hash is SHA-1; integrity rests on SHA-256 and AES-GCM, not on it.
    return hashlib.sha1(data, usedforsecurity=False)


def _now_us() -> int:
    return time.time_ns() // 1000
