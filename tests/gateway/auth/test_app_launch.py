"""People log in with the authorization-code flow and PKCE (SMART App Launch, standalone)."""

from __future__ import annotations

import base64
import hashlib
import os
import re
import secrets
import subprocess
import sys
import time
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

REDIRECT = "http://127.0.0.1:9/callback"
PASSWORD = "correct horse battery staple"


def cli(server, *args):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "gateway.cli",
            *args,
            "--data-dir",
            str(server.settings.data_dir),
            "--database-url",
            server.settings.database_url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ),
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture(scope="module")
def people(server, tmp_path_factory):
    hospital = server.hospital("90000501", "Login Hospital")
    password_file = tmp_path_factory.mktemp("secrets") / "password"
    password_file.write_text(PASSWORD)
    for username in ("dr.visser", "dr.locked", "dr.vertrokken"):
        out = cli(
            server,
            "users",
            "add",
            "--org",
            hospital.ura,
            "--username",
            username,
            "--role",
            "clinician",
            "--password-file",
            str(password_file),
        )
        assert f"added {username} (clinician) of {hospital.ura} as Practitioner/" in out
    app = cli(server, "apps", "add", "--name", "Test viewer", "--redirect-uri", REDIRECT).strip()
    return hospital, app


def pkce():
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=")
    return verifier, challenge.decode()


def authorize_params(app, challenge, **extra):
    return {
        "response_type": "code",
        "client_id": app,
        "redirect_uri": REDIRECT,
        "scope": "user/Patient.rs",
        "state": "xyz",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    } | extra


def log_in(server, app, challenge, username="dr.visser", password=PASSWORD):
    form = authorize_params(app, challenge) | {"username": username, "password": password}
    return httpx.post(f"{server.url}/oauth/authorize", data=form)


def code_of(response):
    assert response.status_code == 303, response.text
    location = urlsplit(response.headers["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == REDIRECT
    query = parse_qs(location.query)
    assert query["state"] == ["xyz"]
    return query["code"][0]


def exchange(server, app, code, verifier, redirect=REDIRECT):
    return httpx.post(
        server.token_url,
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect,
            "client_id": app,
            "code_verifier": verifier,
        },
    )


def test_full_flow_gives_a_user_token_with_fhir_user_and_organisation(server, people):
    hospital, app = people
    verifier, challenge = pkce()
    page = httpx.get(f"{server.url}/oauth/authorize", params=authorize_params(app, challenge))
    assert page.status_code == 200
    assert 'name="password"' in page.text
    assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
    code = code_of(log_in(server, app, challenge))
    token = exchange(server, app, code, verifier)
    assert token.status_code == 200, token.text
    body = token.json()
    assert body["fhirUser"].startswith("Practitioner/")
    assert body["organization"] == hospital.ura
    assert body["expires_in"] <= 300
    headers = {"Authorization": f"Bearer {body['access_token']}"}
    assert httpx.get(f"{server.fhir}/Patient", headers=headers).status_code == 200
    practitioner = httpx.get(f"{server.fhir}/{body['fhirUser']}", headers=headers)
    assert practitioner.status_code == 403  # the scope covers Patient only
    created = httpx.post(
        f"{server.fhir}/Patient", json={"resourceType": "Patient"}, headers=headers
    )
    assert created.status_code == 403


def test_a_disabled_persons_token_stops_working_at_once(server, people):
    _, app = people
    verifier, challenge = pkce()
    code = code_of(log_in(server, app, challenge, username="dr.vertrokken"))
    token = exchange(server, app, code, verifier).json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    assert httpx.get(f"{server.fhir}/Patient", headers=headers).status_code == 200
    assert httpx.get(f"{server.fhir}/Patient/not-there", headers=headers).status_code == 404
    assert "disabled dr.vertrokken" in cli(server, "users", "disable", "dr.vertrokken")
    for path in ("/Patient", "/Patient/not-there"):  # a search and a read by id
        refused = httpx.get(f"{server.fhir}{path}", headers=headers)
        assert refused.status_code == 401 and "disabled" in refused.text, path


def test_wrong_verifier_spends_the_code(server, people):
    _, app = people
    verifier, challenge = pkce()
    code = code_of(log_in(server, app, challenge))
    wrong = exchange(server, app, code, pkce()[0])
    assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_grant"
    assert exchange(server, app, code, verifier).json()["error"] == "invalid_grant"


def test_code_reuse_and_redirect_mismatch_fail(server, people):
    _, app = people
    verifier, challenge = pkce()
    code = code_of(log_in(server, app, challenge))
    assert exchange(server, app, code, verifier).status_code == 200
    reused = exchange(server, app, code, verifier)
    assert reused.json()["error"] == "invalid_grant"
    other_verifier, other_challenge = pkce()
    other_code = code_of(log_in(server, app, other_challenge))
    mismatch = exchange(
        server, app, other_code, other_verifier, redirect="http://127.0.0.1:9/other"
    )
    assert mismatch.json()["error"] == "invalid_grant"


def test_unregistered_redirect_or_missing_pkce_is_refused_without_redirecting(server, people):
    _, app = people
    _, challenge = pkce()
    for params in (
        authorize_params(app, challenge, redirect_uri="https://evil.example/cb"),
        authorize_params(app, challenge, code_challenge_method="plain"),
        authorize_params("unknown-app", challenge),
        authorize_params(app, challenge, scope="system/*.read"),
    ):
        response = httpx.get(f"{server.url}/oauth/authorize", params=params)
        assert response.status_code == 400
        assert "Location" not in response.headers


def test_failed_logins_are_slowed_down_and_then_locked(server, people):
    _, app = people
    _, challenge = pkce()
    durations = []
    for _ in range(5):
        started = time.monotonic()
        response = log_in(server, app, challenge, username="dr.locked", password="wrong password!")
        durations.append(time.monotonic() - started)
        assert response.status_code == 401
        assert "Location" not in response.headers
    assert durations[2] >= 0.9  # the third failure waits a second
    locked = log_in(server, app, challenge, username="dr.locked")
    assert locked.status_code == 401
    assert re.search("Too many failed attempts", locked.text)
    unknown = log_in(server, app, challenge, username="nobody")
    assert unknown.status_code == 401
