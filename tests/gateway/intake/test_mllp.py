"""``zorgbrug mllp``: a real listener process, real TCP senders. The ACK ``AA`` comes only after
the message is stored; refused input gets ``AR`` with an ERR segment; no sender can end it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from harness import SHARED_DATA, free_port

FIXTURES = Path(__file__).resolve().parents[2] / "adapters" / "fixtures" / "hl7v2"
BSN = "http://fhir.nl/fhir/NamingSystem/bsn"
ORG = "90000711"
VT, FS, CR = b"\x0b", b"\x1c", b"\r"


@pytest.fixture(scope="module")
def sender(server):
    return server.hospital(ORG, "Zendend Ziekenhuis")


@pytest.fixture(scope="module")
def listener(server, sender) -> Iterator[int]:
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gateway.cli",
            "mllp",
            "--port",
            str(port),
            "--org",
            ORG,
            "--data-dir",
            str(server.settings.data_dir),
            "--database-url",
            server.settings.database_url,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ),
    )
    assert process.stdout is not None
    banner = process.stdout.readline()
    assert "MLLP listener" in banner, process.stderr.read() if process.stderr else banner
    yield port
    process.terminate()
    assert process.wait(timeout=30) == 0


def connect(port: int) -> socket.socket:
    connection = socket.create_connection(("127.0.0.1", port), timeout=60)
    return connection


def exchange(connection: socket.socket, message: bytes) -> bytes:
    """Send one framed message and read its framed answer."""
    connection.sendall(VT + message + FS + CR)
    answer = b""
    while not answer.endswith(FS + CR):
        chunk = connection.recv(65536)
        assert chunk, "the listener closed the connection without answering"
        answer += chunk
    assert answer.startswith(VT)
    return answer[1:-2]


def segments(ack: bytes) -> dict[str, list[str]]:
    return {line.split("|", 1)[0]: line.split("|") for line in ack.decode().split("\r") if line}


def admission(control_id: str, bsn: str, family: str) -> bytes:
    """The Dutch ADT^A01 fixture for another patient, under its own control id."""
    text = (FIXTURES / "nl-adt-a01-bsn.hl7").read_bytes().decode()
    text = text.replace("ADT000123", control_id).replace("999911120", bsn)
    text = text.replace("van der Berg-de Vries&van der&Berg&de&Vries", family)
    return text.replace("\r\n", "\r").replace("\n", "\r").encode()


def patients_with(server, sender, bsn: str) -> int:
    with server.client(sender) as fhir:
        found = fhir.get("/Patient", params={"identifier": f"{BSN}|{bsn}"})
        assert found.status_code == 200
        return found.json()["total"]


def elfproef_bsns(count: int, start: int = 10_000_000) -> Iterator[str]:
    """Distinct numbers that pass the BSN eleven-test."""
    number = start
    while count:
        number += 1
        digits = f"{number:09d}"
        total = sum(int(d) * w for d, w in zip(digits[:8], range(9, 1, -1), strict=True))
        if (total - int(digits[8])) % 11 == 0:
            count -= 1
            yield digits


def test_aa_only_once_the_message_is_stored(server, sender, listener):
    [bsn] = elfproef_bsns(1, start=123_000_000)
    with connect(listener) as connection:
        answer = segments(exchange(connection, admission("CTRL-AA-1", bsn, "Bakker")))
    assert answer["MSA"][1:3] == ["AA", "CTRL-AA-1"]
    assert answer["MSH"][8].startswith("ACK")
    # Read straight after the ACK, through the FHIR API of another process: already there.
    assert patients_with(server, sender, bsn) == 1


def test_the_same_message_twice_is_acknowledged_and_stored_once(server, sender, listener):
    [bsn] = elfproef_bsns(1, start=124_000_000)
    message = admission("CTRL-TWICE", bsn, "Smit")
    with connect(listener) as connection:
        for _ in range(2):
            assert segments(exchange(connection, message))["MSA"][1] == "AA"
    assert patients_with(server, sender, bsn) == 1


def test_refused_messages_get_ar_with_an_err_segment_and_the_connection_goes_on(
    server, sender, listener
):
    unsupported = (
        (SHARED_DATA / "hl7v2" / "microsoft-fhir-converter" / "SIU-S12-01.hl7")
        .read_bytes()
        .replace(b"\n", b"\r")
    )
    with connect(listener) as connection:
        for bad in (b"this is not HL7 at all", unsupported):
            answer = segments(exchange(connection, bad))
            assert answer["MSA"][1] == "AR", answer
            assert "ERR" in answer
        [bsn] = elfproef_bsns(1, start=125_000_000)
        after = segments(exchange(connection, admission("CTRL-AFTER", bsn, "Visser")))
        assert after["MSA"][1] == "AA"
    assert patients_with(server, sender, bsn) == 1


def test_a_message_with_an_invalid_bsn_gets_ae_naming_it_and_stores_nothing(
    server, sender, listener
):
    # The adapter would leave the BSN out and file the patient under the local number alone:
    # a patient no other hospital can match. Refused, as the FHIR API refuses such a BSN.
    with connect(listener) as connection:
        answer = segments(exchange(connection, admission("CTRL-ELF", "999930001", "Elfproef")))
    assert answer["MSA"][1:3] == ["AE", "CTRL-ELF"]
    assert "PID-3" in answer["ERR"][-1] and "'999930001' fails the elfproef" in answer["ERR"][-1]
    with server.client(sender) as fhir:
        assert fhir.get("/Patient", params={"family": "Elfproef"}).json()["total"] == 0


def test_a_sender_that_vanishes_mid_frame_stores_nothing_and_harms_no_one(server, sender, listener):
    [half, whole] = elfproef_bsns(2, start=126_000_000)
    message = admission("CTRL-HALF", half, "de Jong")
    with connect(listener) as connection:
        connection.sendall(VT + message[: len(message) // 2])
    time.sleep(0.5)
    with connect(listener) as connection:
        assert (
            segments(exchange(connection, admission("CTRL-WHOLE", whole, "Mulder")))["MSA"][1]
            == "AA"
        )
    assert patients_with(server, sender, half) == 0
    assert patients_with(server, sender, whole) == 1


def test_garbage_between_frames_is_skipped(server, sender, listener):
    [bsn] = elfproef_bsns(1, start=127_000_000)
    with connect(listener) as connection:
        connection.sendall(b"\x00\xff noise before the frame \r\n")
        answer = segments(exchange(connection, admission("CTRL-NOISE", bsn, "Bos")))
    assert answer["MSA"][1] == "AA"


def test_many_senders_at_once_each_get_their_own_acks(server, sender, listener):
    bsns = list(elfproef_bsns(24, start=128_000_000))

    def send(batch: list[str]) -> list[tuple[str, str]]:
        answers = []
        with connect(listener) as connection:
            for bsn in batch:
                control = f"CTRL-{bsn}"
                msa = segments(exchange(connection, admission(control, bsn, "Dekker")))["MSA"]
                answers.append((msa[1], msa[2]))
        return answers

    batches = [bsns[i::6] for i in range(6)]
    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(send, batches))
    for batch, answers in zip(batches, results, strict=True):
        assert answers == [("AA", f"CTRL-{bsn}") for bsn in batch]
    for bsn in bsns:
        assert patients_with(server, sender, bsn) == 1


def test_an_oversized_frame_is_refused_and_the_connection_closed(server, sender, listener):
    chunk = b"OBX|1|TX|||" + b"x" * (1024 * 1024) + b"\r"
    with connect(listener) as connection:
        connection.sendall(VT + b"MSH|^~\\&|HiX|ZHT|||20240305||ORU^R01|BIG|P|2.5\r")
        try:
            for _ in range(40):  # 40 MiB, past the 32 MiB bound
                connection.sendall(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the listener hung up once it had refused the frame
        answer = b""
        while FS + CR not in answer:
            received = connection.recv(65536)
            assert received, "closed without an answer"
            answer += received
    refusal = segments(answer[answer.index(VT) + 1 : answer.index(FS)])
    assert refusal["MSA"][1] == "AR" and "ERR" in refusal
    assert "byte bound" in refusal["ERR"][-1] or "byte bound" in "|".join(refusal["ERR"])
