"""The notified-pull inbox: a notification ``Task`` per recipient of a submission.

Following the Dutch notified-pull pattern (Nictiz/Twiin): the Task's ``code`` is
``pull-notification``, ``owner`` the receiving organisation and ``requester`` the sending one
(in R4 ``Task.requester`` is a Reference: it takes the role of the pattern's STU3
``requester.onBehalfOf``); ``input`` points at the SubmissionSet and each document, and
``restriction.period`` says how long the notification stands. The receiver finds its work with
``GET Task?owner=…&status=requested``, pulls, and sets the status; only the status may change.
"""

from __future__ import annotations

from typing import Any

from gateway.fhir.dates import instant
from gateway.fhir.dutch_identifiers import URA

TASK_CODE_SYSTEM = "http://fhir.nl/fhir/NamingSystem/TaskCode"
TASK_PARAMETER_SYSTEM = "http://fhir.nl/fhir/NamingSystem/TaskParameter"
PULL_NOTIFICATION = "pull-notification"
SUBMISSION_SET = {
    "system": "https://profiles.ihe.net/ITI/MHD/CodeSystem/MHDlistTypes",
    "code": "submissionset",
}
NOTIFICATION_DAYS = 30
# What the addressee may change, and to which statuses (FHIR Task status codes).
_OWNER_ELEMENTS = {"status", "statusReason", "businessStatus", "output", "lastModified", "note"}
_OWNER_STATUSES = {"received", "accepted", "rejected", "in-progress", "completed", "failed"}
_IGNORED = {"meta", "id", "text"}
# What the sender may do with a notification once sent: withdraw it, saying why.
_REQUESTER_ELEMENTS = {"status", "statusReason", "lastModified", "note"}
_REQUESTER_STATUSES = {"cancelled", "entered-in-error"}


def organization_reference(org_id: str, ura: str, name: str) -> dict[str, Any]:
    return {
        "reference": f"Organization/{org_id}",
        "type": "Organization",
        "identifier": {"system": URA, "value": ura},
        "display": name,
    }


def notification_task(
    *,
    sender: dict[str, Any],
    recipient: dict[str, Any],
    submission_set: str,
    documents: list[tuple[str, dict[str, Any] | None]],
    patient: str,
    now_us: int,
) -> dict[str, Any]:
    """A pull-notification Task telling ``recipient`` that ``sender`` sent it documents.

    ``sender`` and ``recipient`` are Organization references (``organization_reference``);
    ``documents`` pairs each DocumentReference reference with its type, if any.
    """
    until_us = now_us + NOTIFICATION_DAYS * 86_400 * 1_000_000
    inputs: list[dict[str, Any]] = [
        {
            "type": {"coding": [{"system": TASK_PARAMETER_SYSTEM, "code": "get-workflow-task"}]},
            "valueBoolean": False,
        },
        {"type": {"coding": [SUBMISSION_SET]}, "valueReference": {"reference": submission_set}},
    ]
    for reference, document_type in documents:
        kind = document_type if document_type else {"text": "document"}
        inputs.append({"type": kind, "valueReference": {"reference": reference}})
    return {
        "resourceType": "Task",
        "status": "requested",
        "intent": "order",
        "code": {"coding": [{"system": TASK_CODE_SYSTEM, "code": PULL_NOTIFICATION}]},
        "focus": {"reference": submission_set},
        "for": {"reference": patient},
        "authoredOn": instant(now_us),
        "lastModified": instant(now_us),
        "requester": sender,
        "owner": recipient,
        "restriction": {"period": {"start": instant(now_us), "end": instant(until_us)}},
        "input": inputs,
    }


def owner_ura(task: dict[str, Any]) -> str | None:
    owner = task.get("owner")
    identifier = owner.get("identifier") if isinstance(owner, dict) else None
    if not isinstance(identifier, dict) or identifier.get("system") != URA:
        return None
    value = identifier.get("value")
    return value if isinstance(value, str) else None


def is_notification(task: dict[str, Any]) -> bool:
    codings = (task.get("code") or {}).get("coding") or []
    return any(
        isinstance(c, dict)
        and c.get("system") == TASK_CODE_SYSTEM
        and c.get("code") == PULL_NOTIFICATION
        for c in codings
    )


def is_status_change_by_owner(
    previous: dict[str, Any], updated: dict[str, Any], organization: str | None
) -> bool:
    """Whether ``updated`` only moves the status of a notification addressed to
    ``organization`` (and what goes with a status: reason, output, a note)."""
    if organization is None or not is_notification(previous) or owner_ura(previous) != organization:
        return False
    if updated.get("status") not in _OWNER_STATUSES:
        return False
    return _changes_only(previous, updated, _OWNER_ELEMENTS)


def is_change_by_requester(previous: dict[str, Any], updated: dict[str, Any]) -> bool:
    """Whether ``updated`` is what the sender of a notification may make of it: the
    addressee's work (received, completed, ...) is the addressee's to report, so the sender
    only withdraws it (cancelled, entered-in-error); anything but a notification is free."""
    if not is_notification(previous):
        return True
    if updated.get("status") == previous.get("status"):
        return _changes_only(previous, updated, {"lastModified", "note"})
    if updated.get("status") in _REQUESTER_STATUSES:
        return _changes_only(previous, updated, _REQUESTER_ELEMENTS)
    return False


def _changes_only(previous: dict[str, Any], updated: dict[str, Any], elements: set[str]) -> bool:
    """Whether ``updated`` differs from ``previous`` in ``elements`` (and meta, id, text) only."""
    keys = (set(previous) | set(updated)) - elements - _IGNORED
    return all(previous.get(key) == updated.get(key) for key in keys)
