"""`zorgbrug serve` over TLS, and mutual TLS: without a certificate from the CA, no connection."""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import ssl
import subprocess
import sys
import time

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from harness import Hospital, free_port, new_key_pair


def _name(common_name):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _certificate(subject, issuer_name, issuer_key, public_key, *, ca=False, usage=None, san=None):
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer_name)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if usage:
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _write(directory, name, certificate, key):
    cert_path, key_path = directory / f"{name}.pem", directory / f"{name}.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return str(cert_path), str(key_path)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    directory = tmp_path_factory.mktemp("pki")
    files = {}
    for ca_name in ("ca", "rogue-ca"):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _certificate(
            f"Zorgbrug test {ca_name}",
            _name(f"Zorgbrug test {ca_name}"),
            key,
            key.public_key(),
            ca=True,
        )
        files[ca_name] = (cert, key, _write(directory, ca_name, cert, key))
    for leaf, usage, issuer in (
        ("server", ExtendedKeyUsageOID.SERVER_AUTH, "ca"),
        ("client", ExtendedKeyUsageOID.CLIENT_AUTH, "ca"),
        ("other-client", ExtendedKeyUsageOID.CLIENT_AUTH, "ca"),
        ("rogue-client", ExtendedKeyUsageOID.CLIENT_AUTH, "rogue-ca"),
    ):
        issuer_cert, issuer_key, _ = files[issuer]
        key = ec.generate_private_key(ec.SECP256R1())
        san = [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))] if leaf == "server" else None
        cert = _certificate(
            leaf, issuer_cert.subject, issuer_key, key.public_key(), usage=usage, san=san
        )
        files[leaf] = (cert, key, _write(directory, leaf, cert, key))
    return {name: paths for name, (_, _, paths) in files.items()}


def _tls(ca_file, cert=None):
    context = ssl.create_default_context(cafile=ca_file)
    if cert is not None:
        context.load_cert_chain(*cert)
    return context


def _serve(tmp_path, *tls_args):
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gateway.cli",
            "serve",
            "--port",
            str(port),
            "--data-dir",
            str(tmp_path),
            *tls_args,
        ],
        env={**os.environ, "ZORGBRUG_DATABASE_URL": ""},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    return process, port


def _wait(process, probe):
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        try:
            return probe()
        except httpx.TransportError:
            time.sleep(0.2)
    raise AssertionError(
        f"server did not come up: {process.stdout.read() if process.stdout else ''}"
    )


def test_mutual_tls_requires_a_client_certificate_from_the_ca(pki, tmp_path):
    ca_file = pki["ca"][0]
    process, port = _serve(
        tmp_path,
        "--tls-cert",
        pki["server"][0],
        "--tls-key",
        pki["server"][1],
        "--client-ca",
        ca_file,
    )
    url = f"https://127.0.0.1:{port}/fhir/metadata"
    try:
        good = _wait(process, lambda: httpx.get(url, verify=_tls(ca_file, pki["client"])))
        assert good.status_code == 200
        assert good.json()["fhirVersion"] == "4.0.1"
        for cert in (None, pki["rogue-client"]):
            with pytest.raises(httpx.TransportError):
                httpx.get(url, verify=_tls(ca_file, cert))
        with pytest.raises(httpx.TransportError):
            httpx.get(f"http://127.0.0.1:{port}/fhir/metadata")
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_tls_without_client_certificates(pki, tmp_path):
    process, port = _serve(tmp_path, "--tls-cert", pki["server"][0], "--tls-key", pki["server"][1])
    try:
        response = _wait(
            process,
            lambda: httpx.get(f"https://127.0.0.1:{port}/healthz", verify=_tls(pki["ca"][0])),
        )
        assert response.status_code == 200
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_half_a_tls_configuration_is_refused(pki, tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "gateway.cli",
            "serve",
            "--data-dir",
            str(tmp_path),
            "--tls-cert",
            pki["server"][0],
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "--tls-key" in result.stderr


def _cli(tmp_path, *args):
    result = subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args, "--data-dir", str(tmp_path)],
        env={**os.environ, "ZORGBRUG_DATABASE_URL": ""},
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout


def test_client_bound_to_a_certificate_must_present_it(pki, tmp_path):
    key, jwks = new_key_pair()
    (tmp_path / "jwks.json").write_text(json.dumps(jwks))
    _cli(tmp_path, "orgs", "add", "--ura", "90000021", "--name", "Bound Hospital")
    client_id = json.loads(
        _cli(
            tmp_path,
            "clients",
            "add",
            "--org",
            "90000021",
            "--name",
            "bound",
            "--jwks",
            str(tmp_path / "jwks.json"),
            "--scopes",
            "system/*.read",
            "--cert",
            pki["client"][0],
            "--json",
        )
    )["client_id"]
    hospital = Hospital("90000021", client_id, key, jwks["keys"][0]["kid"])
    process, port = _serve(
        tmp_path,
        "--tls-cert",
        pki["server"][0],
        "--tls-key",
        pki["server"][1],
        "--client-ca",
        pki["ca"][0],
    )
    base = f"https://127.0.0.1:{port}"
    token_url = f"{base}/oauth/token"

    def token_request(cert):
        with httpx.Client(verify=_tls(pki["ca"][0], cert)) as http:
            return http.post(
                token_url,
                data={
                    "grant_type": "client_credentials",
                    "scope": "system/*.read",
                    "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                    "client_assertion": hospital.assertion(token_url),
                },
            )

    try:
        refused = _wait(process, lambda: token_request(pki["other-client"]))
        assert refused.status_code == 401
        assert "certificate" in refused.json()["error_description"]

        granted = token_request(pki["client"])
        assert granted.status_code == 200, granted.text
        token = granted.json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(verify=_tls(pki["ca"][0], pki["client"])) as own:
            assert own.get(f"{base}/fhir/Patient", headers=headers).status_code == 200
        with httpx.Client(verify=_tls(pki["ca"][0], pki["other-client"])) as other:
            stolen = other.get(f"{base}/fhir/Patient", headers=headers)
        assert stolen.status_code == 401
        assert stolen.json()["resourceType"] == "OperationOutcome"
    finally:
        process.terminate()
        process.wait(timeout=15)
