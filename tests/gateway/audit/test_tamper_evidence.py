"""The audit log proves it was not altered: `zorgbrug audit verify` names the first record that
was changed, removed, inserted or reordered, and a tail cut off after a signed checkpoint; no
audit record means no access; a purge keeps what remains verifiable."""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import pytest
from harness import BACKENDS, LiveServer, start_server
from sqlalchemy import create_engine, text

from gateway.store.database import to_sync_url


@pytest.fixture(params=BACKENDS)
def gateway(request, tmp_path) -> Iterator[LiveServer]:
    """A gateway of its own (the tests damage its log), with a dozen audit records."""
    live, database = start_server(request.param, tmp_path)
    with live.client() as fhir:
        for _ in range(4):
            created = fhir.post("/Basic", json={"resourceType": "Basic", "code": {"text": "x"}})
            assert created.status_code == 201
            assert fhir.get(f"/Basic/{created.json()['id']}").status_code == 200
    yield live
    live.stop()
    database.drop()


NO_RETENTION = {"ZORGBRUG_AUDIT_RETENTION_YEARS": "0"}


def tamper(server: LiveServer, *statements: str) -> None:
    """Change the store behind the gateway's back, the append-only triggers switched off."""
    engine = create_engine(to_sync_url(str(server.settings.database_url)))
    try:
        with engine.begin() as conn:
            if server.backend == "postgresql":
                conn.execute(text("SET LOCAL session_replication_role = replica"))
            else:
                for verb in ("update", "delete"):
                    conn.execute(text(f"DROP TRIGGER IF EXISTS audit_events_no_{verb}"))
            for statement in statements:
                conn.execute(text(statement))
    finally:
        engine.dispose()


def last_seq(server: LiveServer) -> int:
    engine = create_engine(to_sync_url(str(server.settings.database_url)))
    try:
        with engine.connect() as conn:
            return int(conn.execute(text("SELECT max(seq) FROM audit_events")).scalar_one())
    finally:
        engine.dispose()


def damaged_at(run: subprocess.CompletedProcess[str]) -> str:
    assert run.returncode == 3, (run.stdout, run.stderr)
    assert "Traceback" not in run.stderr
    return run.stderr.splitlines()[-1]


def test_an_intact_log_verifies_also_with_the_public_key_alone(gateway, tmp_path):
    run = gateway.cli("audit", "verify")
    assert run.returncode == 0 and "intact" in run.stdout, run.stderr
    key = gateway.cli("audit", "public-key")
    assert key.stdout.startswith("-----BEGIN PUBLIC KEY-----")
    public = tmp_path / "audit.pub"
    public.write_text(key.stdout)
    run = gateway.cli("audit", "verify", "--public-key", str(public))
    assert run.returncode == 0, run.stderr


def refuses_changes(server: LiveServer, seq: int) -> None:
    engine = create_engine(to_sync_url(str(server.settings.database_url)))
    try:
        for statement in (
            f"UPDATE audit_events SET agent_id = 'x' WHERE seq = {seq}",
            f"DELETE FROM audit_events WHERE seq = {seq}",
        ):
            with pytest.raises(Exception, match="append-only"), engine.begin() as conn:
                conn.execute(text(statement))
    finally:
        engine.dispose()


def test_the_database_refuses_to_change_or_delete_records(gateway):
    refuses_changes(gateway, 2)
    assert gateway.cli("audit", "verify").returncode == 0


def test_a_changed_record_is_named(gateway):
    tamper(gateway, "UPDATE audit_events SET agent_id = 'someone-else' WHERE seq = 5")
    assert "record 5 " in damaged_at(gateway.cli("audit", "verify"))


def test_a_changed_content_is_named(gateway):
    doubled = "content || content" if gateway.backend == "postgresql" else "content || X'20'"
    tamper(gateway, f"UPDATE audit_events SET content = {doubled} WHERE seq = 4")
    assert "record 4 " in damaged_at(gateway.cli("audit", "verify"))


def test_a_removed_record_is_named(gateway):
    tamper(gateway, "DELETE FROM audit_events WHERE seq = 6")
    assert "record 6 is missing" in damaged_at(gateway.cli("audit", "verify"))


def test_reordered_records_are_named(gateway):
    tamper(
        gateway,
        "UPDATE audit_events SET seq = -1 WHERE seq = 3",
        "UPDATE audit_events SET seq = 3 WHERE seq = 4",
        "UPDATE audit_events SET seq = 4 WHERE seq = -1",
    )
    assert "record 3 " in damaged_at(gateway.cli("audit", "verify"))


def test_an_inserted_record_is_named(gateway):
    columns = (
        "event_id, recorded_us, kind, action, outcome, agent_kind, agent_id, agent_org, "
        "agent_role, patient_key, custodian_org, emergency, request_id, content, hash"
    )
    tamper(
        gateway,
        "UPDATE audit_events SET seq = -seq WHERE seq >= 3",
        "UPDATE audit_events SET seq = -seq + 1 WHERE seq < 0",
        f"INSERT INTO audit_events (seq, {columns}) SELECT 3, 'forged-{uuid.uuid4().hex}', "
        f"recorded_us, kind, action, outcome, agent_kind, 'forger', agent_org, agent_role, "
        f"patient_key, custodian_org, emergency, request_id, content, hash "
        f"FROM audit_events WHERE seq = 4",
    )
    assert "record 3 " in damaged_at(gateway.cli("audit", "verify"))


def test_a_tail_cut_off_after_a_checkpoint_is_detected(gateway):
    gateway.stop()  # a stopping gateway signs a checkpoint at the tail
    end = last_seq(gateway)
    tamper(
        gateway,
        f"DELETE FROM audit_events WHERE seq > {end - 2}",
        # the intruder also winds the chain head back, so that only the signature tells
        f"UPDATE audit_chain_head SET seq = {end - 2}, hash = "
        f"(SELECT hash FROM audit_events WHERE seq = {end - 2})",
    )
    problem = damaged_at(gateway.cli("audit", "verify"))
    assert f"record {end - 1}" in problem and "truncated" in problem


def test_a_rewritten_and_rehashed_log_fails_its_signed_checkpoint(gateway):
    """Whoever recomputes every hash after a change still cannot sign the new chain."""
    from gateway.audit.chain import GENESIS, link

    gateway.stop()
    engine = create_engine(to_sync_url(str(gateway.settings.database_url)))
    try:
        with engine.connect() as conn:
            rows = [dict(r._mapping) for r in conn.execute(text("SELECT * FROM audit_events"))]
    finally:
        engine.dispose()
    rows.sort(key=lambda r: r["seq"])
    rows[1]["agent_id"] = "rewritten"
    previous, statements = GENESIS, []
    for row in rows:
        previous = link(previous, row)
        statements.append(
            f"UPDATE audit_events SET agent_id = '{row['agent_id']}', hash = "
            f"{_bytes_literal(gateway, previous)} WHERE seq = {row['seq']}"
        )
    statements.append(
        f"UPDATE audit_chain_head SET hash = {_bytes_literal(gateway, previous)} WHERE id = 1"
    )
    tamper(gateway, *statements)
    assert "signed checkpoint" in damaged_at(gateway.cli("audit", "verify"))


def _bytes_literal(server: LiveServer, value: bytes) -> str:
    return f"'\\x{value.hex()}'::bytea" if server.backend == "postgresql" else f"X'{value.hex()}'"


def test_no_record_no_access(gateway, tmp_path):
    """When the audit record cannot be written, a read is refused and a write rolls back, also
    an administrative change at the console."""
    marker = f"niet-opgeslagen-{uuid.uuid4().hex}"
    password = tmp_path / "password"
    password.write_text("a long enough password for the test")
    add_person = (
        *("users", "add", "--org", gateway.default_hospital.ura, "--username", marker),
        *("--role", "clinician", "--password-file", str(password)),
    )
    engine = create_engine(to_sync_url(str(gateway.settings.database_url)))
    if gateway.backend == "postgresql":
        block = [
            "CREATE FUNCTION audit_broken() RETURNS trigger AS $$ BEGIN "
            "RAISE EXCEPTION 'audit store broken'; END $$ LANGUAGE plpgsql",
            "CREATE TRIGGER audit_broken BEFORE INSERT ON audit_events "
            "FOR EACH ROW EXECUTE FUNCTION audit_broken()",
        ]
        unblock = ["DROP TRIGGER audit_broken ON audit_events", "DROP FUNCTION audit_broken()"]
    else:
        block = [
            "CREATE TRIGGER audit_broken BEFORE INSERT ON audit_events "
            "BEGIN SELECT RAISE(ABORT, 'audit store broken'); END"
        ]
        unblock = ["DROP TRIGGER audit_broken"]
    try:
        with gateway.client() as fhir:
            existing = fhir.get("/Basic", params={"_count": "1"}).json()["entry"][0]["resource"]
            with engine.begin() as conn:
                for statement in block:
                    conn.execute(text(statement))
            read = fhir.get(f"/Basic/{existing['id']}")
            assert read.status_code == 500
            assert read.json()["resourceType"] == "OperationOutcome"
            assert existing["id"] not in read.text
            created = fhir.post("/Basic", json={"resourceType": "Basic", "code": {"text": marker}})
            assert created.status_code == 500
            organization = gateway.cli("orgs", "add", "--ura", "90000777", "--name", marker)
            assert organization.returncode == 1
            assert "could not be recorded in the audit log" in organization.stderr
            person = gateway.cli(*add_person)
            assert person.returncode == 1 and "audit log" in person.stderr
            with engine.begin() as conn:
                for statement in unblock:
                    conn.execute(text(statement))
            found = fhir.get("/Basic", params={"_count": "1000"}).json()
            assert marker not in str(found)
    finally:
        engine.dispose()
    assert marker not in gateway.cli("orgs", "list").stdout
    again = gateway.cli(*add_person)  # the first attempt left no half-made account behind
    assert again.returncode == 0, again.stderr
    assert gateway.cli("audit", "verify").returncode == 0


def test_a_purge_keeps_the_chain_verifiable_and_records_itself(gateway):
    kept = gateway.cli("audit", "purge", "--before", "2025-01-01")
    assert kept.returncode == 1 and "kept 5 years" in kept.stderr  # the default retention
    refused = gateway.cli("audit", "purge", "--before", "2999-01-01", env=NO_RETENTION)
    assert refused.returncode == 1 and "kept" in refused.stderr
    moment = datetime.now(UTC).isoformat()
    with gateway.client() as fhir:  # one more record after the moment: it stays
        assert fhir.get("/metadata").status_code == 200
        assert fhir.post("/Basic", json={"resourceType": "Basic", "code": {}}).status_code == 201
    run = gateway.cli("audit", "purge", "--before", moment, env=NO_RETENTION)
    assert run.returncode == 0, run.stderr
    assert "purged" in run.stdout
    verified = gateway.cli("audit", "verify")
    assert verified.returncode == 0, verified.stderr
    report = gateway.cli("audit", "report", "--format", "json")
    lines: list[dict[str, Any]] = json.loads(report.stdout)["events"]
    assert any(line["event"] == "audit-log" and "purge" in line["query"] for line in lines)
    assert any(line["event"] == "create" for line in lines)  # the one made after the moment
    refuses_changes(gateway, lines[-1]["sequence"])  # the purge put the guards back
    tamper(gateway, f"DELETE FROM audit_events WHERE seq = {lines[0]['sequence']}")
    assert gateway.cli("audit", "verify").returncode == 3


def test_concurrent_writes_of_two_gateways_form_one_unbroken_chain(gateway):
    """Writes and reads racing in two gateways on one store each get their own sequence
    number, chained to the record before, whichever gateway wrote that one. Concurrent reads
    are recorded in batches of several records, writes one by one."""
    second = LiveServer(gateway.settings, gateway.backend).start()
    try:
        clients = [gateway.client(), second.client()]
        first_seq = last_seq(gateway)
        created: list[str] = []

        def create(n: int) -> int:
            basic = {"resourceType": "Basic", "code": {"text": f"race {n}"}}
            response = clients[n % 2].post("/Basic", json=basic)
            created.append(response.json().get("id", ""))
            return response.status_code

        def read(n: int) -> int:
            return clients[n % 2].get(f"/Basic/{created[n % len(created)]}").status_code

        with ThreadPoolExecutor(max_workers=16) as pool:
            statuses = list(pool.map(create, range(64)))
            assert statuses == [201] * 64
            assert set(pool.map(read, range(160))) == {200}
    finally:
        for client in clients:
            client.close()
        second.stop()
    engine = create_engine(to_sync_url(str(gateway.settings.database_url)))
    try:
        with engine.connect() as conn:
            seqs = list(
                conn.execute(
                    text("SELECT seq FROM audit_events WHERE seq > :first ORDER BY seq"),
                    {"first": first_seq},
                ).scalars()
            )
            assert seqs == list(range(first_seq + 1, first_seq + 1 + len(seqs)))
            kinds = dict(
                conn.execute(
                    text(
                        "SELECT kind, count(*) FROM audit_events WHERE seq > :first GROUP BY kind"
                    ),
                    {"first": first_seq},
                ).all()
            )
            assert kinds.get("create") == 64 and kinds.get("read") == 160, kinds
    finally:
        engine.dispose()
    run = gateway.cli("audit", "verify")
    assert run.returncode == 0 and "intact" in run.stdout, (run.stdout, run.stderr)


def test_a_write_signs_the_checkpoint_that_is_due(gateway):
    """A new store has no checkpoint, so its first record is due for one: the write that
    appended it signed it, while the gateway runs (not only when it stops)."""
    engine = create_engine(to_sync_url(str(gateway.settings.database_url)))
    try:
        with engine.connect() as conn:
            signed = conn.execute(
                text("SELECT min(seq) FROM audit_checkpoints WHERE kind = 'checkpoint'")
            ).scalar_one()
    finally:
        engine.dispose()
    assert signed is not None and 1 <= signed <= last_seq(gateway)
    run = gateway.cli("audit", "verify")
    assert run.returncode == 0 and "intact" in run.stdout, (run.stdout, run.stderr)
