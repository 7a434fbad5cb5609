"""A master-key rotation that fails between its steps is recorded as a failed change, leaves
every document readable, and can simply be run again."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from test_content_at_rest import push, retrieve


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
