"""The zorgbrug command: serve, db upgrade and demo share one store chosen by flags or env."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import httpx
import pytest
from harness import BACKENDS, FreshDatabase, free_port

ZORGBRUG = [sys.executable, "-m", "gateway.cli"]


@pytest.fixture(params=BACKENDS)
def database(request, tmp_path):
    db = FreshDatabase(request.param, tmp_path)
    yield db
    db.drop()


def run(*args, env=None, timeout=120):
    return subprocess.run(
        [*ZORGBRUG, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def test_demo_is_idempotent_and_serve_shows_it(database, tmp_path):
    first = run("demo", "--data-dir", str(tmp_path), "--database-url", database.url)
    assert first.returncode == 0, first.stderr
    assert "22 resources created, 0 already present" in first.stdout
    second = run("demo", "--data-dir", str(tmp_path), env={"ZORGBRUG_DATABASE_URL": database.url})
    assert "0 resources created, 22 already present" in second.stdout
    key_file = tmp_path / "demo" / "90000002" / "private_key.jwk.json"
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert "assistant" in first.stdout and "/ui/" in first.stdout  # the demo logins and the UI

    port = free_port()
    server = subprocess.Popen(
        [*ZORGBRUG, "serve", "--port", str(port), "--data-dir", str(tmp_path)],
        env={**os.environ, "ZORGBRUG_DATABASE_URL": database.url},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline and server.poll() is None, "server did not start"
            time.sleep(0.2)
        assert httpx.get(f"{base}/healthz").json() == {"status": "ok"}
        query = {"identifier": "http://fhir.nl/fhir/NamingSystem/ura|90000002"}
        assert httpx.get(f"{base}/fhir/Organization", params=query).status_code == 401
        token = run(
            "demo-token",
            "--org",
            "90000002",
            "--url",
            base,
            "--data-dir",
            str(tmp_path),
            env={"ZORGBRUG_DATABASE_URL": database.url},
        )
        assert token.returncode == 0, token.stderr
        headers = {"Authorization": f"Bearer {token.stdout.strip()}"}
        orgs = httpx.get(f"{base}/fhir/Organization", params=query, headers=headers)
        assert orgs.json()["total"] == 1
        conditions = httpx.get(f"{base}/fhir/Condition", headers=headers).json()
        assert conditions["total"] == 1  # its own data only: the other hospitals' stay hidden
        metadata = httpx.get(f"{base}/fhir/metadata").json()
        assert metadata["fhirVersion"] == "4.0.1"
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_sqlite_default_lives_in_the_data_dir(tmp_path):
    result = run(
        "db", "upgrade", "--data-dir", str(tmp_path / "store"), env={"ZORGBRUG_DATABASE_URL": ""}
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "store" / "zorgbrug.db").exists()


def test_unreachable_database_is_one_line_and_non_zero(tmp_path):
    result = run(
        "db", "upgrade", "--database-url", "postgresql://nobody@127.0.0.1:1/none", timeout=60
    )
    assert result.returncode != 0
    assert result.stderr.startswith("zorgbrug: error:")
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_usage_error_exits_2():
    assert run("frobnicate").returncode == 2


def test_orgs_and_clients_commands(database, tmp_path):
    import json

    from harness import new_key_pair

    store = ["--data-dir", str(tmp_path), "--database-url", database.url]
    added = run(
        "orgs",
        "add",
        "--ura",
        "90000301",
        "--name",
        "Ziekenhuis CLI",
        "--endpoint",
        "https://zorgbrug.example.nl/inbox",
        *store,
    )
    assert added.returncode == 0, added.stderr
    assert "registered: 90000301 Ziekenhuis CLI" in added.stdout
    again = run("orgs", "add", "--ura", "90000301", "--name", "Ziekenhuis CLI", *store)
    assert "already registered" in again.stdout
    listed = json.loads(run("orgs", "list", "--json", *store).stdout)
    assert [(o["ura"], o["endpoint"]) for o in listed] == [
        ("90000301", "https://zorgbrug.example.nl/inbox")
    ]

    _, jwks = new_key_pair()
    jwks_file = tmp_path / "jwks.json"
    jwks_file.write_text(json.dumps(jwks))
    client = run(
        "clients",
        "add",
        "--org",
        "90000301",
        "--name",
        "HiX export",
        "--jwks",
        str(jwks_file),
        "--scopes",
        "system/DocumentReference.read system/*.write",
        "--json",
        *store,
    )
    assert client.returncode == 0, client.stderr
    client_id = json.loads(client.stdout)["client_id"]
    plain = run(
        "clients",
        "add",
        "--org",
        "90000301",
        "--name",
        "Second",
        "--jwks",
        str(jwks_file),
        "--scopes",
        "system/Patient.rs",
        *store,
    )
    assert len(plain.stdout.strip()) >= 20 and " " not in plain.stdout.strip()
    clients = json.loads(run("clients", "list", "--json", *store).stdout)
    assert {c["client_id"] for c in clients} == {client_id, plain.stdout.strip()}
    assert run("clients", "disable", client_id, *store).returncode == 0
    clients = {
        c["client_id"]: c for c in json.loads(run("clients", "list", "--json", *store).stdout)
    }
    assert clients[client_id]["disabled"] is True


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["orgs", "add", "--ura", "12", "--name", "x"], "not an URA"),
        (
            ["orgs", "add", "--ura", "90000401", "--name", "x", "--endpoint", "ftp://x"],
            "not an http",
        ),
        (
            [
                "clients",
                "add",
                "--org",
                "90000499",
                "--name",
                "x",
                "--jwks-url",
                "https://x/jwks",
                "--scopes",
                "system/*.read",
            ],
            "not registered",
        ),
        (["clients", "disable", "nope"], "no client"),
        (["users", "disable", "nope"], "no user"),
    ],
)
def test_cli_mistakes_are_one_line_and_non_zero(database, tmp_path, args, message):
    result = run(*args, "--data-dir", str(tmp_path), "--database-url", database.url)
    assert result.returncode == 1
    assert result.stderr.startswith("zorgbrug: error:") and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_clients_add_needs_exactly_one_key_source(tmp_path):
    result = run(
        "clients",
        "add",
        "--org",
        "90000301",
        "--name",
        "x",
        "--scopes",
        "system/*.read",
        "--data-dir",
        str(tmp_path),
    )
    assert result.returncode == 2
