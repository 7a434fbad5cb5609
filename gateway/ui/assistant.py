"""The assistant's pages: send a document to a partner hospital (the e-mail it replaces), the
inbox of what partners sent, and the status of what was sent.

Sending is an ITI-65 Provide Document Bundle through the same service as the MHD API, so the
recipient check, BSN check, consent for referral, encryption at rest, notification Task and
delivery all apply as they do for an EHR integration.
"""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends
from fastapi.responses import Response
from starlette.datastructures import FormData

from gateway.errors import GatewayError
from gateway.exchange.compose import provide_document_bundle
from gateway.fhir.dutch_identifiers import URA as URA_SYSTEM
from gateway.fhir.dutch_identifiers import bsn_of, is_valid_bsn
from gateway.organizations import list_organizations
from gateway.ui.clinician import attachment_content, first_attachment, serve_content
from gateway.ui.record import concept, describe, person_name
from gateway.ui.web import Page, page, redirect, text, upload

router = APIRouter()
TASK_CODE = "http://fhir.nl/fhir/NamingSystem/TaskCode|pull-notification"
SENDERS = ("assistant", "clinician")
# LOINC document types hospitals send one another most.
DOCUMENT_TYPES = (
    ("18842-5", "Ontslagbrief / Discharge summary"),
    ("11504-8", "Operatieverslag / Operative report"),
    ("57133-1", "Verwijsbrief / Referral note"),
    ("11502-2", "Laboratoriumuitslag / Laboratory report"),
    ("34117-2", "Anamnese en lichamelijk onderzoek / History and physical"),
    ("11488-4", "Consultverslag / Consult note"),
)
_TYPE_NAMES = dict(DOCUMENT_TYPES)
_MAX_LISTED = "100"


@router.get("/ui/send")
async def send_form(current: Annotated[Page, Depends(page)]) -> Response:
    current.require(*SENDERS)
    return await _send_page(current)


@router.post("/ui/send")
async def send(current: Annotated[Page, Depends(page)]) -> Response:
    session = current.require(*SENDERS)
    form = await current.form()
    ctx = current.context()
    recipient, type_code, title = (
        text(form, "recipient", 32),
        text(form, "type", 16),
        text(form, "title", 200),
    )
    existing = text(form, "existing", 64)
    try:
        if existing:
            bsn, content, content_type, type_code, title = await _existing(
                current, existing, type_code, title
            )
        else:
            bsn = text(form, "bsn", 20).replace(" ", "")
            content, content_type = await _uploaded_pdf(current, form)
        if not is_valid_bsn(bsn):
            return await _send_page(current, current.t("invalid_bsn"), 422, form)
        if not recipient or recipient == session.org_ura:
            return await _send_page(current, current.t("choose_recipient"), 422, form)
        bundle = provide_document_bundle(
            content=content,
            content_type=content_type,
            bsn=bsn,
            sender=session.org_ura,
            recipients=[recipient],
            type_code=type_code if type_code in _TYPE_NAMES else None,
            type_display=_TYPE_NAMES.get(type_code),
            title=title or _TYPE_NAMES.get(type_code),
        )
        await current.request.app.state.documents.provide(ctx, bundle)
    except _Refused as refused:
        return await _send_page(current, current.t(refused.key), 422, form)
    except GatewayError as error:
        if error.status >= 500:
            raise
        return await _send_page(current, error.diagnostics, error.status, form)
    await current.remember(notice="sent_ok")
    return redirect("/ui/sent")


@router.get("/ui/inbox")
async def inbox(current: Annotated[Page, Depends(page)]) -> Response:
    return await _notifications(current, "owner", "inbox.html")


@router.post("/ui/inbox/{task_id}/processed")
async def mark_processed(current: Annotated[Page, Depends(page)], task_id: str) -> Response:
    current.require(*SENDERS)
    await current.form()
    ctx = current.context()
    result = await current.service.read(ctx, "Task", task_id)
    task = orjson.loads(result.content or b"{}")
    if task.get("status") in ("requested", "received", "accepted", "in-progress"):
        task["status"] = "completed"
        await current.service.update(ctx, "Task", task_id, task, if_match=result.etag)
    return redirect("/ui/inbox")


@router.get("/ui/sent")
async def sent(current: Annotated[Page, Depends(page)]) -> Response:
    return await _notifications(current, "requester", "sent.html")


@router.get("/ui/inbox/documents/{doc_id}")
async def received_document(current: Annotated[Page, Depends(page)], doc_id: str) -> Response:
    """The content of a document addressed to the assistant's hospital, to file in its EHR."""
    current.require(*SENDERS)
    return await serve_content(current, doc_id, consulting=False)


# -- helpers --------------------------------------------------------------------------------


class _Refused(Exception):
    def __init__(self, key: str) -> None:
        self.key = key


async def _send_page(
    current: Page,
    message: str | None = None,
    status: int = 200,
    form: FormData | None = None,
) -> Response:
    """The send form; after a refusal, with what was filled in (but not the file)."""
    session = current.signed_in
    partners = [o for o in await list_organizations(current.service) if o.ura != session.org_ura]
    body, owners = await current.service.search_with_owners(
        current.context(),
        "DocumentReference",
        [("status", "current"), ("_sort", "-date"), ("_count", "50")],
    )
    own = [
        describe(resource, "documents", session.org_ura)
        for resource in (e.get("resource") or {} for e in orjson.loads(body).get("entry") or [])
        if owners.get(str(resource.get("id"))) == session.org_ura  # not what partners sent
    ]
    return current.render(
        "send.html",
        status=status,
        message=message,
        partners=partners,
        types=DOCUMENT_TYPES,
        own=own,
        values={k: text(form, k) for k in ("recipient", "bsn", "type", "title")} if form else {},
    )


async def _uploaded_pdf(current: Page, form: FormData) -> tuple[bytes, str]:
    file = upload(form, "file")
    if file is None:
        raise _Refused("pdf_only")
    content = await file.read()
    if not content.startswith(b"%PDF-"):
        raise _Refused("pdf_only")
    return content, "application/pdf"


async def _existing(
    current: Page, doc_id: str, type_code: str, title: str
) -> tuple[str, bytes, str, str, str]:
    """Send again a document the hospital holds: its content, patient and type."""
    ctx = current.context()
    reference = orjson.loads(
        (await current.service.read(ctx, "DocumentReference", doc_id)).content or b"{}"
    )
    subject = str((reference.get("subject") or {}).get("reference") or "")
    if not subject.startswith("Patient/"):
        raise _Refused("no_patient")
    patient = orjson.loads(
        (await current.service.read(ctx, "Patient", subject.split("/", 1)[1])).content or b"{}"
    )
    attachment = first_attachment(reference)
    content = await attachment_content(current, ctx, attachment)
    codes = [c.get("code") for c in (reference.get("type") or {}).get("coding") or []]
    return (
        bsn_of(patient) or "",
        content,
        str(attachment.get("contentType") or "application/octet-stream"),
        type_code or next((c for c in codes if c in _TYPE_NAMES), ""),
        title or str(reference.get("description") or attachment.get("title") or ""),
    )


async def _notifications(current: Page, side: str, template: str) -> Response:
    """The notification Tasks the hospital is the ``side`` (owner or requester) of."""
    session = current.require(*SENDERS)
    ctx = current.context()
    body = await current.service.search(
        ctx,
        "Task",
        [
            (f"{side}.identifier", f"{URA_SYSTEM}|{session.org_ura}"),
            ("code", TASK_CODE),
            ("_sort", "-_lastUpdated"),
            ("_count", _MAX_LISTED),
        ],
    )
    tasks = [e["resource"] for e in orjson.loads(body).get("entry") or [] if "resource" in e]
    return current.render(template, rows=[await _describe_task(current, ctx, t) for t in tasks])


async def _describe_task(current: Page, ctx: Any, task: dict[str, Any]) -> dict[str, Any]:
    """A notification as a row: who, when, for which patient, which documents, what status."""
    documents = []
    for item in task.get("input") or []:
        reference = str((item.get("valueReference") or {}).get("reference") or "")
        if reference.startswith("DocumentReference/"):
            doc_id = reference.split("/", 1)[1]
            documents.append({"id": doc_id, "type": concept(item.get("type"))})
    patient_ref = str((task.get("for") or {}).get("reference") or "")
    patient = None
    if patient_ref.startswith("Patient/"):
        try:
            found = await current.service.read(ctx, "Patient", patient_ref.split("/", 1)[1])
            resource = orjson.loads(found.content or b"{}")
            patient = {
                "name": person_name((resource.get("name") or [{}])[0]),
                "bsn": bsn_of(resource),
            }
        except GatewayError as error:
            if error.status not in (404, 410):
                raise
    return {
        "id": task.get("id"),
        "status": task.get("status"),
        "reason": (task.get("statusReason") or {}).get("text"),
        "when": task.get("authoredOn"),
        "changed": task.get("lastModified") or (task.get("meta") or {}).get("lastUpdated"),
        "sender": (task.get("requester") or {}).get("display"),
        "recipient": (task.get("owner") or {}).get("display"),
        "patient": patient,
        "documents": documents,
    }
