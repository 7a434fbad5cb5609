"""SMART Backend Services over real HTTP: the token endpoint accepts only proper assertions."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid

import httpx
import pytest
from harness import LiveServer, Settings, new_key_pair, start_server
from joserfc import jwt
from joserfc.jwk import OctKey

ASSERTION = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def ask(server, assertion, scope="system/*.read", **form):
    data = {
        "grant_type": "client_credentials",
        "scope": scope,
        "client_assertion_type": ASSERTION,
        "client_assertion": assertion,
    } | form
    return httpx.post(server.token_url, data=data)


@pytest.fixture(scope="module")
def hospital(server):
    return server.hospital("90000101", "Token Test Hospital", scopes="system/*.cruds")


def test_discovery_is_public_and_names_the_token_endpoint(server):
    config = httpx.get(f"{server.fhir}/.well-known/smart-configuration").json()
    assert config["token_endpoint"] == server.token_url
    assert config["token_endpoint_auth_methods_supported"] == ["private_key_jwt"]
    assert set(config["token_endpoint_auth_signing_alg_values_supported"]) == {"RS384", "ES384"}
    assert httpx.get(f"{server.fhir}/metadata").status_code == 200


@pytest.mark.parametrize("kind", ["EC", "RSA"])
def test_es384_and_rs384_assertions_get_a_short_lived_token(server, kind):
    hospital = server.hospital(f"9000011{0 if kind == 'EC' else 1}", f"{kind} Hospital", kind=kind)
    alg = "ES384" if kind == "EC" else "RS384"
    response = ask(server, hospital.assertion(server.token_url, alg=alg))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "bearer"
    assert 0 < body["expires_in"] <= 300
    assert body["scope"] == "system/*.read"
    assert response.headers["Cache-Control"] == "no-store"
    read = httpx.get(
        f"{server.fhir}/Patient", headers={"Authorization": f"Bearer {body['access_token']}"}
    )
    assert read.status_code == 200


def rejected(response, error="invalid_client"):
    assert response.status_code in (400, 401), response.text
    assert response.json()["error"] == error
    return response.json()["error_description"]


def test_wrong_key_is_refused(server, hospital):
    other_key, _ = new_key_pair()
    rejected(ask(server, hospital.assertion(server.token_url, key=other_key)))


def test_expired_and_too_far_exp_are_refused(server, hospital):
    now = int(time.time())
    assert "expired" in rejected(ask(server, hospital.assertion(server.token_url, exp=now - 120)))
    assert "5 minutes" in rejected(
        ask(server, hospital.assertion(server.token_url, exp=now + 3600))
    )


def test_wrong_audience_is_refused(server, hospital):
    assert "aud" in rejected(ask(server, hospital.assertion("https://elsewhere.example/token")))


def test_replayed_jti_is_refused_also_after_a_restart(server, hospital):
    assertion = hospital.assertion(server.token_url)
    assert ask(server, assertion).status_code == 200
    assert "used before" in rejected(ask(server, assertion))
    # A second gateway process on the same store and master key (as after a restart).
    other = LiveServer(
        Settings(data_dir=server.settings.data_dir, database_url=server.settings.database_url),
        server.backend,
    ).start()
    try:
        replay = hospital.assertion(other.token_url, jti="fixed-" + uuid.uuid4().hex)
        assert ask(other, replay).status_code == 200
        copy = replay.replace(other.token_url, other.token_url)  # the very same assertion
        assert "used before" in rejected(ask(other, copy))
    finally:
        other.stop()


def test_unknown_and_disabled_clients_are_refused(server, hospital):
    from gateway.auth.clients import disable_client
    from gateway.store.database import Database

    stranger = server.hospital("90000102", "Stranger")
    stranger.client_id = "no-such-client"
    rejected(ask(server, stranger.assertion(server.token_url)))

    victim = server.hospital("90000103", "Disabled Hospital")
    granted = ask(server, victim.assertion(server.token_url), scope="system/*.cruds")
    headers = {"Authorization": f"Bearer {granted.json()['access_token']}"}
    patient = httpx.post(
        f"{server.fhir}/Patient", json={"resourceType": "Patient"}, headers=headers
    ).headers["Location"]
    document = httpx.post(
        f"{server.fhir}/Binary",
        content=b"%PDF-1.4 a letter",
        headers=headers | {"Content-Type": "application/pdf"},
    ).headers["Location"]
    # Search (counted too), read by id (found and not), ITI-68 retrieve and history (found and
    # not): each asks about the client.
    patient_path = patient.split("/fhir")[1].split("/_history")[0]
    paths = [
        "/Patient",
        "/Patient?_total=accurate",
        patient_path,
        "/Patient/not-there",
        document.split("/fhir")[1].split("/_history")[0],
        f"{patient_path}/_history",
        "/Patient/not-there/_history",
    ]
    answers = [httpx.get(f"{server.fhir}{path}", headers=headers) for path in paths]
    assert [a.status_code for a in answers] == [200, 200, 200, 404, 200, 200, 404]
    assert answers[4].content == b"%PDF-1.4 a letter"
    db = Database(server.settings.database_url, threads=1)
    try:
        assert db.write_now(lambda conn: disable_client(conn, victim.client_id))
    finally:
        db.engine.dispose()
    for path in paths:  # at once, whether or not the resource exists
        refused = httpx.get(f"{server.fhir}{path}", headers=headers)
        assert refused.status_code == 401 and "disabled" in refused.text, path
    rejected(ask(server, victim.assertion(server.token_url)))


def test_alg_none_and_hs256_with_the_public_key_are_refused(server, hospital):
    header = {"alg": "none", "typ": "JWT", "kid": hospital.kid}

    def b64(data):
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    now = int(time.time())
    claims = {
        "iss": hospital.client_id,
        "sub": hospital.client_id,
        "aud": server.token_url,
        "exp": now + 60,
        "jti": uuid.uuid4().hex,
    }
    assert "signed with" in rejected(ask(server, f"{b64(header)}.{b64(claims)}."))
    # The classic confusion attack: HMAC keyed with the client's *public* key (libraries refuse
    # to build such a key, so the signature is made by hand).
    public_pem = hospital.key.as_pem(private=False)
    signing_input = f"{b64({'alg': 'HS256', 'kid': hospital.kid})}.{b64(claims)}"
    mac = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    forged = f"{signing_input}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"
    assert "signed with" in rejected(ask(server, forged))


def test_bad_requests_get_oauth_errors(server, hospital):
    good = hospital.assertion(server.token_url)
    rejected(ask(server, good, grant_type="password"), "unsupported_grant_type")
    rejected(ask(server, good, client_assertion_type="secret"), "invalid_request")
    rejected(ask(server, hospital.assertion(server.token_url), scope="openid"), "invalid_scope")
    rejected(ask(server, "not-a-jwt"))
    wrong_type = httpx.post(server.token_url, json={"grant_type": "client_credentials"})
    rejected(wrong_type, "invalid_request")


def test_scopes_beyond_the_registration_are_refused(server):
    reader = server.hospital("90000104", "Reader", scopes="system/Patient.read")
    assert (
        ask(server, reader.assertion(server.token_url), scope="system/Patient.read").status_code
        == 200
    )
    error = rejected(
        ask(server, reader.assertion(server.token_url), scope="system/Patient.write"),
        "invalid_scope",
    )
    assert "system/Patient.write" in error


def test_tokens_that_are_missing_tampered_foreign_or_expired_get_401(server, hospital, tmp_path):
    no_token = httpx.get(f"{server.fhir}/Patient")
    assert no_token.status_code == 401
    assert no_token.headers["WWW-Authenticate"].startswith("Bearer")
    assert no_token.json()["resourceType"] == "OperationOutcome"

    token = ask(server, hospital.assertion(server.token_url)).json()["access_token"]
    head, body, signature = token.split(".")
    tampered = f"{head}.{body[:-2]}xx.{signature}"
    for bad in (tampered, "garbage", token + "x"):
        response = httpx.get(f"{server.fhir}/Patient", headers={"Authorization": f"Bearer {bad}"})
        assert response.status_code == 401, bad

    # A token from another gateway (its own secret) is not ours.
    other, database = start_server(server.backend, tmp_path)
    try:
        foreign_hospital = other.hospital("90000105", "Elsewhere")
        foreign = SmartToken(other, foreign_hospital)
    finally:
        other.stop()
        database.drop()
    response = httpx.get(f"{server.fhir}/Patient", headers={"Authorization": f"Bearer {foreign}"})
    assert response.status_code == 401

    # Expired: signed with this gateway's own secret, but its time is up.
    from sqlalchemy import select

    from gateway.store.database import Database
    from gateway.store.schema import token_secrets

    db = Database(server.settings.database_url, threads=1)
    try:
        kid, secret = db.write_now(
            lambda conn: conn.execute(select(token_secrets.c.kid, token_secrets.c.secret)).first()
        )
    finally:
        db.engine.dispose()
    now = int(time.time())
    expired = jwt.encode(
        {"alg": "HS256", "kid": kid},
        {
            "iss": "urn:zorgbrug:gateway",
            "sub": hospital.client_id,
            "kind": "system",
            "org": hospital.ura,
            "scope": "system/*.read",
            "iat": now - 600,
            "exp": now - 300,
        },
        OctKey.import_key(bytes(secret)),
        algorithms=["HS256"],
    )
    response = httpx.get(f"{server.fhir}/Patient", headers={"Authorization": f"Bearer {expired}"})
    assert response.status_code == 401
    assert "expired" in response.json()["issue"][0]["diagnostics"]


def SmartToken(server, hospital):
    response = ask(server, hospital.assertion(server.token_url))
    assert response.status_code == 200
    return response.json()["access_token"]
