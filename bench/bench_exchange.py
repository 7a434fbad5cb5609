"""Exchange benchmark: ITI-65 submissions/s and ITI-68 retrieves/s against a floor, and memory.

For each backend, on a fresh store:

1. the gateway (``ZORGBRUG_DELIVERY_WORKER=false``, demo network seeded with ``zorgbrug demo``):
   ITI-65 Provide Document Bundles with a 100 KiB PDF from 90000001 to 90000002 about BSN
   999911120, each with a new SubmissionSet identifier and masterIdentifier (wrk:
   bench/wrk/exchange_provide.lua over a bundle built before timing); then ITI-68 retrieves
   ``GET /fhir/Binary/{id}`` (``Accept: application/pdf``) of those documents as the recipient
   90000002, ids at random (bench/wrk/exchange_retrieve.lua);
2. the floor (bench/exchange_floor_app.py: validate + store / select + serve the same bytes),
   the same two figures, for each floor variant (async and sync drivers); the gateway is held
   to the faster one; target: gateway >= 0.5 of the floor. The gateway and the floors run side
   by side (each idle while another is measured) and each figure is pooled over two runs in
   the order gateway, floors, floors reversed, gateway, so the machine's drift moves both;
3. memory: the peak RSS growth (VmHWM) of a fresh gateway process while (a) streaming a raw
   upload ``POST /fhir/Binary`` (application/octet-stream) and downloading it again, and
   (b) submitting one ITI-65 bundle that carries a large document; reported as a multiple of
   the content size. Each case runs in its own new process so its high-water mark is clean.

The PDF is generated (a valid one-page PDF whose bulk is an incompressible noise image, like
the compressed streams of real PDFs), as no ~100 KB sample exists in the shared data (the
C-CDA unstructured-document sample is 170 KiB: ``--pdf`` sends it, or any file, instead).

Results: a table on stdout and bench/results/exchange.json. Figures, not assertions.
The async floor variant needs greenlet + aiosqlite/asyncpg (``make bench`` installs them);
without them the gateway is held to the sync floor and the table says so.

Usage: python bench/bench_exchange.py [--backends sqlite,postgres] [--duration 10] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import http.client
import importlib.util
import multiprocessing
import os
import platform
import random
import sys
import tempfile
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson
import run as core  # bench/run.py: servers, load generation, stores, reporting
from exchange_floor_app import document_ids

from gateway.exchange.compose import provide_document_bundle

SENDER = "90000001"
RECIPIENT = "90000002"
PATIENT_BSN = "999911120"
TARGET_SUBMISSIONS = 0.5
TARGET_RETRIEVES = 0.5
MIB = 1024 * 1024
UID = b"@@N@@"  # in the bundle template: replaced per request by 8 hex digits


def log(message: str) -> None:
    core.log(message)


def _have(*modules: str) -> bool:
    return all(importlib.util.find_spec(m) is not None for m in modules)


async def _psycopg_execute(dsn: str, statements: list[str]) -> list[Any]:
    """core._pg_execute with psycopg (a gateway dependency) when asyncpg is not installed."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
        results = []
        for statement in statements:
            cursor = conn.execute(statement)  # type: ignore[call-overload]
            results.append(cursor.fetchall() if cursor.description else [])
        return results


def floor_variants(backend: str, wanted: list[str], report: core.Report) -> list[str]:
    """The floor variants whose drivers are installed (``make bench`` installs them all)."""
    drivers = {"sqlite": "aiosqlite", "postgres": "asyncpg"}
    if "async" in wanted and not _have("greenlet", drivers[backend]):
        report.notes.append(
            f"{backend}: no async floor variant (needs greenlet and {drivers[backend]}; "
            "make bench installs them): the gateway is held to the sync floor only"
        )
        return [v for v in wanted if v != "async"]
    return wanted


# -- the document and the bundle -------------------------------------------------------------


def make_pdf(size: int, seed: int = 65) -> bytes:
    """A valid one-page PDF of exactly ``size`` bytes: a title line and a grey noise image.

    The image (stored-deflate, so incompressible like the JPEG or Flate streams of real PDFs)
    carries the bulk; a comment after the header pads to the exact size.
    """
    width = 512
    noise = random.Random(seed)

    def build(pixels: int, pad: int) -> bytes:
        height = max(1, pixels // width)
        image = zlib.compress(noise.randbytes(width * height), 0)
        text = (
            b"BT /F1 16 Tf 72 790 Td (Ontslagbrief - Zorgbrug benchmark document) Tj ET\n"
            b"q 451 0 0 %d 72 %d cm /Im1 Do Q\n" % (min(600, height), 170)
        )
        objects = [
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R "
            b"/Resources << /Font << /F1 5 0 R >> /XObject << /Im1 6 0 R >> >> >>",
            b"<< /Length %d >>\nstream\n%s\nendstream" % (len(text), text),
            b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
            b"<< /Type /XObject /Subtype /Image /Width %d /Height %d /ColorSpace /DeviceGray "
            b"/BitsPerComponent 8 /Filter /FlateDecode /Length %d >>\nstream\n%s\nendstream"
            % (width, height, len(image), image),
        ]
        out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
        if pad:
            out += b"%" + b"0" * (pad - 2) + b"\n"
        offsets = []
        for number, body in enumerate(objects, start=1):
            offsets.append(len(out))
            out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
        xref = len(out)
        out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
        out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
        out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
            len(objects) + 1,
            xref,
        )
        return bytes(out)

    pixels = max(width, size // width * width)
    while (pad := size - len(body := build(pixels, 0))) < 2 and pad != 0 and pixels > width:
        pixels = max(width, pixels - (max(0, -pad) // width + 1) * width)
    return build(pixels, pad) if pad >= 2 else body


def bundle_template(content: bytes, content_type: str = "application/pdf") -> bytes:
    """An ITI-65 bundle from SENDER to RECIPIENT whose two uniqueIds contain ``@@N@@``."""
    bundle = provide_document_bundle(
        content=content,
        content_type=content_type,
        bsn=PATIENT_BSN,
        sender=SENDER,
        recipients=[RECIPIENT],
        type_code="18842-5",
        type_display="Discharge summary",
        title="Ontslagbrief (benchmark)",
        unique_id="urn:uuid:@@N@@-d0c0-4000-8000-00000000be65",
        submission_id="urn:uuid:@@N@@-5e75-4000-8000-00000000be65",
    )
    return orjson.dumps(bundle)


def render(template: bytes, uid: int) -> bytes:
    return template.replace(UID, b"%08x" % uid)


# -- load generation -------------------------------------------------------------------------


class ExchangeLoad(core.LoadGenerator):
    """core.LoadGenerator with the two exchange workloads (wrk, or the Python fallback)."""

    def provide(
        self, url: str, seconds: float, template: Path, run: int, headers: dict[str, str]
    ) -> core.LoadResult:
        if self.kind == "wrk":
            return self._wrk(url, "exchange_provide", seconds, [str(template), str(run)], headers)
        return _python_load(url, "provide", seconds, self, run, template, headers)

    def retrieve(
        self, url: str, seconds: float, ids_file: Path, headers: dict[str, str]
    ) -> core.LoadResult:
        if self.kind == "wrk":
            return self._wrk(url, "exchange_retrieve", seconds, [str(ids_file)], headers)
        return _python_load(url, "retrieve", seconds, self, 0, ids_file, headers)


def _python_load(
    url: str,
    kind: str,
    seconds: float,
    gen: core.LoadGenerator,
    run: int,
    source: Path,
    headers: dict[str, str],
) -> core.LoadResult:
    """The fallback: ``gen.threads`` processes of asyncio keep-alive connections."""
    n = gen.threads
    per_process = [gen.connections // n + (i < gen.connections % n) for i in range(n)]
    with multiprocessing.get_context("spawn").Pool(n) as pool:
        parts = pool.starmap(
            _python_worker,
            [(url, kind, seconds, c, run, i, source, headers) for i, c in enumerate(per_process)],
        )
    latencies = sorted(x for part in parts for x in part[2])
    return core.LoadResult(
        sum(p[0] for p in parts),
        seconds,
        sum(p[1] for p in parts),
        core._percentile(latencies, 50),
        core._percentile(latencies, 99),
        "python",
    )


def _python_worker(
    url: str,
    kind: str,
    seconds: float,
    connections: int,
    run: int,
    worker: int,
    source: Path,
    headers: dict[str, str],
) -> tuple[int, int, list[float]]:
    host, port = url.removeprefix("http://").split(":")
    extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items()).encode()
    template = source.read_bytes() if kind == "provide" else b""
    ids = source.read_text().split() if kind == "retrieve" else []
    rng = random.Random(run * 100 + worker)
    counter = [0]

    def next_request() -> bytes:
        if kind == "provide":
            counter[0] += 1
            body = render(template, run * 16_777_216 + (worker + 1) * 1_048_576 + counter[0])
            return (
                b"POST /fhir HTTP/1.1\r\nHost: %s\r\nContent-Type: application/fhir+json\r\n"
                b"%sContent-Length: %d\r\n\r\n%s" % (host.encode(), extra, len(body), body)
            )
        return b"GET /fhir/Binary/%s HTTP/1.1\r\nHost: %s\r\nAccept: application/pdf\r\n%s\r\n" % (
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
            stats[1] += status >= 400
        writer.close()

    async def main() -> list[Any]:
        stats: list[Any] = [0, 0, []]
        deadline = time.monotonic() + seconds
        await asyncio.gather(*(connection(deadline, stats) for _ in range(connections)))
        return stats

    requests, errors, latencies = asyncio.run(main())
    return requests, errors, latencies


# -- checks and ids --------------------------------------------------------------------------


def check_exchange(
    server: core.Server,
    template: bytes,
    content: bytes,
    sender: dict[str, str],
    recipient: dict[str, str],
) -> None:
    """One submission and one retrieve must succeed (with the right bytes) before timing."""
    status, _, data = core.http_request(
        server.url,
        "POST",
        "/fhir",
        render(template, 0xFFFFFF00),
        {"Content-Type": "application/fhir+json"} | sender,
    )
    if status != 200:
        raise RuntimeError(f"{server.name}: ITI-65 answered {status}: {data[:500]!r}")
    locations = [e["response"]["location"] for e in orjson.loads(data)["entry"]]
    binary = next((x.split("/")[1] for x in locations if x.startswith("Binary/")), None)
    if binary is None:
        raise RuntimeError(f"{server.name}: no Binary in the ITI-65 response {locations}")
    status, _, data = core.http_request(
        server.url,
        "GET",
        f"/fhir/Binary/{binary}",
        headers={"Accept": "application/pdf"} | recipient,
    )
    if status != 200 or data != content:
        raise RuntimeError(
            f"{server.name}: ITI-68 of Binary/{binary} answered {status} with {len(data)} bytes "
            f"(expected {len(content)}): {data[:300]!r}"
        )


def gateway_binary_ids(server: core.Server, auth: core.Auth, limit: int) -> list[str]:
    """The Binary ids of the documents the recipient can see, from its DocumentReferences."""
    path: str | None = "/fhir/DocumentReference?_count=1000"
    ids: list[str] = []
    while path and len(ids) < limit:
        status, _, data = core.http_request(server.url, "GET", path, headers=auth.headers())
        if status != 200:
            raise RuntimeError(f"DocumentReference search answered {status}: {data[:300]!r}")
        page = orjson.loads(data)
        for entry in page.get("entry") or []:
            for content in entry["resource"].get("content") or []:
                url = str((content.get("attachment") or {}).get("url", ""))
                if "Binary/" in url:
                    ids.append(url.rsplit("/", 1)[-1])
        following = [link["url"] for link in page.get("link") or [] if link["relation"] == "next"]
        path = None
        if following:
            parts = urlsplit(following[0])
            path = f"{parts.path}?{parts.query}"
    return ids[:limit]


# -- memory ----------------------------------------------------------------------------------


def memory_kib(pid: int) -> dict[str, int]:
    """VmHWM (peak RSS) and VmRSS of a process, in KiB."""
    figures = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmHWM", "VmRSS"):
            figures[name] = int(value.split()[0])
    return figures


def _pieces(data: bytes, size: int = MIB) -> Iterator[memoryview]:
    view = memoryview(data)
    for start in range(0, len(data), size):
        yield view[start : start + size]


def raw_upload(url: str, content: bytes, headers: dict[str, str]) -> tuple[str, float]:
    """Stream ``content`` in as a raw Binary (1 MiB writes): its id and the seconds it took."""
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=600)
    try:
        started = time.perf_counter()
        conn.request(
            "POST",
            "/fhir/Binary",
            _pieces(content),
            {"Content-Type": "application/octet-stream", "Content-Length": str(len(content))}
            | headers,
        )
        response = conn.getresponse()
        data = response.read()
        location = response.getheader("Location") or ""
        if response.status != 201 or "/Binary/" not in location:
            raise RuntimeError(f"raw upload answered {response.status}: {data[:300]!r}")
        return location.split("/Binary/", 1)[1].split("/")[0], time.perf_counter() - started
    finally:
        conn.close()


def raw_download(url: str, binary: str, content: bytes, headers: dict[str, str]) -> float:
    """Download a raw Binary (read 1 MiB at a time), check it is ``content``; the seconds."""
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=600)
    try:
        started = time.perf_counter()
        conn.request(
            "GET",
            f"/fhir/Binary/{binary}",
            headers={"Accept": "application/octet-stream"} | headers,
        )
        response = conn.getresponse()
        digest, size = hashlib.sha256(), 0
        while piece := response.read(MIB):
            digest.update(piece)
            size += len(piece)
        if response.status != 200 or digest.digest() != hashlib.sha256(content).digest():
            raise RuntimeError(f"raw download answered {response.status} with {size} bytes")
        return time.perf_counter() - started
    finally:
        conn.close()


def submit(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, int, float]:
    started = time.perf_counter()
    status, _, data = core.http_request(
        url, "POST", "/fhir", body, {"Content-Type": "application/fhir+json"} | headers, timeout=600
    )
    if status != 200:
        raise RuntimeError(f"ITI-65 answered {status}: {data[:300]!r}")
    return status, len(data), time.perf_counter() - started


def measure_memory(
    backend: str, env: dict[str, str], auth_args: tuple[Path, str], opts: argparse.Namespace
) -> dict[str, Any]:
    """Peak RSS growth of fresh gateway processes: a raw round trip, and one large ITI-65."""
    data_dir, database_url = auth_args
    logs = opts.tmp / "logs"
    results: dict[str, Any] = {}
    raw = random.Random(48).randbytes(opts.raw_mib * MIB)
    big_pdf = make_pdf(opts.iti65_mib * MIB, seed=20)
    big_bundle = render(bundle_template(big_pdf), 0xFFFFFE00)
    small_bundle = render(bundle_template(make_pdf(100 * 1024, seed=3)), 0xFFFFFD00)
    for case in ("raw", "iti65"):
        server = core.Server(
            f"gateway-memory-{case}/{backend}",
            "gateway.api.app:create_app",
            env,
            logs / f"gateway-memory-{case}-{backend}.log",
        )
        with server:
            auth = core.Auth(server, core.ROOT, data_dir, database_url, SENDER)
            auth.required = True
            headers = auth.headers()
            if case == "raw":
                # Warm-up of the same path, with little content so the peak stays low.
                warm = raw[: MIB // 4]
                raw_download(server.url, raw_upload(server.url, warm, headers)[0], warm, headers)
                before = memory_kib(server.pid)
                binary, up_s = raw_upload(server.url, raw, headers)
                between = memory_kib(server.pid)
                down_s = raw_download(server.url, binary, raw, headers)
                after = memory_kib(server.pid)
                size = len(raw)
                figures: dict[str, Any] = {
                    "upload_s": round(up_s, 2),
                    "download_s": round(down_s, 2),
                    "hwm_after_upload_kib": between["VmHWM"],
                    "rss_after_upload_kib": between["VmRSS"],
                    "upload_growth_bytes": (between["VmHWM"] - before["VmHWM"]) * 1024,
                }
            else:
                submit(server.url, small_bundle, headers)  # warm-up of the same path
                before = memory_kib(server.pid)
                _status, answer_bytes, took = submit(server.url, big_bundle, headers)
                after = memory_kib(server.pid)
                size = len(big_pdf)
                figures = {
                    "body_bytes": len(big_bundle),
                    "response_bytes": answer_bytes,
                    "seconds": round(took, 2),
                }
        growth = (after["VmHWM"] - before["VmHWM"]) * 1024
        figures |= {
            "content_bytes": size,
            "hwm_before_kib": before["VmHWM"],
            "rss_before_kib": before["VmRSS"],
            "hwm_after_kib": after["VmHWM"],
            "rss_after_kib": after["VmRSS"],
            "peak_growth_bytes": growth,
            "times_content": round(growth / size, 2),
        }
        results[case] = figures
        what = (
            f"raw upload+download of {size / MIB:g} MiB"
            if case == "raw"
            else f"ITI-65 of {size / MIB:g} MiB ({len(big_bundle) / MIB:.1f} MiB body)"
        )
        if case == "raw":
            what += f" (upload alone: +{figures['upload_growth_bytes'] / MIB:.1f} MiB)"
        log(
            f"  {backend} memory, {what}: peak RSS +{growth / MIB:.1f} MiB = "
            f"{growth / size:.2f} times the content (RSS {before['VmRSS'] / 1024:.0f} -> "
            f"{after['VmRSS'] / 1024:.0f} MiB, peak {after['VmHWM'] / 1024:.0f} MiB)"
        )
    return results


# -- one backend -----------------------------------------------------------------------------


class Side:
    """One server under load (the gateway or a floor variant): how it is asked."""

    def __init__(
        self,
        label: str,
        server: core.Server,
        sender: Callable[[], dict[str, str]],
        recipient: Callable[[], dict[str, str]],
        stored_ids: Callable[[], list[str]],
    ) -> None:
        self.label, self.server = label, server
        self.sender, self.recipient = sender, recipient
        self.stored_ids = stored_ids
        self.runs = iter(range(1, 200))  # each ITI-65 run's uids differ: nothing is a re-send


def alternate(
    sides: list[Side],
    metric: str,
    measure: Callable[[Side, float], core.LoadResult],
    opts: argparse.Namespace,
    report: core.Report,
) -> dict[str, core.LoadResult]:
    """Each side's figure pooled over two runs in the order gateway, floors, floors reversed,
    gateway: measured one after the other minutes apart, two runs of nearly the same code gave
    PostgreSQL ITI-65 ratios of 0.37 and 0.46 (the gateway 108 and 102/s, its floor 294 and
    222/s); side by side, the machine's drift moves both."""
    backend = sides[0].server.name.split("/")[-1]
    gateway, floors = sides[0], sides[1:]
    runs: dict[str, list[core.LoadResult]] = {side.label: [] for side in sides}
    for side in [gateway, *floors, *reversed(floors), gateway]:
        runs[side.label].append(
            core.run_load(
                f"{backend} {side.label} {metric}",
                lambda s, side=side: measure(side, s),  # type: ignore[misc]
                opts.warmup,
                opts.duration,
                report,
                side.server,
            )
        )
    return {label: core.pooled(results) for label, results in runs.items()}


def start_floors(
    backend: str,
    urls: dict[str, str],
    opts: argparse.Namespace,
    report: core.Report,
    running: contextlib.ExitStack,
) -> list[Side]:
    """Each floor variant started beside the gateway (idle while the others are measured)."""
    sides = []
    for variant, url in urls.items():
        floor = core.Server(
            f"exchange-floor-{variant}/{backend}",
            "exchange_floor_app:create_app",
            {"FLOOR_DATABASE_URL": url},
            opts.tmp / "logs" / f"exchange-floor-{variant}-{backend}.log",
        )
        log(f"{backend}: exchange floor ({variant} drivers: {url.split(':')[0]}) on {floor.port}")
        try:
            running.enter_context(floor)
            check_exchange(floor, opts.template, opts.pdf, {}, {})
        except Exception as exc:  # one floor variant failing leaves the other as the bar
            report.warn(f"{backend} exchange floor ({variant}) failed: {type(exc).__name__}: {exc}")
            continue
        sides.append(
            Side(
                f"floor-{variant}",
                floor,
                dict,
                dict,
                lambda url=url: document_ids(url, opts.max_ids),  # type: ignore[misc]
            )
        )
    return sides


def measure_throughput(
    sides: list[Side],
    opts: argparse.Namespace,
    report: core.Report,
    loadgen: ExchangeLoad,
    profiler: core.Profiler,
    details: dict[str, Any],
) -> dict[str, tuple[core.LoadResult, core.LoadResult]]:
    """ITI-65 submissions/s, then ITI-68 retrieves/s of what each side stored, alternated."""
    backend = sides[0].server.name.split("/")[-1]
    provided = alternate(
        sides,
        "ITI-65",
        lambda side, s: loadgen.provide(
            side.server.url, s, opts.template_file, next(side.runs), side.sender()
        ),
        opts,
        report,
    )
    ids_files = {side.label: opts.tmp / f"{side.label}-binary-ids-{backend}.txt" for side in sides}
    for side in sides:
        ids = side.stored_ids()
        log(f"  {backend} {side.label} holds {len(ids)} documents the retrieves pick from")
        ids_files[side.label].write_text("\n".join(ids) + "\n")
    retrieved = alternate(
        sides,
        "ITI-68",
        lambda side, s: loadgen.retrieve(
            side.server.url, s, ids_files[side.label], side.recipient()
        ),
        opts,
        report,
    )
    if profiler.enabled:
        gateway = sides[0]
        out = core.RESULTS_DIR / f"profile-exchange-{backend}-iti65.txt"
        with profiler.record(gateway.server.pid, opts.duration, out):
            loadgen.provide(
                gateway.server.url,
                opts.duration,
                opts.template_file,
                next(gateway.runs),
                gateway.sender(),
            )
        details["profile_iti65"] = core.summarise_profile(out)
        out = core.RESULTS_DIR / f"profile-exchange-{backend}-iti68.txt"
        with profiler.record(gateway.server.pid, opts.duration, out):
            loadgen.retrieve(
                gateway.server.url, opts.duration, ids_files[gateway.label], gateway.recipient()
            )
        details["profile_iti68"] = core.summarise_profile(out)
    return {label: (provided[label], retrieved[label]) for label in provided}


def add_rows(
    report: core.Report,
    backend: str,
    mine: tuple[core.LoadResult, core.LoadResult],
    floors: dict[str, tuple[core.LoadResult, core.LoadResult]],
) -> None:
    """Rates with their ratio to the faster floor; CPU per request next to the cheaper floor."""
    for index, metric, target in (
        (0, "ITI-65 submissions/s", TARGET_SUBMISSIONS),
        (1, "ITI-68 retrieves/s", TARGET_RETRIEVES),
    ):
        rates = {v: pair[index].rate for v, pair in floors.items()}
        report.rows.append(core.throughput_row(backend, metric, mine[index].rate, rates, target))
    for index, metric in ((0, "server CPU ms/submission"), (1, "server CPU ms/retrieve")):
        cpu = {
            v: ms
            for v, pair in floors.items()
            if (ms := pair[index].cpu_ms_per_request) is not None
        }
        if mine[index].cpu_ms_per_request is not None:
            report.rows.append(
                core.Row(
                    backend,
                    metric,
                    mine[index].cpu_ms_per_request,
                    min(cpu.values()) if cpu else None,
                    floors=cpu,
                )
            )


def bench_backend(
    store: core.Store,
    opts: argparse.Namespace,
    report: core.Report,
    loadgen: ExchangeLoad,
    profiler: core.Profiler,
) -> None:
    backend = store.backend
    details: dict[str, Any] = {}
    report.details[backend] = details
    logs = opts.tmp / "logs"
    logs.mkdir(exist_ok=True)
    data_dir = opts.tmp / f"{backend}-gateway-data"
    env = {
        "ZORGBRUG_DATA_DIR": str(data_dir),
        "ZORGBRUG_DATABASE_URL": store.gateway_url,
        "ZORGBRUG_DELIVERY_WORKER": "false",
    }
    gateway = core.Server(
        f"gateway/{backend}", "gateway.api.app:create_app", env, logs / f"gateway-{backend}.log"
    )
    sender = core.Auth(gateway, core.ROOT, data_dir, store.gateway_url, SENDER)
    recipient = core.Auth(gateway, core.ROOT, data_dir, store.gateway_url, RECIPIENT)
    log(f"{backend}: gateway on port {gateway.port}")
    with contextlib.ExitStack() as running:
        running.enter_context(gateway)
        sender.enable()  # zorgbrug demo: the demo hospitals, their clients and keys
        recipient.required = True
        if opts.memory_only:
            results = {}
        else:
            check_exchange(gateway, opts.template, opts.pdf, sender.headers(), recipient.headers())
            sides = [
                Side(
                    "gateway",
                    gateway,
                    sender.headers,
                    recipient.headers,
                    lambda: gateway_binary_ids(gateway, recipient, opts.max_ids),
                )
            ]
            sides += start_floors(backend, store.floor_urls, opts, report, running)
            results = measure_throughput(sides, opts, report, loadgen, profiler, details)
    if results:
        mine = results.pop("gateway")
        floors = {label.removeprefix("floor-"): pair for label, pair in results.items()}
        details["gateway"] = {"iti65": asdict(mine[0]), "iti68": asdict(mine[1])}
        details["floors"] = {
            v: {"iti65": asdict(p), "iti68": asdict(r)} for v, (p, r) in floors.items()
        }
        add_rows(report, backend, mine, floors)

    if opts.memory:
        log(f"{backend}: memory, each case in a fresh gateway process")
        details["memory"] = measure_memory(backend, env, (data_dir, store.gateway_url), opts)


# -- report ----------------------------------------------------------------------------------


def render_table(report: core.Report, opts: argparse.Namespace) -> str:
    header = ("backend", "metric", "gateway", "floor", "ratio", "target", "met", "floor variants")
    lines = []
    for row in report.rows:
        met = "" if row.met is None else ("yes" if row.met else "NO")
        variants = " ".join(f"{k}={v:.2f}" for k, v in row.floors.items())
        digits = 2 if "CPU" in row.metric else 1
        lines.append(
            (
                row.backend,
                row.metric,
                core._fmt(row.gateway, digits),
                core._fmt(row.floor, digits),
                core._fmt(row.ratio, 2),
                row.target or "-",
                met,
                variants,
            )
        )
    widths = [max(len(str(x[i])) for x in [header, *lines]) for i in range(len(header))]
    out = []
    for n, line in enumerate([header, *lines]):
        cells = [
            str(c).ljust(widths[i]) if i in (0, 1, 7) else str(c).rjust(widths[i])
            for i, c in enumerate(line)
        ]
        out.append("  ".join(cells).rstrip())
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    for backend, reason in report.skipped.items():
        out.append(f"{backend:<8}  skipped: {reason}")
    out.append("")
    out.append(
        f"document: a {len(opts.pdf)}-byte PDF ({len(opts.template)}-byte ITI-65 body); "
        "floor = the faster floor variant (async / sync drivers) for rates, the cheaper for CPU;"
    )
    out.append(
        "ratio = gateway / floor (for CPU: the gateway costs that many times the floor's CPU)"
    )
    memory = [(b, d["memory"]) for b, d in report.details.items() if "memory" in d]
    if memory:
        out.append("")
        out.append("memory (peak RSS growth of a fresh gateway process, VmHWM after - before):")
        for backend, figures in memory:
            for case, f in figures.items():
                what = (
                    f"raw upload+download of {f['content_bytes'] / MIB:g} MiB"
                    if case == "raw"
                    else f"ITI-65 of {f['content_bytes'] / MIB:g} MiB"
                )
                alone = (
                    f" (upload alone +{f['upload_growth_bytes'] / MIB:.1f} MiB)"
                    if "upload_growth_bytes" in f
                    else ""
                )
                out.append(
                    f"  {backend:<8} {what}: peak RSS +{f['peak_growth_bytes'] / MIB:.1f} MiB = "
                    f"{f['times_content']:.2f} times the content{alone}"
                )
    out.extend(report.notes)
    return "\n".join(out)


# -- main ------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", default="sqlite,postgres", help="comma-separated")
    parser.add_argument(
        "--pg-dsn",
        default=os.environ.get("BENCH_PG_DSN", core.DEFAULT_PG_DSN),
        help="admin DSN; the benchmark CREATEs and DROPs its own databases",
    )
    parser.add_argument("--duration", type=float, default=10, help="seconds per measurement")
    parser.add_argument("--warmup", type=float, default=3, help="seconds of warm-up before each")
    parser.add_argument("--threads", type=int, default=2, help="load generator threads")
    parser.add_argument("--connections", type=int, default=32, help="concurrent connections")
    parser.add_argument("--pdf-kib", type=int, default=100, help="size of the generated PDF")
    parser.add_argument("--pdf", type=Path, help="a PDF file to send instead of the generated one")
    parser.add_argument("--max-ids", type=int, default=5000, help="documents retrieves pick from")
    parser.add_argument("--floors", default="async,sync", help="floor variants: async, sync")
    parser.add_argument("--raw-mib", type=int, default=48, help="memory: raw upload size")
    parser.add_argument("--iti65-mib", type=int, default=20, help="memory: ITI-65 document size")
    parser.add_argument("--no-memory", dest="memory", action="store_false")
    parser.add_argument(
        "--memory-only", action="store_true", help="only the memory step (no throughput, floors)"
    )
    parser.add_argument("--loadgen", choices=("auto", "wrk", "python"), default="auto")
    parser.add_argument(
        "--profile", action="store_true", help="also py-spy the gateway (extra, unmeasured runs)"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: 1 s warm-up + 3 s measurements, memory with 16 MiB raw / 5 MiB ITI-65",
    )
    parser.add_argument("--output", type=Path, default=core.RESULTS_DIR / "exchange.json")
    opts = parser.parse_args(argv)
    opts.floors = [f.strip() for f in opts.floors.split(",") if f.strip()]
    if not set(opts.floors) <= {"async", "sync"}:
        parser.error("--floors takes async and/or sync")
    if opts.quick:
        opts.duration, opts.warmup, opts.raw_mib, opts.iti65_mib = 3, 1, 16, 5
    return opts


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    started = time.perf_counter()
    report = core.Report()
    core.RESULTS_DIR.mkdir(exist_ok=True)
    kind = core.choose_load_generator(opts.loadgen, report)
    profiler = core.Profiler(opts.profile, report)
    backends = [b.strip() for b in opts.backends.split(",") if b.strip()]
    if not _have("asyncpg"):  # bench/run.py administers PostgreSQL with asyncpg
        core._pg_execute = _psycopg_execute
    speed = core.machine_speed()
    opts.pdf = opts.pdf.read_bytes() if opts.pdf else make_pdf(opts.pdf_kib * 1024)
    opts.template = bundle_template(opts.pdf)
    log(
        f"Zorgbrug exchange benchmark: {', '.join(backends)}; load generator {kind} "
        f"({opts.threads} threads, {opts.connections} connections, {opts.warmup:g}s warm-up + "
        f"{opts.duration:g}s per measurement); {len(opts.pdf)}-byte PDF, "
        f"{len(opts.template)}-byte ITI-65 body; machine speed {speed} s (run.py machine_speed)"
    )
    with tempfile.TemporaryDirectory(prefix="zorgbrug-bench-exchange-") as tmp_name:
        opts.tmp = Path(tmp_name)
        opts.template_file = opts.tmp / "iti65-template.json"
        opts.template_file.write_bytes(opts.template)
        loadgen = ExchangeLoad(kind, opts.threads, opts.connections, opts.tmp)
        for backend in backends:
            backend_started = time.perf_counter()
            try:
                floors = floor_variants(backend, opts.floors, report)
                if backend == "sqlite":
                    with core.sqlite_stores(opts.tmp, floors) as store:
                        bench_backend(store, opts, report, loadgen, profiler)
                elif backend == "postgres":
                    reason = core.pg_unreachable(opts.pg_dsn)
                    if reason:
                        report.skipped[backend] = reason
                        log(f"postgres skipped: {reason}")
                        continue
                    core.drop_stale_pg_databases(opts.pg_dsn)
                    with core.postgres_stores(opts.pg_dsn, floors) as store:
                        bench_backend(store, opts, report, loadgen, profiler)
                else:
                    report.skipped[backend] = "unknown backend"
                    continue
            except Exception as exc:  # report the failure, go on with the next backend
                report.skipped[backend] = f"failed: {type(exc).__name__}: {exc}"[:2000]
                log(f"{backend} FAILED: {exc}")
                logs = opts.tmp / "logs"
                for path in sorted(logs.glob(f"*{backend}.log")) if logs.exists() else []:
                    tail = "\n".join(path.read_text(errors="replace").splitlines()[-20:])
                    log(f"--- {path.name} (tail) ---\n{tail}")
            report.details.setdefault(backend, {})["seconds"] = round(
                time.perf_counter() - backend_started, 1
            )
    elapsed = time.perf_counter() - started
    table = render_table(report, opts)
    print()
    print(table)
    print()
    for warning in report.warnings:
        print(f"warning: {warning}")
    if opts.quick:
        print("quick run: short measurements, small memory cases; the figures are noisy")
    print(f"total time {elapsed / 60:.1f} min; results in {opts.output}")
    document = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "seconds": round(elapsed, 1),
        "quick": opts.quick,
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "speed_s": speed,
        },
        "git": core._git_describe(),
        "settings": {
            "load_generator": kind,
            "threads": opts.threads,
            "connections": opts.connections,
            "duration_s": opts.duration,
            "warmup_s": opts.warmup,
            "pdf_bytes": len(opts.pdf),
            "iti65_body_bytes": len(opts.template),
            "max_ids": opts.max_ids,
            "floors": opts.floors,
            "memory_raw_mib": opts.raw_mib if opts.memory else None,
            "memory_iti65_mib": opts.iti65_mib if opts.memory else None,
            "uvicorn_flags": core.UVICORN_FLAGS,
        },
        "targets": {"iti65_ratio": TARGET_SUBMISSIONS, "iti68_ratio": TARGET_RETRIEVES},
        "rows": [asdict(r) | {"ratio": r.ratio} for r in report.rows],
        "skipped": report.skipped,
        "warnings": report.warnings,
        "details": report.details,
        "table": table,
    }
    opts.output.parent.mkdir(parents=True, exist_ok=True)
    opts.output.write_bytes(orjson.dumps(document, option=orjson.OPT_INDENT_2))
    measured = report.rows or any("memory" in d for d in report.details.values())
    return 0 if measured else 1


if __name__ == "__main__":
    sys.exit(main())
