"""Delivery of notification Tasks to partner endpoints: at least once, de-duplicable, never lost.

Everything goes through public interfaces: ITI-65 pushes over HTTP to a real gateway (in-process
or ``zorgbrug serve`` as its own process), the ``zorgbrug`` CLI (``worker``, ``deliveries``) and
a real HTTP receiver standing in for the partner hospital's endpoint.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from itertools import pairwise
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from harness import (
    BACKENDS,
    SHARED_DATA,
    FreshDatabase,
    Hospital,
    LiveServer,
    SmartAuth,
    add_agreement,
    free_port,
    register_hospital,
    start_server,
)

from gateway.exchange.compose import provide_document_bundle

T = TypeVar("T")

REPO = Path(__file__).resolve().parents[3]
ZORGBRUG = [sys.executable, "-m", "gateway.cli"]
PDF = SHARED_DATA / "c-cda" / "unstructured" / "CDA_with_Embedded_PDF_1" / "C-CDA_R2_UD_sample.pdf"
URA_SYSTEM = "http://fhir.nl/fhir/NamingSystem/ura"
TASK_CODE_SYSTEM = "http://fhir.nl/fhir/NamingSystem/TaskCode"
SENDER, RECIPIENT = "90000401", "90000402"

# Short enough that retries, polls and expired leases take a fraction of a second.
FAST_DELIVERY = {
    "delivery_backoff_s": 0.05,
    "delivery_backoff_cap_s": 0.2,
    "delivery_poll_s": 0.05,
    "delivery_timeout_s": 2.0,
    "delivery_lease_s": 4.0,
}
DROP = "drop"  # the receiver keeps the notification but closes the connection unanswered


def as_environment(settings: dict[str, Any]) -> dict[str, str]:
    return {f"ZORGBRUG_{name.upper()}": str(value) for name, value in settings.items()}


def wait_until(
    what: str,
    condition: Callable[[], T | None],
    state: Callable[[], object],
    timeout_s: float = 60,
) -> T:
    """Poll ``condition`` until it holds; fail naming ``what`` and the last ``state`` seen."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"gave up after {timeout_s:.0f}s waiting until {what}; saw: {state()}")
        time.sleep(0.05)


# -- the partner's endpoint ------------------------------------------------------------------


@dataclass
class Arrival:
    """One POST the receiver got, and how it answered."""

    delivery_id: str
    idempotency_key: str | None
    body: dict[str, Any]
    answer: int | str
    started: float
    ended: float | None = None  # None while the answer is still being given

    @property
    def kept(self) -> bool:
        """Whether the receiver processed it (acknowledged, or acknowledgement lost)."""
        return self.answer == DROP or 200 <= int(self.answer) < 300


class Receiver:
    """A partner hospital's notification endpoint over real HTTP, recording every arrival.

    Its port is bound from the start but only listens after ``listen()``: until then the
    gateway's connections are refused. Each delivery id's arrivals are answered from
    ``script`` in turn, after that with ``answer``; every answer waits ``delay_s`` first.
    """

    def __init__(
        self, *, answer: int = 200, script: tuple[int | str, ...] = (), delay_s: float = 0.0
    ) -> None:
        self.answer = answer
        self.script = script
        self.delay_s = delay_s
        self._arrivals: list[Arrival] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                receiver._receive(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._http = ThreadingHTTPServer(("127.0.0.1", 0), Handler, bind_and_activate=False)
        # A worker sends up to 20 at once; the default backlog of 5 would reset connections.
        self._http.request_queue_size = 128
        self._http.server_bind()
        self.url = f"http://127.0.0.1:{self._http.server_address[1]}/fhir/notifications"
        self._thread: threading.Thread | None = None

    def listen(self) -> Receiver:
        self._http.server_activate()
        self._thread = threading.Thread(
            target=self._http.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def close(self) -> None:
        if self._thread is not None:
            self._http.shutdown()
        self._http.server_close()

    def arrivals(self) -> list[Arrival]:
        with self._lock:
            return list(self._arrivals)

    def kept_once_each(self) -> dict[str, Arrival]:
        """The kept notifications, de-duplicated by ``X-Zorgbrug-Delivery-Id`` (first wins)."""
        unique: dict[str, Arrival] = {}
        for arrival in self.arrivals():
            if arrival.kept:
                unique.setdefault(arrival.delivery_id, arrival)
        return unique

    def acknowledged_tasks(self) -> set[str]:
        return {a.body.get("id", "?") for a in self.arrivals() if a.answer == 200}

    def _receive(self, request: BaseHTTPRequestHandler) -> None:
        started = time.monotonic()
        body = json.loads(request.rfile.read(int(request.headers.get("Content-Length", 0))))
        delivery_id = request.headers.get("X-Zorgbrug-Delivery-Id", "")
        # Recorded before answering, so whatever the gateway does with the answer comes after.
        with self._lock:
            earlier = sum(a.delivery_id == delivery_id for a in self._arrivals)
            answer = self.script[earlier] if earlier < len(self.script) else self.answer
            arrival = Arrival(
                delivery_id, request.headers.get("Idempotency-Key"), body, answer, started
            )
            self._arrivals.append(arrival)
        time.sleep(self.delay_s)
        if answer == DROP:
            request.close_connection = True
        else:
            request.send_response(int(answer))
            request.send_header("Content-Length", "0")
            request.end_headers()
        arrival.ended = time.monotonic()


# -- submissions -----------------------------------------------------------------------------


def valid_bsns(count: int) -> list[str]:
    """``count`` distinct BSNs that pass the elfproef, so every submission has its own patient."""
    found: list[str] = []
    prefix = 20_000_000
    while len(found) < count:
        digits = f"{prefix:08d}"
        check = sum(weight * int(d) for weight, d in zip(range(9, 1, -1), digits, strict=True)) % 11
        if check < 10:
            found.append(digits + str(check))
        prefix += 1
    return found


@dataclass(frozen=True)
class Submission:
    """One ITI-65 push: its own document (the sample PDF, marked) for its own patient."""

    number: int
    bsn: str
    document_uid: str = field(default_factory=lambda: f"urn:uuid:{uuid.uuid4()}")
    set_uid: str = field(default_factory=lambda: f"urn:uuid:{uuid.uuid4()}")

    @property
    def content(self) -> bytes:
        return PDF.read_bytes() + f"\n% zorgbrug test submission {self.number}\n".encode()

    def bundle(self) -> dict[str, Any]:
        return provide_document_bundle(
            content=self.content,
            content_type="application/pdf",
            bsn=self.bsn,
            sender=SENDER,
            recipients=[RECIPIENT],
            type_code="18842-5",
            title=f"Ontslagbrief {self.number}",
            unique_id=self.document_uid,
            submission_id=self.set_uid,
        )


def submissions(count: int) -> list[Submission]:
    return [Submission(n, bsn) for n, bsn in enumerate(valid_bsns(count))]


def provide(fhir: httpx.Client, submission: Submission) -> str:
    """Push ``submission``; the id of its stored SubmissionSet List."""
    response = fhir.post("", json=submission.bundle())
    assert response.status_code == 200, f"submission {submission.number}: {response.text}"
    location = response.json()["entry"][0]["response"]["location"]
    assert location.startswith("List/"), f"the first entry answered {location}, not the List"
    return str(location.split("/")[1])


def assert_notifies_recipient(arrival: Arrival, list_id: str) -> None:
    """The delivered body is the pull-notification Task for ``list_id``, owned by the recipient."""
    task = arrival.body
    assert task.get("resourceType") == "Task", f"delivered a {task.get('resourceType')}, not a Task"
    codes = [(c.get("system"), c.get("code")) for c in task["code"]["coding"]]
    assert (TASK_CODE_SYSTEM, "pull-notification") in codes, f"Task.code is {codes}"
    assert task["owner"]["identifier"] == {"system": URA_SYSTEM, "value": RECIPIENT}, task["owner"]
    assert task["focus"]["reference"].endswith(f"List/{list_id}"), task["focus"]
    assert arrival.idempotency_key == arrival.delivery_id, "Idempotency-Key is not the delivery id"


# -- the CLI and gateway processes -----------------------------------------------------------


@dataclass(frozen=True)
class Store:
    """One deployment's store: every process on it shares the data dir (the master key)."""

    data_dir: Path
    database_url: str

    @classmethod
    def of(cls, server: LiveServer) -> Store:
        assert server.settings.database_url
        return cls(server.settings.data_dir, server.settings.database_url)

    @property
    def flags(self) -> list[str]:
        return ["--data-dir", str(self.data_dir), "--database-url", self.database_url]


def zorgbrug(store: Store, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*ZORGBRUG, *args, *store.flags],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )


def deliveries(store: Store, *, failed: bool = False) -> list[dict[str, Any]]:
    """``zorgbrug deliveries list --json`` (``--failed``: only the dead letters)."""
    listed = zorgbrug(store, "deliveries", "list", "--json", *(["--failed"] if failed else []))
    assert listed.returncode == 0, f"deliveries list failed: {listed.stderr}"
    rows: list[dict[str, Any]] = json.loads(listed.stdout)
    return rows


def all_delivered(store: Store, count: int) -> list[dict[str, Any]] | None:
    rows = deliveries(store)
    done = len(rows) == count and all(r["status"] == "delivered" for r in rows)
    return rows if done else None


def spawn(store: Store, log: Path, *args: str, **settings: Any) -> subprocess.Popen[bytes]:
    """A ``zorgbrug`` process on ``store``, its output in ``log`` (a pipe could fill up)."""
    with log.open("ab") as output:
        return subprocess.Popen(
            [*ZORGBRUG, *args, *store.flags],
            stdout=output,
            stderr=subprocess.STDOUT,
            cwd=REPO,
            env={**os.environ, **as_environment(settings)},
        )


class GatewayProcess:
    """``zorgbrug serve`` as a process of its own, so that it can be SIGKILLed."""

    def __init__(self, store: Store, log: Path, **settings: Any) -> None:
        self.log = log
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = spawn(store, log, "serve", "--port", str(self.port), **settings)
        wait_until(
            f"zorgbrug serve answers /readyz on port {self.port}",
            self._ready,
            lambda: self.log.read_text(errors="replace")[-2000:],
        )

    def _ready(self) -> bool:
        if self.process.poll() is not None:
            pytest.fail(f"zorgbrug serve exited: {self.log.read_text(errors='replace')[-2000:]}")
        try:
            return httpx.get(f"{self.url}/readyz", timeout=5).status_code == 200
        except httpx.TransportError:
            return False

    def client(self, hospital: Hospital) -> httpx.Client:
        return httpx.Client(
            base_url=f"{self.url}/fhir",
            headers={"Accept": "application/fhir+json"},
            auth=SmartAuth(hospital, f"{self.url}/oauth/token"),
            timeout=60,
        )

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)


def stop(process: subprocess.Popen[bytes]) -> int:
    """SIGTERM, then the exit status (SIGKILL if it does not stop in time)."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            return process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
    return process.wait(timeout=20)


# -- fixtures --------------------------------------------------------------------------------


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def cleanup() -> Iterator[contextlib.ExitStack]:
    """Teardown callbacks (receivers, processes, servers, databases), last registered first."""
    with contextlib.ExitStack() as stack:
        yield stack


def gateway(
    backend: str, tmp_path: Path, cleanup: contextlib.ExitStack, **settings: Any
) -> LiveServer:
    server, database = start_server(backend, tmp_path, **settings)
    cleanup.callback(database.drop)
    cleanup.callback(server.stop)
    return server


def receiver(cleanup: contextlib.ExitStack, **behaviour: Any) -> Receiver:
    endpoint = Receiver(**behaviour)
    cleanup.callback(endpoint.close)
    return endpoint


# -- the tests -------------------------------------------------------------------------------


def test_receiver_down_at_first_gets_each_notification_once_after_deduplication(
    backend: str, tmp_path: Path, cleanup: contextlib.ExitStack
) -> None:
    # A retry budget that outlasts the outage: this test is not about dead letters.
    server = gateway(backend, tmp_path, cleanup, **FAST_DELIVERY, delivery_max_attempts=1000)
    # Once it listens, it answers each notification 503 twice, then keeps it but loses the
    # acknowledgement (the connection drops unanswered), and only then acknowledges it.
    partner = receiver(cleanup, script=(503, 503, DROP))
    sender = server.hospital(SENDER, "Verzendend Ziekenhuis")
    server.hospital(RECIPIENT, "Ontvangend Ziekenhuis", endpoint=partner.url)
    server.agreement(SENDER, RECIPIENT)
    store = Store.of(server)
    pushed = submissions(4)
    with server.client(sender) as fhir:
        list_ids = [provide(fhir, submission) for submission in pushed]

    def refused_repeatedly() -> list[dict[str, Any]] | None:
        rows = deliveries(store)
        down = len(rows) == len(pushed) and all(
            r["status"] == "pending" and r["attempts"] >= 2 and "ConnectError" in r["last_error"]
            for r in rows
        )
        return rows if down else None

    rows = wait_until(
        "every delivery was tried at least twice against the refusing endpoint",
        refused_repeatedly,
        lambda: deliveries(store),
    )
    assert all(r["endpoint"] == partner.url and r["recipient_org"] == RECIPIENT for r in rows)
    assert partner.arrivals() == [], "a notification arrived while the endpoint was down"

    partner.listen()
    wait_until(
        "every notification was acknowledged",
        lambda: len({a.delivery_id for a in partner.arrivals() if a.answer == 200}) == len(pushed),
        lambda: [(a.delivery_id, a.answer) for a in partner.arrivals()],
    )
    rows = wait_until(
        "deliveries list shows every delivery delivered",
        lambda: all_delivered(store, len(pushed)),
        lambda: deliveries(store),
    )

    answers: defaultdict[str, list[int | str]] = defaultdict(list)
    for arrival in partner.arrivals():
        answers[arrival.delivery_id].append(arrival.answer)
    listed_ids = {r["delivery_id"] for r in rows}
    assert set(answers) == listed_ids, "arrivals under ids that deliveries list does not know"
    for delivery_id, seen in answers.items():
        assert seen == [503, 503, DROP, 200], (
            f"delivery {delivery_id} was answered {seen}: after its acknowledgement it must stop, "
            "and every failure before it must be retried"
        )

    once_each = partner.kept_once_each()
    assert len(once_each) == len(pushed)
    kept = [a for a in partner.arrivals() if a.kept]
    assert len(kept) == 2 * len(pushed), "each notification is kept twice (lost ack, then ack)"
    for arrival in kept:
        assert arrival.body == once_each[arrival.delivery_id].body, (
            f"a retry of {arrival.delivery_id} carried another body: de-duplication would lose it"
        )
    by_focus = {a.body["focus"]["reference"].split("/")[-1]: a for a in once_each.values()}
    assert sorted(by_focus) == sorted(list_ids), "not one notification per submission"
    for list_id, arrival in by_focus.items():
        assert_notifies_recipient(arrival, list_id)
    task_of = {r["delivery_id"]: r["task_id"] for r in rows}
    for delivery_id, arrival in once_each.items():
        assert arrival.body["id"] == task_of[delivery_id], "the body is not the listed Task"
    for row in rows:
        assert row["last_error"] is None and row["delivered_us"], row


def test_dead_letter_after_the_retry_budget_and_operator_retry(
    backend: str, tmp_path: Path, cleanup: contextlib.ExitStack
) -> None:
    server = gateway(backend, tmp_path, cleanup, **FAST_DELIVERY, delivery_max_attempts=3)
    partner = receiver(cleanup, answer=500).listen()
    sender = server.hospital(SENDER, "Verzendend Ziekenhuis")
    server.hospital(RECIPIENT, "Ontvangend Ziekenhuis", endpoint=partner.url)
    server.agreement(SENDER, RECIPIENT)
    store = Store.of(server)
    (submission,) = submissions(1)
    with server.client(sender) as fhir:
        list_id = provide(fhir, submission)

    (dead,) = wait_until(
        "the delivery is a dead letter (deliveries list --failed)",
        lambda: deliveries(store, failed=True),
        lambda: (deliveries(store), [a.answer for a in partner.arrivals()]),
    )
    assert dead["status"] == "failed" and dead["attempts"] == 3, dead
    assert dead["last_error"] == "HTTP 500", dead
    tries = partner.arrivals()
    assert [a.answer for a in tries] == [500, 500, 500], "not exactly the 3 attempts of the budget"
    assert {a.delivery_id for a in tries} == {dead["delivery_id"]}, "retries changed the id"
    listed = zorgbrug(store, "deliveries", "list", "--failed")
    assert listed.returncode == 0, listed.stderr
    assert dead["delivery_id"] in listed.stdout and "HTTP 500" in listed.stdout, listed.stdout

    partner.answer = 200
    retried = zorgbrug(store, "deliveries", "retry", dead["delivery_id"])
    assert retried.returncode == 0, retried.stderr
    assert f"delivery {dead['delivery_id']} queued again" in retried.stdout
    (row,) = wait_until(
        "the retried delivery is delivered",
        lambda: all_delivered(store, 1),
        lambda: (deliveries(store), [a.answer for a in partner.arrivals()]),
    )
    assert row["delivery_id"] == dead["delivery_id"] and row["attempts"] == 1, (
        f"retry gives a fresh budget under the same id: {row}"
    )
    last = partner.arrivals()[-1]
    assert [a.answer for a in partner.arrivals()] == [500, 500, 500, 200]
    assert last.delivery_id == dead["delivery_id"]
    assert_notifies_recipient(last, list_id)
    assert deliveries(store, failed=True) == []
    again = zorgbrug(store, "deliveries", "retry", dead["delivery_id"])
    assert again.returncode == 1 and "no failed delivery" in again.stderr, (
        f"retrying a delivered delivery must be refused: {again.returncode} {again.stderr}"
    )
    # Each attempt is in the audit trail, with its outcome; the operator's retry as well.
    report = zorgbrug(store, "audit", "report", "--format", "json")
    assert report.returncode == 0, report.stderr
    lines = json.loads(report.stdout)["events"]
    attempts = [line for line in lines if line["event"] == "delivery"]
    assert [a["outcome"] for a in attempts] == ["4", "4", "4", "0"], attempts
    assert {a["request_id"] for a in attempts} == {dead["delivery_id"]}
    assert all(a["data_holder"] == SENDER and a["organization"] == SENDER for a in attempts)
    assert all(a["patient"] == submission.bsn for a in attempts)
    assert any(line["event"] == "admin-organization" for line in lines)


PARTS = {"Patient", "List", "DocumentReference", "Binary", "Task"}


def stored_parts(fhir: httpx.Client, pushed: list[Submission]) -> dict[int, dict[str, str]]:
    """Per submission number, the id of each part of it the sender finds in the store.

    Every stored resource must belong to a known submission: a Binary no DocumentReference
    points at, or a Task about an unknown List, would itself be a half-stored submission.
    """

    def every(res_type: str, elements: str) -> list[dict[str, Any]]:
        found = fhir.get(f"/{res_type}", params={"_count": "1000", "_elements": elements})
        assert found.status_code == 200, found.text
        bundle = found.json()
        resources = [e["resource"] for e in bundle.get("entry", [])]
        assert bundle["total"] == len(resources), f"{res_type}: more than one page"
        return resources

    number_of = {s.document_uid: s.number for s in pushed}
    number_of |= {s.set_uid: s.number for s in pushed} | {s.bsn: s.number for s in pushed}
    parts: defaultdict[int, dict[str, str]] = defaultdict(dict)

    def add(number: int, res_type: str, res_id: str) -> None:
        assert res_type not in parts[number], f"submission {number} has two {res_type}s"
        parts[number][res_type] = res_id

    for patient in every("Patient", "identifier"):
        add(number_of[patient["identifier"][0]["value"]], "Patient", patient["id"])
    number_of_list = {}
    for submission_set in every("List", "identifier"):
        number = number_of[submission_set["identifier"][0]["value"]]
        number_of_list[f"List/{submission_set['id']}"] = number
        add(number, "List", submission_set["id"])
    number_of_binary = {}
    for document in every("DocumentReference", "masterIdentifier,content"):
        number = number_of[document["masterIdentifier"]["value"]]
        number_of_binary[document["content"][0]["attachment"]["url"]] = number
        add(number, "DocumentReference", document["id"])
    for binary in every("Binary", "id"):
        reference = f"Binary/{binary['id']}"
        assert reference in number_of_binary, f"{reference} is stored without its document"
        add(number_of_binary[reference], "Binary", binary["id"])
    for task in every("Task", "focus"):
        focus = task["focus"]["reference"]
        assert focus in number_of_list, f"Task/{task['id']} notifies of {focus}, not stored"
        add(number_of_list[focus], "Task", task["id"])
    return dict(parts)


def test_sigkill_mid_burst_loses_nothing_and_half_stores_nothing(
    backend: str, tmp_path: Path, cleanup: contextlib.ExitStack
) -> None:
    database = FreshDatabase(backend, tmp_path)
    cleanup.callback(database.drop)
    store = Store(tmp_path, database.url)
    partner = receiver(cleanup).listen()
    sender = register_hospital(database.url, tmp_path, SENDER, "Verzendend Ziekenhuis")
    register_hospital(
        database.url, tmp_path, RECIPIENT, "Ontvangend Ziekenhuis", endpoint=partner.url
    )
    add_agreement(database.url, tmp_path, (SENDER, RECIPIENT), ("treatment",))
    first = GatewayProcess(store, tmp_path / "serve-1.log", **FAST_DELIVERY)
    cleanup.callback(first.kill)

    pushed = submissions(200)
    queue = iter(pushed)
    outcome: dict[int, str] = {}  # "acknowledged", or what went wrong
    lock, killed = threading.Lock(), threading.Event()

    def push_until_killed() -> None:
        with first.client(sender) as fhir:
            while not killed.is_set():
                with lock:
                    submission = next(queue, None)
                if submission is None:
                    return
                try:
                    response = fhir.post("", json=submission.bundle())
                except httpx.TransportError as exc:
                    result = f"no answer ({type(exc).__name__})"
                else:
                    ok = response.status_code == 200
                    result = "acknowledged" if ok else f"answered {response.text}"
                with lock:
                    outcome[submission.number] = result

    def acknowledged() -> list[int]:
        with lock:
            return sorted(n for n, result in outcome.items() if result == "acknowledged")

    clients = [threading.Thread(target=push_until_killed) for _ in range(4)]
    for client in clients:
        client.start()
    wait_until("60 submissions were acknowledged", lambda: len(acknowledged()) >= 60, outcome.copy)
    first.kill()
    killed.set()
    for client in clients:
        client.join(timeout=60)
        assert not client.is_alive(), "a client thread hangs after the server was killed"
    acked = set(acknowledged())
    assert len(acked) < len(pushed), "the burst ended before the kill: nothing was interrupted"
    answered_otherwise = {n: r for n, r in outcome.items() if r.startswith("answered")}
    assert answered_otherwise == {}, f"the gateway refused valid submissions: {answered_otherwise}"

    second = GatewayProcess(store, tmp_path / "serve-2.log", **FAST_DELIVERY)
    cleanup.callback(lambda: stop(second.process))
    with second.client(sender) as fhir:
        parts = stored_parts(fhir, pushed)
        for submission in pushed:
            has = set(parts.get(submission.number, {}))
            state = outcome.get(submission.number, "not sent")
            assert has in (set(), PARTS), (
                f"submission {submission.number} ({state}) is half-stored: it has {sorted(has)} "
                f"but not {sorted(PARTS - has)}"
            )
            assert submission.number not in acked or has == PARTS, (
                f"acknowledged submission {submission.number} was lost: it has only {sorted(has)}"
            )
        for number in sorted(acked):
            binary = fhir.get(
                f"/Binary/{parts[number]['Binary']}", headers={"Accept": "application/pdf"}
            )
            assert binary.status_code == 200, binary.text
            assert binary.content == pushed[number].content, f"submission {number}'s content"

    tasks = {p["Task"]: number for number, p in parts.items()}
    wait_until(
        "the receiver acknowledged the notification of every stored submission",
        lambda: partner.acknowledged_tasks() >= set(tasks),
        lambda: sorted(set(tasks) - partner.acknowledged_tasks()),
    )
    rows = wait_until(
        "deliveries list shows every delivery delivered",
        lambda: all_delivered(store, len(tasks)),
        lambda: Counter(r["status"] for r in deliveries(store)),
    )
    assert sorted(r["task_id"] for r in rows) == sorted(tasks), "not one delivery per Task"
    ids_per_task: defaultdict[str, set[str]] = defaultdict(set)
    for delivery_id, arrival in partner.kept_once_each().items():
        ids_per_task[arrival.body["id"]].add(delivery_id)
    for task_id, number in tasks.items():
        assert len(ids_per_task[task_id]) == 1, (
            f"submission {number}'s Task arrived under {len(ids_per_task[task_id])} delivery ids"
        )
    for arrival in partner.kept_once_each().values():
        task_id = arrival.body["id"]
        assert task_id in tasks, f"a notification of Task/{task_id} that is not stored arrived"
        assert_notifies_recipient(arrival, parts[tasks[task_id]]["List"])


def test_two_worker_processes_never_deliver_the_same_item_concurrently(
    backend: str, tmp_path: Path, cleanup: contextlib.ExitStack
) -> None:
    server = gateway(backend, tmp_path, cleanup, **FAST_DELIVERY, delivery_worker=False)
    partner = receiver(cleanup, delay_s=0.08).listen()
    sender = server.hospital(SENDER, "Verzendend Ziekenhuis")
    server.hospital(RECIPIENT, "Ontvangend Ziekenhuis", endpoint=partner.url)
    server.agreement(SENDER, RECIPIENT)
    store = Store.of(server)
    pushed = submissions(60)
    with server.client(sender) as fhir:
        list_ids = [provide(fhir, submission) for submission in pushed]
    queued = deliveries(store)
    assert len(queued) == len(pushed) and {r["status"] for r in queued} == {"pending"}, queued
    assert partner.arrivals() == [], "a notification left without a worker"

    workers = [
        spawn(store, tmp_path / f"worker-{n}.log", "worker", **FAST_DELIVERY) for n in (1, 2)
    ]
    for worker in workers:
        cleanup.callback(stop, worker)
    wait_until(
        "every queued notification was acknowledged",
        lambda: len(partner.kept_once_each()) == len(pushed),
        lambda: (len(partner.kept_once_each()), [w.poll() for w in workers]),
    )
    rows = wait_until(
        "deliveries list shows every delivery delivered",
        lambda: all_delivered(store, len(pushed)),
        lambda: Counter(r["status"] for r in deliveries(store)),
    )
    for n, worker in enumerate(workers, 1):
        assert stop(worker) == 0, (tmp_path / f"worker-{n}.log").read_text(errors="replace")

    arrivals = partner.arrivals()
    per_delivery: defaultdict[str, list[Arrival]] = defaultdict(list)
    for arrival in arrivals:
        per_delivery[arrival.delivery_id].append(arrival)
    for delivery_id, same in per_delivery.items():
        same.sort(key=lambda a: a.started)
        for before, after in pairwise(same):
            assert before.ended is not None and after.started >= before.ended, (
                f"delivery {delivery_id} was being delivered twice at once: one attempt from "
                f"{before.started:.3f} to {before.ended}, the next from {after.started:.3f}"
            )
    repeated = {d: len(same) for d, same in per_delivery.items() if len(same) > 1}
    assert repeated == {}, f"without any failure, deliveries arrived more than once: {repeated}"
    assert all(a.answer == 200 for a in arrivals)
    assert set(per_delivery) == {r["delivery_id"] for r in rows}
    assert all(r["attempts"] == 1 for r in rows), [r for r in rows if r["attempts"] != 1]
    focus = sorted(a.body["focus"]["reference"].split("/")[-1] for a in arrivals)
    assert focus == sorted(list_ids), "not one notification per submission"
    # Which worker sent what is not visible from outside (no worker name goes out); run by hand
    # with INFO logging, each worker delivered 20-40 of the 60.


class TricklingReceiver:
    """An endpoint that answers 200 but sends its body a byte at a time, slower than any lease:
    each read is quick, the whole answer is not."""

    def __init__(self, byte_every_s: float, size: int) -> None:
        self.posts: list[str] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                owner.posts.append(self.headers.get("X-Zorgbrug-Delivery-Id", ""))
                self.send_response(200)
                self.send_header("Content-Length", str(size))
                self.end_headers()
                with contextlib.suppress(OSError):
                    for _ in range(size):
                        time.sleep(byte_every_s)
                        self.wfile.write(b"x")
                        self.wfile.flush()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._http.server_address[1]}/notify"
        threading.Thread(target=self._http.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._http.shutdown()
        self._http.server_close()


def test_an_attempt_never_outlives_its_lease_even_when_the_answer_trickles_in(
    backend: str, tmp_path: Path, cleanup: contextlib.ExitStack
) -> None:
    settings = FAST_DELIVERY | {
        "delivery_timeout_s": 1.0,
        "delivery_lease_s": 2.0,
        "delivery_max_attempts": 100,
    }
    server = gateway(backend, tmp_path, cleanup, **settings, delivery_worker=False)
    partner = TricklingReceiver(byte_every_s=0.5, size=8)  # 4 s for the whole answer
    cleanup.callback(partner.close)
    sender = server.hospital(SENDER, "Verzendend Ziekenhuis")
    server.hospital(RECIPIENT, "Ontvangend Ziekenhuis", endpoint=partner.url)
    server.agreement(SENDER, RECIPIENT)
    store = Store.of(server)
    with server.client(sender) as fhir:
        provide(fhir, submissions(1)[0])
    workers = [spawn(store, tmp_path / f"w{n}.log", "worker", **settings) for n in (1, 2)]
    for worker in workers:
        cleanup.callback(stop, worker)
    wait_until("several attempts were made", lambda: len(partner.posts) >= 3, lambda: partner.posts)
    for worker in workers:
        stop(worker)
    [row] = deliveries(store)
    # Every POST the partner saw is an attempt the outbox counted: none ran unaccounted for
    # beside another, and none that timed out was taken for an acknowledgement.
    assert row["status"] == "pending" and "no answer within" in row["last_error"], row
    assert row["attempts"] == len(partner.posts), (row, partner.posts)
