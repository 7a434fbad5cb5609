"""The network's organisations: FHIR Organization resources identified by URA.

They form the network's directory: registered by the operator, readable by every member (so a
hospital can address a partner), changed only through ``zorgbrug orgs``.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

import orjson

from gateway.context import DIRECTORY_OPERATOR, LOCAL_OPERATOR, RequestContext
from gateway.policy.information import Organization
from gateway.service.bundles import BundleProcessor
from gateway.service.console import ConsoleChange
from gateway.service.resources import ResourceService

URA_SYSTEM = "http://fhir.nl/fhir/NamingSystem/ura"
_URA = re.compile(r"^\d{8}$")


def check_ura(ura: str) -> str:
    """An URA (UZI-register abonneenummer) is eight digits."""
    if not _URA.match(ura):
        raise ValueError(f"'{ura}' is not an URA (eight digits)")
    return ura


ORGANIZATION_TYPE_SYSTEM = "http://nictiz.nl/fhir/NamingSystem/organization-type"


async def register_organization(
    service: ResourceService,
    *,
    ura: str,
    name: str,
    endpoint: str | None = None,
    types: tuple[str, ...] = (),
    change: ConsoleChange,
) -> tuple[Organization, bool]:
    """Register (or find) the organisation with this URA, recorded as ``change``; returns it
    and whether it is new.

    ``types`` are Dutch organisation type codes (e.g. Z3 hospital): consents can address
    organisations by type.
    """
    check_ura(ura)
    if endpoint is not None and not endpoint.startswith(("https://", "http://")):
        raise ValueError(f"the endpoint '{endpoint}' is not an http(s) URL")
    organization: dict[str, Any] = {
        "resourceType": "Organization",
        "identifier": [{"system": URA_SYSTEM, "value": ura}],
        "active": True,
        "name": name,
    }
    if types:
        organization["type"] = [
            {"coding": [{"system": ORGANIZATION_TYPE_SYSTEM, "code": code}]} for code in types
        ]
    entries: list[dict[str, Any]] = []
    if endpoint is not None:
        organization["endpoint"] = [{"reference": "urn:uuid:endpoint"}]
        entries.append(
            {
                "fullUrl": "urn:uuid:endpoint",
                "resource": {
                    "resourceType": "Endpoint",
                    "status": "active",
                    "address": endpoint,
                    "connectionType": {
                        "system": "http://terminology.hl7.org/CodeSystem/endpoint-connection-type",
                        "code": "hl7-fhir-rest",
                    },
                    "payloadType": [{"text": "FHIR notifications"}],
                    "managingOrganization": {"reference": "urn:uuid:organization"},
                },
                "request": {"method": "POST", "url": "Endpoint"},
            }
        )
    entries.insert(
        0,
        {
            "fullUrl": "urn:uuid:organization",
            "resource": organization,
            "request": {
                "method": "POST",
                "url": "Organization",
                "ifNoneExist": f"identifier={URA_SYSTEM}|{ura}",
            },
        },
    )
    ctx = replace(change.context(DIRECTORY_OPERATOR), return_preference="minimal")
    response = orjson.loads(
        await BundleProcessor(service).process(
            ctx,
            {"resourceType": "Bundle", "type": "transaction", "entry": entries},
            change.interaction,
        )
    )
    first = response["entry"][0]["response"]
    created = first["status"].startswith("201")
    if not created and endpoint is not None:
        raise ValueError(f"organisation {ura} is already registered; its endpoint was not changed")
    return Organization(first["location"].split("/")[1], ura, name, endpoint), created


async def list_organizations(service: ResourceService) -> list[Organization]:
    ctx = RequestContext(actor=LOCAL_OPERATOR, base_url="urn:zorgbrug:cli")
    bundle = orjson.loads(
        await service.search(
            ctx,
            "Organization",
            [
                ("identifier", f"{URA_SYSTEM}|"),
                ("_count", "1000"),
                ("_include", "Organization:endpoint"),
            ],
        )
    )
    endpoints = {
        f"Endpoint/{e['resource']['id']}": e["resource"].get("address")
        for e in bundle.get("entry", [])
        if e["resource"]["resourceType"] == "Endpoint"
    }
    found = []
    for entry in bundle.get("entry", []):
        resource = entry["resource"]
        if resource["resourceType"] != "Organization":
            continue
        ura = next(i["value"] for i in resource["identifier"] if i.get("system") == URA_SYSTEM)
        endpoint = next(
            (endpoints.get(e.get("reference")) for e in resource.get("endpoint", [])), None
        )
        found.append(
            Organization(
                resource["id"],
                ura,
                resource.get("name", ""),
                endpoint,
                resource.get("active", True),
            )
        )
    return found


async def find_organization(service: ResourceService, ura: str) -> Organization | None:
    return next((o for o in await list_organizations(service) if o.ura == ura), None)
