"""The demo network ``make run`` opens on: three hospitals, their integrations, patient data.

Each hospital is registered with a system client whose private key is written under
``<data dir>/demo/<URA>/``; each seeds its own data through the service layer with conditional
creates, so running the demo again changes nothing. URAs and BSNs are test numbers (the BSNs
start with 9999 and pass the elfproef).
"""

from __future__ import annotations

import functools
import os
import time
import uuid
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import orjson
from joserfc import jwt
from joserfc.jwk import ECKey
from sqlalchemy import select
from sqlalchemy.engine import Connection

from gateway.agreements import add_agreement, list_agreements
from gateway.auth.clients import list_clients, register_client
from gateway.auth.people import add_user
from gateway.context import RequestContext, operator_for
from gateway.organizations import register_organization
from gateway.service.bundles import BundleProcessor
from gateway.service.console import ConsoleChange
from gateway.service.resources import ResourceService
from gateway.settings import Settings
from gateway.store.database import Database
from gateway.store.schema import users

URA = "http://fhir.nl/fhir/NamingSystem/ura"
BSN = "http://fhir.nl/fhir/NamingSystem/bsn"

HOSPITALS = [
    ("90000001", "Ziekenhuis Rivierenland (demo)"),
    ("90000002", "Universitair Medisch Centrum Noord (demo)"),
    ("90000003", "Streekziekenhuis Duinzicht (demo)"),
]
# Demo logins: <role>-<URA>, password "zorgbrug-demo-<role>" (demo only, never in production).
DEMO_ROLES = ("clinician", "assistant", "dpo")


def demo_login(role: str, ura: str) -> tuple[str, str]:
    return f"{role}-{ura}", f"zorgbrug-demo-{role}"


PATIENTS = [
    ("999911120", "Jansen", ["Anna"], "female", "1956-03-14"),
    ("999990652", "de Vries", ["Pieter", "Jan"], "male", "1948-11-02"),
]


DEMO_SCOPES = "system/*.cruds"
CLIENT_NAME = "Demo integration"


def _patient(bsn: str, family: str, given: list[str], gender: str, birth: str) -> dict[str, Any]:
    return {
        "fullUrl": f"urn:uuid:patient-{bsn}",
        "resource": {
            "resourceType": "Patient",
            "identifier": [{"system": BSN, "value": bsn}],
            "name": [{"use": "official", "family": family, "given": given}],
            "gender": gender,
            "birthDate": birth,
        },
        "request": {"method": "POST", "url": "Patient", "ifNoneExist": f"identifier={BSN}|{bsn}"},
    }


def _entry(resource: dict[str, Any], identifier: str) -> dict[str, Any]:
    system = "urn:oid:2.16.840.1.113883.2.4.3.11.999.1"
    resource["identifier"] = [{"system": system, "value": identifier}]
    return {
        "resource": resource,
        "request": {
            "method": "POST",
            "url": resource["resourceType"],
            "ifNoneExist": f"identifier={system}|{identifier}",
        },
    }


def hospital_data(ura: str) -> dict[str, Any]:
    """What each demo hospital holds: the same two patients, different parts of their care."""
    entries = [_patient(*p) for p in PATIENTS]
    anna, pieter = (f"urn:uuid:patient-{p[0]}" for p in PATIENTS)
    if ura == HOSPITALS[0][0]:
        entries.append(
            _entry(
                {
                    "resourceType": "Observation",
                    "status": "final",
                    "category": [
                        {
                            "coding": [
                                {
                                    "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                    "code": "laboratory",
                                }
                            ]
                        }
                    ],
                    "code": {
                        "coding": [
                            {
                                "system": "http://loinc.org",
                                "code": "718-7",
                                "display": "Hemoglobin [Mass/volume] in Blood",
                            }
                        ]
                    },
                    "subject": {"reference": anna},
                    "effectiveDateTime": "2026-11-02T09:30:00+01:00",
                    "valueQuantity": {
                        "value": 7.9,
                        "unit": "mmol/L",
                        "system": "http://unitsofmeasure.org",
                        "code": "mmol/L",
                    },
                    "referenceRange": [
                        {
                            "low": {"value": 7.5, "unit": "mmol/L"},
                            "high": {"value": 10.0, "unit": "mmol/L"},
                        }
                    ],
                },
                f"{ura}-hb-1",
            )
        )
    elif ura == HOSPITALS[1][0]:
        entries.append(
            _entry(
                {
                    "resourceType": "Condition",
                    "clinicalStatus": {
                        "coding": [
                            {
                                "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                                "code": "active",
                            }
                        ]
                    },
                    "code": {
                        "coding": [
                            {
                                "system": "http://snomed.info/sct",
                                "code": "254637007",
                                "display": "Non-small cell lung cancer",
                            }
                        ]
                    },
                    "subject": {"reference": pieter},
                    "recordedDate": "2026-10-12",
                },
                f"{ura}-c-1",
            )
        )
    else:
        entries.append(
            _entry(
                {
                    "resourceType": "Procedure",
                    "status": "completed",
                    "code": {
                        "coding": [
                            {
                                "system": "http://snomed.info/sct",
                                "code": "173171007",
                                "display": "Lobectomy of lung",
                            }
                        ]
                    },
                    "subject": {"reference": pieter},
                    "performedDateTime": "2026-11-05",
                },
                f"{ura}-p-1",
            )
        )
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def _demo_person(
    service: ResourceService, ctx: RequestContext, ura: str, role: str, conn: Connection
) -> int:
    """Add the demo person (and their Practitioner) unless they exist; returns 1 if added."""
    username, password = demo_login(role, ura)
    if conn.execute(select(users.c.user_id).where(users.c.username == username)).first():
        return 0
    practitioner = service.create_in(
        conn,
        ctx,
        "Practitioner",
        {
            "resourceType": "Practitioner",
            "identifier": [{"system": "urn:zorgbrug:username", "value": username}],
            "name": [{"text": f"Demo {role} {ura}"}],
        },
    )
    add_user(
        conn,
        org_ura=ura,
        username=username,
        role=role,
        password=password,
        fhir_user=f"Practitioner/{practitioner.res_id}",
    )
    return 1


def _demo_key(directory: Path) -> tuple[ECKey, dict[str, Any]]:
    """The hospital's demo key pair, made once and kept (mode 0600) under the data dir."""
    path = directory / "private_key.jwk.json"
    if path.exists():
        key = ECKey.import_key(orjson.loads(path.read_bytes()))
    else:
        directory.mkdir(parents=True, exist_ok=True)
        key = ECKey.generate_key("P-384", parameters={"kid": uuid.uuid4().hex[:12]})
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(orjson.dumps(key.as_dict(private=True)))
    public = key.as_dict(private=False) | {"alg": "ES384"}
    return key, {"keys": [public]}


async def seed_demo(settings: Settings) -> tuple[int, int]:
    """Seed the demo network; returns (resources created, already present)."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(settings.resolved_database_url(), threads=2)
    created = existing = 0
    try:
        await db.migrate()
        service = ResourceService(db, settings)
        await service.start()
        known = {(c.org_ura, c.name): c for c in await db.read(list_clients) if not c.disabled}
        # Seeding is recorded in the audit log like the console commands it stands for.
        directory_change = ConsoleChange.of("admin-organization", ("demo", "seed"), "C")
        accounts = ConsoleChange.of("admin-account", ("demo", "seed"), "C")
        for ura, name in HOSPITALS:
            _, new = await register_organization(
                service, ura=ura, name=name, types=("Z3",), change=directory_change
            )
            created, existing = created + new, existing + (not new)
            directory = settings.data_dir / "demo" / ura
            _key, jwks = _demo_key(directory)
            client = known.get((ura, CLIENT_NAME))
            if client is None or client.jwks != jwks:
                client = await accounts.write(
                    service,
                    functools.partial(
                        register_client,
                        org_ura=ura,
                        name=CLIENT_NAME,
                        jwks=jwks,
                        jwks_url=None,
                        scopes=DEMO_SCOPES,
                    ),
                )
            (directory / "client.json").write_bytes(
                orjson.dumps(
                    {
                        "client_id": client.client_id,
                        "org": ura,
                        "name": name,
                        "scopes": DEMO_SCOPES,
                    },
                    option=orjson.OPT_INDENT_2,
                )
            )
            ctx = RequestContext(
                actor=operator_for(ura), base_url="urn:zorgbrug:demo", return_preference="minimal"
            )
            response = orjson.loads(await BundleProcessor(service).process(ctx, hospital_data(ura)))
            statuses = [e["response"]["status"] for e in response["entry"]]
            bundle_new = sum(s.startswith("201") for s in statuses)
            people_new = 0
            for role in DEMO_ROLES:  # each person comes with their Practitioner resource
                people_new += await accounts.write(
                    service, functools.partial(_demo_person, service, ctx, ura, role), ctx.actor
                )
            created += bundle_new + people_new
            existing += len(statuses) - bundle_new + len(DEMO_ROLES) - people_new
        if not await list_agreements(service):
            # The three demo hospitals share one data-sharing agreement for treatment.
            await add_agreement(
                service,
                kind="data-sharing",
                parties=[ura for ura, _name in HOSPITALS],
                purposes=["TREAT"],
                categories=["treatment"],
                valid_from=date(2026, 1, 1),
                valid_to=None,
                document=None,
                change=directory_change,
            )
            created += 1
        else:
            existing += 1
    finally:
        await db.dispose()
    return created, existing


def demo_token(settings: Settings, ura: str, base_url: str, scope: str = DEMO_SCOPES) -> str:
    """Get an access token from a running gateway as the demo integration of ``ura``."""
    directory = settings.data_dir / "demo" / ura
    if not (directory / "client.json").exists():
        raise ValueError(f"no demo client for {ura} under {directory}; run `zorgbrug demo` first")
    client = orjson.loads((directory / "client.json").read_bytes())
    key, _ = _demo_key(directory)
    token_url = f"{base_url.rstrip('/')}/oauth/token"
    now = int(time.time())
    assertion = jwt.encode(
        {"alg": "ES384", "kid": key.kid, "typ": "JWT"},
        {
            "iss": client["client_id"],
            "sub": client["client_id"],
            "aud": token_url,
            "exp": now + 240,
            "jti": uuid.uuid4().hex,
        },
        key,
        algorithms=["ES384"],
    )
    response = httpx.post(
        token_url,
        data={
            "grant_type": "client_credentials",
            "scope": scope,
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": assertion,
        },
        timeout=10,
    )
    if response.status_code != 200:
        raise ValueError(f"the token endpoint answered {response.status_code}: {response.text}")
    return str(response.json()["access_token"])
