"""Zorgbrug benchmark (``make bench``): the gateway against a floor app, on SQLite and PostgreSQL.

For each backend, on a fresh store:

* creates/s  POST /fhir/Patient (~1 KB nl-core Patient, unique BSN per request)
* reads/s    GET /fhir/Patient/{id}, ids at random among ~60,000 existing Patients
* search     p50/p95 latency of typical queries on a store of 100,000 resources, one at a time

Throughput is measured with wrk (Lua scripts in bench/wrk/) against the gateway and against the
floor (bench/floor_app.py: validate + one INSERT / one SELECT by key), each served by uvicorn
with the same flags in its own process, one at a time. Creates alternate while every store is
empty (gateway, floors, floors reversed, gateway) and reads once the stores are filled
(gateway, floor, floor, gateway), each figure over its two runs, so that the machine's drift
moves both alike. Results: a table on stdout and bench/results/latest.json.

Usage: python bench/run.py [--backends sqlite,postgres] [--duration 12] [--quick] [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import json
import math
import multiprocessing
import os
import platform
import queue
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import orjson

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
sys.path.insert(0, str(BENCH_DIR))

import fhirdata  # noqa: E402
import floor_app  # noqa: E402

DEFAULT_PG_DSN = "postgresql://postgres@127.0.0.1:5432/test"
PG_DB_PREFIX = "zorgbrug_bench_"

# Targets: ratio of gateway to floor for throughput, milliseconds for search p50.
TARGET_READS = 0.7
TARGET_CREATES = 0.5
TARGET_SEARCH_P50_MS = 10.0

# The same server for both apps: one uvicorn worker with these flags.
UVICORN_FLAGS = [
    "--host",
    "127.0.0.1",
    "--workers",
    "1",
    "--loop",
    "uvloop",
    "--http",
    "httptools",
    "--no-access-log",
    "--log-level",
    "warning",
]


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# -- results -------------------------------------------------------------------------------


@dataclass
class Row:
    backend: str
    metric: str
    gateway: float | None
    floor: float | None = None  # the faster floor variant: the bar the gateway is held to
    target: str = ""
    met: bool | None = None
    floors: dict[str, float] = field(default_factory=dict)  # every floor variant measured

    @property
    def ratio(self) -> float | None:
        if self.gateway is None or not self.floor:
            return None
        return self.gateway / self.floor


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def warn(self, message: str) -> None:
        self.warnings.append(message)
        log(f"WARNING: {message}")


def throughput_row(
    backend: str, metric: str, gateway: float, floors: dict[str, float], target: float
) -> Row:
    best = max(floors.values()) if floors else None
    row = Row(backend, metric, gateway, best, f">={target}", floors=floors)
    row.met = None if row.ratio is None else row.ratio >= target
    return row


def _fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def render_table(report: Report) -> str:
    header = ("backend", "metric", "gateway", "floor", "ratio", "target", "met", "floor variants")
    lines = []
    for row in report.rows:
        met = "" if row.met is None else ("yes" if row.met else "NO")
        variants = " ".join(f"{k}={v:.1f}" for k, v in row.floors.items())
        lines.append(
            (
                row.backend,
                row.metric,
                _fmt(row.gateway),
                _fmt(row.floor),
                _fmt(row.ratio, 2),
                row.target or "-",
                met,
                variants,
            )
        )
    widths = [max(len(str(x[i])) for x in [header, *lines]) for i in range(len(header))]
    out = []
    for n, line in enumerate([header, *lines]):
        cells = [
            str(cell).ljust(widths[i]) if i in (0, 1, 7) else str(cell).rjust(widths[i])
            for i, cell in enumerate(line)
        ]
        out.append("  ".join(cells).rstrip())
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    for backend, reason in report.skipped.items():
        out.append(f"{backend:<8}  skipped: {reason}")
    out.append("")
    out.append(
        "floor = the faster floor variant (async: SQLAlchemy asyncio on aiosqlite/asyncpg; sync: "
        "SQLAlchemy on pysqlite/psycopg,"
    )
    out.append(
        "one worker-thread hop per request); ratio = gateway / floor; creates: gateway, floors, "
        "floors reversed, gateway;"
    )
    out.append("reads: gateway, floor, floor, gateway; each figure over its two runs;")
    out.append("search: sequential requests on the seeded store")
    out.extend(report.notes)
    return "\n".join(out)


# -- servers -------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """One uvicorn process serving ``app`` (a factory), started and stopped by the benchmark."""

    def __init__(
        self, name: str, app: str, env: dict[str, str], log_path: Path, cwd: Path = ROOT
    ) -> None:
        self.name = name
        self.app = app
        self.cwd = cwd
        self.port = free_port()
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("ZORGBRUG_")} | env
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "uvicorn",
            self.app,
            "--factory",
            "--app-dir",
            str(BENCH_DIR),
            "--port",
            str(self.port),
            *UVICORN_FLAGS,
        ]

    def start(self, timeout: float = 90) -> None:
        self.log_file = self.log_path.open("ab")
        self.process = subprocess.Popen(
            self.command(), cwd=self.cwd, env=self.env, stdout=self.log_file, stderr=self.log_file
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited at startup:\n{self.log_tail()}")
            try:
                status, _, _ = http_request(self.url, "GET", "/healthz", timeout=2)
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} did not become healthy in {timeout}s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
        self.log_file.close()

    def __enter__(self) -> Server:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()


def http_request(
    base: str,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 60,
) -> tuple[int, dict[str, str], bytes]:
    host, port = base.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        conn.request(method, path, body, headers or {})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


# -- authentication ------------------------------------------------------------------------


class Auth:
    """Bearer tokens for a gateway that answers 401: obtained as a demo hospital's integration.

    ``zorgbrug demo`` registers the demo organisations and clients (and their keys in the data
    dir); ``zorgbrug demo-token`` gets a token from the running gateway. Tokens live 5 minutes,
    so they are renewed every ``REFRESH_AFTER`` seconds.
    """

    REFRESH_AFTER = 120.0

    def __init__(self, server: Server, cwd: Path, data_dir: Path, database_url: str, org: str):
        self.server = server
        self.cwd = cwd
        self.common = ["--data-dir", str(data_dir), "--database-url", database_url]
        self.org = org
        self.required = False
        self.token = ""
        self.obtained = 0.0
        self.lock = threading.Lock()

    def _cli(self, *args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "gateway.cli", *args, *self.common],
            cwd=self.cwd,
            env=self.server.env,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"zorgbrug {args[0]} failed: {done.stdout[-500:]}{done.stderr[-1500:]}"
            )
        return done.stdout

    def enable(self) -> None:
        log(f"  the gateway wants a bearer token: zorgbrug demo, then demo-token --org {self.org}")
        self._cli("demo")
        self.required = True
        self.headers()

    def headers(self) -> dict[str, str]:
        if not self.required:
            return {}
        with self.lock:
            if time.monotonic() - self.obtained > self.REFRESH_AFTER:
                out = self._cli("demo-token", "--org", self.org, "--url", self.server.url)
                self.token = [line for line in out.splitlines() if line.strip()][-1].strip()
                self.obtained = time.monotonic()
            return {"Authorization": f"Bearer {self.token}"}


# -- load generation -----------------------------------------------------------------------


@dataclass
class LoadResult:
    requests: int
    seconds: float
    errors: int
    latency_p50_ms: float | None
    latency_p99_ms: float | None
    generator: str
    server_cpu_s: float | None = None  # CPU time (user + system, all threads) of the server
    foreign_cpu_s: float | None = None  # CPU time of processes outside the benchmark meanwhile

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def cpu_ms_per_request(self) -> float | None:
        if self.server_cpu_s is None or not self.requests:
            return None
        return 1000 * self.server_cpu_s / self.requests


def pooled(results: list[LoadResult]) -> LoadResult:
    """Several runs of one measurement as one: requests, seconds and CPU added up (the rate is
    over all of them), the median of their p50 latencies and the highest p99."""
    p50s = [r.latency_p50_ms for r in results if r.latency_p50_ms is not None]
    p99s = [r.latency_p99_ms for r in results if r.latency_p99_ms is not None]
    cpu = [r.server_cpu_s for r in results]
    foreign = [r.foreign_cpu_s for r in results]
    return LoadResult(
        requests=sum(r.requests for r in results),
        seconds=sum(r.seconds for r in results),
        errors=sum(r.errors for r in results),
        latency_p50_ms=statistics.median(p50s) if p50s else None,
        latency_p99_ms=max(p99s) if p99s else None,
        generator=results[0].generator,
        server_cpu_s=None if None in cpu else round(sum(c or 0.0 for c in cpu), 2),
        foreign_cpu_s=None if None in foreign else round(sum(f or 0.0 for f in foreign), 2),
    )


def cpu_by_process() -> dict[int, tuple[str, float]]:
    """CPU seconds so far of every process: pid -> (command name, user + system seconds)."""
    ticks = os.sysconf("SC_CLK_TCK")
    usage: dict[int, tuple[str, float]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            text = (entry / "stat").read_text()
        except OSError:
            continue
        name = text[text.find("(") + 1 : text.rfind(")")]
        fields = text.rsplit(")", 1)[1].split()
        usage[int(entry.name)] = (name, (int(fields[11]) + int(fields[12])) / ticks)
    return usage


# Processes that are part of a measurement: the load generator and the database server.
WORKLOAD_COMMANDS = ("wrk", "postgres", "py-spy")


def foreign_cpu(
    before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]], own: set[int]
) -> tuple[float, list[str]]:
    """CPU seconds used between two snapshots by processes outside the benchmark, and the top."""
    used: list[tuple[float, str]] = []
    for pid, (name, seconds) in after.items():
        if pid in own or name.startswith(WORKLOAD_COMMANDS):
            continue
        delta = seconds - before.get(pid, (name, 0.0))[1]
        if delta > 0.05:
            used.append((delta, f"{pid} {name}"))
    used.sort(reverse=True)
    return sum(d for d, _ in used), [f"{who} ({d:.1f}s)" for d, who in used[:3]]


def process_cpu_seconds(pid: int) -> float | None:
    """User plus system CPU time of a process (every thread), from /proc; None elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class LoadGenerator:
    """wrk with the Lua scripts of bench/wrk/, or a (slower) Python fallback."""

    def __init__(self, kind: str, threads: int, connections: int, workdir: Path) -> None:
        self.kind = kind
        self.threads = threads
        self.connections = connections
        self.workdir = workdir

    def _script(self, name: str) -> Path:
        path = self.workdir / f"{name}.lua"
        if not path.exists():
            common = (BENCH_DIR / "wrk" / "common.lua").read_text()
            path.write_text(common + "\n" + (BENCH_DIR / "wrk" / f"{name}.lua").read_text())
        return path

    def create_patients(
        self, url: str, seconds: float, run: int, headers: dict[str, str]
    ) -> LoadResult:
        if self.kind == "wrk":
            return self._wrk(url, "create_patient", seconds, [str(run)], headers)
        return _python_load(
            url, "create", seconds, self.threads, self.connections, run, None, headers
        )

    def read_patients(
        self, url: str, seconds: float, ids_file: Path, headers: dict[str, str]
    ) -> LoadResult:
        if self.kind == "wrk":
            return self._wrk(url, "read_ids", seconds, [str(ids_file)], headers)
        return _python_load(
            url, "read", seconds, self.threads, self.connections, 0, ids_file, headers
        )

    def _wrk(
        self, url: str, script: str, seconds: float, args: list[str], headers: dict[str, str]
    ) -> LoadResult:
        extra = [arg for k, v in headers.items() for arg in ("-H", f"{k}: {v}")]
        command = [
            "wrk",
            "-t",
            str(self.threads),
            "-c",
            str(self.connections),
            "-d",
            f"{max(1, round(seconds))}s",
            "--timeout",
            "30s",
            "-s",
            str(self._script(script)),
            *extra,
            url,
            "--",
            *args,
        ]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        summary = next(
            (
                json.loads(line.removeprefix("WRKJSON "))
                for line in done.stdout.splitlines()
                if line.startswith("WRKJSON ")
            ),
            None,
        )
        if done.returncode != 0 or summary is None:
            raise RuntimeError(f"wrk failed ({done.returncode}): {done.stdout}\n{done.stderr}")
        errors = sum(
            summary[k]
            for k in ("status_errors", "connect_errors", "read_errors", "write_errors", "timeouts")
        )
        return LoadResult(
            summary["requests"],
            summary["duration_us"] / 1e6,
            errors,
            summary["latency_p50_us"] / 1000,
            summary["latency_p99_us"] / 1000,
            "wrk",
        )


def _python_load(
    url: str,
    kind: str,
    seconds: float,
    processes: int,
    connections: int,
    run: int,
    ids_file: Path | None,
    headers: dict[str, str],
) -> LoadResult:
    """The fallback: ``processes`` processes of asyncio keep-alive connections."""
    per_process = [
        connections // processes + (i < connections % processes) for i in range(processes)
    ]
    context = multiprocessing.get_context("spawn")
    with context.Pool(processes) as pool:
        parts = pool.starmap(
            _python_load_worker,
            [
                (url, kind, seconds, n, run * 10 + i + 1, ids_file, headers)
                for i, n in enumerate(per_process)
            ],
        )
    latencies = sorted(x for part in parts for x in part[2])
    return LoadResult(
        sum(p[0] for p in parts),
        seconds,
        sum(p[1] for p in parts),
        _percentile(latencies, 50),
        _percentile(latencies, 99),
        "python",
    )


def _python_load_worker(
    url: str,
    kind: str,
    seconds: float,
    connections: int,
    seed: int,
    ids_file: Path | None,
    headers: dict[str, str],
) -> tuple[int, int, list[float]]:
    host, port = url.removeprefix("http://").split(":")
    extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items()).encode()
    rng = random.Random(seed)
    ids = ids_file.read_text().split() if ids_file else []
    bsns = fhirdata.bsn_stream(seed * 1_000_000 % 100_000_000)

    def next_request() -> bytes:
        if kind == "create":
            body = orjson.dumps(fhirdata.patient(rng, next(bsns)))
            return (
                b"POST /fhir/Patient HTTP/1.1\r\nHost: %s\r\nContent-Type: application/fhir+json\r\n"
                b"%sContent-Length: %d\r\n\r\n%s" % (host.encode(), extra, len(body), body)
            )
        return b"GET /fhir/Patient/%s HTTP/1.1\r\nHost: %s\r\n%s\r\n" % (
            rng.choice(ids).encode(),
            host.encode(),
            extra,
        )

    async def connection(deadline: float, stats: list[Any]) -> None:
        reader, writer = await asyncio.open_connection(host, int(port))
        while time.monotonic() < deadline:
            started = time.perf_counter()
            writer.write(next_request())
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            await reader.readexactly(length)
            stats[2].append((time.perf_counter() - started) * 1000)
            stats[0] += 1
            if status >= 400:
                stats[1] += 1
        writer.close()

    async def main() -> list[Any]:
        stats: list[Any] = [0, 0, []]
        deadline = time.monotonic() + seconds
        await asyncio.gather(*(connection(deadline, stats) for _ in range(connections)))
        return stats

    requests, errors, latencies = asyncio.run(main())
    return requests, errors, latencies


def _percentile(sorted_values: list[float], pct: float) -> float | None:
    if not sorted_values:
        return None
    k = (len(sorted_values) - 1) * pct / 100
    lo, hi = math.floor(k), math.ceil(k)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (k - lo)


def choose_load_generator(requested: str, report: Report) -> str:
    if requested in ("auto", "wrk") and shutil.which("wrk"):
        return "wrk"
    if requested == "wrk":
        raise SystemExit("wrk is not installed (apt-get install -y wrk)")
    if requested == "auto":
        report.warn(
            "wrk not found: falling back to the Python load generator, which on this machine is "
            "likely the bottleneck; absolute rates are too low and ratios compressed towards 1. "
            "Install wrk (apt-get install -y wrk) for meaningful numbers."
        )
    return "python"


# -- profiling (optional) ------------------------------------------------------------------


class Profiler:
    """py-spy record of a server during one extra (unmeasured) load run.

    Raw (collapsed-stack) profiles go to bench/results/profile-<backend>-<what>.txt (open them
    with speedscope or flamegraph.pl); summaries of the hottest frames go into latest.json.
    """

    def __init__(self, enabled: bool, report: Report) -> None:
        self.binary = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        self.enabled = enabled and Path(self.binary).exists()
        if enabled and not self.enabled:
            report.warn("--profile needs py-spy (pip install py-spy); profiling skipped")

    @contextlib.contextmanager
    def record(self, pid: int, seconds: float, out: Path) -> Iterator[None]:
        if not self.enabled:
            yield
            return
        command = [
            self.binary,
            "record",
            "-p",
            str(pid),
            "-d",
            str(max(1, round(seconds))),
            "-r",
            "100",
            "--gil",  # only the thread holding the GIL: where the server's Python CPU goes
            "--nonblocking",
            "-f",
            "raw",
            "-o",
            str(out),
        ]
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(0.5)
        try:
            yield
        finally:
            try:
                process.wait(seconds + 30)
            except subprocess.TimeoutExpired:
                process.kill()


def summarise_profile(path: Path, top: int = 25) -> dict[str, list[tuple[str, float]]]:
    """Inclusive and self shares of sampled frames in a py-spy raw (collapsed) profile."""
    own: dict[str, int] = {}
    inclusive: dict[str, int] = {}
    total = 0
    if not path.exists():
        return {}
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = stack.split(";")
        own[frames[-1]] = own.get(frames[-1], 0) + count
        for frame in set(frames):
            inclusive[frame] = inclusive.get(frame, 0) + count
    if not total:
        return {}

    def ranked(counts: dict[str, int]) -> list[tuple[str, float]]:
        best = sorted(counts.items(), key=lambda kv: -kv[1])[:top]
        return [(frame, round(100 * n / total, 1)) for frame, n in best]

    gateway_frames = {k: v for k, v in inclusive.items() if "gateway/" in k}
    return {
        "samples": [("total", total)],  # type: ignore[list-item]
        "inclusive_gateway": ranked(gateway_frames),
        "inclusive": ranked(inclusive),
        "self": ranked(own),
    }


# -- stores --------------------------------------------------------------------------------


@dataclass
class Store:
    backend: str
    gateway_url: str  # as the gateway is configured: a plain URL, it picks its drivers
    floor_urls: dict[str, str]  # floor variant -> SQLAlchemy URL (its driver picks the variant)


@contextlib.contextmanager
def sqlite_stores(tmp: Path, floors: list[str]) -> Iterator[Store]:
    for name in ["gateway", *floors]:
        (tmp / f"sqlite-{name}").mkdir()
    drivers = {"async": "sqlite+aiosqlite", "sync": "sqlite"}
    yield Store(
        "sqlite",
        f"sqlite:///{tmp / 'sqlite-gateway' / 'zorgbrug.db'}",
        {f: f"{drivers[f]}:///{tmp / f'sqlite-{f}' / 'floor.db'}" for f in floors},
    )


async def _pg_execute(dsn: str, statements: list[str]) -> list[Any]:
    import asyncpg

    conn = await asyncpg.connect(dsn, timeout=5)
    try:
        return [await conn.fetch(statement) for statement in statements]
    finally:
        await conn.close()


def _pg_url(dsn: str, database: str) -> str:
    base = dsn.rsplit("/", 1)[0]
    return f"{base}/{database}"


def pg_unreachable(dsn: str) -> str | None:
    try:
        asyncio.run(asyncio.wait_for(_pg_execute(dsn, ["SELECT 1"]), 10))
    except Exception as exc:  # any failure means: skip PostgreSQL with the reason
        return f"PostgreSQL at {dsn.split('@')[-1]} unreachable: {type(exc).__name__}: {exc}"
    return None


def drop_stale_pg_databases(dsn: str) -> None:
    """Drop databases left by benchmark runs that were killed (their process is gone)."""
    (rows,) = asyncio.run(
        _pg_execute(dsn, [f"SELECT datname FROM pg_database WHERE datname LIKE '{PG_DB_PREFIX}%'"])
    )
    for (name,) in rows:
        pid_text = name.removeprefix(PG_DB_PREFIX).split("_", 1)[0]
        if pid_text.isdigit() and not Path(f"/proc/{pid_text}").exists():
            asyncio.run(_pg_execute(dsn, [f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)']))
            log(f"dropped stale benchmark database {name}")


@contextlib.contextmanager
def postgres_stores(dsn: str, floors: list[str]) -> Iterator[Store]:
    names = [f"{PG_DB_PREFIX}{os.getpid()}_{name}" for name in ["gateway", *floors]]
    asyncio.run(_pg_execute(dsn, [f'DROP DATABASE IF EXISTS "{n}"' for n in names]))
    asyncio.run(_pg_execute(dsn, [f'CREATE DATABASE "{n}"' for n in names]))
    log(f"created databases {', '.join(names)}")
    try:
        drivers = {"async": "postgresql+asyncpg://", "sync": "postgresql+psycopg://"}
        floor_urls = {
            f: _pg_url(dsn, n).replace("postgresql://", drivers[f], 1)
            for f, n in zip(floors, names[1:], strict=True)
        }
        yield Store("postgres", _pg_url(dsn, names[0]), floor_urls)
    finally:
        asyncio.run(
            _pg_execute(dsn, [f'DROP DATABASE IF EXISTS "{n}" WITH (FORCE)' for n in names])
        )
        log(f"dropped databases {', '.join(names)}")


# -- seeding -------------------------------------------------------------------------------


@dataclass
class Seeded:
    patient_ids: list[str] = field(default_factory=list)
    bsns: list[str] = field(default_factory=list)
    # Patients that have Observations: (id, BSN).
    with_observations: list[tuple[str, str]] = field(default_factory=list)
    resources: int = 0
    seconds: float = 0.0


def seed_gateway(
    url: str, count: int, bundle_size: int, workers: int, auth: Auth, backend: str
) -> Seeded:
    """POST transaction Bundles until ``count`` resources (60% Patients, 40% Observations) exist."""
    rng = random.Random(20_240_101)
    bsns = fhirdata.bsn_stream(90_000_000)
    jobs: queue.Queue[tuple[bytes, list[str], int, int] | None] = queue.Queue(maxsize=workers * 2)
    seeded = Seeded()
    lock = threading.Lock()
    failures: list[str] = []
    started = time.perf_counter()
    sizes = [bundle_size] * (count // bundle_size) + (
        [count % bundle_size] if count % bundle_size else []
    )

    def producer() -> None:
        for size in sizes:
            observed = size // 10  # each has 4 Observations: 40% of the entries
            patients = size - 4 * observed
            values = [next(bsns) for _ in range(patients)]
            body, _about = fhirdata.transaction_bundle(
                rng, values, [4] * observed + [0] * (patients - observed)
            )
            jobs.put((body, values, patients, observed))
        for _ in range(workers):
            jobs.put(None)

    def worker() -> None:
        host, port = url.removeprefix("http://").split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=600)
        while (job := jobs.get()) is not None:
            body, values, patients, observed = job
            if failures:
                continue
            conn.request(
                "POST", "/fhir", body, {"Content-Type": "application/fhir+json"} | auth.headers()
            )
            response = conn.getresponse()
            data = response.read()
            if response.status != 200:
                failures.append(f"{response.status}: {data[:500]!r}")
                continue
            entries = orjson.loads(data)["entry"]
            ids = [e["response"]["location"].split("/")[1] for e in entries[:patients]]
            with lock:
                seeded.patient_ids.extend(ids)
                seeded.bsns.extend(values)
                seeded.with_observations.extend(zip(ids[:observed], values[:observed], strict=True))
                before = seeded.resources
                seeded.resources += len(entries)
                step = max(count // 10, 1)
                if seeded.resources // step > before // step:
                    elapsed = time.perf_counter() - started
                    log(
                        f"  {backend} seeded {seeded.resources}/{count} resources "
                        f"({seeded.resources / elapsed:.0f}/s)"
                    )
        conn.close()

    threads = [threading.Thread(target=producer, daemon=True)]
    threads += [threading.Thread(target=worker, daemon=True) for _ in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failures:
        raise RuntimeError(f"seeding failed: {failures[0]}")
    seeded.seconds = time.perf_counter() - started
    return seeded


# -- search latency ------------------------------------------------------------------------


def search_queries(
    seeded: Seeded, rng: random.Random
) -> dict[str, Callable[[], tuple[str, int | None]]]:
    """Query makers: each returns a path and the expected total (None: any)."""
    system = fhirdata.BSN_SYSTEM

    def identifier() -> tuple[str, int | None]:
        value = rng.choice(seeded.bsns)
        return f"/fhir/Patient?identifier={quote(f'{system}|{value}', safe=':/')}", 1

    def family() -> tuple[str, int | None]:
        prefix = rng.choice(fhirdata.FAMILY_PREFIXES)
        return f"/fhir/Patient?family={prefix}&birthdate=ge1950-01-01&_count=20", None

    def family_counted() -> tuple[str, int | None]:
        path, _ = family()
        return f"{path}&_total=accurate", None

    def obs_code() -> tuple[str, int | None]:
        patient_id, _ = rng.choice(seeded.with_observations)
        return (
            f"/fhir/Observation?patient={patient_id}&code={quote('http://loinc.org|718-7', safe=':/')}",
            1,
        )

    def obs_chain() -> tuple[str, int | None]:
        _, value = rng.choice(seeded.with_observations)
        return f"/fhir/Observation?patient.identifier={quote(f'{system}|{value}', safe=':/')}", 4

    return {
        "identifier": identifier,
        "family+birthdate": family,
        # The same asking for the number of all matches, which the default search only states
        # when its page holds the last match.
        "family+birthdate, _total=accurate": family_counted,
        "obs patient+code": obs_code,
        "obs patient.identifier": obs_chain,
    }


def measure_search(
    url: str,
    seeded: Seeded,
    samples: int,
    warmup: int,
    report: Report,
    backend: str,
    auth: Auth,
    budget: float = 60.0,
) -> dict[str, dict[str, float]]:
    """Sequential latency (one request at a time, keep-alive) per query kind.

    A query kind gets ``samples`` requests or ``budget`` seconds, whichever ends first (at least
    20 requests), so that a slow query cannot stretch the run.
    """
    rng = random.Random(7)
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=120)
    results: dict[str, dict[str, float]] = {}
    for name, make in search_queries(seeded, rng).items():
        timings: list[float] = []
        wrong = 0
        example = ""
        started_kind = time.monotonic()
        warmed = 0
        while len(timings) < samples:
            if time.monotonic() - started_kind > budget and len(timings) >= 10:
                report.warn(
                    f"{backend} search '{name}': time budget of {budget:g}s reached after "
                    f"{len(timings)} of {samples} samples"
                )
                break
            # Warm-up: ``warmup`` requests, cut short when they take a fifth of the budget.
            warming = warmed < warmup and time.monotonic() - started_kind < budget / 5
            path, expected = make()
            headers = auth.headers()
            started = time.perf_counter()
            conn.request("GET", path, headers=headers)
            response = conn.getresponse()
            body = response.read()
            elapsed = (time.perf_counter() - started) * 1000
            if warming:
                warmed += 1
            else:
                timings.append(elapsed)
            total = orjson.loads(body).get("total") if response.status == 200 else None
            if response.status != 200 or (expected is not None and total != expected):
                wrong += 1
                example = example or f"{path} -> {response.status} total={total}: {body[:200]!r}"
        timings.sort()
        results[name] = {
            "p50_ms": _percentile(timings, 50) or 0.0,
            "p95_ms": _percentile(timings, 95) or 0.0,
            "mean_ms": statistics.fmean(timings),
            "max_ms": timings[-1],
            "samples": len(timings),
            "unexpected_results": wrong,
        }
        if wrong:
            report.warn(f"{backend} search '{name}': {wrong} unexpected answers, e.g. {example}")
    conn.close()
    return results


# -- one backend ---------------------------------------------------------------------------


def check_create_read(server: Server, auth: dict[str, str] | None = None) -> None:
    """One POST and one GET must succeed before the server's numbers mean anything."""
    body = orjson.dumps(fhirdata.patient(random.Random(1), fhirdata.bsn(99_999_990) or "999999900"))
    auth = auth or {}
    status, headers, data = http_request(
        server.url, "POST", "/fhir/Patient", body, {"Content-Type": "application/fhir+json"} | auth
    )
    location = headers.get("Location") or headers.get("location") or ""
    if status != 201 or "/Patient/" not in location:
        raise RuntimeError(f"{server.name}: POST /fhir/Patient answered {status}: {data[:300]!r}")
    res_id = location.split("/Patient/", 1)[1].split("/")[0]
    status, _, data = http_request(server.url, "GET", f"/fhir/Patient/{res_id}", headers=auth)
    if status != 200:
        raise RuntimeError(
            f"{server.name}: GET /fhir/Patient/{res_id} answered {status}: {data[:300]!r}"
        )


def run_load(
    name: str,
    measure: Callable[[float], LoadResult],
    warmup: float,
    duration: float,
    report: Report,
    server: Server,
) -> LoadResult:
    if warmup > 0:
        measure(warmup)
    cpu_before = process_cpu_seconds(server.pid)
    machine_before = cpu_by_process()
    result = measure(duration)
    machine_after = cpu_by_process()
    cpu_after = process_cpu_seconds(server.pid)
    if cpu_before is not None and cpu_after is not None:
        result.server_cpu_s = round(cpu_after - cpu_before, 2)
    foreign, top = foreign_cpu(machine_before, machine_after, {os.getpid(), server.pid})
    result.foreign_cpu_s = round(foreign, 2)
    if foreign > 0.1 * result.seconds:
        report.warn(
            f"{name}: other processes used {foreign:.1f} CPU-seconds during the "
            f"{result.seconds:.0f}s measurement ({100 * foreign / result.seconds:.0f}% of a core; "
            f"{', '.join(top)}): the figure is disturbed, rerun on a quiet machine"
        )
    p50 = _fmt(result.latency_p50_ms)
    p99 = _fmt(result.latency_p99_ms)
    cpu = _fmt(result.cpu_ms_per_request, 2)
    log(
        f"  {name}: {result.rate:.1f}/s ({result.requests} in {result.seconds:.1f}s, "
        f"p50 {p50} ms, p99 {p99} ms, server CPU {cpu} ms/request)"
    )
    if result.errors:
        report.warn(f"{name}: {result.errors} failed requests of {result.requests}")
    return result


def analyze_if_no_autovacuum(dsn: str) -> str | None:
    """VACUUM ANALYZE the gateway's database when the server's autovacuum is off.

    Without it the freshly seeded tables would never get planner statistics, nor the
    visibility map that index-only scans rely on (autovacuum also vacuums tables that were
    only inserted into, since PostgreSQL 13), which no production PostgreSQL lacks; with
    autovacuum on, the gateway is measured as it stands.
    """
    ((row,),) = asyncio.run(_pg_execute(dsn, ["SHOW autovacuum"]))
    if row[0] == "on":
        return None
    started = time.perf_counter()
    asyncio.run(_pg_execute(dsn, ["VACUUM ANALYZE"]))
    log(
        "  autovacuum is off on this server: ran VACUUM ANALYZE "
        f"({time.perf_counter() - started:.1f}s)"
    )
    return (
        "autovacuum is off on this PostgreSQL server, so the benchmark ran VACUUM ANALYZE after "
        "seeding (as autovacuum would); --no-analyze measures without it"
    )


def count_resources(server: Server, res_type: str, auth: Auth) -> int:
    status, _, data = http_request(
        server.url, "GET", f"/fhir/{res_type}?_summary=count", headers=auth.headers()
    )
    if status != 200:
        raise RuntimeError(f"{res_type}?_summary=count answered {status}: {data[:300]!r}")
    return int(orjson.loads(data)["total"])


def floor_server(backend: str, variant: str, url: str, tmp: Path) -> Server:
    return Server(
        f"floor-{variant}/{backend}",
        "floor_app:create_app",
        {"FLOOR_DATABASE_URL": url},
        tmp / "logs" / f"floor-{variant}-{backend}.log",
    )


def measure_creates(
    backend: str,
    gateway: Server,
    auth: Auth,
    floor_urls: dict[str, str],
    opts: argparse.Namespace,
    tmp: Path,
    report: Report,
    loadgen: LoadGenerator,
) -> tuple[LoadResult, dict[str, LoadResult]]:
    """Creates/s of the gateway and of each floor variant, every store still empty, in the
    order gateway, floors, floors reversed, gateway (each figure pooled over its two runs):
    measured minutes apart, one after the other, the gateway's ratio to the same floor moved
    from 0.57 to 0.41 between two runs of one revision. Returns the gateway's creates and each
    floor's."""
    floors: dict[str, Server] = {}
    for variant, url in floor_urls.items():
        floor = floor_server(backend, variant, url, tmp)
        log(f"{backend}: floor app ({variant} drivers: {url.split(':')[0]}) on port {floor.port}")
        try:
            floor.start()
            check_create_read(floor)
        except Exception as exc:  # one floor variant failing leaves the other as the bar
            report.warn(f"{backend} floor ({variant}) failed: {type(exc).__name__}: {exc}")
            floor.stop()
            continue
        floors[variant] = floor
    # The wrk script makes each run's BSNs from the run's number (one digit), so the runs
    # against one store (warm-ups too) count 1, 2, ... (the profile's run is 9).
    runs = {server.name: iter(range(1, 9)) for server in [gateway, *floors.values()]}

    def creates(server: Server, headers: dict[str, str]) -> LoadResult:
        return run_load(
            f"{backend} {server.name.split('/')[0]} creates",
            lambda s: loadgen.create_patients(server.url, s, next(runs[server.name]), headers),
            opts.warmup,
            opts.duration,
            report,
            server,
        )

    try:
        gateway_runs = [creates(gateway, auth.headers())]
        floor_runs: dict[str, list[LoadResult]] = {v: [] for v in floors}
        for variant in [*floors, *reversed(floors)]:
            floor_runs[variant].append(creates(floors[variant], {}))
        gateway_runs.append(creates(gateway, auth.headers()))
    finally:
        for floor in floors.values():
            floor.stop()
    return pooled(gateway_runs), {v: pooled(r) for v, r in floor_runs.items()}


def bench_floor(
    backend: str,
    variant: str,
    url: str,
    opts: argparse.Namespace,
    tmp: Path,
    loadgen: LoadGenerator,
    report: Report,
    gateway_reads: Callable[[], LoadResult],
) -> tuple[LoadResult, list[LoadResult]]:
    """Reads/s of a floor store filled with ``opts.resources`` rows, alternated with the
    gateway's reads (``gateway_reads``): gateway, floor, floor, gateway. The machine's speed
    drifts over minutes (two runs of the same SQLite read path an hour apart gave ratios of
    0.75 and 0.59); measured side by side, the drift moves both alike. Returns the floor's two
    reads runs pooled, and the gateway's two reads runs."""
    floor = floor_server(backend, variant, url, tmp)
    log(f"{backend}: floor app ({variant} drivers: {url.split(':')[0]}) on port {floor.port}")
    with floor:
        rng = random.Random(5)
        bsns = fhirdata.bsn_stream(90_000_000)
        ids = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(opts.resources)]
        rows = [(i, "Patient", orjson.dumps(fhirdata.patient(rng, next(bsns)))) for i in ids]
        started = time.perf_counter()
        floor_app.bulk_fill(url, rows)
        log(
            f"  {backend} floor-{variant} store filled with {len(rows)} Patients "
            f"in {time.perf_counter() - started:.1f}s"
        )
        del rows
        ids_file = tmp / f"floor-{variant}-ids-{backend}.txt"
        ids_file.write_text("\n".join(ids[: int(len(ids) * 0.6)]) + "\n")

        def floor_reads() -> LoadResult:
            return run_load(
                f"{backend} floor-{variant} reads",
                lambda s: loadgen.read_patients(floor.url, s, ids_file, {}),
                opts.warmup,
                opts.duration,
                report,
                floor,
            )

        gateway_first = gateway_reads()
        reads = pooled([floor_reads(), floor_reads()])
        gateway_last = gateway_reads()
    return reads, [gateway_first, gateway_last]


def bench_backend(
    store: Store,
    opts: argparse.Namespace,
    tmp: Path,
    report: Report,
    loadgen: LoadGenerator,
    profiler: Profiler,
) -> None:
    backend = store.backend
    details: dict[str, Any] = {}
    report.details[backend] = details
    logs = tmp / "logs"
    logs.mkdir(exist_ok=True)

    # -- the gateway: creates, seed to N resources, reads, search --------------------------------
    data_dir = tmp / f"{backend}-gateway-data"
    gateway = Server(
        f"gateway/{backend}",
        "gateway.api.app:create_app",
        {"ZORGBRUG_DATA_DIR": str(data_dir), "ZORGBRUG_DATABASE_URL": store.gateway_url}
        | ({"PYTHONPATH": str(opts.gateway_src)} if opts.gateway_src != ROOT else {}),
        logs / f"gateway-{backend}.log",
        cwd=opts.gateway_src,
    )
    auth = Auth(gateway, opts.gateway_src, data_dir, store.gateway_url, opts.auth_org)
    log(f"{backend}: gateway on port {gateway.port}")
    with gateway:
        probe = orjson.dumps(fhirdata.patient(random.Random(2), fhirdata.bsn(99_999_980) or ""))
        status, _, _ = http_request(
            gateway.url, "POST", "/fhir/Patient", probe, {"Content-Type": "application/fhir+json"}
        )
        if status == 401:
            auth.enable()
            report.notes.append(
                f"{backend}: the gateway required authentication; its requests carried a bearer "
                f"token of demo organisation {opts.auth_org} (the floor does no auth)"
            )
        check_create_read(gateway, auth.headers())
        gateway_creates, floor_creates = measure_creates(
            backend, gateway, auth, store.floor_urls, opts, tmp, report, loadgen
        )
        if profiler.enabled:
            out = RESULTS_DIR / f"profile-{backend}-creates.txt"
            with profiler.record(gateway.pid, opts.duration, out):
                loadgen.create_patients(gateway.url, opts.duration, 9, auth.headers())
            details["profile_creates"] = summarise_profile(out)
        existing = count_resources(gateway, "Patient", auth)
        to_seed = max(0, opts.resources - existing)
        log(
            f"  {backend} gateway holds {existing} Patients; seeding {to_seed} resources "
            f"in transaction Bundles of {opts.bundle_size}"
        )
        seeded = seed_gateway(
            gateway.url, to_seed, opts.bundle_size, opts.seed_workers, auth, backend
        )
        seed_rate = seeded.resources / seeded.seconds if seeded.seconds else 0.0
        log(
            f"  {backend} seeded {seeded.resources} resources in {seeded.seconds:.0f}s "
            f"({seed_rate:.0f}/s)"
        )
        if backend == "postgres" and opts.analyze:
            note = analyze_if_no_autovacuum(store.gateway_url)
            if note:
                report.notes.append(f"{backend}: {note}")
        ids_file = tmp / f"gateway-ids-{backend}.txt"
        ids_file.write_text("\n".join(seeded.patient_ids) + "\n")

        def measure_gateway_reads() -> LoadResult:
            return run_load(
                f"{backend} gateway reads",
                lambda s: loadgen.read_patients(gateway.url, s, ids_file, auth.headers()),
                opts.warmup,
                opts.duration,
                report,
                gateway,
            )

        if profiler.enabled:
            out = RESULTS_DIR / f"profile-{backend}-reads.txt"
            with profiler.record(gateway.pid, opts.duration, out):
                loadgen.read_patients(gateway.url, opts.duration, ids_file, auth.headers())
            details["profile_reads"] = summarise_profile(out)
        log(f"  {backend} search latency, {opts.search_samples} sequential requests per query")
        machine_before, search_started = cpu_by_process(), time.perf_counter()
        search = measure_search(
            gateway.url,
            seeded,
            opts.search_samples,
            opts.search_warmup,
            report,
            backend,
            auth,
            opts.search_budget,
        )
        elapsed = time.perf_counter() - search_started
        foreign, top = foreign_cpu(machine_before, cpu_by_process(), {os.getpid(), gateway.pid})
        if foreign > 0.1 * elapsed:
            report.warn(
                f"{backend} search: other processes used {100 * foreign / elapsed:.0f}% of a core "
                f"meanwhile ({', '.join(top)}): latencies are disturbed"
            )
        if profiler.enabled:
            out = RESULTS_DIR / f"profile-{backend}-search.txt"
            with profiler.record(gateway.pid, 20, out):
                measure_search(
                    gateway.url, seeded, opts.search_samples, 0, Report(), backend, auth, 4
                )
            details["profile_search"] = summarise_profile(out)
        observations = count_resources(gateway, "Observation", auth)
        patients = count_resources(gateway, "Patient", auth)

        # -- the floors (their creates were measured beside the gateway's): a store filled to
        # the same size, then reads alternated with the gateway's, which keeps running (idle)
        # meanwhile ------------------------------------------------------------------------------
        floor_results: dict[str, tuple[LoadResult, LoadResult]] = {}
        gateway_runs: list[LoadResult] = []
        for variant, creates in floor_creates.items():
            url = store.floor_urls[variant]
            try:
                floor_reads, alternated = bench_floor(
                    backend, variant, url, opts, tmp, loadgen, report, measure_gateway_reads
                )
            except Exception as exc:  # one floor variant failing leaves the other as the bar
                report.warn(f"{backend} floor ({variant}) failed: {type(exc).__name__}: {exc}")
                continue
            floor_results[variant] = (creates, floor_reads)
            gateway_runs += alternated
        gateway_reads = pooled(gateway_runs or [measure_gateway_reads()])
    details["floors"] = {
        v: {"creates": asdict(c), "reads": asdict(r)} for v, (c, r) in floor_results.items()
    }

    details["gateway"] = {
        "creates": asdict(gateway_creates),
        "reads": asdict(gateway_reads),
        "seed": {"resources": seeded.resources, "seconds": seeded.seconds, "per_second": seed_rate},
        "store": {"patients": patients, "observations": observations},
        "authenticated": auth.required,
        "search": search,
    }

    creates = {v: c.rate for v, (c, _r) in floor_results.items()}
    reads = {v: r.rate for v, (_c, r) in floor_results.items()}
    report.rows.append(
        throughput_row(backend, "creates/s", gateway_creates.rate, creates, TARGET_CREATES)
    )
    report.rows.append(throughput_row(backend, "reads/s", gateway_reads.rate, reads, TARGET_READS))
    for metric, mine, theirs in (
        ("creates", gateway_creates, {v: c for v, (c, _r) in floor_results.items()}),
        ("reads", gateway_reads, {v: r for v, (_c, r) in floor_results.items()}),
    ):
        floors_cpu = {
            v: x.cpu_ms_per_request for v, x in theirs.items() if x.cpu_ms_per_request is not None
        }
        if mine.cpu_ms_per_request is not None:
            report.rows.append(
                Row(
                    backend,
                    f"server CPU ms/{metric[:-1]}",
                    mine.cpu_ms_per_request,
                    min(floors_cpu.values()) if floors_cpu else None,
                    floors=floors_cpu,
                )
            )
    report.rows.append(Row(backend, f"seed resources/s (bundles of {opts.bundle_size})", seed_rate))
    for name, figures in search.items():
        p50 = figures["p50_ms"]
        report.rows.append(
            Row(
                backend,
                f"search p50 ms ({name})",
                p50,
                target=f"<={TARGET_SEARCH_P50_MS:g}",
                met=p50 <= TARGET_SEARCH_P50_MS,
            )
        )
        report.rows.append(Row(backend, f"search p95 ms ({name})", figures["p95_ms"]))


# -- main ----------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--backends", default="sqlite,postgres", help="comma-separated: sqlite,postgres"
    )
    parser.add_argument(
        "--pg-dsn",
        default=os.environ.get("BENCH_PG_DSN", DEFAULT_PG_DSN),
        help="admin DSN; the benchmark CREATEs and DROPs its own databases",
    )
    parser.add_argument(
        "--duration", type=float, default=12, help="seconds per throughput measurement"
    )
    parser.add_argument("--warmup", type=float, default=3, help="seconds of warm-up before each")
    parser.add_argument("--threads", type=int, default=2, help="load generator threads")
    parser.add_argument("--connections", type=int, default=32, help="concurrent connections")
    parser.add_argument(
        "--resources", type=int, default=100_000, help="store size for reads and search"
    )
    parser.add_argument("--bundle-size", type=int, default=500)
    parser.add_argument(
        "--seed-workers", type=int, default=2, help="concurrent seeding connections"
    )
    parser.add_argument(
        "--search-samples", type=int, default=200, help="requests per search query kind"
    )
    parser.add_argument("--search-warmup", type=int, default=20)
    parser.add_argument(
        "--search-budget", type=float, default=45, help="max seconds per search query kind"
    )
    parser.add_argument(
        "--floors",
        default="async,sync",
        help="floor variants: async (aiosqlite/asyncpg), sync (pysqlite/psycopg on threads); "
        "the gateway is held to the faster",
    )
    parser.add_argument(
        "--auth-org",
        default="90000001",
        help="when the gateway wants a token: the demo hospital (URA) to get it for",
    )
    parser.add_argument(
        "--no-analyze",
        dest="analyze",
        action="store_false",
        help="on PostgreSQL with autovacuum off, do not VACUUM ANALYZE after seeding",
    )
    parser.add_argument("--loadgen", choices=("auto", "wrk", "python"), default="auto")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="also py-spy the gateway (extra, unmeasured runs) into bench/results/",
    )
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: 10,000 resources, 3 s measurements"
    )
    parser.add_argument("--output", type=Path, default=RESULTS_DIR / "latest.json")
    parser.add_argument(
        "--gateway-ref",
        help="benchmark the gateway/ of this git revision (exported to a temp dir) instead of "
        "the working tree, e.g. HEAD while gateway/ is being edited",
    )
    opts = parser.parse_args(argv)
    opts.floors = [f.strip() for f in opts.floors.split(",") if f.strip()]
    if not set(opts.floors) <= {"async", "sync"}:
        parser.error("--floors takes async and/or sync")
    if opts.quick:
        opts.resources, opts.duration, opts.warmup, opts.search_samples = 10_000, 3, 1, 50
    return opts


def machine_speed() -> float:
    """Seconds one fixed pure-Python loop takes here now (best of three): the same code took
    0.66 s on one session's machine and other figures of that session were ~1.5x those of
    another, so a figure compares across runs only beside this one."""
    times = []
    for _ in range(3):
        begun = time.perf_counter()
        sum(i * i for i in range(10_000_000))
        times.append(time.perf_counter() - begun)
    return round(min(times), 3)


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    started = time.perf_counter()
    report = Report()
    speed = machine_speed()
    RESULTS_DIR.mkdir(exist_ok=True)
    kind = choose_load_generator(opts.loadgen, report)
    profiler = Profiler(opts.profile, report)
    backends = [b.strip() for b in opts.backends.split(",") if b.strip()]
    log(
        f"Zorgbrug benchmark: {', '.join(backends)}; load generator {kind} "
        f"({opts.threads} threads, {opts.connections} connections, {opts.warmup:g}s warm-up + "
        f"{opts.duration:g}s per measurement); store of {opts.resources} resources; "
        f"machine speed {speed} s (bench/run.py machine_speed, lower is faster)"
    )
    with tempfile.TemporaryDirectory(prefix="zorgbrug-bench-") as tmp_name:
        tmp = Path(tmp_name)
        opts.gateway_src = ROOT
        if opts.gateway_ref:
            opts.gateway_src = export_gateway(opts.gateway_ref, tmp / "gateway-src")
            log(f"gateway code: git revision {opts.gateway_ref} exported to {opts.gateway_src}")
        loadgen = LoadGenerator(kind, opts.threads, opts.connections, tmp)
        for backend in backends:
            backend_started = time.perf_counter()
            try:
                if backend == "sqlite":
                    with sqlite_stores(tmp, opts.floors) as store:
                        bench_backend(store, opts, tmp, report, loadgen, profiler)
                elif backend == "postgres":
                    reason = pg_unreachable(opts.pg_dsn)
                    if reason:
                        report.skipped[backend] = reason
                        log(f"postgres skipped: {reason}")
                        continue
                    drop_stale_pg_databases(opts.pg_dsn)
                    with postgres_stores(opts.pg_dsn, opts.floors) as store:
                        bench_backend(store, opts, tmp, report, loadgen, profiler)
                else:
                    report.skipped[backend] = "unknown backend"
                    continue
            except Exception as exc:  # report the failure, go on with the next backend
                report.skipped[backend] = f"failed: {type(exc).__name__}: {exc}"[:2000]
                log(f"{backend} FAILED: {exc}")
                logs = tmp / "logs"
                for path in sorted(logs.glob(f"*{backend}.log")) if logs.exists() else []:
                    tail = "\n".join(path.read_text(errors="replace").splitlines()[-20:])
                    log(f"--- {path.name} (tail) ---\n{tail}")
            report.details.setdefault(backend, {})["seconds"] = round(
                time.perf_counter() - backend_started, 1
            )
    elapsed = time.perf_counter() - started
    table = render_table(report)
    print()
    print(table)
    print()
    for warning in report.warnings:
        print(f"warning: {warning}")
    print(f"machine speed {speed} s at the start (a fixed Python loop; lower is faster)")
    print(f"total time {elapsed / 60:.1f} min; results in {opts.output}")
    document = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "seconds": round(elapsed, 1),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "speed_s": speed,
        },
        "git": _git_describe(),
        "gateway_ref": opts.gateway_ref or "working tree",
        "settings": {
            "load_generator": kind,
            "threads": opts.threads,
            "connections": opts.connections,
            "duration_s": opts.duration,
            "warmup_s": opts.warmup,
            "resources": opts.resources,
            "bundle_size": opts.bundle_size,
            "search_samples": opts.search_samples,
            "search_budget_s": opts.search_budget,
            "uvicorn_flags": UVICORN_FLAGS,
        },
        "targets": {
            "reads_ratio": TARGET_READS,
            "creates_ratio": TARGET_CREATES,
            "search_p50_ms": TARGET_SEARCH_P50_MS,
        },
        "rows": [asdict(r) | {"ratio": r.ratio} for r in report.rows],
        "skipped": report.skipped,
        "warnings": report.warnings,
        "details": report.details,
        "table": table,
    }
    opts.output.parent.mkdir(parents=True, exist_ok=True)
    opts.output.write_bytes(orjson.dumps(document, option=orjson.OPT_INDENT_2))
    return 1 if not report.rows else 0


def export_gateway(ref: str, target: Path) -> Path:
    """``gateway/`` of a git revision, extracted into ``target`` (which becomes its sys.path)."""
    target.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", ref, "gateway"],
        capture_output=True,
        check=True,
    )
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive.stdout, check=True)
    return target


def _git_describe() -> str | None:
    try:
        done = subprocess.run(
            ["git", "-C", str(ROOT), "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            check=False,
        )
    except OSError:
        return None
    return done.stdout.strip() or None


if __name__ == "__main__":
    sys.exit(main())
