"""MLLP intake: HL7 v2 messages per second end to end, from a TCP sender into the store.

Run from the repository root:  .venv/bin/python bench/bench_mllp.py [--quick] [--database-url URL]

A ``zorgbrug mllp`` listener runs in its own process on a fresh store in a temporary data
directory (SQLite, or a fresh database on the PostgreSQL server of ``--database-url``). Senders
in this process each hold their own TCP connection and, as real MLLP senders do, send one framed
message and wait for its ACK before sending the next. Per kind of message, with 1 and with 4
senders at once: messages/s, latency p50/p95 from send to ACK, and the listener's CPU time per
message (less sensitive to other load on the machine than messages/s). For comparison, the
in-process conversion rate of the same messages (``adapters.convert(..., validate=False)``).

Every ACK must be ``AA`` for its own control id, and after the run the store must hold exactly
the Patients, Encounters, DiagnosticReports and Observations that were sent; otherwise the
bench stops with an error rather than print figures of refused messages.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from adapters import SourceInfo, convert  # noqa: E402
from gateway.context import RequestContext, operator_for  # noqa: E402
from gateway.organizations import register_organization  # noqa: E402
from gateway.service.console import ConsoleChange  # noqa: E402
from gateway.service.resources import ResourceService  # noqa: E402
from gateway.settings import Settings  # noqa: E402
from gateway.store.database import Database  # noqa: E402

FIXTURES = ROOT / "tests" / "adapters" / "fixtures" / "hl7v2"
ORG = "90000711"
VT, FS, CR = b"\x0b", b"\x1c", b"\r"
OBSERVATIONS_PER_ORU = 5  # OBX segments of nl-oru-r01-bsn.hl7
SENDER_COUNTS = (1, 4)


class BenchError(Exception):
    """The bench cannot give a figure worth printing (a refused message, a wrong count)."""


def _fixture(name: str) -> str:
    text = (FIXTURES / name).read_bytes().decode()
    return text.replace("\r\n", "\r").replace("\n", "\r")


def elfproef_bsns(start: int) -> Iterator[str]:
    """Distinct numbers from ``start`` on that pass the BSN eleven-test."""
    for number in itertools.count(start + 1):
        digits = f"{number:09d}"
        total = sum(int(d) * w for d, w in zip(digits[:8], range(9, 1, -1), strict=True))
        if (total - int(digits[8])) % 11 == 0:
            yield digits


@dataclass
class Sent:
    """What the messages made so far should have stored, once each is acknowledged AA."""

    patients: set[str] = field(default_factory=set)
    encounters: int = 0
    reports: int = 0

    def expected(self) -> dict[str, int]:
        return {
            "Patient": len(self.patients),
            "Encounter": self.encounters,
            "DiagnosticReport": self.reports,
            "Observation": OBSERVATIONS_PER_ORU * self.reports,
        }


class Messages:
    """Distinct messages built from the Dutch fixtures (thread-safe): each has its own control
    id, and an admission its own patient and visit, a lab result its own order number."""

    def __init__(self) -> None:
        self._adt = _fixture("nl-adt-a01-bsn.hl7")
        self._oru = _fixture("nl-oru-r01-bsn.hl7")
        self._bsns = elfproef_bsns(100_000_000)
        self._serial = itertools.count(1)
        self._lock = threading.Lock()
        self.sent = Sent()

    def new_bsn(self) -> str:
        with self._lock:
            return next(self._bsns)

    def admission(self) -> tuple[bytes, str]:
        """ADT^A01 of a new patient: Patient and Encounter."""
        with self._lock:
            n, bsn = next(self._serial), next(self._bsns)
            self.sent.patients.add(bsn)
            self.sent.encounters += 1
        control = f"BADT{n:09d}"
        text = (
            self._adt.replace("ADT000123", control)
            .replace("999911120", bsn)
            .replace("7654321", f"7{bsn}")
            .replace("V2024-0042", f"V-{n:09d}")
        )
        return text.encode(), control

    def lab_result(self, bsn: str | None = None) -> tuple[bytes, str]:
        """ORU^R01 with one OBR and five OBX for ``bsn``, or for a new patient."""
        with self._lock:
            n = next(self._serial)
            bsn = bsn or next(self._bsns)
            self.sent.patients.add(bsn)
            self.sent.reports += 1
        control = f"BORU{n:09d}"
        text = (
            self._oru.replace("LAB000987", control)
            .replace("LAB-2024-000555", f"LAB-{n:09d}")
            .replace("PL-2024-77", f"PL-{n:09d}")
            .replace("999911120", bsn)
            .replace("7654321", f"7{bsn}")
        )
        return text.encode(), control

    def unrecorded(self, kind: str, count: int) -> list[bytes]:
        """``count`` messages of ``kind`` for the in-process conversion only (not sent)."""
        bsns = elfproef_bsns(900_000_000)
        adt, oru = self._adt, self._oru
        if kind == "adt":
            return [
                adt.replace("999911120", next(bsns)).replace("V2024-0042", f"V-{n}").encode()
                for n in range(count)
            ]
        same = next(bsns)
        return [
            oru.replace("LAB-2024-000555", f"LAB-{n}")
            .replace("999911120", same if kind == "oru-same" else next(bsns))
            .encode()
            for n in range(count)
        ]


# -- the store and the listener ------------------------------------------------------------


@contextlib.contextmanager
def fresh_store(data_dir: Path, server_url: str | None) -> Iterator[tuple[str, str]]:
    """A database URL for a new, empty store and how to describe it; a PostgreSQL database is
    created on the server of ``server_url`` and dropped afterwards."""
    if server_url is None:
        yield f"sqlite:///{data_dir / 'zorgbrug.db'}", "SQLite (temporary data directory)"
        return
    import psycopg

    name = f"zorgbrug_bench_mllp_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    admin = server_url.replace("postgresql+psycopg://", "postgresql://", 1)

    def execute(statement: str) -> None:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(statement)  # type: ignore[arg-type]

    execute(f'CREATE DATABASE "{name}"')
    try:
        yield admin.rsplit("/", 1)[0] + f"/{name}", f"PostgreSQL, database {name} (dropped after)"
    finally:
        execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def with_service(data_dir: Path, database_url: str, work: Callable[[ResourceService], Any]) -> Any:
    """Open the store (migrated), run ``work(service)`` to completion, close the store."""

    async def run() -> Any:
        db = Database(database_url, threads=1)
        try:
            await db.migrate()
            service = ResourceService(db, Settings(data_dir=data_dir, database_url=database_url))
            await service.start()
            return await work(service)
        finally:
            await db.dispose()

    return asyncio.run(run())


def register_sender(data_dir: Path, database_url: str) -> None:
    """Initialise the store and register the sending organisation, as ``zorgbrug orgs add``
    does."""
    with_service(
        data_dir,
        database_url,
        lambda service: register_organization(
            service,
            ura=ORG,
            name="Bench Ziekenhuis",
            change=ConsoleChange.of("admin-organization", ("bench",), "C"),
        ),
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def listener(data_dir: Path, database_url: str) -> Iterator[tuple[int, int]]:
    """A ``zorgbrug mllp`` process for ORG: (port, pid) once it is bound; it must end cleanly."""
    port = free_port()
    log_file = data_dir / "mllp.log"
    command = [sys.executable, "-m", "gateway.cli", "mllp", "--port", str(port), "--org", ORG]
    command += ["--data-dir", str(data_dir), "--database-url", database_url]
    with log_file.open("w") as stderr:
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
    try:
        assert process.stdout is not None
        banner = process.stdout.readline()
        if "MLLP listener" not in banner:
            raise BenchError(f"the listener did not start:\n{log_file.read_text()[-2000:]}")
        yield port, process.pid
    finally:
        process.terminate()
        try:
            code = process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            code = process.wait()
    if code != 0:
        raise BenchError(f"the listener ended with {code}:\n{log_file.read_text()[-2000:]}")


def stored_counts(data_dir: Path, database_url: str) -> dict[str, int]:
    """How many resources of each type the sending organisation has in the store, counted
    through the service layer as its operator."""
    ctx = RequestContext(actor=operator_for(ORG), base_url="urn:zorgbrug:bench")

    async def count(service: ResourceService) -> dict[str, int]:
        totals = {}
        for res_type in Sent().expected():
            found = await service.search(ctx, res_type, [("_summary", "count")])
            totals[res_type] = int(orjson.loads(found)["total"])
        return totals

    return with_service(data_dir, database_url, count)  # type: ignore[no-any-return]


def process_cpu_seconds(pid: int) -> float | None:
    """User plus system CPU time of a process (all its threads), from /proc; None elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- senders -------------------------------------------------------------------------------


def exchange(connection: socket.socket, message: bytes) -> bytes:
    """Send one framed message and read its framed answer (the ACK)."""
    connection.sendall(VT + message + FS + CR)
    answer = b""
    while not answer.endswith(FS + CR):
        chunk = connection.recv(65536)
        if not chunk:
            raise BenchError("the listener closed the connection without answering")
        answer += chunk
    return answer.removeprefix(VT).removesuffix(FS + CR)


def check_ack(ack: bytes, control: str) -> None:
    """Raise unless ``ack`` accepts (AA) the message with control id ``control``."""
    for segment in ack.split(CR):
        if segment.startswith(b"MSA|"):
            fields = segment.decode(errors="replace").split("|")
            if fields[1:3] == ["AA", control]:
                return
            break
    raise BenchError(f"message {control} was not accepted: {ack.decode(errors='replace')!r}")


@dataclass
class Run:
    """The outcome of senders sending until a deadline."""

    senders: int
    seconds: float
    latencies_ms: list[float]
    cpu_s: float | None

    @property
    def rate(self) -> float:
        return len(self.latencies_ms) / self.seconds

    def percentile(self, pct: int) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


def send_for(
    port: int, pid: int, senders: int, seconds: float, next_message: Callable[[], tuple[bytes, str]]
) -> Run:
    """``senders`` connections, each sending a message and awaiting its ACK before the next,
    for ``seconds``; raises BenchError on the first message not acknowledged AA."""
    latencies: list[list[float]] = [[] for _ in range(senders)]
    errors: list[BaseException] = []
    failed = threading.Event()
    start_line = threading.Barrier(senders + 1)
    deadline = 0.0

    def sender(index: int) -> None:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=60) as connection:
                connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                start_line.wait()
                while not failed.is_set() and time.perf_counter() < deadline:
                    message, control = next_message()
                    sent = time.perf_counter()
                    ack = exchange(connection, message)
                    latencies[index].append((time.perf_counter() - sent) * 1000)
                    check_ack(ack, control)
        except BaseException as error:  # handed to the main thread, which raises it
            errors.append(error)
            failed.set()
            with contextlib.suppress(threading.BrokenBarrierError):
                start_line.abort()

    threads = [threading.Thread(target=sender, args=(i,)) for i in range(senders)]
    for thread in threads:
        thread.start()
    cpu_before = process_cpu_seconds(pid)
    started = time.perf_counter()
    deadline = started + seconds
    with contextlib.suppress(threading.BrokenBarrierError):
        start_line.wait()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    cpu_after = process_cpu_seconds(pid)
    if errors:
        raise errors[0]
    cpu = None if cpu_before is None or cpu_after is None else cpu_after - cpu_before
    return Run(senders, elapsed, [ms for own in latencies for ms in own], cpu)


def convert_rate(messages: list[bytes], seconds: float) -> float:
    """Messages/s of ``adapters.convert`` (validate=False, as the listener calls it)."""
    source = SourceInfo(organization=ORG)
    for message in messages[:20]:
        convert("hl7v2", message, source, validate=False)
    count, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        for message in messages:
            convert("hl7v2", message, source, validate=False)
        count += len(messages)
    return count / elapsed


# -- main ----------------------------------------------------------------------------------


KINDS = {
    "adt": "ADT^A01, a new patient each (stores Patient + Encounter)",
    "oru-same": "ORU^R01, 1 OBR + 5 OBX, all for one patient (stores DiagnosticReport + 5 Obs.)",
    "oru-new": "ORU^R01, 1 OBR + 5 OBX, a new patient each (also stores the Patient)",
}


def message_source(messages: Messages, kind: str) -> Callable[[], tuple[bytes, str]]:
    if kind == "adt":
        return messages.admission
    if kind == "oru-new":
        return messages.lab_result
    bsn = messages.new_bsn()  # one patient per run, created by the run's first message
    return lambda: messages.lab_result(bsn)


def measure(
    port: int,
    pid: int,
    senders: int,
    source: Callable[[], tuple[bytes, str]],
    warmup: float,
    seconds: float,
) -> Run:
    """Warm up, then send for ``seconds`` with ``senders`` at once and print the figures."""
    send_for(port, pid, senders, warmup, source)
    run = send_for(port, pid, senders, seconds, source)
    count = len(run.latencies_ms)
    cpu = "n/a" if run.cpu_s is None else f"{1000 * run.cpu_s / count:5.1f} ms/msg"
    print(
        f"  {senders} sender{'s' if senders > 1 else ' '}: {run.rate:7,.1f} msg/s  "
        f"p50 {run.percentile(50):6.1f} ms  p95 {run.percentile(95):6.1f} ms  "
        f"listener CPU {cpu}  ({count} in {run.seconds:.1f} s)"
    )
    return run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short runs (noisier figures)")
    parser.add_argument(
        "--database-url",
        help="a PostgreSQL server (postgresql://user@host:port/db) to create a fresh database "
        "on; default: SQLite in a temporary data directory",
    )
    args = parser.parse_args(argv)
    seconds, warmup = (1.0, 0.3) if args.quick else (10.0, 2.0)

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    messages = Messages()
    try:
        with (
            tempfile.TemporaryDirectory(prefix="zorgbrug-bench-mllp-") as tmp,
            fresh_store(Path(tmp), args.database_url) as (database_url, described),
        ):
            data_dir = Path(tmp)
            print(
                f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average "
                f"{load:.2f} at start; store: {described}"
            )
            print(
                "Each sender: its own TCP connection, one message, wait for the ACK, next.\n"
                "Latency: send to ACK. Listener CPU: user + system time of the listener process "
                "per message\n(the database server's is not in it).\n"
            )
            register_sender(data_dir, database_url)
            with listener(data_dir, database_url) as (port, pid):
                # First messages pay for imports and caches in the listener.
                send_for(port, pid, 1, warmup, messages.admission)
                send_for(port, pid, 1, warmup, messages.lab_result)
                for kind, title in KINDS.items():
                    print(title)
                    runs = [
                        measure(port, pid, senders, message_source(messages, kind), warmup, seconds)
                        for senders in SENDER_COUNTS
                    ]
                    converted = convert_rate(
                        messages.unrecorded(kind, 200), 0.4 if args.quick else 3.0
                    )
                    ratios = ", ".join(
                        f"{run.rate / converted:.3f} ({run.senders})" for run in runs
                    )
                    print(
                        f"  convert only, in-process: {converted:8,.0f} msg/s "
                        f"({1000 / converted:.2f} ms); stored/converted (senders): {ratios}\n"
                    )
            expected = messages.sent.expected()
            stored = stored_counts(data_dir, database_url)
            if stored != expected:
                raise BenchError(f"the store holds {stored}, expected {expected}")
            print(
                "All ACKs were AA for their control id; the store holds what was sent: "
                + ", ".join(f"{n:,} {t}" for t, n in stored.items())
            )
    except BenchError as error:
        print(f"bench_mllp: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
