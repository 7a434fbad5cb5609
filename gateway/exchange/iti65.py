"""ITI-65 Provide Document Bundle: store a submission atomically and hand it to its recipients.

The Document Recipient of IHE MHD 4.2, for a gateway between hospitals:

1. the bundle is checked before anything is stored (one SubmissionSet, DocumentReferences with
   their Binary content, one patient, Minimal or Comprehensive metadata);
2. in one database transaction: the patient is matched by BSN in the sender's own records (or
   created), documents the sender already provided (same ``masterIdentifier``) are not stored
   again, the rest is stored (content encrypted), ``relatesTo`` replacements supersede their
   targets, and every addressee gets the submission shared, a notification Task and, when it
   registered an endpoint, a delivery in the outbox;
3. the answer is a transaction-response with one entry per request entry, in request order.

Any failure raises an ``MhdError`` with the XDS error code, and nothing is stored.
"""

from __future__ import annotations

import binascii
import dataclasses
import hashlib
from dataclasses import dataclass, field
from typing import Any

import orjson
import pybase64
from sqlalchemy.engine import Connection

from gateway.audit.scope import Decision, Interaction, scope_of
from gateway.content.vault import seal_ahead
from gateway.context import RequestContext
from gateway.errors import Forbidden, GatewayError, Issue, NotFound, operation_outcome
from gateway.exchange import mhd, outbox
from gateway.exchange.inbox import notification_task, organization_reference
from gateway.exchange.mhd import MhdError
from gateway.fhir.clinical_dates import clinical_date_us
from gateway.fhir.dutch_identifiers import BSN, URA, normalize_identifiers, normalized_system
from gateway.fhir.references import full_url_aliases
from gateway.fhir.validation import validate_resource
from gateway.policy.basis import basis_of_decision
from gateway.policy.information import Network, Organization
from gateway.service.bundles import BundleProcessor, TransactionEntry
from gateway.service.resources import ResourceResult, ResourceService
from gateway.store.repository import reserve_rids

# What a Provide Document Bundle may do. Besides MHD's own resources, the authors and context
# a document points at may come along (as in XDS-on-FHIR bundles such as the R4 Bundle-xds
# example): they are stored in the sender's records and shared with the document.
_SUPPORTING = ("Practitioner", "PractitionerRole", "Organization", "Device", "Encounter")
_ALLOWED = {
    *((res_type, "POST") for res_type in _SUPPORTING),
    ("List", "POST"),
    ("DocumentReference", "POST"),
    ("DocumentReference", "PUT"),
    ("DocumentReference", "PATCH"),
    ("Binary", "POST"),
    ("Patient", "POST"),
    ("Patient", "PUT"),
    ("Patient", "GET"),
}


def _already_stored(what: str) -> dict[str, Any]:
    return operation_outcome(
        [
            Issue(
                f"{what} was provided before by this organisation; it was not stored again",
                "duplicate",
                "information",
            )
        ]
    )


@dataclass
class Submission:
    """An ITI-65 bundle after the checks that need no database."""

    entries: list[TransactionEntry]
    submission_set: TransactionEntry
    documents: list[TransactionEntry]
    content_of: dict[int, list[TransactionEntry]]  # document position -> its Binary entries
    patient: TransactionEntry | None
    subject: dict[str, Any]  # the Reference every subject of the bundle agrees on
    bsn: str | None
    recipients: list[dict[str, Any]]  # intendedRecipient valueReferences
    supersede_patches: list[TransactionEntry] = field(default_factory=list)
    superseded: set[str] = field(default_factory=set)  # DocumentReference ids it superseded


class DocumentRecipient:
    """The MHD Document Recipient: ``provide`` answers an ITI-65 Provide Document Bundle."""

    def __init__(self, service: ResourceService, bundles: BundleProcessor) -> None:
        self.service = service
        self.bundles = bundles

    async def provide(
        self, ctx: RequestContext, bundle: dict[str, Any], *, with_data: bool = False
    ) -> bytes:
        """Store the submission and answer its transaction-response (request order).

        ``with_data`` admits, beside the documents, the structured data extracted from them
        (creates and conditional updates of any type): for the gateway's own intake of EHR
        exports (gateway.intake), not for ITI-65 over HTTP.
        """
        if not ctx.return_preference:  # MHD answers locations; echoing documents costs memory
            ctx = dataclasses.replace(ctx, return_preference="minimal")
        interaction = Interaction("import" if with_data else "provide-documents")
        submission = await self.service.precheck(
            ctx, interaction, lambda: self.check(ctx, bundle, with_data=with_data)
        )
        recipients = tuple(
            (
                "intendedRecipient",
                str(r.get("reference") or (r.get("identifier") or {}).get("value")),
            )
            for r in submission.recipients
        )
        interaction = dataclasses.replace(interaction, details=recipients)
        if ctx.return_preference == "minimal":  # no Binary is echoed: its content can go now
            await self.service.precheck(ctx, interaction, lambda: _seal_ahead(ctx, submission))
        await self.service.in_write(
            ctx, lambda conn: self._store(conn, ctx, submission), interaction
        )
        return self.bundles.response("transaction-response", ctx, submission.entries)

    # -- checks that need no database ------------------------------------------------------

    def check(
        self, ctx: RequestContext, bundle: dict[str, Any], *, with_data: bool = False
    ) -> Submission:
        """Parse and check a Provide Document Bundle; ``MhdError`` names what is wrong."""
        if bundle.get("type") != "transaction":
            raise MhdError(
                "XDSRegistryMetadataError",
                f"a Provide Document Bundle is a transaction, not a {bundle.get('type')}: it is "
                "stored whole or not at all",
                expression=["Bundle.type"],
            )
        raw_entries = bundle.get("entry")
        if not isinstance(raw_entries, list) or not raw_entries:
            raise MhdError("XDSRegistryMetadataError", "the bundle has no entries")
        entries: list[TransactionEntry] = []
        patches: list[TransactionEntry] = []
        for position, raw in enumerate(raw_entries):
            method = str(((raw or {}).get("request") or {}).get("method", "")).upper()
            if method == "PATCH":
                patches.append(_supersede_patch(position, raw))
                entries.append(patches[-1])
            else:
                try:
                    entries.append(self.bundles.parse_entry(ctx, position, raw))
                except GatewayError as error:
                    raise mhd.with_xds_code(error, "XDSRegistryMetadataError") from None
        for entry in entries:
            extracted = with_data and entry.method in ("POST", "PUT") and entry.res_type != "List"
            if (entry.res_type, entry.method) not in _ALLOWED and not extracted:
                raise MhdError(
                    "XDSRegistryMetadataError",
                    f"Bundle.entry[{entry.position}]: {entry.method} {entry.res_type} has no place "
                    "in a Provide Document Bundle",
                )
        lists = [e for e in entries if e.res_type == "List"]
        kinds = [mhd.list_type(e.resource) for e in lists]
        if "folder" in kinds:
            raise MhdError("XDSRegistryMetadataError", "Folders are not supported by this gateway")
        if kinds.count("submissionset") != 1 or len(lists) != 1:
            raise MhdError(
                "XDSRegistryMetadataError",
                f"a Provide Document Bundle holds exactly one SubmissionSet List "
                f"(found {kinds.count('submissionset')})",
            )
        submission_set = lists[0]
        self._check_submission_set(submission_set)
        documents = [e for e in entries if e.res_type == "DocumentReference" and e.method == "POST"]
        _check_listed(submission_set, documents)
        option = mhd.metadata_option(bundle) or "minimal"
        content_of = self._check_documents(documents, entries, option, several=with_data)
        patients = [e for e in entries if e.res_type == "Patient"]
        if len(patients) > 1:
            raise MhdError("XDSRegistryMetadataError", "a submission is about one Patient")
        patient = patients[0] if patients else None
        for entry in [submission_set, *documents, *([patient] if patient else [])]:
            self._check_identifiers(entry)
        subject, bsn = self._one_patient(submission_set, documents, patient)
        set_resource = submission_set.resource or {}
        recipients = [
            e.get("valueReference")
            for e in set_resource.get("extension") or []
            if isinstance(e, dict) and e.get("url") == mhd.INTENDED_RECIPIENT
        ]
        if any(not isinstance(r, dict) for r in recipients):
            raise MhdError("UnknownRecipient", "an intendedRecipient has no valueReference")
        return Submission(
            entries,
            submission_set,
            documents,
            content_of,
            patient,
            subject,
            bsn,
            recipients,  # type: ignore[arg-type]
            patches,
        )

    @staticmethod
    def _check_submission_set(entry: TransactionEntry) -> None:
        resource = entry.resource or {}
        source = [
            e
            for e in resource.get("extension") or []
            if isinstance(e, dict) and e.get("url") == mhd.SOURCE_ID
        ]
        if len(source) != 1 or not (source[0].get("valueIdentifier") or {}).get("value"):
            raise MhdError(
                "XDSRegistryMetadataError",
                "the SubmissionSet needs exactly one sourceId extension with a valueIdentifier",
                expression=["List.extension"],
            )
        if not resource.get("date"):
            raise MhdError(
                "XDSRegistryMetadataError",
                "the SubmissionSet has no date",
                expression=["List.date"],
            )

    def _check_documents(
        self,
        documents: list[TransactionEntry],
        entries: list[TransactionEntry],
        option: str,
        *,
        several: bool = False,
    ) -> dict[int, list[TransactionEntry]]:
        """Each document's Binaries. MHD allows one content per DocumentReference; with
        ``several`` (intake) a document may carry more (a CDA and the PDF it embeds)."""
        binaries = {e.full_url: e for e in entries if e.res_type == "Binary" and e.full_url}
        content_of: dict[int, list[TransactionEntry]] = {}
        unique_ids: set[tuple[str, str]] = set()
        for entry in documents:
            where = f"Bundle.entry[{entry.position}].resource"
            doc = entry.resource or {}
            master = doc.get("masterIdentifier") or {}
            if not master.get("value"):
                raise MhdError(
                    "XDSRegistryMetadataError",
                    f"{where}: a DocumentReference needs a masterIdentifier (its uniqueId)",
                    expression=["DocumentReference.masterIdentifier"],
                )
            key = (master.get("system", ""), master["value"])
            if key in unique_ids:
                raise MhdError(
                    "XDSRegistryDuplicateUniqueIdInMessage",
                    f"{where}: masterIdentifier {master['value']} appears twice in the submission",
                )
            unique_ids.add(key)
            if doc.get("status") != "current":
                raise MhdError(
                    "XDSRegistryMetadataError",
                    f"{where}: a provided DocumentReference must have status current",
                    expression=["DocumentReference.status"],
                )
            contents = doc.get("content") or []
            attachments = [c.get("attachment") or {} for c in contents if isinstance(c, dict)]
            if (
                not attachments
                or (len(attachments) != 1 and not several)
                or not all(a.get("contentType") and a.get("url") for a in attachments)
            ):
                raise MhdError(
                    "XDSRegistryMetadataError",
                    f"{where}: content needs exactly one attachment with contentType and url",
                    expression=["DocumentReference.content"],
                )
            if any("data" in a for a in attachments):
                raise MhdError(
                    "XDSRegistryMetadataError",
                    f"{where}: the document goes in a Binary, not in attachment.data",
                    expression=["DocumentReference.content.attachment.data"],
                )
            if option == "comprehensive":
                for path in mhd.COMPREHENSIVE_ELEMENTS:
                    if not _present(doc, path):
                        element = "DocumentReference." + ".".join(path)
                        raise MhdError(
                            "XDSRegistryMetadataError",
                            f"{where}: Comprehensive Metadata requires {element}",
                            expression=[element],
                        )
            content_of[entry.position] = [
                self._binary_of(where, attachment, binaries) for attachment in attachments
            ]
        used = {b.position for found in content_of.values() for b in found}
        for binary in binaries.values():
            if binary.position not in used:
                raise MhdError(
                    "XDSMissingDocumentMetadata",
                    f"Bundle.entry[{binary.position}]: no DocumentReference describes this Binary",
                )
        return content_of

    @staticmethod
    def _binary_of(
        where: str, attachment: dict[str, Any], binaries: dict[str, TransactionEntry]
    ) -> TransactionEntry:
        binary = _binary_for(attachment["url"], binaries)
        if binary is None:
            raise MhdError(
                "XDSMissingDocument",
                f"{where}: attachment.url {attachment['url']} names no Binary of the bundle",
                expression=["DocumentReference.content.attachment.url"],
            )
        content = binary.resource or {}
        if not isinstance(content.get("data"), str):
            raise MhdError(
                "XDSMissingDocument", f"Bundle.entry[{binary.position}]: the Binary has no data"
            )
        if content.get("contentType") != attachment["contentType"]:
            raise MhdError(
                "XDSRepositoryMetadataError",
                f"{where}: attachment.contentType {attachment['contentType']} differs from the "
                f"Binary's {content.get('contentType')}",
            )
        return binary

    @staticmethod
    def _check_identifiers(entry: TransactionEntry) -> None:
        invalid = normalize_identifiers(entry.resource or {})
        if invalid:
            path, value = invalid[0]
            raise MhdError(
                "XDSUnknownPatientId",
                f"Bundle.entry[{entry.position}]: {path}: '{value[:20]}' is not a valid BSN "
                "(it fails the elfproef)",
                expression=[path],
            )

    @staticmethod
    def _one_patient(
        submission_set: TransactionEntry,
        documents: list[TransactionEntry],
        patient: TransactionEntry | None,
    ) -> tuple[dict[str, Any], str | None]:
        """The one patient every subject names, and its BSN when known."""
        patient_bsn = _bsn(patient.resource) if patient and patient.resource else None
        keys: dict[tuple[str, str], dict[str, Any]] = {}
        for entry in [submission_set, *documents]:
            subject = (entry.resource or {}).get("subject")
            if isinstance(subject, dict):
                keys.setdefault(_subject_key(subject, patient, patient_bsn), subject)
        if patient is not None:
            keys.setdefault(("entry", patient.full_url or str(patient.position)), {})
        if not keys:
            raise MhdError(
                "XDSUnknownPatientId", "the submission names no patient (subject or Patient entry)"
            )
        if len(keys) > 1:
            raise MhdError(
                "XDSPatientIdDoesNotMatch",
                "the SubmissionSet and its documents are not all about the same patient",
            )
        (kind, value), subject = next(iter(keys.items()))
        bsn = patient_bsn or (value if kind == "bsn" else None)
        return subject, bsn

    # -- storing, in one transaction -------------------------------------------------------

    def _store(self, conn: Connection, ctx: RequestContext, submission: Submission) -> None:
        service = self.service
        network = service.policy.network(conn)  # once for the directory and the decisions
        sender = self._directory(network, ura=ctx.actor.organization)
        recipients = [self._recipient(network, ctx, r) for r in submission.recipients]
        patient, bsn = self._patient(conn, ctx, submission)
        if recipients and bsn is None:
            raise MhdError(
                "XDSUnknownPatientId",
                "documents addressed to another organisation need the patient's BSN",
            )
        for entry in submission.documents:
            _check_custodian(network, sender, entry)
        for recipient in recipients:
            self._may_refer(conn, ctx, sender.ura, recipient.ura, str(bsn), network)
        self._already_provided(conn, ctx, submission)
        repeated = self._repeated(conn, ctx, submission, recipients)
        for entry in submission.documents:
            if entry.done:  # provided before: what it replaces is superseded already
                replaced = _replaced(entry)
                submission.superseded.update(t.removeprefix("DocumentReference/") for t in replaced)
        for entry in submission.supersede_patches:
            entry.result = self._supersede(
                conn, ctx, submission, f"DocumentReference/{entry.res_id}", patient, bsn
            )
        for entry in submission.documents:
            consent = service.content_consent(bsn, clinical_date_us(entry.resource or {}))
            for binary_entry in submission.content_of[entry.position]:
                binary_entry.consent = consent
        creates = sum(1 for e in submission.entries if e.method == "POST" and not e.done)
        reserve_rids(conn, creates + (0 if repeated else len(recipients)))  # and the Tasks
        self.bundles.run_transaction(conn, ctx, submission.entries)
        self._check_content(submission)
        superseded = self._supersede_replaced(conn, ctx, submission, patient, bsn)
        set_result = submission.submission_set.result
        assert set_result is not None and patient.rid is not None
        # The documents it replaced go along as superseded: a recipient's copy of one is the
        # version it was sent, so it would not see the change otherwise.
        given = [e.result for e in submission.entries if e.result is not None] + superseded
        now = service.now_us()
        for recipient in recipients:
            if repeated:
                service.share(conn, [patient, *given], recipient.ura)
                continue
            task = notification_task(
                sender=organization_reference(sender.id, sender.ura, sender.name),
                recipient=organization_reference(recipient.id, recipient.ura, recipient.name),
                submission_set=f"List/{set_result.res_id}",
                documents=[
                    (f"DocumentReference/{e.result.res_id}", (e.resource or {}).get("type"))
                    for e in submission.documents
                    if e.result is not None
                ],
                patient=f"Patient/{patient.res_id}",
                now_us=now,
            )
            # Made by notification_task of validated parts (tests validate what it makes).
            created = service.create_in(conn, ctx, "Task", task)
            # A recipient with an endpoint gets the submission once its delivery is admitted
            # (consent and agreement checked again then); otherwise its inbox is the delivery.
            delivery_id = None
            if recipient.endpoint and recipient.active:
                delivery_id = outbox.enqueue(
                    conn,
                    sender=sender.ura,
                    recipient=recipient.ura,
                    endpoint=recipient.endpoint,
                    task_id=created.res_id,
                    now_us=now,
                )
            service.share(conn, [patient, *given, created], recipient.ura, delivery_id)

    def _may_refer(
        self,
        conn: Connection,
        ctx: RequestContext,
        sender: str,
        recipient: str,
        bsn: str,
        network: Network,
    ) -> None:
        """A push is a directed referral: it needs an agreement between the two organisations
        that covers documents for treatment, and no objection by the patient (403 otherwise)."""
        decision = self.service.policy.decide(
            conn,
            actor_org=recipient,
            actor_id=ctx.actor.id,
            actor_role=next(iter(ctx.actor.roles), ctx.actor.kind),
            holder_org=sender,
            patient_key=bsn,
            resource_type="DocumentReference",
            action="push",
            network=network,
        )
        scope = scope_of(conn)
        if scope is not None:
            scope.decided(Decision(decision.permit, basis_of_decision(decision), bsn, sender))
        if not decision.permit:
            raise Forbidden(
                f"the documents may not be sent to {recipient}: {decision.explain()}",
                code="forbidden",
            )

    @staticmethod
    def _directory(network: Network, *, ura: str | None) -> Organization:
        found = network.by_ura(ura) if ura else None
        if found is None:
            raise MhdError(
                "XDSRegistryMetadataError",
                f"the sending organisation {ura} is not registered in the network",
            )
        return found

    @staticmethod
    def _recipient(
        network: Network, ctx: RequestContext, reference: dict[str, Any]
    ) -> Organization:
        """The registered organisation an intendedRecipient names (by URA or reference)."""
        identifier = _object(reference.get("identifier"))
        ura = (
            identifier.get("value")
            if normalized_system(identifier.get("system", "")) == URA
            else None
        )
        literal = reference.get("reference")
        found = None
        if ura:
            found = network.by_ura(str(ura))
        elif isinstance(literal, str) and literal.split("/")[-2:-1] == ["Organization"]:
            found = network.by_id(literal.split("/")[-1])
        if found is None:
            named = ura or literal or reference.get("display") or "?"
            raise MhdError(
                "UnknownRecipient",
                f"intendedRecipient {named} is not an organisation registered in the network "
                "(address organisations by URA identifier or Organization reference)",
            )
        if found.ura == ctx.actor.organization:
            raise MhdError(
                "UnknownRecipient", "a submission cannot be addressed to the sending organisation"
            )
        if not found.active:
            raise MhdError("UnavailableRecipient", f"organisation {found.ura} is not active")
        return found

    def _patient(
        self, conn: Connection, ctx: RequestContext, submission: Submission
    ) -> tuple[ResourceResult, str | None]:
        """The sender's record of the patient (matched by BSN, else created) and its BSN."""
        service = self.service
        entry = submission.patient
        if entry is not None:
            if entry.method == "POST" and submission.bsn:
                # A BSN names one person: a sender with duplicate records gets the oldest.
                known = service.find_own_patient(conn, ctx, submission.bsn)
                if known is not None:
                    _reuse(entry, service.shown(conn, 200, known))
            if entry.done:
                pass
            elif entry.method == "GET":
                entry.result = service.read_in(conn, ctx, "Patient", entry.res_id or "")
                entry.done = True
            else:
                if entry.method == "POST" and submission.bsn and not entry.if_none_exist:
                    # Conditional on the BSN, so that pushes about a new patient at the same
                    # moment create one record (on PostgreSQL ten created up to eight).
                    entry.if_none_exist = f"identifier={BSN}|{submission.bsn}"
                # Run the Patient entry first so every later entry can point at it.
                self.bundles.run_transaction(conn, ctx, [entry])
                entry.done = True
            assert entry.result is not None
            result = entry.result
            bsn = submission.bsn or _bsn(orjson.loads(result.content or b"{}"))
            _point_subjects_at(submission, result.res_id)
            return result, bsn
        subject = submission.subject
        literal = subject.get("reference")
        if isinstance(literal, str) and literal.startswith("Patient/"):
            try:
                result = service.read_in(conn, ctx, "Patient", literal.removeprefix("Patient/"))
            except (NotFound, GatewayError):
                raise MhdError(
                    "XDSUnknownPatientId", f"the subject {literal} is not a patient of the sender"
                ) from None
            bsn = _bsn(orjson.loads(result.content or b"{}"))
        elif submission.bsn:
            bsn = submission.bsn
            condition = f"identifier={BSN}|{bsn}"
            known = service.find_own_patient(conn, ctx, bsn)
            patient = {"resourceType": "Patient", "identifier": [{"system": BSN, "value": bsn}]}
            result = (
                service.shown(conn, 200, known)
                if known is not None
                else service.create_in(
                    conn, ctx, "Patient", validate_resource(patient), if_none_exist=condition
                )
            )
        else:
            raise MhdError(
                "XDSUnknownPatientId", "the subject must be a Patient reference or carry a BSN"
            )
        _point_subjects_at(submission, result.res_id)
        return result, bsn

    def _already_provided(
        self, conn: Connection, ctx: RequestContext, submission: Submission
    ) -> None:
        """Mark documents (and their content) the sender provided before as done, refusing a
        uniqueId re-sent with other content; likewise a SubmissionSet by its identifiers."""
        service = self.service
        set_entry = submission.submission_set
        set_identifiers = (set_entry.resource or {}).get("identifier") or []
        documents = [(e, (e.resource or {})["masterIdentifier"]) for e in submission.documents]
        known = service.find_own_each(
            conn,
            ctx,
            [("DocumentReference", master) for _entry, master in documents]
            + [("List", identifier) for identifier in set_identifiers],
            exclusive=True,
        )
        for (entry, master), found in zip(documents, known[: len(documents)], strict=True):
            if found is None:
                continue
            binaries = submission.content_of[entry.position]
            old = self._content_info(conn, ctx, found)
            new = [_content_sha256(b) for b in binaries]
            if old and [sha256 for _binary_id, sha256 in old] != new:
                raise MhdError(
                    "XDSNonIdenticalHash",
                    f"document {master['value']} was provided before with other content; send a "
                    "replacement (relatesTo replaces) with a new masterIdentifier",
                )
            _reuse(entry, service.shown(conn, 200, found))
            entry.note = _already_stored(f"DocumentReference {master['value']}")
            for binary, (binary_id, _sha256) in zip(binaries, old, strict=False):
                _reuse(binary, service.read_in(conn, ctx, "Binary", binary_id))
                binary.note = _already_stored("Its content")
        for identifier, found in zip(set_identifiers, known[len(documents) :], strict=True):
            if found is None or mhd.list_type(orjson.loads(found.content or b"{}")) != (
                "submissionset"
            ):
                continue
            if not all(e.done for e in submission.documents):
                raise MhdError(
                    "XDSDuplicateUniqueIdInRegistry",
                    f"SubmissionSet {identifier.get('value')} was provided before with other "
                    "documents",
                )
            _reuse(set_entry, service.shown(conn, 200, found))
            set_entry.note = _already_stored(f"SubmissionSet {identifier.get('value')}")
            break

    def _repeated(
        self,
        conn: Connection,
        ctx: RequestContext,
        submission: Submission,
        recipients: list[Organization],
    ) -> bool:
        """Whether the submission repeats an earlier one: its SubmissionSet was provided before,
        or (without a SubmissionSet uniqueId) every document was, and every recipient already
        has them. A repeat notifies nobody again."""
        if submission.submission_set.done:
            return True
        documents = submission.documents
        if not documents or not all(e.done and e.result for e in documents):
            return False
        for recipient in recipients:
            for entry in documents:
                rid = entry.result.rid if entry.result else None
                if rid is None or not self.service.is_shared(conn, rid, recipient.ura):
                    return False
        first = documents[0].result
        assert first is not None
        earlier = self.service.conditional_match(
            conn,
            ctx,
            "List",
            f"item=DocumentReference/{first.res_id}&code={mhd.LIST_TYPES}|submissionset",
            first=True,
        )
        if earlier is not None:
            _reuse(submission.submission_set, self.service.shown(conn, 200, earlier))
            submission.submission_set.note = _already_stored("This submission")
        return True

    def _content_info(
        self, conn: Connection, ctx: RequestContext, document: Any
    ) -> list[tuple[str, str]]:
        """The Binary id and content SHA-256 of each content of a stored DocumentReference."""
        resource = orjson.loads(document.content or b"{}")
        found = []
        for content in resource.get("content") or []:
            url = str((content.get("attachment") or {}).get("url", ""))
            binary_id = url.split("/")[-1] if "Binary/" in url else None
            info = self.service.blob_of(conn, ctx, binary_id) if binary_id else None
            if binary_id and info is not None:
                found.append((binary_id, info.sha256))
        return found

    @staticmethod
    def _check_content(submission: Submission) -> None:
        """The size and hash each new DocumentReference states match its stored content."""
        for entry in submission.documents:
            if entry.done:
                continue
            contents = (entry.resource or {})["content"]
            for n, binary_entry in enumerate(submission.content_of[entry.position]):
                binary = binary_entry.result
                info = binary.blobs[0] if binary and binary.blobs else None
                attachment = contents[n]["attachment"]
                where = f"Bundle.entry[{entry.position}]: DocumentReference.content[{n}].attachment"
                if info is None:
                    raise MhdError(
                        "XDSMissingDocument", f"{where}: the document content is missing"
                    )
                if "size" in attachment and attachment["size"] != info.size:
                    raise MhdError(
                        "XDSNonIdenticalSize",
                        f"{where}.size is {attachment['size']}, the content has {info.size} bytes",
                    )
                if "hash" in attachment and attachment["hash"] != info.sha1:
                    raise MhdError(
                        "XDSNonIdenticalHash",
                        f"{where}.hash is {attachment['hash']}, the content's SHA-1 is {info.sha1}",
                    )

    def _supersede(
        self,
        conn: Connection,
        ctx: RequestContext,
        submission: Submission,
        reference: str,
        patient: ResourceResult,
        bsn: str | None,
    ) -> ResourceResult:
        """Mark one of the sender's own current DocumentReferences, about the submission's
        patient, as superseded (once: a second replacement would fork the document's line)."""
        doc_id = reference.removeprefix("DocumentReference/")
        try:
            stored = self.service.read_in(conn, ctx, "DocumentReference", doc_id)
        except GatewayError:
            stored = None
        if stored is None or stored.owner_org != ctx.actor.organization:
            raise MhdError(
                "XDSRegistryMetadataError",
                f"{reference} cannot be replaced: it is not a document of the sending organisation",
            )
        resource = orjson.loads(stored.content or b"{}")
        status = resource.get("status")
        if status != "current":
            if doc_id in submission.superseded:  # by this submission's other entry
                return stored
            raise MhdError(
                "XDSRegistryDeprecatedDocumentError",
                f"{reference} is {status}: only a current document can be replaced "
                "(replace the document that replaced it)",
            )
        if not self._same_patient(conn, ctx, resource, patient, bsn):
            raise MhdError(
                "XDSPatientIdDoesNotMatch",
                f"{reference} is about another patient than the submission that replaces it",
            )
        resource["status"] = "superseded"
        # update_in marks its content deprecated (ITI-68: 410)
        result = self.service.update_in(conn, ctx, "DocumentReference", doc_id, resource)
        submission.superseded.add(doc_id)
        return result

    def _same_patient(
        self,
        conn: Connection,
        ctx: RequestContext,
        document: dict[str, Any],
        patient: ResourceResult,
        bsn: str | None,
    ) -> bool:
        """Whether a stored document is about the submission's patient: the same record, or
        a record of the same BSN."""
        subject = _object(document.get("subject"))
        literal = subject.get("reference")
        if literal == f"Patient/{patient.res_id}":
            return True
        if bsn is None:
            return False
        if isinstance(literal, str) and literal.startswith("Patient/"):
            try:
                found = self.service.read_in(conn, ctx, "Patient", literal.removeprefix("Patient/"))
            except GatewayError:
                return False
            return _bsn(orjson.loads(found.content or b"{}")) == bsn
        identifier = _object(subject.get("identifier"))
        return normalized_system(identifier.get("system", "")) == BSN and (
            identifier.get("value") == bsn
        )

    def _supersede_replaced(
        self,
        conn: Connection,
        ctx: RequestContext,
        submission: Submission,
        patient: ResourceResult,
        bsn: str | None,
    ) -> list[ResourceResult]:
        return [
            self._supersede(conn, ctx, submission, target, patient, bsn)
            for entry in submission.documents
            if not entry.done
            for target in _replaced(entry)
        ]


def _check_listed(submission_set: TransactionEntry, documents: list[TransactionEntry]) -> None:
    """Every document of the bundle is a member of its SubmissionSet (List.entry.item)."""
    items = {
        str(_object(item.get("item")).get("reference"))
        for item in (submission_set.resource or {}).get("entry") or []
        if isinstance(item, dict)
    }
    for entry in documents:
        names = {entry.full_url, *full_url_aliases(entry.full_url or "")} - {None, ""}
        if not names & items:
            raise MhdError(
                "XDSRegistryMetadataError",
                f"Bundle.entry[{entry.position}]: the SubmissionSet does not list this "
                "DocumentReference (List.entry.item)",
                expression=["List.entry"],
            )


def _check_custodian(network: Network, sender: Organization, entry: TransactionEntry) -> None:
    """A document's custodian, when given, is the organisation that sends it."""
    custodian = _object((entry.resource or {}).get("custodian"))
    identifier = _object(custodian.get("identifier"))
    literal = custodian.get("reference")
    named = None
    if normalized_system(str(identifier.get("system", ""))) == URA:
        named = identifier.get("value")
    elif isinstance(literal, str) and literal.startswith("Organization/"):
        found = network.by_id(literal.removeprefix("Organization/"))
        named = found.ura if found is not None else None
    if named is not None and named != sender.ura:
        raise MhdError(
            "XDSRegistryMetadataError",
            f"Bundle.entry[{entry.position}]: the custodian {named} is not the sending "
            f"organisation {sender.ura}",
            expression=["DocumentReference.custodian"],
        )


def _replaced(document: TransactionEntry) -> list[str]:
    """The references a DocumentReference's ``relatesTo`` replaces."""
    return [
        target
        for relation in (document.resource or {}).get("relatesTo") or []
        if isinstance(relation, dict) and relation.get("code") == "replaces"
        if isinstance(target := (relation.get("target") or {}).get("reference"), str)
    ]


def _reuse(entry: TransactionEntry, result: ResourceResult) -> None:
    """Answer an entry with a resource that already exists instead of storing it."""
    entry.result, entry.res_id, entry.done = result, result.res_id, True


def _point_subjects_at(submission: Submission, patient_id: str) -> None:
    for entry in [submission.submission_set, *submission.documents]:
        resource = entry.resource or {}
        resource["subject"] = {
            **_object(resource.get("subject")),
            "reference": f"Patient/{patient_id}",
        }


def _supersede_patch(position: int, raw: dict[str, Any]) -> TransactionEntry:
    """An MHD UpdateDocumentRefs entry: a PATCH setting a DocumentReference's status to
    superseded (the only patch a Provide Document Bundle carries)."""
    url = str((raw.get("request") or {}).get("url", ""))
    parts = url.split("/")
    operations = [
        {part.get("name"): part for part in p.get("part") or []}
        for p in (raw.get("resource") or {}).get("parameter") or []
        if isinstance(p, dict) and p.get("name") == "operation"
    ]
    supersedes = len(operations) == 1 and (
        (operations[0].get("type") or {}).get("valueCode") == "replace"
        and (operations[0].get("path") or {}).get("valueString") == "DocumentReference.status"
        and (operations[0].get("value") or {}).get("valueCode") == "superseded"
    )
    if len(parts) != 2 or parts[0] != "DocumentReference" or not supersedes:
        raise MhdError(
            "XDSRegistryMetadataError",
            f"Bundle.entry[{position}]: the only PATCH of a Provide Document Bundle sets a "
            "DocumentReference's status to superseded",
        )
    return TransactionEntry(
        position, "PATCH", "DocumentReference", parts[1], None, None, None, None, None, None
    )


def _present(resource: dict[str, Any], path: tuple[str, ...]) -> bool:
    nodes: list[Any] = [resource]
    for name in path:
        nodes = [
            child
            for node in nodes
            if isinstance(node, dict)
            for child in _as_list(node.get(name))
            if child not in (None, [], {}, "")
        ]
    return bool(nodes)


def _binary_for(url: str, binaries: dict[str, TransactionEntry]) -> TransactionEntry | None:
    if url in binaries:
        return binaries[url]
    return next((b for full, b in binaries.items() if full.endswith("/" + url)), None)


def _bsn(resource: dict[str, Any] | None) -> str | None:
    for identifier in (resource or {}).get("identifier") or []:
        if isinstance(identifier, dict) and normalized_system(identifier.get("system", "")) == BSN:
            value = identifier.get("value")
            return value if isinstance(value, str) else None
    return None


def _subject_key(
    subject: dict[str, Any], patient: TransactionEntry | None, patient_bsn: str | None
) -> tuple[str, str]:
    """What identifies the patient a subject names, comparable across the bundle."""
    own = ("entry", (patient.full_url or str(patient.position)) if patient else "")
    reference = subject.get("reference")
    if isinstance(reference, str):
        names = full_url_aliases(patient.full_url) if patient and patient.full_url else []
        if patient and reference in (*names, f"Patient/{patient.res_id}"):
            return own
        return ("reference", reference)
    identifier = _object(subject.get("identifier"))
    system, value = normalized_system(identifier.get("system", "")), identifier.get("value")
    if system == BSN and isinstance(value, str):
        return own if patient and value == patient_bsn else ("bsn", value)
    return ("identifier", f"{system}|{value}")


def _seal_ahead(ctx: RequestContext, submission: Submission) -> None:
    """Encrypt each document's content before the write transaction (vault.seal_ahead)."""
    for binaries in submission.content_of.values():
        for binary in binaries:
            try:
                binary.sealed = seal_ahead(binary.resource or {}, ctx.actor.organization)
            except GatewayError as error:
                raise mhd.with_xds_code(error, "XDSMissingDocument") from None


def _content_sha256(binary: TransactionEntry) -> str:
    if binary.sealed:
        return binary.sealed[0].info.sha256
    return hashlib.sha256(_decoded(binary)).hexdigest()


def _decoded(binary: TransactionEntry) -> bytes:
    text = str((binary.resource or {}).get("data", ""))
    try:
        return pybase64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise MhdError(
            "XDSMissingDocument", f"Bundle.entry[{binary.position}]: Binary.data is not base64"
        ) from None


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]
