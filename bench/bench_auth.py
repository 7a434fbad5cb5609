"""Authentication benchmark: token issuance per second, and what verification costs on reads.

1. Token issuance: pre-signed ES384 client assertions of a demo hospital's integration are
   posted to ``/oauth/token`` from several threads; tokens per second.
2. Verification overhead: reads of ``GET /fhir/Patient/{id}`` with a bearer token against the
   gateway, and against the same gateway with authentication removed
   (``bench/unauthenticated_app.py``), on the same store, alternating twice; the overhead is
   ``1 - with_token / without``. Target: at most 10 %.

Usage: python bench/bench_auth.py [--patients 20000] [--duration 10] [--database-url URL]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import httpx
import orjson
import run as core  # bench/run.py: servers, load generation, seeding
from joserfc import jwt
from joserfc.jwk import ECKey

TARGET_OVERHEAD = 0.10
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def assertions(data_dir: Path, org: str, token_url: str, count: int) -> list[str]:
    """``count`` signed client assertions of the demo client of ``org``, each with its own jti."""
    directory = data_dir / "demo" / org
    client_id = orjson.loads((directory / "client.json").read_bytes())["client_id"]
    key = ECKey.import_key(orjson.loads((directory / "private_key.jwk.json").read_bytes()))
    exp = int(time.time()) + 280
    return [
        jwt.encode(
            {"alg": "ES384", "kid": key.kid, "typ": "JWT"},
            {
                "iss": client_id,
                "sub": client_id,
                "aud": token_url,
                "exp": exp,
                "jti": uuid.uuid4().hex,
            },
            key,
            algorithms=["ES384"],
        )
        for _ in range(count)
    ]


def token_rate(token_url: str, signed: list[str], threads: int) -> tuple[float, int]:
    """Tokens per second over ``threads`` connections, and how many requests failed."""
    chunks = [signed[i::threads] for i in range(threads)]
    failures = [0] * threads

    def worker(index: int) -> None:
        with httpx.Client(timeout=30) as http:
            for assertion in chunks[index]:
                response = http.post(
                    token_url,
                    data={
                        "grant_type": "client_credentials",
                        "scope": "system/*.rs",
                        "client_assertion_type": ASSERTION_TYPE,
                        "client_assertion": assertion,
                    },
                )
                failures[index] += response.status_code != 200

    workers = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    started = time.perf_counter()
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    elapsed = time.perf_counter() - started
    return (len(signed) - sum(failures)) / elapsed, sum(failures)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--patients", type=int, default=20_000)
    parser.add_argument("--duration", type=float, default=10)
    parser.add_argument("--warmup", type=float, default=2)
    parser.add_argument("--tokens", type=int, default=1500, help="token requests to time")
    parser.add_argument("--database-url", help="default: SQLite in a temporary directory")
    parser.add_argument("--org", default="90000001")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="py-spy both servers during the first round (bench/results/profile-auth-*.txt)",
    )
    opts = parser.parse_args(argv)
    report = core.Report()
    profiler = core.Profiler(opts.profile, report)
    kind = core.choose_load_generator("auto", report)
    with tempfile.TemporaryDirectory(prefix="zorgbrug-bench-auth-") as tmp_name:
        tmp = Path(tmp_name)
        data_dir = tmp / "data"
        url = opts.database_url or f"sqlite:///{data_dir / 'zorgbrug.db'}"
        env = {"ZORGBRUG_DATA_DIR": str(data_dir), "ZORGBRUG_DATABASE_URL": url}
        loadgen = core.LoadGenerator(kind, 2, 32, tmp)
        gateway = core.Server("gateway", "gateway.api.app:create_app", env, tmp / "gateway.log")
        open_gateway = core.Server(
            "gateway without auth",
            "unauthenticated_app:create_app",
            env | {"BENCH_AUTH_ORG": opts.org},
            tmp / "open.log",
        )
        auth = core.Auth(gateway, core.ROOT, data_dir, url, opts.org)
        with gateway:
            auth.enable()
            token_url = f"{gateway.url}/oauth/token"
            core.log(f"signing {opts.tokens} client assertions (not timed)")
            signed = assertions(data_dir, opts.org, token_url, opts.tokens + 200)
            token_rate(token_url, signed[:200], 4)  # warm-up
            tokens_per_s, token_failures = token_rate(token_url, signed[200:], 4)
            core.log(f"  token issuance: {tokens_per_s:.0f}/s ({token_failures} failed)")
            seeded = core.seed_gateway(gateway.url, opts.patients, 500, 2, auth, "sqlite")
        ids_file = tmp / "ids.txt"
        ids_file.write_text("\n".join(seeded.patient_ids) + "\n")
        rates: dict[str, list[float]] = {"with token": [], "without": []}
        cpu: dict[str, list[float]] = {"with token": [], "without": []}
        for _round in range(2):
            for name, server, headers in (
                ("with token", gateway, auth.headers),
                ("without", open_gateway, dict),
            ):
                profile = core.RESULTS_DIR / f"profile-auth-{name.replace(' ', '-')}.txt"
                with server:
                    recording = (
                        profiler.record(server.pid, opts.warmup + opts.duration, profile)
                        if _round == 0
                        else contextlib.nullcontext()
                    )
                    with recording:
                        result = core.run_load(
                            f"reads {name}",
                            lambda s, server=server, headers=headers: loadgen.read_patients(
                                server.url, s, ids_file, headers()
                            ),
                            opts.warmup,
                            opts.duration,
                            report,
                            server,
                        )
                rates[name].append(result.rate)
                if result.cpu_ms_per_request is not None:
                    cpu[name].append(result.cpu_ms_per_request)
    with_token = statistics.median(rates["with token"])
    without = statistics.median(rates["without"])
    overhead = 1 - with_token / without
    print()
    print(f"token issuance            {tokens_per_s:8.0f} tokens/s ({token_failures} failed)")
    print(f"reads/s with token        {with_token:8.0f}  (runs: {rates['with token']})")
    print(f"reads/s without auth      {without:8.0f}  (runs: {rates['without']})")
    verdict = "met" if overhead <= TARGET_OVERHEAD else "NOT met"
    print(f"authentication overhead   {100 * overhead:7.1f} %  (target <= 10 %: {verdict})")
    if cpu["with token"] and cpu["without"]:
        mine, bare = statistics.median(cpu["with token"]), statistics.median(cpu["without"])
        print(
            f"server CPU per read       {mine:8.3f} ms with token, {bare:.3f} ms without "
            f"({100 * (mine / bare - 1):+.1f} %; less sensitive to other load than reads/s)"
        )
    for warning in report.warnings:
        print(f"warning: {warning}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
