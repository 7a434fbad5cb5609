"""Document content at rest: encrypted in every row and file, a wrong master key fails loudly,
and a key rotation keeps every document readable while the gateway runs."""

from __future__ import annotations

import base64
import json
import os
import secrets
import subprocess
import uuid
from pathlib import Path

import pytest
from harness import PG_URL, SHARED_DATA

from gateway.content.envelope import CHUNK_BYTES
from gateway.exchange.compose import provide_document_bundle

PDF = SHARED_DATA / "c-cda" / "unstructured" / "CDA_with_Embedded_PDF_1" / "C-CDA_R2_UD_sample.pdf"


def database_bytes(server) -> bytes:
    """Everything the store holds, as bytes: the SQLite files, or every row of every table."""
    if server.backend == "sqlite":
        data_dir = Path(server.settings.data_dir)
        files = [str(p) for p in sorted(data_dir.glob("zorgbrug.db*"))]
        # Read in a child process: closing a descriptor of the database in the server's own
        # process would drop SQLite's POSIX locks and corrupt the live WAL ("disk I/O error").
        return subprocess.run(["cat", *files], capture_output=True, check=True).stdout
    import psycopg

    assert PG_URL
    url = server.settings.database_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(url) as conn:
        tables = [
            row[0]
            for row in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
            ).fetchall()
        ]
        dump = []
        for table in tables:
            for (row,) in conn.execute(f'SELECT t::text FROM "{table}" t').fetchall():
                dump.append(row)
    return "\n".join(dump).encode()


def push(server, network, content, content_type="text/plain"):
    bundle = provide_document_bundle(
        content=content,
        content_type=content_type,
        bsn="999911120",
        sender=network.sender.ura,
        recipients=[network.recipient.ura],
    )
    with server.client(network.sender) as fhir:
        response = fhir.post("", json=bundle)
    assert response.status_code == 200, response.text
    return response.json()["entry"][2]["response"]["location"].split("/_history")[0]


def retrieve(server, hospital, binary, accept="*/*"):
    with server.client(hospital) as fhir:
        return fhir.get(f"/{binary}", headers={"Accept": accept})


def forms_of(content: bytes, start: int = 0, length: int = 48) -> list[bytes]:
    """A piece of a document as a store could hold it: plain, hex (PostgreSQL bytea) or inside
    the base64 of the whole document (FHIR JSON)."""
    piece = content[start : start + length]
    encoded = base64.b64encode(content)
    at = start // 3 * 4
    return [piece, piece.hex().encode(), encoded[at : at + length]]


def test_no_plaintext_of_a_pushed_document_is_in_the_store(server, network):
    marker = f"ZORGBRUG-PLAINTEXT-MARKER-{uuid.uuid4().hex}"
    content = f"Ontslagbrief van mevrouw Jansen. {marker} Einde brief.".encode()
    binary = push(server, network, content)
    pdf_binary = push(server, network, PDF.read_bytes(), "application/pdf")
    # A positive control: plain data written through the API is visible to this very check.
    control = f"CONTROL-{uuid.uuid4().hex}"
    with server.client(network.sender) as fhir:
        fhir.post("/Basic", json={"resourceType": "Basic", "code": {"text": control}})
    stored = database_bytes(server)
    assert any(f in stored for f in (control.encode(), control.encode().hex().encode())), (
        "the check cannot see plaintext"
    )
    pieces = [(content, content.index(marker.encode()))]
    pdf = PDF.read_bytes()
    pieces += [(pdf, offset) for offset in (0, 3000, len(pdf) // 2, len(pdf) - 100)]
    for document, offset in pieces:
        for form in forms_of(document, offset, 40):
            assert form not in stored, f"document content found in the store: {form[:40]!r}"
    assert retrieve(server, network.recipient, binary).content == content
    assert retrieve(server, network.recipient, pdf_binary).content == PDF.read_bytes()


def test_a_wrong_or_damaged_master_key_fails_loudly(server, network, tmp_path):
    push(server, network, b"inhoud")
    other = tmp_path / "other.key"
    run = server.cli("orgs", "list", env={"ZORGBRUG_MASTER_KEY_FILE": str(other)})
    assert run.returncode == 1
    assert run.stderr.count("\n") == 1 and "master key file" in run.stderr
    assert "Traceback" not in run.stderr
    real = json.loads((Path(server.settings.data_dir) / "master.key").read_text())
    damaged = tmp_path / "damaged.key"
    fd = os.open(damaged, os.O_WRONLY | os.O_CREAT, 0o600)
    with os.fdopen(fd, "w") as out:
        kid = real["current"]
        json.dump(
            {"current": kid, "keys": {kid: base64.b64encode(secrets.token_bytes(32)).decode()}}, out
        )
    run = server.cli("orgs", "list", env={"ZORGBRUG_MASTER_KEY_FILE": str(damaged)})
    assert run.returncode == 1 and "is not the key that encrypted" in run.stderr
    os.chmod(damaged, 0o644)
    run = server.cli("orgs", "list", env={"ZORGBRUG_MASTER_KEY_FILE": str(damaged)})
    assert run.returncode == 1 and "chmod 600" in run.stderr


def test_the_master_key_file_is_private(server):
    key_file = Path(server.settings.data_dir) / "master.key"
    assert key_file.stat().st_mode & 0o777 == 0o600


def test_rotation_rewraps_every_data_key_and_keeps_every_document_readable(server, network):
    contents = [f"document {i} {uuid.uuid4()}".encode() for i in range(3)]
    binaries = [push(server, network, content) for content in contents]
    key_file = Path(server.settings.data_dir) / "master.key"
    before = json.loads(key_file.read_text())["current"]
    run = server.cli("keys", "rotate", "--grace", "0.2")
    assert run.returncode == 0, run.stderr
    assert "re-wrapped" in run.stdout
    after = json.loads(key_file.read_text())
    assert after["current"] != before and list(after["keys"]) == [after["current"]]
    # The running gateway never restarted: it reads the re-wrapped keys and writes new ones.
    for binary, content in zip(binaries, contents, strict=True):
        assert retrieve(server, network.recipient, binary).content == content
    fresh = b"na de rotatie"
    assert retrieve(server, network.recipient, push(server, network, fresh)).content == fresh
    assert server.cli("orgs", "list").returncode == 0  # the key checks agree with the file
    # The rotation is recorded, with the command, in the transaction that forgets the old key.
    report = server.cli("audit", "report", "--format", "json")
    assert report.returncode == 0, report.stderr
    rotations = [e for e in json.loads(report.stdout)["events"] if e["event"] == "admin-security"]
    assert [(e["outcome"], e["role"], e["purpose"]) for e in rotations] == [
        ("0", "operator", "HOPERAT")
    ]


def post_raw(server, hospital, content: bytes) -> str:
    with server.client(hospital) as fhir:
        created = fhir.post(
            "/Binary", content=content, headers={"Content-Type": "application/octet-stream"}
        )
    assert created.status_code == 201, created.text
    return created.headers["Location"].split("/fhir/")[1].split("/_history")[0]


# One chunk (read with the access check), several (read after it), and past the streaming bound.
SIZES = [10_000 + 3, 3 * 1024 * 1024 + 5, 9 * 1024 * 1024 + 7]


@pytest.mark.parametrize("size", SIZES)
def test_a_download_resumes_with_a_byte_range_and_is_not_fetched_again(server, network, size):
    """RFC 9110: a Range of one span answers 206 with just those bytes (across chunk bounds,
    open-ended or the last N), If-None-Match with the content's ETag a 304, a range past the
    end a 416; forms not served in parts (several ranges, an If-Range of other content) get
    everything."""
    content = secrets.token_bytes(size)
    location = post_raw(server, network.sender, content)
    middle = CHUNK_BYTES - 5 if size > CHUNK_BYTES else size // 2  # across a chunk's end
    with server.client(network.sender) as fhir:

        def get(**headers):
            return fhir.get(
                f"/{location}", headers={"Accept": "application/octet-stream", **headers}
            )

        whole = get()
        assert whole.status_code == 200 and whole.headers["accept-ranges"] == "bytes"
        etag = whole.headers["etag"]
        for header, (first, last) in (
            (f"bytes={middle}-{middle + 9}", (middle, middle + 9)),
            (f"bytes={middle}-", (middle, size - 1)),
            ("bytes=-7", (size - 7, size - 1)),
            (f"bytes=0-{size + 100}", (0, size - 1)),
        ):
            part = get(Range=header)
            assert part.status_code == 206, (header, part.text[:200])
            assert part.headers["content-range"] == f"bytes {first}-{last}/{size}"
            assert part.headers["content-length"] == str(last - first + 1)
            assert part.content == content[first : last + 1], header
        assert get(**{"If-None-Match": etag}).status_code == 304
        assert get(**{"If-None-Match": etag}).content == b""
        assert get(**{"If-None-Match": '"other"'}).content == content
        beyond = get(Range=f"bytes={size}-")
        assert beyond.status_code == 416
        assert beyond.headers["content-range"] == f"bytes */{size}"
        assert beyond.json()["resourceType"] == "OperationOutcome"
        for header in ("bytes=0-1,5-9", "items=0-1", f"bytes=9-{2}"):
            assert get(Range=header).content == content, header
        stale = get(Range="bytes=0-9", **{"If-Range": '"other"'})
        assert (stale.status_code, stale.content) == (200, content)
        assert get(Range="bytes=0-9", **{"If-Range": etag}).content == content[:10]


@pytest.mark.parametrize("size", SIZES)
def test_raw_content_of_any_size_comes_back_byte_identical(server, network, size):
    content = secrets.token_bytes(size)
    location = post_raw(server, network.sender, content)
    back = retrieve(server, network.sender, location, accept="application/octet-stream")
    assert back.status_code == 200
    assert back.headers["content-length"] == str(size)
    assert back.content == content
    if size < 4 * 1024 * 1024:  # the FHIR form carries it base64-encoded
        resource = retrieve(server, network.sender, location, accept="application/fhir+json")
        assert base64.b64decode(resource.json()["data"]) == content


def damage_last_chunk(server, size: int) -> None:
    """Flip one byte of the stored (encrypted) content of the blob of ``size`` bytes."""
    statements = (
        "SELECT c.blob_id, c.seq, c.data FROM blob_chunks c JOIN blobs b USING (blob_id) "
        "WHERE b.size = {p} ORDER BY c.seq DESC LIMIT 1",
        "UPDATE blob_chunks SET data = {p} WHERE blob_id = {p} AND seq = {p}",
    )
    if server.backend == "sqlite":
        # In a child process: closing SQLite descriptors here would drop the server's locks.
        script = (
            "import sqlite3, sys\n"
            "db = sqlite3.connect(sys.argv[1])\n"
            f"blob, seq, data = db.execute({statements[0].format(p='?')!r}, (int(sys.argv[2]),))"
            ".fetchone()\n"
            "data = bytes(data[:-1]) + bytes([data[-1] ^ 1])\n"
            f"db.execute({statements[1].format(p='?')!r}, (data, blob, seq))\n"
            "db.commit()\n"
        )
        database = Path(server.settings.data_dir) / "zorgbrug.db"
        subprocess.run(["python3", "-c", script, str(database), str(size)], check=True)
        return
    import psycopg

    url = server.settings.database_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(url) as conn:
        blob, seq, data = conn.execute(statements[0].format(p="%s"), (size,)).fetchone()
        data = bytes(data[:-1]) + bytes([data[-1] ^ 1])
        conn.execute(statements[1].format(p="%s"), (data, blob, seq))


@pytest.mark.parametrize("size", SIZES)
def test_damaged_content_is_never_served(server, network, size):
    size += 1  # no other blob of the store has this size
    content = secrets.token_bytes(size)
    location = post_raw(server, network.sender, content)
    damage_last_chunk(server, size)
    for accept in ("application/octet-stream", "application/fhir+json"):
        back = retrieve(server, network.sender, location, accept=accept)
        assert back.status_code == 500, (accept, back.status_code)
        assert back.json()["resourceType"] == "OperationOutcome"
        assert content[-64:] not in back.content
    report = server.cli("audit", "report", "--format", "json")
    assert report.returncode == 0, report.stderr
    outcomes = sorted(
        e["outcome"]
        for e in json.loads(report.stdout)["events"]
        if e["event"] in ("retrieve-document", "read") and location in json.dumps(e)
    )
    assert outcomes == ["8", "8"], "each failed access is recorded once, never as a success"
