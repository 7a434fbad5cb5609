"""The clinician's pages: find a patient, the shared record, documents, consent, emergencies.

The patient in view lives in the server-side session, never in a URL: URLs end up in logs.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends
from fastapi.responses import Response, StreamingResponse

from gateway.errors import GatewayError
from gateway.fhir.dutch_identifiers import BSN as BSN_SYSTEM
from gateway.fhir.dutch_identifiers import is_valid_bsn
from gateway.organizations import list_organizations
from gateway.ui.cda_view import CdaViewError, render_cda
from gateway.ui.record import (
    KINDS,
    patient_record,
    person_name,
)
from gateway.ui.web import Page, PageError, iso_date, page, redirect, text

router = APIRouter()
CDA_TYPES = ("application/hl7-v3+xml", "text/xml", "application/xml", "application/cda+xml")
# Shown in the page (a PDF viewer or an image); anything else only as a download, so that a
# partner's HTML or SVG never runs in our origin.
INLINE_TYPES = ("application/pdf", "image/png", "image/jpeg")


@dataclass(frozen=True)
class Filters:
    organisation: str
    kind: str
    start: str
    end: str

    @classmethod
    def of(cls, current: Page) -> Filters:
        query = current.request.query_params
        return cls(
            query.get("org", "")[:32],
            query.get("kind", "")[:32],
            iso_date(query.get("from", "")),
            iso_date(query.get("to", "")),
        )

    def keep(self, item: Any) -> bool:
        day = (item.date or "")[:10]
        return bool(
            (not self.organisation or item.source == self.organisation)
            and (not self.kind or item.kind == self.kind)
            and (not self.start or (day and day >= self.start))
            and (not self.end or (day and day <= self.end))
        )


async def organisation_names(current: Page) -> dict[str, str]:
    return {o.ura: o.name for o in await list_organizations(current.service)}


@router.get("/ui/patients")
async def find_form(current: Annotated[Page, Depends(page)]) -> Response:
    current.require("clinician")
    return current.render("patients.html", found=None, message=None)


@router.post("/ui/patients")
async def find(current: Annotated[Page, Depends(page)]) -> Response:
    """Find by BSN (elfproef checked) or by family name and birth date; POST, so that neither
    lands in a URL."""
    current.require("clinician")
    form = await current.form()
    bsn = text(form, "bsn", 20).replace(" ", "").replace(".", "")
    if bsn:
        if not is_valid_bsn(bsn):
            return current.render(
                "patients.html", status=422, found=None, message=current.t("invalid_bsn")
            )
        await current.remember(patient=bsn)
        return redirect("/ui/patient")
    family, birth = text(form, "family", 100), iso_date(text(form, "birthdate", 10))
    if not family or not birth:
        return current.render(
            "patients.html", status=422, found=None, message=current.t("need_bsn_or_name")
        )
    ctx = current.context(consulting=True)
    body = await current.service.search(
        ctx, "Patient", [("family", family), ("birthdate", birth), ("_count", "50")]
    )
    found: dict[str, dict[str, Any]] = {}
    for entry in orjson.loads(body).get("entry") or []:
        resource = entry.get("resource") or {}
        for identifier in resource.get("identifier") or []:
            if identifier.get("system") == BSN_SYSTEM and identifier.get("value"):
                found.setdefault(
                    identifier["value"],
                    {
                        "bsn": identifier["value"],
                        "name": person_name((resource.get("name") or [{}])[0]),
                        "birth": resource.get("birthDate"),
                    },
                )
    if len(found) == 1:
        await current.remember(patient=next(iter(found)))
        return redirect("/ui/patient")
    message = None if found else current.t("no_patients")
    return current.render("patients.html", found=list(found.values()), message=message)


@router.get("/ui/patient")
async def patient(current: Annotated[Page, Depends(page)]) -> Response:
    current.require("clinician")
    bsn = patient_in_view(current)
    ctx = current.context(consulting=True)
    emergency = await current.service.emergency_until(ctx, bsn)
    header, items = await patient_record(current.service, ctx, bsn)
    filters = Filters.of(current)
    names = await organisation_names(current)
    return current.render(
        "patient.html",
        bsn=bsn,
        header=header,
        items=[i for i in items if filters.keep(i)],
        every=items,
        filters=filters,
        names=names,
        sources=sorted({i.source for i in items if i.source}),
        kinds=sorted(set(KINDS.values())),
        emergency=emergency.isoformat() if emergency else None,
    )


@router.post("/ui/patient/emergency")
async def break_the_glass(current: Annotated[Page, Depends(page)]) -> Response:
    current.require("clinician")
    form = await current.form()
    bsn = patient_in_view(current)
    reason = text(form, "reason", 500)
    if not reason:
        raise PageError(422, "reason_required")
    await current.service.declare_emergency(current.context(), bsn, reason)
    return redirect("/ui/patient")


@router.get("/ui/documents/{doc_id}")
async def document(current: Annotated[Page, Depends(page)], doc_id: str) -> Response:
    current.require("clinician")
    ctx = current.context(consulting=True)
    reference = await _document_reference(current, doc_id)
    attachment = first_attachment(reference)
    content_type = str(attachment.get("contentType") or "").split(";")[0].strip()
    cda, cda_error, plain = None, None, None
    if content_type in CDA_TYPES or content_type == "text/plain":
        body = await attachment_content(current, ctx, attachment)
        if content_type == "text/plain":
            plain = body.decode("utf-8", "replace")
        else:
            try:
                cda = render_cda(body)
            except CdaViewError as error:
                cda_error = str(error)
    names = await organisation_names(current)
    owner = ((reference.get("custodian") or {}).get("identifier") or {}).get("value")
    return current.render(
        "document.html",
        doc=reference,
        doc_id=doc_id,
        content_type=content_type,
        inline=content_type in INLINE_TYPES,
        cda=cda,
        cda_error=cda_error,
        plain=plain,
        title=str(reference.get("description") or attachment.get("title") or doc_id),
        source=names.get(str(owner), owner),
    )


@router.get("/ui/documents/{doc_id}/content")
async def document_content(current: Annotated[Page, Depends(page)], doc_id: str) -> Response:
    current.require("clinician")
    return await serve_content(current, doc_id, consulting=True)


async def serve_content(current: Page, doc_id: str, *, consulting: bool) -> Response:
    """A document's content: inline when a browser shows it inertly, else as a download."""
    ctx = current.context(consulting=consulting)
    attachment = first_attachment(await _document_reference(current, doc_id, consulting=consulting))
    content_type = str(attachment.get("contentType") or "application/octet-stream")
    media = content_type.split(";")[0].strip()
    if current.request.query_params.get("embedded") and media in CDA_TYPES:
        # The PDF inside an unstructured CDA document.
        try:
            embedded = render_cda(await attachment_content(current, ctx, attachment)).embedded
        except CdaViewError:
            embedded = None
        if embedded is None:
            raise PageError(404, "not_found")
        return Response(
            embedded[1], media_type=embedded[0], headers=_content_headers(doc_id, embedded[0])
        )
    headers = _content_headers(doc_id, media)
    binary_id = _binary_id(attachment)
    if binary_id is None:
        body = base64.b64decode(attachment.get("data") or b"")
        return Response(body, media_type=media, headers=headers)
    found = await current.service.retrieve(ctx, binary_id)
    if found.body is not None:
        return Response(found.body, media_type=media, headers=headers)
    return StreamingResponse(current.service.stream(found.info), media_type=media, headers=headers)


# -- helpers --------------------------------------------------------------------------------


def _content_headers(doc_id: str, media: str) -> dict[str, str]:
    disposition = "inline" if media in INLINE_TYPES else "attachment"
    return {
        "Content-Disposition": f'{disposition}; filename="document-{doc_id[:64]}"',
        "Content-Security-Policy": "default-src 'none'; frame-ancestors 'self'"
        + ("" if disposition == "inline" else "; sandbox"),
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "SAMEORIGIN",
        "Cache-Control": "no-store",
        "Referrer-Policy": "no-referrer",
    }


def patient_in_view(current: Page) -> str:
    bsn = (current.session.data if current.session else {}).get("patient")
    if not isinstance(bsn, str) or not bsn:
        raise PageError(409, "no_patient")
    return bsn


async def _document_reference(
    current: Page, doc_id: str, *, consulting: bool = True
) -> dict[str, Any]:
    ctx = current.context(consulting=consulting)
    try:
        result = await current.service.read(ctx, "DocumentReference", doc_id)
    except GatewayError as error:
        if error.status in (400, 404, 410):
            raise PageError(404, "not_found") from None
        raise
    return dict(orjson.loads(result.content or b"{}"))


def first_attachment(reference: dict[str, Any]) -> dict[str, Any]:
    content = reference.get("content") or [{}]
    return dict((content[0] or {}).get("attachment") or {})


def _binary_id(attachment: dict[str, Any]) -> str | None:
    url = str(attachment.get("url") or "")
    if "Binary/" not in url:
        return None
    return url.rsplit("Binary/", 1)[1].split("/")[0] or None


async def attachment_content(current: Page, ctx: Any, attachment: dict[str, Any]) -> bytes:
    binary_id = _binary_id(attachment)
    if binary_id is None:
        return base64.b64decode(attachment.get("data") or b"")
    found = await current.service.retrieve(ctx, binary_id)
    if found.body is not None:
        return bytes(found.body)
    return b"".join([piece async for piece in current.service.stream(found.info)])
