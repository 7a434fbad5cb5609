"""A master-key rotation that fails between its steps is recorded as a failed change, leaves
every document readable, and can simply be run again."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import select, update
from sqlalchemy.exc import OperationalError
from test_content_at_rest import push, retrieve

from gateway.content import envelope
from gateway.content.rotation import rotate_master_key
from gateway.service.console import ConsoleChange
from gateway.service.resources import ResourceService
from gateway.store.database import Database
from gateway.store.schema import blobs


def admin_security_events(server) -> list[tuple[str, str]]:
    report = server.cli("audit", "report", "--format", "json")
    assert report.returncode == 0, report.stderr
    return [
        (e["outcome"], e["reason"])
        for e in json.loads(report.stdout)["events"]
        if e["event"] == "admin-security"
    ]


def test_a_rotation_failing_midway_is_recorded_and_can_be_run_again(server, network):
    content = b"voor een rotatie die halverwege faalt"
    binary = push(server, network, content)
    key_file = Path(server.settings.data_dir) / "master.key"
    command = ["keys", "rotate", "--grace", "6", "--data-dir", str(server.settings.data_dir)]
    rotation = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", *command],
        env={**os.environ, "ZORGBRUG_DATABASE_URL": str(server.settings.database_url)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while len(json.loads(key_file.read_text())["keys"]) < 2:  # the new key beside the old
            assert time.monotonic() < deadline and rotation.poll() is None
            time.sleep(0.05)
        both_keys = key_file.read_bytes()
        # During the grace period: the step that drops the old key cannot replace the file.
        key_file.unlink()
        key_file.mkdir()
        _out, err = rotation.communicate(timeout=60)
    finally:
        rotation.kill()
        if key_file.is_dir():
            key_file.rmdir()
            fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as out:
                out.write(both_keys)
    assert rotation.returncode == 1
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert admin_security_events(server) == [("8", "internal error")]
    # Every data key was re-wrapped to the new key, which the file still holds beside the old.
    assert retrieve(server, network.recipient, binary).content == content
    again = server.cli("keys", "rotate", "--grace", "0.2")
    assert again.returncode == 0, again.stderr
    assert [outcome for outcome, _ in admin_security_events(server)] == ["8", "0"]
    assert retrieve(server, network.recipient, binary).content == content


class LosesTheDatabaseAfterTheOldKeysAreGone(Database):
    """A store that fails once, in the rotation's last pass, right after a gateway that still
    held the old key committed documents wrapped with it (the stragglers that pass is for)."""

    def __init__(self, url: str, key_file: Path, old_keys: dict[str, bytes]):
        super().__init__(url)
        self.key_file, self.old_keys = key_file, old_keys
        self.failed = False

    async def write(self, work):
        held = json.loads(self.key_file.read_text())
        if self.failed or set(self.old_keys) <= set(held["keys"]):
            return await super().write(work)
        self.failed = True
        new_key = base64.b64decode(held["keys"][held["current"]])
        [(old_id, old_key)] = self.old_keys.items()

        def wrap_with_the_old_key(conn):
            for blob_id, wrapped in conn.execute(select(blobs.c.blob_id, blobs.c.wrapped_key)):
                data_key = envelope.unwrap(new_key, blob_id, bytes(wrapped))
                conn.execute(
                    update(blobs)
                    .where(blobs.c.blob_id == blob_id)
                    .values(key_id=old_id, wrapped_key=envelope.wrap(old_key, blob_id, data_key))
                )

        await super().write(wrap_with_the_old_key)
        raise OperationalError("UPDATE blobs", {}, Exception("server closed the connection"))


def test_a_failed_last_pass_puts_the_old_keys_back(server, network):
    content = b"de achterblijver van een rotatie"
    binary = push(server, network, content)
    key_file = Path(server.settings.data_dir) / "master.key"
    before = json.loads(key_file.read_text())
    old_keys = {k: base64.b64decode(v) for k, v in before["keys"].items()}
    earlier = admin_security_events(server)

    async def rotate() -> None:
        db = LosesTheDatabaseAfterTheOldKeysAreGone(
            server.settings.resolved_database_url(), key_file, old_keys
        )
        try:
            service = ResourceService(db, server.settings)
            await service.start()
            change = ConsoleChange.of("admin-security", ["keys", "rotate"], "U")
            await rotate_master_key(service, change, grace_s=0)
        finally:
            await db.dispose()

    with pytest.raises(OperationalError):
        asyncio.run(rotate())
    after = json.loads(key_file.read_text())
    assert after["current"] not in old_keys and set(old_keys) < set(after["keys"])
    assert key_file.stat().st_mode & 0o777 == 0o600
    # The straggler, wrapped by the old key, is still served; a second rotation completes.
    assert retrieve(server, network.recipient, binary).content == content
    assert admin_security_events(server) == [*earlier, ("8", "internal error")]
    again = server.cli("keys", "rotate", "--grace", "0.2")
    assert again.returncode == 0, again.stderr
    assert list(json.loads(key_file.read_text())["keys"]) == [
        json.loads(key_file.read_text())["current"]
    ]
    assert retrieve(server, network.recipient, binary).content == content
