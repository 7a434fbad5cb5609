"""Recording and revoking a patient's consent, by a clinician of the hospital that holds the
data (the custodian): which organisations or the whole network, which data categories, for which
purpose and period, with the signed form if there is one. The Consent goes through the FHIR
service, which validates it (a malformed rule is refused, never ignored)."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends
from fastapi.responses import Response

from gateway.errors import GatewayError
from gateway.fhir.dutch_identifiers import BSN as BSN_SYSTEM
from gateway.fhir.dutch_identifiers import URA as URA_SYSTEM
from gateway.organizations import list_organizations
from gateway.ui.clinician import patient_in_view
from gateway.ui.record import concept, patients_with_bsn
from gateway.ui.web import Page, iso_date, page, redirect, text, upload

router = APIRouter()
CATEGORY_SYSTEM = "http://zorgbrug.nl/fhir/CodeSystem/data-category"
ACT_REASON = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
# The categories a patient is asked about (consent.DATA_CATEGORIES holds the whole tree).
CATEGORIES = (
    "treatment",
    "results",
    "medication",
    "documents",
    "problems",
    "allergies",
    "procedures",
)
PURPOSES = ("TREAT", "ETREAT")
NETWORK = "network"


@router.get("/ui/patient/consent")
async def consents(current: Annotated[Page, Depends(page)]) -> Response:
    current.require("clinician")
    return await _consent_page(current)


@router.post("/ui/patient/consent")
async def record(current: Annotated[Page, Depends(page)]) -> Response:
    session = current.require("clinician")
    form = await current.form()
    bsn = patient_in_view(current)
    recipients = [str(v)[:32] for v in form.getlist("recipient")]
    categories = [c for c in form.getlist("category") if c in CATEGORIES]
    purpose = text(form, "purpose", 16)
    if not recipients:
        return await _consent_page(current, current.t("choose_recipient"), 422)
    if not categories:
        return await _consent_page(current, current.t("choose_category"), 422)
    own = await _own_patient(current, bsn)
    provision: dict[str, Any] = {
        "type": "permit",
        "purpose": [{"system": ACT_REASON, "code": purpose if purpose in PURPOSES else "TREAT"}],
        "class": [{"system": CATEGORY_SYSTEM, "code": c} for c in categories],
    }
    if NETWORK not in recipients:
        provision["actor"] = [
            {
                "role": {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                            "code": "PRCP",
                        }
                    ]
                },
                "reference": {
                    "type": "Organization",
                    "identifier": {"system": URA_SYSTEM, "value": ura},
                },
            }
            for ura in recipients
            if ura != session.org_ura
        ]
    period = {
        k: v
        for k, v in (
            ("start", iso_date(text(form, "from", 10))),
            ("end", iso_date(text(form, "to", 10))),
        )
        if v
    }
    if period:
        provision["period"] = period
    patient: dict[str, Any] = {"identifier": {"system": BSN_SYSTEM, "value": bsn}}
    if own is not None:
        patient["reference"] = f"Patient/{own}"
    resource: dict[str, Any] = {
        "resourceType": "Consent",
        "status": "active",
        "scope": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/consentscope",
                    "code": "patient-privacy",
                }
            ]
        },
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": patient,
        "dateTime": datetime.now(UTC).isoformat(timespec="seconds"),
        "policyRule": {
            "coding": [
                {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTIN"}
            ]
        },
        "provision": provision,
    }
    scan = upload(form, "scan")
    if scan is not None:
        content = await scan.read()
        if not content.startswith(b"%PDF-"):
            return await _consent_page(current, current.t("pdf_only"), 422)
        resource["sourceAttachment"] = {
            "contentType": "application/pdf",
            "data": base64.b64encode(content).decode(),
            "title": (scan.filename or "toestemming.pdf")[:200],
        }
    try:
        await current.service.create(current.context(), "Consent", resource)
    except GatewayError as error:
        if error.status >= 500:
            raise
        return await _consent_page(current, error.diagnostics, error.status)
    await current.remember(notice="consent_recorded")
    return redirect("/ui/patient/consent")


@router.post("/ui/patient/consent/{consent_id}/revoke")
async def revoke(current: Annotated[Page, Depends(page)], consent_id: str) -> Response:
    current.require("clinician")
    await current.form()
    ctx = current.context()
    found = await current.service.read(ctx, "Consent", consent_id)
    resource = orjson.loads(found.content or b"{}")
    if resource.get("status") == "active":
        resource["status"] = "inactive"
        await current.service.update(ctx, "Consent", consent_id, resource, if_match=found.etag)
    await current.remember(notice="consent_revoked")
    return redirect("/ui/patient/consent")


async def _consent_page(current: Page, message: str | None = None, status: int = 200) -> Response:
    session = current.signed_in
    bsn = patient_in_view(current)
    own = await _own_patient(current, bsn)
    rows = []
    if own is not None:
        body = await current.service.search(
            current.context(), "Consent", [("patient", f"Patient/{own}"), ("_count", "100")]
        )
        for entry in orjson.loads(body).get("entry") or []:
            rows.append(_describe(entry.get("resource") or {}))
    names = {o.ura: o.name for o in await list_organizations(current.service)}
    return current.render(
        "consent.html",
        status=status,
        message=message,
        bsn=bsn,
        rows=rows,
        names=names,
        partners=[(ura, name) for ura, name in sorted(names.items()) if ura != session.org_ura],
        categories=CATEGORIES,
        purposes=PURPOSES,
        holds=own is not None,
    )


async def _own_patient(current: Page, bsn: str) -> str | None:
    """The id of the hospital's own Patient record with this BSN: the consent is about it."""
    for resource, owner in await patients_with_bsn(current.service, current.context(), bsn):
        if owner == current.signed_in.org_ura:
            return str(resource.get("id"))
    return None


def _describe(consent: dict[str, Any]) -> dict[str, Any]:
    provision = consent.get("provision") or {}
    recipients = [
        ((a.get("reference") or {}).get("identifier") or {}).get("value")
        for a in provision.get("actor") or []
    ]
    return {
        "id": consent.get("id"),
        "status": consent.get("status"),
        "recorded": consent.get("dateTime"),
        "recipients": [r for r in recipients if r],
        "categories": [c.get("code") for c in provision.get("class") or []],
        "purposes": [p.get("code") for p in provision.get("purpose") or []],
        "period": provision.get("period") or {},
        "scan": bool(consent.get("sourceAttachment")),
        "rule": concept(consent.get("policyRule")),
    }
