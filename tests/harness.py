"""Test harness: a real gateway over real HTTP on SQLite and (when configured) PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import random
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from gateway.api import create_app
from gateway.service.console import ConsoleChange
from gateway.settings import Settings

BSN_SYSTEM = "http://fhir.nl/fhir/NamingSystem/bsn"

# The organisations and agreements tests set up are recorded as console changes.
TEST_CHANGE = ConsoleChange.of("admin-organization", ("test", "setup"), "C")

# The checkout sits next to shared/ (locally and in CI).
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
FHIR_EXAMPLES = SHARED_DATA / "fhir-r4-spec-examples"
PG_URL = os.environ.get("ZORGBRUG_TEST_DATABASE_URL")

BACKENDS = [
    "sqlite",
    pytest.param(
        "postgresql",
        marks=pytest.mark.skipif(
            not PG_URL, reason="PostgreSQL tests need ZORGBRUG_TEST_DATABASE_URL (CI sets it)"
        ),
    ),
]


def _pg_admin(statement: str) -> None:
    import psycopg

    assert PG_URL
    with psycopg.connect(
        PG_URL.replace("postgresql+psycopg://", "postgresql://"), autocommit=True
    ) as conn:
        conn.execute(statement)  # type: ignore[arg-type]


class FreshDatabase:
    """A new, empty database per use: a SQLite file, or a PostgreSQL database dropped after."""

    def __init__(self, backend: str, directory: Path) -> None:
        self.backend = backend
        self.name = f"zb_test_{uuid.uuid4().hex[:12]}"
        if backend == "sqlite":
            self.url = f"sqlite:///{directory / 'zorgbrug.db'}"
        else:
            assert PG_URL
            _pg_admin(f'CREATE DATABASE "{self.name}"')
            self.url = PG_URL.rsplit("/", 1)[0] + f"/{self.name}"

    def drop(self) -> None:
        if self.backend == "postgresql":
            _pg_admin(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def serving(app: Any, **config: Any) -> Iterator[httpx.Client]:
    """A client of ``app`` (any ASGI app) served by uvicorn in a thread, without lifespan."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, port=port, log_level="critical", lifespan="off", **config)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_started(server, thread)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
            yield client
    finally:
        server.should_exit = True
        thread.join(10)


def wait_started(server: uvicorn.Server, thread: threading.Thread) -> None:
    """Return once ``server`` (run by ``thread``) accepts connections; fail, not hang, when
    it does not start (a port taken, an app that raises at start)."""
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("test server did not start")
        time.sleep(0.02)


DEFAULT_SCOPES = "system/*.cruds"


class Hospital:
    """A registered organisation with one system client and its private key (P-384 / ES384)."""

    def __init__(self, ura: str, client_id: str, key: Any, kid: str) -> None:
        self.ura = ura
        self.client_id = client_id
        self.key = key
        self.kid = kid

    def assertion(
        self, token_url: str, *, alg: str = "ES384", key: Any = None, **claims: Any
    ) -> str:
        """A client assertion per SMART Backend Services; ``claims`` override the defaults."""
        from joserfc import jwt

        now = int(time.time())
        body = {
            "iss": self.client_id,
            "sub": self.client_id,
            "aud": token_url,
            "exp": now + 240,
            "jti": uuid.uuid4().hex,
        } | claims
        return jwt.encode(
            {"alg": alg, "kid": self.kid, "typ": "JWT"}, body, key or self.key, algorithms=[alg]
        )


def new_key_pair(kind: str = "EC") -> tuple[Any, dict[str, Any]]:
    """A private key and the public JWKS to register for it."""
    from joserfc.jwk import ECKey, RSAKey

    key = ECKey.generate_key("P-384") if kind == "EC" else RSAKey.generate_key(2048)
    public = key.as_dict(private=False) | {
        "kid": uuid.uuid4().hex[:8],
        "alg": "ES384" if kind == "EC" else "RS384",
    }
    return key, {"keys": [public]}


def register_hospital(
    database_url: str,
    data_dir: Path,
    ura: str,
    name: str,
    scopes: str = DEFAULT_SCOPES,
    kind: str = "EC",
    endpoint: str | None = None,
) -> Hospital:
    """Register an organisation (with the ``endpoint`` its notifications go to, if given) and a
    system client through the gateway's own package API."""
    from gateway.auth.clients import register_client
    from gateway.organizations import register_organization
    from gateway.service.resources import ResourceService
    from gateway.store.database import Database

    key, jwks = new_key_pair(kind)

    async def run() -> Any:
        db = Database(database_url, threads=1)
        try:
            await db.migrate()
            service = ResourceService(db, Settings(data_dir=data_dir, database_url=database_url))
            await register_organization(
                service, ura=ura, name=name, endpoint=endpoint, change=TEST_CHANGE
            )
            return await db.write(
                lambda conn: register_client(
                    conn,
                    org_ura=ura,
                    name=f"{name} integration",
                    jwks=jwks,
                    jwks_url=None,
                    scopes=scopes,
                )
            )
        finally:
            await db.dispose()

    client = asyncio.run(run())
    return Hospital(ura, client.client_id, key, jwks["keys"][0]["kid"])


def add_agreement(
    database_url: str, data_dir: Path, parties: tuple[str, ...], categories: tuple[str, ...]
) -> str:
    """A processor agreement between registered organisations, through the package API."""
    from datetime import date

    from gateway.agreements import add_agreement as record
    from gateway.service.resources import ResourceService
    from gateway.store.database import Database

    async def run() -> Any:
        db = Database(database_url, threads=1)
        try:
            service = ResourceService(db, Settings(data_dir=data_dir, database_url=database_url))
            await service.start()
            return await record(
                service,
                kind="processor",
                parties=list(parties),
                purposes=["TREAT"],
                categories=list(categories),
                valid_from=date(2025, 1, 1),
                valid_to=None,
                document=None,
                change=TEST_CHANGE,
            )
        finally:
            await db.dispose()

    return str(asyncio.run(run()).id)


PERSON_PASSWORD = "correct horse battery staple"
LOGIN_REDIRECT = "http://127.0.0.1:9/callback"


def add_person(database_url: str, data_dir: Path, ura: str, username: str, role: str) -> str:
    """A person of a registered organisation (with a Practitioner), and a SMART app to log in
    to; returns the app's client_id."""
    from gateway.auth.people import add_app, add_user
    from gateway.context import RequestContext, operator_for
    from gateway.service.resources import ResourceService
    from gateway.store.database import Database

    async def run() -> str:
        db = Database(database_url, threads=1)
        try:
            service = ResourceService(db, Settings(data_dir=data_dir, database_url=database_url))
            await service.start()
            ctx = RequestContext(actor=operator_for(ura), base_url="urn:test")

            def work(conn: Any) -> str:
                practitioner = service.create_in(
                    conn,
                    ctx,
                    "Practitioner",
                    {"resourceType": "Practitioner", "name": [{"text": username}]},
                )
                add_user(
                    conn,
                    org_ura=ura,
                    username=username,
                    role=role,
                    password=PERSON_PASSWORD,
                    fhir_user=f"Practitioner/{practitioner.res_id}",
                )
                return add_app(conn, name=f"app for {username}", redirect_uris=[LOGIN_REDIRECT])

            return await db.write(work)
        finally:
            await db.dispose()

    return asyncio.run(run())


def log_in(base_url: str, app: str, username: str, scope: str = "user/*.cruds") -> str:
    """A person's access token, through the login page (authorization code with PKCE)."""
    import base64
    import hashlib
    import secrets
    from urllib.parse import parse_qs, urlsplit

    verifier = secrets.token_urlsafe(48)
    challenge = (
        base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    )
    fields = {
        "response_type": "code",
        "client_id": app,
        "redirect_uri": LOGIN_REDIRECT,
        "scope": scope,
        "state": "s",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    answer = httpx.post(
        f"{base_url}/oauth/authorize",
        data=fields | {"username": username, "password": PERSON_PASSWORD},
    )
    assert answer.status_code == 303, answer.text
    code = parse_qs(urlsplit(answer.headers["location"]).query)["code"][0]
    token = httpx.post(
        f"{base_url}/oauth/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "client_id": app,
            "redirect_uri": LOGIN_REDIRECT,
            "code_verifier": verifier,
        },
    )
    assert token.status_code == 200, token.text
    return str(token.json()["access_token"])


class SmartAuth(httpx.Auth):
    """Bearer tokens from the gateway's token endpoint, renewed before they expire."""

    def __init__(self, hospital: Hospital, token_url: str, scope: str = DEFAULT_SCOPES) -> None:
        self.hospital = hospital
        self.token_url = token_url
        self.scope = scope
        self._token: str | None = None
        self._expires = 0.0

    def token(self) -> str:
        if self._token is None or time.time() > self._expires - 30:
            response = httpx.post(
                self.token_url,
                data={
                    "grant_type": "client_credentials",
                    "scope": self.scope,
                    "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                    "client_assertion": self.hospital.assertion(self.token_url),
                },
            )
            response.raise_for_status()
            self._token = response.json()["access_token"]
            self._expires = time.time() + response.json()["expires_in"]
        return self._token

    def auth_flow(self, request: httpx.Request) -> Any:
        request.headers["Authorization"] = f"Bearer {self.token()}"
        yield request


class PersonAuth(httpx.Auth):
    """A person's bearer token, logged in again before it expires (tokens live 300 s; a long
    test on a busy machine outlives one)."""

    def __init__(self, base_url: str, app: str, username: str) -> None:
        self.base_url, self.app, self.username = base_url, app, username
        self._token = log_in(base_url, app, username)
        self._renew_at = time.time() + 240

    def auth_flow(self, request: httpx.Request) -> Any:
        if time.time() > self._renew_at:
            self._token = log_in(self.base_url, self.app, self.username)
            self._renew_at = time.time() + 240
        request.headers["Authorization"] = f"Bearer {self._token}"
        yield request


class LiveServer:
    """A gateway served by uvicorn in a background thread, reached over real HTTP."""

    def __init__(self, settings: Settings, backend: str) -> None:
        self.settings = settings
        self.backend = backend
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.fhir = f"{self.url}/fhir"
        config = uvicorn.Config(
            create_app(settings),
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            lifespan="on",
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._default: Hospital | None = None
        self._auth: dict[tuple[str, str], SmartAuth] = {}
        self._lock = threading.Lock()  # tests call ``client`` from many threads at once

    def start(self) -> LiveServer:
        self._thread.start()
        wait_started(self._server, self._thread)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=15)

    def cli(self, *args: str, env: dict[str, str] | None = None) -> Any:
        """Run ``zorgbrug ARGS`` on this server's store, in a child process."""
        import subprocess
        import sys

        environment = {**os.environ, "ZORGBRUG_DATABASE_URL": str(self.settings.database_url)}
        environment.update(env or {})
        return subprocess.run(
            [sys.executable, "-m", "gateway.cli", *args, "--data-dir", str(self.settings.data_dir)],
            env=environment,
            capture_output=True,
            text=True,
            timeout=120,
        )

    @property
    def token_url(self) -> str:
        return f"{self.url}/oauth/token"

    def hospital(self, ura: str, name: str = "Test Hospital", **kwargs: Any) -> Hospital:
        """Register one more organisation with a client on this server's store."""
        assert self.settings.database_url
        return register_hospital(
            self.settings.database_url, self.settings.data_dir, ura, name, **kwargs
        )

    def agreement(self, *parties: str, categories: tuple[str, ...] = ("treatment",)) -> str:
        """Record an agreement between registered organisations on this server's store."""
        assert self.settings.database_url
        return add_agreement(
            self.settings.database_url, self.settings.data_dir, parties, categories
        )

    def person(self, hospital: Hospital, username: str, role: str) -> httpx.Client:
        """An HTTP client for /fhir as a person of ``hospital`` with ``role``, logged in."""
        assert self.settings.database_url
        app = add_person(
            self.settings.database_url, self.settings.data_dir, hospital.ura, username, role
        )
        return httpx.Client(
            base_url=self.fhir,
            headers={"Accept": "application/fhir+json"},
            auth=PersonAuth(self.url, app, username),
            timeout=60,
        )

    def client(
        self,
        hospital: Hospital | None = None,
        *,
        scope: str = DEFAULT_SCOPES,
        anonymous: bool = False,
        **kwargs: Any,
    ) -> httpx.Client:
        """An HTTP client for /fhir, authenticated as ``hospital`` (the default one) unless
        ``anonymous``."""
        headers = {"Accept": "application/fhir+json"} | kwargs.pop("headers", {})
        if not anonymous:
            with self._lock:
                if hospital is None:
                    hospital = self.default_hospital
                key = (hospital.client_id, scope)
                if key not in self._auth:  # one token per client and scope, renewed on expiry
                    self._auth[key] = SmartAuth(hospital, self.token_url, scope)
                kwargs["auth"] = self._auth[key]
        return httpx.Client(base_url=self.fhir, headers=headers, timeout=60, **kwargs)

    @property
    def default_hospital(self) -> Hospital:
        if self._default is None:
            self._default = self.hospital("90000099", "Default Test Hospital")
        return self._default


def start_server(backend: str, tmp: Path, **settings: Any) -> tuple[LiveServer, FreshDatabase]:
    database = FreshDatabase(backend, tmp)
    server = LiveServer(
        Settings(data_dir=tmp, database_url=database.url, **settings),  # type: ignore[arg-type]
        backend,
    ).start()
    return server, database


@pytest.fixture(scope="module", params=BACKENDS)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """A live gateway on a fresh database, shared by the tests of one module."""
    live, database = start_server(request.param, tmp_path_factory.mktemp(request.param))
    yield live
    live.stop()
    database.drop()


@pytest.fixture
def fhir(server: LiveServer) -> Iterator[httpx.Client]:
    with server.client() as client:
        yield client


def load_example(relative: str) -> dict[str, Any]:
    return json.loads((FHIR_EXAMPLES / relative).read_text(encoding="utf-8"))


def valid_bsns(first: int) -> Iterator[str]:
    """Test BSNs from ``first`` on that pass the elfproef (use a 9999... range)."""
    from gateway.fhir.dutch_identifiers import is_valid_bsn

    for n in itertools.count(first):
        if is_valid_bsn(f"{n:09d}"):
            yield f"{n:09d}"


def unique() -> str:
    return uuid.uuid4().hex[:12]


# From a random start, so that reruns against one database meet no earlier run's patients.
_UNIQUE_BSNS = valid_bsns(random.randrange(100_000_000, 800_000_000))


def unique_bsn() -> str:
    """A BSN no other call in this process gives, passing the elfproef (the gateway refuses
    any other)."""
    return next(_UNIQUE_BSNS)


def break_the_glass(
    clinician: httpx.Client, bsn: str, reason: str, **kwargs: Any
) -> httpx.Response:
    """``POST /Patient/$break-the-glass`` for the patient with ``bsn``."""
    parameters = [
        {"name": "patient", "valueIdentifier": {"system": BSN_SYSTEM, "value": bsn}},
        {"name": "reason", "valueString": reason},
    ]
    return clinician.post(
        "/Patient/$break-the-glass",
        json={"resourceType": "Parameters", "parameter": parameters},
        **kwargs,
    )


def patient_with_result(fhir: httpx.Client, bsn: str) -> tuple[str, str]:
    """A Patient with ``bsn`` and a final Hb result about it, created by ``fhir``'s
    organisation; their ids."""
    patient = fhir.post(
        "/Patient",
        json={"resourceType": "Patient", "identifier": [{"system": BSN_SYSTEM, "value": bsn}]},
    )
    assert patient.status_code == 201, patient.text
    result = fhir.post(
        "/Observation",
        json={
            "resourceType": "Observation",
            "status": "final",
            "code": {"text": "Hb"},
            "subject": {"reference": f"Patient/{patient.json()['id']}"},
            "effectiveDateTime": "2025-06-01T10:00:00+02:00",
        },
    )
    assert result.status_code == 201, result.text
    return patient.json()["id"], result.json()["id"]
