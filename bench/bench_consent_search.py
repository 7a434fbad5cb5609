"""Consent search benchmark: search throughput with consent filtering against without it.

For each backend (SQLite, PostgreSQL), on one store:

1. Seed: ``zorgbrug demo`` (hospitals 90000001..3, one data-sharing agreement for treatment among
   all three); then ``--patients`` nl-core Patients spread evenly over the three hospitals, each
   with ``--observations`` lab/vital Observations (bench/fhirdata.py), posted by each hospital's
   own integration in transaction Bundles; every hospital has its own patients (distinct BSNs).
   Then ``--consent-share`` of each hospital's patients get Consents, recorded by their hospital
   through the FHIR API (``POST /fhir`` transaction Bundles of Consents, named by BSN; builders
   of tests/consent/consent_builders.py), in these shapes::

     network       50%  permit: every organisation with an agreement, every category
     results       15%  permit limited to results (GGC012): opens the Observations
     medication    10%  permit limited to medication (GGC013): does not open them
     one-hospital  10%  permit to one named other hospital
     permit+deny   10%  a network permit plus a deny for one named other hospital (two Consents)
     objection      5%  deny (OPTOUT) to everyone

   A patient's Consents are always in one Bundle (one transaction; see record_consents).
   On PostgreSQL the store is ANALYZEd once after seeding, so that autoanalyze cannot change the
   plans between the alternating runs.
2. Measure, as hospital 90000001 (bearer token of its demo integration), four searches:

     own            Observation?patient.identifier=<BSN> of its own patients
     other, opened  the same for another hospital's patients whose consent opens them to it
     other, closed  the same for another hospital's patients whose consent does not (or none)
     broad          Observation?code=<LOINC>&_count=20 (a page of 20; more follow, so the
                    gateway states no total)
     broad, _total=accurate   the same with the number of all matches, which the gateway
                    counts only when asked

   each against the real gateway and the consent-free app (bench/consent_free_app.py: the same
   gateway whose ResourceService.visibility has no ConsentScope, so no consent arm in the SQL),
   one uvicorn process at a time on the same store, alternating ABBA for ``--rounds`` rounds
   (at least 2); per run: ``--samples`` sequential requests per search (latency of one
   request alone, and a check of every answer's total), then wrk throughput (bench/wrk/
   consent_search.lua: ``--connections`` connections over the search's paths at random) with
   its p50/p95 and the server's CPU per request (the uvicorn process; on PostgreSQL also the
   database backends serving this store). Figures are medians over the rounds.
3. SQL breakdown: the page statement (counting all matches only with _total=accurate) the service compiles for one request of
   each search, timed in this process with and without the consent arm, with their query plans
   (EXPLAIN QUERY PLAN / EXPLAIN ANALYZE): what dominates when a ratio is low.

Target: searches/s with consent >= 0.7 of without, for every search. The consent-free app sees
less (other hospitals' data never), so its totals are smaller: that is what consent costs too.
Results: tables on stdout and bench/results/consent_search.json.

Usage: python bench/bench_consent_search.py [--backends sqlite,postgres] [--patients 20000]
       [--duration 10] [--rounds 2] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import importlib.util
import json
import multiprocessing
import os
import platform
import queue
import random
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

import orjson
import run as core  # bench/run.py: servers, auth, load generation, stores

sys.path.insert(0, str(core.ROOT / "tests" / "consent"))
from consent_builders import consent_json, provision  # the consent package's builders

fhirdata = core.fhirdata

HOSPITALS = ("90000001", "90000002", "90000003")
SEARCHER = HOSPITALS[0]
TARGET_RATIO = 0.7
BSN_SYSTEM = fhirdata.BSN_SYSTEM
BSN_BASE = 30_000_000  # hospital i's BSNs: from the 8-digit number BSN_BASE + i * 1,000,000
# Consent shapes (see the docstring) and their share of the patients with consent.
SHAPES = {
    "network": 0.50,
    "results": 0.15,
    "medication": 0.10,
    "one-hospital": 0.10,
    "permit+deny": 0.10,
    "objection": 0.05,
}
SEARCHES = ("own", "other, opened", "other, closed", "broad", "broad, _total=accurate")
APPS = ("with consent", "without")
MAX_PATHS = 3000  # request paths per search (BSNs picked at random among the eligible)


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


# -- the store -----------------------------------------------------------------------------


@dataclass
class Seeded:
    """What was seeded: each hospital's patients (BSNs) and the consent shape of each patient."""

    patients: dict[str, list[str]] = field(default_factory=dict)
    shapes: dict[str, tuple[str, str, str | None]] = field(default_factory=dict)  # bsn -> ...
    resources: int = 0
    consents: int = 0
    seed_seconds: float = 0.0
    consent_seconds: float = 0.0


def post_bundles(
    url: str,
    jobs: list[tuple[str, bytes]],
    auths: dict[str, core.Auth],
    workers: int,
    what: str,
    expected_entries: list[int],
) -> None:
    """POST transaction Bundles (org, body) over ``workers`` keep-alive connections."""
    work: queue.Queue[int | None] = queue.Queue()
    for i in range(len(jobs)):
        work.put(i)
    for _ in range(workers):
        work.put(None)
    failures: list[str] = []
    done = [0]
    lock = threading.Lock()
    started = time.perf_counter()

    def worker() -> None:
        host, port = url.removeprefix("http://").split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=600)
        while (i := work.get()) is not None:
            if failures:
                continue
            org, body = jobs[i]
            headers = {"Content-Type": "application/fhir+json"} | auths[org].headers()
            conn.request("POST", "/fhir", body, headers)
            response = conn.getresponse()
            data = response.read()
            if response.status != 200:
                failures.append(f"{org}: {response.status}: {data[:600]!r}")
                continue
            entries = orjson.loads(data).get("entry") or []
            if len(entries) != expected_entries[i]:
                failures.append(f"{org}: {len(entries)} entries of {expected_entries[i]}")
                continue
            with lock:
                before = done[0]
                done[0] += 1
                step = max(len(jobs) // 5, 1)
                if done[0] // step > before // step:
                    elapsed = time.perf_counter() - started
                    log(f"  {what}: {done[0]}/{len(jobs)} bundles ({elapsed:.0f}s)")
        conn.close()

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failures:
        raise RuntimeError(f"{what} failed: {failures[0]}")


def seed_patients(
    url: str, auths: dict[str, core.Auth], opts: argparse.Namespace, seeded: Seeded
) -> None:
    """Patients with Observations, spread evenly over the hospitals, each posting its own."""
    rng = random.Random(20_261_123)
    per_bundle = max(1, opts.bundle_size // (1 + opts.observations))
    jobs: list[tuple[str, bytes]] = []
    sizes: list[int] = []
    for i, org in enumerate(HOSPITALS):
        count = opts.patients // len(HOSPITALS) + (i < opts.patients % len(HOSPITALS))
        bsns = fhirdata.bsn_stream(BSN_BASE + i * 1_000_000)
        values = [next(bsns) for _ in range(count)]
        seeded.patients[org] = values
        for start in range(0, count, per_bundle):
            chunk = values[start : start + per_bundle]
            body, _about = fhirdata.transaction_bundle(rng, chunk, [opts.observations] * len(chunk))
            jobs.append((org, body))
            sizes.append(len(chunk) * (1 + opts.observations))
    # Interleave the hospitals, as their integrations would post side by side.
    order = list(range(len(jobs)))
    rng.shuffle(order)
    jobs = [jobs[k] for k in order]
    sizes = [sizes[k] for k in order]
    started = time.perf_counter()
    post_bundles(url, jobs, auths, opts.seed_workers, "seeding", sizes)
    seeded.seed_seconds = time.perf_counter() - started
    seeded.resources = sum(sizes)


def consents_of(shape: str, bsn: str, target: str | None, n: int) -> list[dict[str, Any]]:
    """The Consent resources of one patient's shape (``target``: the hospital one names)."""
    rules: list[tuple[dict[str, Any], str]]
    if shape == "network":
        rules = [(provision("permit"), "OPTIN")]
    elif shape == "results":
        rules = [(provision("permit", categories=["results"]), "OPTIN")]
    elif shape == "medication":
        rules = [(provision("permit", categories=["medication"]), "OPTIN")]
    elif shape == "one-hospital":
        rules = [(provision("permit", to=[target or ""]), "OPTIN")]
    elif shape == "permit+deny":
        rules = [(provision("permit"), "OPTIN"), (provision("deny", to=[target or ""]), "OPTOUT")]
    else:
        rules = [(provision("deny"), "OPTOUT")]
    out = []
    for k, (rule, policy_rule) in enumerate(rules):
        resource = consent_json(f"c{n}-{k}", rule, patient=bsn, policy_rule=policy_rule)
        resource.pop("id")
        resource.pop("organization")  # the recording hospital is the owner
        out.append(resource)
    return out


def opens_to(searcher: str, shape: str | None, target: str | None) -> bool:
    """Whether a patient's consents open their (result) Observations to ``searcher``."""
    if shape in ("network", "results"):
        return True
    if shape == "one-hospital":
        return target == searcher
    if shape == "permit+deny":
        return target != searcher
    return False  # no consent, medication only, objection


def record_consents(
    url: str, auths: dict[str, core.Auth], opts: argparse.Namespace, seeded: Seeded
) -> None:
    """Each hospital records Consents for ``--consent-share`` of its patients."""
    rng = random.Random(59_284)
    names, weights = list(SHAPES), list(SHAPES.values())
    jobs: list[tuple[str, bytes]] = []
    sizes: list[int] = []
    n = 0
    for org, bsns in seeded.patients.items():
        chosen = rng.sample(bsns, round(len(bsns) * opts.consent_share))
        others = [h for h in HOSPITALS if h != org]
        # One patient's Consents go in one Bundle (one transaction). Split over two Bundles
        # posted side by side, PostgreSQL (READ COMMITTED) once kept the consent_grants rows
        # computed in one transaction from only its own Consent (a deny lost, seen in this
        # benchmark); PolicyInformation.refresh_patient now serialises them per patient
        # (tests/gateway/consent: test_a_deny_recorded_at_the_same_moment_as_a_permit_...).
        bundles: list[list[dict[str, Any]]] = [[]]
        for bsn in chosen:
            shape = rng.choices(names, weights)[0]
            target = rng.choice(others) if shape in ("one-hospital", "permit+deny") else None
            seeded.shapes[bsn] = (org, shape, target)
            group = [
                {"resource": resource, "request": {"method": "POST", "url": "Consent"}}
                for resource in consents_of(shape, bsn, target, n)
            ]
            if bundles[-1] and len(bundles[-1]) + len(group) > opts.consent_bundle:
                bundles.append([])
            bundles[-1].extend(group)
            n += 1
        for chunk in bundles:
            if chunk:
                bundle = {"resourceType": "Bundle", "type": "transaction", "entry": chunk}
                jobs.append((org, orjson.dumps(bundle)))
                sizes.append(len(chunk))
    started = time.perf_counter()
    post_bundles(url, jobs, auths, opts.seed_workers, "consents", sizes)
    seeded.consent_seconds = time.perf_counter() - started
    seeded.consents = sum(sizes)


# -- the searches --------------------------------------------------------------------------


@dataclass
class Search:
    """One kind of search: its request paths and the total each app must answer for each."""

    name: str
    paths: list[str]
    expected: dict[str, list[int | None]]  # app -> total per path (None: none stated)
    file: Path | None = None


def by_bsn(bsn: str) -> str:
    return f"/fhir/Observation?patient.identifier={quote(f'{BSN_SYSTEM}|{bsn}', safe=':/')}"


def broad(code: str) -> str:
    return f"/fhir/Observation?code={quote(f'{fhirdata.LOINC}|{code}', safe=':/')}&_count=20"


def broad_codes(per_patient: int) -> list[str]:
    """The LOINC codes the broad search asks for: the first (up to) three that were seeded."""
    return [c[0] for c in fhirdata.OBSERVATION_CODES[: min(per_patient, 3)]]


def build_searches(
    seeded: Seeded, opts: argparse.Namespace, baseline: dict[str, int], tmp: Path
) -> dict[str, Search]:
    rng = random.Random(718)
    per = opts.observations
    own = seeded.patients[SEARCHER]
    others = [b for org, bsns in seeded.patients.items() if org != SEARCHER for b in bsns]

    def opened(bsn: str) -> bool:
        _org, shape, target = seeded.shapes.get(bsn, ("", None, None))
        return opens_to(SEARCHER, shape, target)

    open_bsns = [b for b in others if opened(b)]
    closed_bsns = [b for b in others if not opened(b)]

    def sample(values: list[str]) -> list[str]:
        return rng.sample(values, min(MAX_PATHS, len(values)))

    searches = {
        "own": Search("own", [], {}),
        "other, opened": Search("other, opened", [], {}),
        "other, closed": Search("other, closed", [], {}),
        "broad": Search("broad", [], {}),
        "broad, _total=accurate": Search("broad, _total=accurate", [], {}),
    }
    for name, values, with_consent, without in (
        ("own", sample(own), per, per),
        ("other, opened", sample(open_bsns), per, 0),
        ("other, closed", sample(closed_bsns), 0, 0),
    ):
        searches[name].paths = [by_bsn(b) for b in values]
        searches[name].expected = {
            "with consent": [with_consent] * len(values),
            "without": [without] * len(values),
        }
    # fhirdata.transaction_bundle gives a patient's k-th Observation code k mod 5.
    codes = broad_codes(per)
    each = {
        code: sum(k % len(fhirdata.OBSERVATION_CODES) == i for k in range(per))
        for i, code in enumerate(codes)
    }
    searches["broad"].paths = [broad(code) for code in codes]
    searches["broad"].expected = {app: [None] * len(codes) for app in APPS}
    counted = searches["broad, _total=accurate"]
    counted.paths = [f"{broad(code)}&_total=accurate" for code in codes]
    counted.expected = {
        "with consent": [baseline.get(c, 0) + (len(own) + len(open_bsns)) * each[c] for c in codes],
        "without": [baseline.get(c, 0) + len(own) * each[c] for c in codes],
    }
    for search in searches.values():
        if not search.paths:
            raise RuntimeError(f"no request paths for the search '{search.name}'")
        search.file = tmp / f"paths-{re.sub(r'[^a-z]+', '-', search.name)}.txt"
        search.file.write_text("\n".join(search.paths) + "\n")
    return searches


def total_of(server: core.Server, path: str, auth: core.Auth) -> int:
    sep = "&" if "?" in path else "?"
    status, _, data = core.http_request(
        server.url, "GET", f"{path}{sep}_summary=count", headers=auth.headers()
    )
    if status != 200:
        raise RuntimeError(f"{path} answered {status}: {data[:300]!r}")
    return int(orjson.loads(data)["total"])


# -- load ----------------------------------------------------------------------------------


@dataclass
class SearchLoad(core.LoadResult):
    latency_p95_ms: float | None = None
    db_cpu_s: float | None = None  # PostgreSQL backends serving this store (None on SQLite)

    @property
    def db_cpu_ms_per_request(self) -> float | None:
        if self.db_cpu_s is None or not self.requests:
            return None
        return 1000 * self.db_cpu_s / self.requests


class SearchLoadGenerator(core.LoadGenerator):
    """GETs of request paths from a file: wrk (bench/wrk/consent_search.lua) or Python."""

    def search(
        self, url: str, seconds: float, paths_file: Path, headers: dict[str, str]
    ) -> SearchLoad:
        if self.kind != "wrk":
            return _python_search(url, seconds, paths_file, headers, self)
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
            str(self._script("consent_search")),
            *extra,
            url,
            "--",
            str(paths_file),
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
        return SearchLoad(
            summary["requests"],
            summary["duration_us"] / 1e6,
            errors,
            summary["latency_p50_us"] / 1000,
            summary["latency_p99_us"] / 1000,
            "wrk",
            latency_p95_ms=summary["latency_p95_us"] / 1000,
        )


def _python_search(
    url: str, seconds: float, paths_file: Path, headers: dict[str, str], gen: core.LoadGenerator
) -> SearchLoad:
    """The fallback: ``gen.threads`` processes of asyncio keep-alive connections."""
    n = gen.threads
    per_process = [gen.connections // n + (i < gen.connections % n) for i in range(n)]
    with multiprocessing.get_context("spawn").Pool(n) as pool:
        parts = pool.starmap(
            _python_search_worker,
            [(url, seconds, c, i, paths_file, headers) for i, c in enumerate(per_process)],
        )
    latencies = sorted(x for part in parts for x in part[2])
    return SearchLoad(
        sum(p[0] for p in parts),
        seconds,
        sum(p[1] for p in parts),
        core._percentile(latencies, 50),
        core._percentile(latencies, 99),
        "python",
        latency_p95_ms=core._percentile(latencies, 95),
    )


def _python_search_worker(
    url: str,
    seconds: float,
    connections: int,
    worker: int,
    paths_file: Path,
    headers: dict[str, str],
) -> tuple[int, int, list[float]]:
    host, port = url.removeprefix("http://").split(":")
    extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items()).encode()
    paths = paths_file.read_text().split()
    rng = random.Random(worker)

    async def connection(deadline: float, stats: list[Any]) -> None:
        reader, writer = await asyncio.open_connection(host, int(port))
        while time.monotonic() < deadline:
            started = time.perf_counter()
            writer.write(
                b"GET %s HTTP/1.1\r\nHost: %s\r\n%s\r\n"
                % (rng.choice(paths).encode(), host.encode(), extra)
            )
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


class DatabaseCpu:
    """CPU seconds of the PostgreSQL backends connected to one database (none on SQLite)."""

    def __init__(self, admin_dsn: str | None, database: str | None) -> None:
        self.admin_dsn = admin_dsn
        self.database = database

    def snapshot(self) -> dict[int, float] | None:
        if self.admin_dsn is None:
            return None
        (rows,) = asyncio.run(
            core._pg_execute(
                self.admin_dsn,
                [f"SELECT pid FROM pg_stat_activity WHERE datname = '{self.database}'"],
            )
        )
        found = {int(row[0]): core.process_cpu_seconds(int(row[0])) for row in rows}
        return {pid: cpu for pid, cpu in found.items() if cpu is not None}

    @staticmethod
    def used(before: dict[int, float] | None, after: dict[int, float] | None) -> float | None:
        if before is None or after is None:
            return None
        return round(sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items()), 2)


def sequential(
    server: core.Server, search: Search, app: str, auth: core.Auth, samples: int, warmup: int
) -> dict[str, Any]:
    """``samples`` requests one at a time (keep-alive) after ``warmup``; every total checked."""
    rng = random.Random(SEARCHES.index(search.name))  # the same requests for both apps
    host, port = server.url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=120)
    timings: list[float] = []
    wrong = 0
    example = ""
    for n in range(warmup + samples):
        k = rng.randrange(len(search.paths))
        path, expected = search.paths[k], search.expected[app][k]
        started = time.perf_counter()
        conn.request("GET", path, headers=auth.headers())
        response = conn.getresponse()
        body = response.read()
        elapsed = (time.perf_counter() - started) * 1000
        if n >= warmup:
            timings.append(elapsed)
        total = orjson.loads(body).get("total") if response.status == 200 else None
        if total != expected:
            wrong += 1
            example = example or f"{path} -> {response.status} total={total}, expected {expected}"
    conn.close()
    timings.sort()
    return {
        "p50_ms": core._percentile(timings, 50),
        "p95_ms": core._percentile(timings, 95),
        "mean_ms": statistics.fmean(timings),
        "samples": len(timings),
        "unexpected": wrong,
        "example": example,
    }


def throughput(
    name: str,
    server: core.Server,
    search: Search,
    auth: core.Auth,
    loadgen: SearchLoadGenerator,
    db_cpu: DatabaseCpu,
    opts: argparse.Namespace,
    report: core.Report,
) -> SearchLoad:
    assert search.file is not None

    def load(seconds: float) -> SearchLoad:
        return loadgen.search(server.url, seconds, search.file, auth.headers())  # type: ignore[arg-type]

    if opts.warmup > 0:
        load(opts.warmup)
    before = db_cpu.snapshot()
    result = core.run_load(name, load, 0, opts.duration, report, server)
    assert isinstance(result, SearchLoad)
    result.db_cpu_s = DatabaseCpu.used(before, db_cpu.snapshot())
    if result.db_cpu_s is not None and result.db_cpu_ms_per_request is not None:
        log(f"    database backends: {result.db_cpu_ms_per_request:.2f} CPU ms/request")
    return result


# -- the SQL breakdown ---------------------------------------------------------------------


def sql_breakdown(
    database_url: str, data_dir: Path, searches: dict[str, Search], repeats: int
) -> dict[str, Any]:
    """What one request of each search costs in the store layer, with and without the consent
    arm, measured in this process (medians of ``repeats`` after one warm-up): finding the page
    statement kept for the search's shape and binding its values (as ResourceService.search_in
    does for every request), then executing it (compiled-cache lookup, the database); and its
    plan (SQLite: EXPLAIN QUERY PLAN; PostgreSQL: EXPLAIN ANALYZE)."""
    from gateway.context import NETWORK
    from gateway.fhir.search import parse_search
    from gateway.fhir.search_params import registry
    from gateway.policy.information import READ_PURPOSE
    from gateway.store import repository
    from gateway.store.database import Database
    from gateway.store.search_shapes import search_statement
    from gateway.store.search_sql import ConsentScope, bound_visibility

    client = orjson.loads((data_dir / "demo" / SEARCHER / "client.json").read_bytes())
    db = Database(database_url, threads=1)
    explain = "EXPLAIN QUERY PLAN " if db.is_sqlite else "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) "
    out: dict[str, Any] = {}
    try:
        with db.engine.connect() as conn:
            snapshot = repository.max_rid(conn)

            def build(app: str, params: list[tuple[str, str]]) -> Any:
                # As ResourceService.visibility does per request (the default opt-in policy).
                scope = ConsentScope(
                    actor_id=client["client_id"],
                    purpose=READ_PURPOSE,
                    opt_out=False,
                )
                visible, values = bound_visibility(
                    SEARCHER, NETWORK, scope if app == "with consent" else None, addressed=True
                )
                query = parse_search(
                    "Observation",
                    params,
                    registry(),
                    default_count=20,
                    max_count=1000,
                    strict=True,
                    own_base="http://bench.invalid/fhir",
                )
                query.snapshot = snapshot
                # As ResourceService._page chooses.
                if query.total == "accurate":
                    return search_statement("counted", query, visible, values)
                kind = "page" if db.is_sqlite else "page, candidates first"
                return search_statement(kind, query, visible, values)

            for name, search in searches.items():
                path = search.paths[0]
                params = parse_qsl(urlsplit(path).query, keep_blank_values=True)
                figures: dict[str, Any] = {"path": path}
                for app in APPS:
                    times: dict[str, list[float]] = {"build": [], "page": []}
                    total, rows = 0, 0
                    for n in range(repeats + 1):  # the first fills SQLAlchemy's compiled cache
                        t0 = time.perf_counter()
                        page = build(app, params)
                        t1 = time.perf_counter()
                        found = conn.execute(*page).all()
                        t2 = time.perf_counter()
                        rows = len(found)
                        total = found[0].total if found and "total" in found[0]._fields else None
                        if n:
                            times["build"].append((t1 - t0) * 1000)
                            times["page"].append((t2 - t1) * 1000)
                    plans, sql = {}, {}
                    statement, values = page
                    compiled = statement.compile(dialect=db.engine.dialect)
                    bound = compiled.construct_params(values)
                    args = (
                        tuple(bound[name] for name in compiled.positiontup or ())
                        if compiled.positional
                        else bound
                    )
                    sql["page"] = str(compiled)
                    plan_rows = conn.exec_driver_sql(explain + sql["page"], args).all()
                    plans["page"] = [
                        (f"{r[0]}|{r[1]}| {r[3]}" if db.is_sqlite else str(r[0])) for r in plan_rows
                    ]
                    figures[app] = {
                        **{f"{k}_ms": round(statistics.median(v), 3) for k, v in times.items()},
                        "total": total,
                        "page_rows": rows,
                        "plans": plans,
                        "sql": sql,
                    }
                out[name] = figures
            conn.rollback()
    finally:
        db.engine.dispose()
    return out


# -- one backend ---------------------------------------------------------------------------


@dataclass
class App:
    name: str
    server: core.Server
    auth: core.Auth


def bench_backend(
    store: core.Store,
    opts: argparse.Namespace,
    tmp: Path,
    report: core.Report,
    loadgen: SearchLoadGenerator,
    admin: tuple[str, str] | None,
    profiler: core.Profiler,
) -> None:
    backend = store.backend
    details: dict[str, Any] = {}
    report.details[backend] = details
    logs = tmp / "logs"
    logs.mkdir(exist_ok=True)
    data_dir = tmp / f"{backend}-data"
    env = {
        "ZORGBRUG_DATA_DIR": str(data_dir),
        "ZORGBRUG_DATABASE_URL": store.gateway_url,
        "ZORGBRUG_DELIVERY_WORKER": "false",
    }
    gateway = core.Server(
        f"gateway/{backend}", "gateway.api.app:create_app", env, logs / f"gateway-{backend}.log"
    )
    free = core.Server(
        f"consent-free/{backend}",
        "consent_free_app:create_app",
        env,
        logs / f"consent-free-{backend}.log",
    )

    # -- seed the store through the real gateway ------------------------------------------------
    seeded = Seeded()
    with gateway:
        auths = {
            org: core.Auth(gateway, core.ROOT, data_dir, store.gateway_url, org)
            for org in HOSPITALS
        }
        auths[SEARCHER].enable()  # zorgbrug demo: hospitals, agreement, integrations, keys
        for auth in auths.values():
            auth.required = True
        baseline = {
            c: total_of(gateway, broad(c), auths[SEARCHER]) for c in broad_codes(opts.observations)
        }
        log(
            f"{backend}: seeding {opts.patients} Patients with {opts.observations} Observations "
            f"each over {len(HOSPITALS)} hospitals"
        )
        seed_patients(gateway.url, auths, opts, seeded)
        log(
            f"  {backend}: {seeded.resources} resources in {seeded.seed_seconds:.0f}s "
            f"({seeded.resources / max(seeded.seed_seconds, 1e-9):.0f}/s)"
        )
        record_consents(gateway.url, auths, opts, seeded)
        log(
            f"  {backend}: {seeded.consents} Consents for {len(seeded.shapes)} patients in "
            f"{seeded.consent_seconds:.0f}s ({seeded.consents / max(seeded.consent_seconds, 1e-9):.0f}/s)"
        )
    if admin is not None:
        started = time.perf_counter()
        asyncio.run(core._pg_execute(store.gateway_url, ["ANALYZE"]))
        log(f"  {backend}: ANALYZE after seeding ({time.perf_counter() - started:.1f}s)")
    searches = build_searches(seeded, opts, baseline, tmp)
    shapes = Counter(shape for _org, shape, _t in seeded.shapes.values())
    details["store"] = {
        "patients": {org: len(b) for org, b in seeded.patients.items()},
        "observations_per_patient": opts.observations,
        "resources_seeded": seeded.resources,
        "seed_seconds": round(seeded.seed_seconds, 1),
        "consents": seeded.consents,
        "patients_with_consent": len(seeded.shapes),
        "consent_shapes": dict(shapes),
        "consent_seconds": round(seeded.consent_seconds, 1),
        "paths": {name: len(s.paths) for name, s in searches.items()},
        "expected_totals": {
            name: {app: _mean(v) for app, v in s.expected.items()} for name, s in searches.items()
        },
        "analyzed": admin is not None,
    }
    log(
        f"  {backend}: consent shapes {dict(shapes)}; request paths "
        + ", ".join(f"{name} {len(s.paths)}" for name, s in searches.items())
    )

    # -- alternate the two apps: ABBA ------------------------------------------------------------
    apps = [
        App(
            "with consent",
            gateway,
            core.Auth(gateway, core.ROOT, data_dir, store.gateway_url, SEARCHER),
        ),
        App("without", free, core.Auth(free, core.ROOT, data_dir, store.gateway_url, SEARCHER)),
    ]
    db_cpu = DatabaseCpu(*admin) if admin else DatabaseCpu(None, None)
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {
        app.name: {s: [] for s in searches} for app in apps
    }
    for round_no in range(opts.rounds):
        order = apps if round_no % 2 == 0 else apps[::-1]
        for app in order:
            what = "the gateway" if app.name == "with consent" else "the consent-free app"
            log(f"{backend}: round {round_no + 1}/{opts.rounds}: {what} ({app.server.name})")
            with app.server:
                app.auth.required = True
                app.auth.obtained = 0.0  # a fresh token from this server
                for name, search in searches.items():
                    seq = sequential(
                        app.server, search, app.name, app.auth, opts.samples, opts.seq_warmup
                    )
                    if seq["unexpected"]:
                        report.warn(
                            f"{backend} {app.name}, '{name}': {seq['unexpected']} of "
                            f"{opts.samples + opts.seq_warmup} answers had an unexpected total, "
                            f"e.g. {seq['example']}"
                        )
                    load = throughput(
                        f"{backend} {app.name}, {name}",
                        app.server,
                        search,
                        app.auth,
                        loadgen,
                        db_cpu,
                        opts,
                        report,
                    )
                    log(
                        f"    sequential p50 {core._fmt(seq['p50_ms'], 2)} ms, "
                        f"p95 {core._fmt(seq['p95_ms'], 2)} ms"
                    )
                    runs[app.name][name].append(
                        asdict(load)
                        | {
                            "rate": load.rate,
                            "cpu_ms_per_request": load.cpu_ms_per_request,
                            "db_cpu_ms_per_request": load.db_cpu_ms_per_request,
                            "sequential": seq,
                        }
                    )
    details["runs"] = runs
    details["summary"] = summarise(runs, searches)

    if profiler.enabled:  # extra, unmeasured runs of the real gateway under py-spy
        app = apps[0]
        with app.server:
            app.auth.obtained = 0.0
            profiles = details.setdefault("profile", {})
            for name, search in searches.items():
                assert search.file is not None
                out = core.RESULTS_DIR / f"profile-consent-{backend}-{search.file.stem}.txt"
                log(f"{backend}: py-spy of the gateway, '{name}' -> {out}")
                with profiler.record(app.server.pid, opts.duration, out):
                    loadgen.search(app.server.url, opts.duration, search.file, app.auth.headers())
                profiles[name] = core.summarise_profile(out)

    if opts.explain:
        log(f"{backend}: SQL breakdown (page statements, {opts.explain_repeats} runs)")
        try:
            details["sql"] = sql_breakdown(
                store.gateway_url, data_dir, searches, opts.explain_repeats
            )
        except Exception as exc:  # the breakdown is a diagnosis: never lose the figures for it
            report.warn(f"{backend} SQL breakdown failed: {type(exc).__name__}: {exc}")


def _mean(values: list[int | None]) -> float | None:
    """The mean expected total, None where the answers state none."""
    present = [v for v in values if v is not None]
    return statistics.fmean(present) if present else None


def _median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def summarise(
    runs: dict[str, dict[str, list[dict[str, Any]]]], searches: dict[str, Search]
) -> dict[str, Any]:
    """Medians over the rounds, per app and search; the ratio of searches/s."""
    summary: dict[str, Any] = {}
    for name in searches:
        figures: dict[str, Any] = {}
        for app in APPS:
            rs = runs[app][name]
            figures[app] = {
                "rate": _median([r["rate"] for r in rs]),
                "rates": [round(r["rate"], 1) for r in rs],
                "p50_ms": _median([r["latency_p50_ms"] for r in rs]),
                "p95_ms": _median([r["latency_p95_ms"] for r in rs]),
                "seq_p50_ms": _median([r["sequential"]["p50_ms"] for r in rs]),
                "seq_p95_ms": _median([r["sequential"]["p95_ms"] for r in rs]),
                "cpu_ms": _median([r["cpu_ms_per_request"] for r in rs]),
                "db_cpu_ms": _median([r["db_cpu_ms_per_request"] for r in rs]),
                "errors": sum(r["errors"] for r in rs),
                "total": _mean(searches[name].expected[app]),
            }
        mine, bare = figures["with consent"]["rate"], figures["without"]["rate"]
        figures["ratio"] = mine / bare if mine is not None and bare else None
        figures["met"] = None if figures["ratio"] is None else figures["ratio"] >= TARGET_RATIO
        summary[name] = figures
    return summary


# -- report --------------------------------------------------------------------------------


def _table(header: tuple[str, ...], lines: list[tuple[str, ...]], left: set[int]) -> list[str]:
    widths = [max(len(str(x[i])) for x in [header, *lines]) for i in range(len(header))]
    out = []
    for n, line in enumerate([header, *lines]):
        cells = [
            str(c).ljust(widths[i]) if i in left else str(c).rjust(widths[i])
            for i, c in enumerate(line)
        ]
        out.append("  ".join(cells).rstrip())
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return out


def render_table(report: core.Report, opts: argparse.Namespace) -> str:
    f = core._fmt
    rates: list[tuple[str, ...]] = []
    latency: list[tuple[str, ...]] = []
    sql: list[tuple[str, ...]] = []
    for backend, details in report.details.items():
        for name, s in (details.get("summary") or {}).items():
            g, w = s["with consent"], s["without"]
            met = "" if s["met"] is None else ("yes" if s["met"] else "NO")
            rates.append(
                (
                    backend,
                    name,
                    f(g["rate"]),
                    f(w["rate"]),
                    f(s["ratio"], 2),
                    f">={TARGET_RATIO}",
                    met,
                    " ".join(f"{x:g}" for x in g["rates"])
                    + " / "
                    + " ".join(f"{x:g}" for x in w["rates"]),
                )
            )
            for app, x in (("with", g), ("without", w)):
                latency.append(
                    (
                        backend,
                        name,
                        app,
                        f(x["p50_ms"]),
                        f(x["p95_ms"]),
                        f(x["seq_p50_ms"], 2),
                        f(x["seq_p95_ms"], 2),
                        f(x["cpu_ms"], 2),
                        f(x["db_cpu_ms"], 2),
                        f(x["total"], 1),
                    )
                )
        for name, figures in (details.get("sql") or {}).items():
            for app, label in zip(APPS, ("with", "without"), strict=True):
                x = figures[app]
                sql.append(
                    (
                        backend,
                        name,
                        label,
                        f(x["build_ms"], 2),
                        f(x["page_ms"], 2),
                        f(x["build_ms"] + x["page_ms"], 2),
                        "-" if x["total"] is None else str(x["total"]),
                    )
                )
    out = _table(
        (
            "backend",
            "search",
            "with consent/s",
            "without/s",
            "ratio",
            "target",
            "met",
            "runs (with / without)",
        ),
        rates,
        {0, 1, 7},
    )
    for backend, reason in report.skipped.items():
        out.append(f"{backend:<8}  skipped: {reason}")
    out.append("")
    out += _table(
        (
            "backend",
            "search",
            "consent",
            "p50 ms",
            "p95 ms",
            "seq p50",
            "seq p95",
            "CPU ms/req",
            "DB CPU ms/req",
            "total",
        ),
        latency,
        {0, 1, 2},
    )
    if sql:
        out.append("")
        out += _table(
            (
                "backend",
                "search",
                "consent",
                "build ms",
                "page ms",
                "sum ms",
                "total",
            ),
            sql,
            {0, 1, 2},
        )
    out.append("")
    out.append(
        f"searches/s: wrk, {opts.connections} connections, {opts.duration:g}s per run after "
        f"{opts.warmup:g}s warm-up, median of {opts.rounds} runs per app (alternated ABBA); "
        "ratio = with / without consent filtering"
    )
    out.append(
        "p50/p95: under that load; seq p50/p95: one request at a time; CPU ms/req: the uvicorn "
        "process (on SQLite the database runs in it); DB CPU: the PostgreSQL backends of the store; "
        "total: matches per search"
    )
    if sql:
        out.append(
            "SQL breakdown (one request per search, in the benchmark process, medians): build = "
            "SQLAlchemy page statement; page = executing it; plans in the JSON"
        )
    out.extend(report.notes)
    return "\n".join(out)


def rows_of(report: core.Report) -> list[dict[str, Any]]:
    """The headline figures, one row per backend and search."""
    rows = []
    for backend, details in report.details.items():
        for name, s in (details.get("summary") or {}).items():
            g, w = s["with consent"], s["without"]
            rows.append(
                {
                    "backend": backend,
                    "search": name,
                    "with_consent_per_s": g["rate"],
                    "without_per_s": w["rate"],
                    "ratio": s["ratio"],
                    "target": TARGET_RATIO,
                    "met": s["met"],
                    "cpu_ms_per_request": {"with consent": g["cpu_ms"], "without": w["cpu_ms"]},
                    "db_cpu_ms_per_request": {
                        "with consent": g["db_cpu_ms"],
                        "without": w["db_cpu_ms"],
                    },
                }
            )
    return rows


# -- main ----------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", default="sqlite,postgres", help="comma-separated")
    parser.add_argument(
        "--pg-dsn",
        default=os.environ.get("BENCH_PG_DSN", core.DEFAULT_PG_DSN),
        help="admin DSN; the benchmark CREATEs and DROPs its own database",
    )
    parser.add_argument("--patients", type=int, default=20_000, help="over the three hospitals")
    parser.add_argument("--observations", type=int, default=3, help="per patient")
    parser.add_argument(
        "--consent-share", type=float, default=0.4, help="share of patients with Consents"
    )
    parser.add_argument("--bundle-size", type=int, default=500, help="entries per seed Bundle")
    parser.add_argument("--consent-bundle", type=int, default=100, help="Consents per Bundle")
    parser.add_argument("--seed-workers", type=int, default=2)
    parser.add_argument("--duration", type=float, default=10, help="seconds per measurement")
    parser.add_argument("--warmup", type=float, default=3, help="seconds of warm-up before each")
    parser.add_argument("--rounds", type=int, default=2, help="ABBA rounds (at least 2)")
    parser.add_argument("--threads", type=int, default=2, help="load generator threads")
    parser.add_argument("--connections", type=int, default=32, help="concurrent connections")
    parser.add_argument(
        "--samples", type=int, default=100, help="sequential requests per search and run"
    )
    parser.add_argument("--seq-warmup", type=int, default=10)
    parser.add_argument(
        "--no-explain", dest="explain", action="store_false", help="skip the SQL breakdown"
    )
    parser.add_argument("--explain-repeats", type=int, default=20)
    parser.add_argument("--loadgen", choices=("auto", "wrk", "python"), default="auto")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="also py-spy the gateway (extra, unmeasured runs) into bench/results/",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: 3,000 patients, 1 s warm-up + 3 s measurements, 20 sequential samples",
    )
    parser.add_argument("--output", type=Path, default=core.RESULTS_DIR / "consent_search.json")
    opts = parser.parse_args(argv)
    if opts.quick:
        opts.patients, opts.duration, opts.warmup = 3000, 3, 1
        opts.samples, opts.seq_warmup, opts.explain_repeats = 20, 3, 5
    if opts.rounds < 2:
        parser.error("--rounds: at least 2 (the apps alternate ABBA)")
    if opts.observations < 1:
        parser.error("--observations: at least 1")
    return opts


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    started = time.perf_counter()
    report = core.Report()
    core.RESULTS_DIR.mkdir(exist_ok=True)
    kind = core.choose_load_generator(opts.loadgen, report)
    profiler = core.Profiler(opts.profile, report)
    if not _have("asyncpg"):  # bench/run.py administers PostgreSQL with asyncpg
        core._pg_execute = _psycopg_execute
    backends = [b.strip() for b in opts.backends.split(",") if b.strip()]
    speed = core.machine_speed()
    log(
        f"Zorgbrug consent search benchmark: {', '.join(backends)}; {opts.patients} patients x "
        f"{opts.observations} Observations, {opts.consent_share:.0%} with consent; load "
        f"generator {kind} ({opts.threads} threads, {opts.connections} connections, "
        f"{opts.warmup:g}s + {opts.duration:g}s); {opts.rounds} rounds; machine speed {speed} s "
        "(run.py machine_speed)"
    )
    with tempfile.TemporaryDirectory(prefix="zorgbrug-bench-consent-") as tmp_name:
        tmp = Path(tmp_name)
        loadgen = SearchLoadGenerator(kind, opts.threads, opts.connections, tmp)
        for backend in backends:
            backend_started = time.perf_counter()
            try:
                if backend == "sqlite":
                    (tmp / "sqlite").mkdir(exist_ok=True)
                    store = core.Store("sqlite", f"sqlite:///{tmp / 'sqlite' / 'zorgbrug.db'}", {})
                    bench_backend(store, opts, tmp, report, loadgen, None, profiler)
                elif backend == "postgres":
                    reason = core.pg_unreachable(opts.pg_dsn)
                    if reason:
                        report.skipped[backend] = reason
                        log(f"postgres skipped: {reason}")
                        continue
                    core.drop_stale_pg_databases(opts.pg_dsn)
                    with core.postgres_stores(opts.pg_dsn, []) as store:
                        database = store.gateway_url.rsplit("/", 1)[1]
                        bench_backend(
                            store, opts, tmp, report, loadgen, (opts.pg_dsn, database), profiler
                        )
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
    table = render_table(report, opts)
    print()
    print(table)
    print()
    disturbed = [w for w in report.warnings if "other processes used" in w]
    for warning in report.warnings:
        if warning not in disturbed:
            print(f"warning: {warning}")
    if disturbed:
        shares = [int(m) for w in disturbed for m in re.findall(r"\((\d+)% of a core", w)[:1]]
        print(
            f"warning: {len(disturbed)} measurements were disturbed by other processes (up to "
            f"{max(shares, default=0)}% of a core; each is in the log above and in the JSON)"
        )
    if opts.quick:
        print("quick run: small store, short measurements; the figures are noisy")
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
            "rounds": opts.rounds,
            "patients": opts.patients,
            "observations_per_patient": opts.observations,
            "consent_share": opts.consent_share,
            "consent_shapes": SHAPES,
            "searcher": SEARCHER,
            "sequential_samples": opts.samples,
            "uvicorn_flags": core.UVICORN_FLAGS,
        },
        "target_ratio": TARGET_RATIO,
        "rows": rows_of(report),
        "skipped": report.skipped,
        "warnings": report.warnings,
        "details": report.details,
        "table": table,
    }
    opts.output.parent.mkdir(parents=True, exist_ok=True)
    opts.output.write_bytes(orjson.dumps(document, option=orjson.OPT_INDENT_2))
    measured = any("summary" in d for d in report.details.values())
    return 0 if measured else 1


if __name__ == "__main__":
    sys.exit(main())
