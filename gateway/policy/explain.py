"""Who may see which data of one patient, and why: the DPO's ``$access`` overview.

For every organisation holding data of the patient, every data category it holds, and every
other organisation of the network, consent.decide is asked (a read for treatment, now); each
answer carries its basis in words a DPO can check.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Connection

from consent import AccessDecision
from gateway.policy.information import PolicyInformation
from gateway.store.schema import resources

_LAB = {
    "category": [
        {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                    "code": "laboratory",
                }
            ]
        }
    ]
}


@dataclass(frozen=True)
class AccessLine:
    holder: str
    grantee: str
    category: str
    decision: AccessDecision


def access_overview(
    conn: Connection, policy: PolicyInformation, patient_key: str, holder: str | None = None
) -> list[AccessLine]:
    """The decision for every holder x data category x other organisation, sorted; only the
    data ``holder`` holds when given (a DPO learns nothing of what other organisations hold)."""
    statement = select(
        resources.c.owner_org, resources.c.res_type, resources.c.data_category
    ).where(
        resources.c.patient_key == patient_key,
        resources.c.deleted.is_(False),
        resources.c.data_category.is_not(None),
    )
    if holder is not None:
        statement = statement.where(resources.c.owner_org == holder)
    held = conn.execute(statement.distinct()).all()
    examples: dict[tuple[str, str], str] = {}
    for owner, res_type, category in held:
        examples.setdefault((str(owner), str(category)), str(res_type))
    organisations = sorted(policy.directory(conn))
    lines = []
    for (holder, category), res_type in sorted(examples.items()):
        resource: dict[str, Any] | None = None
        if res_type == "Observation":
            resource = dict(_LAB) if category == "result-observations" else {}
        for grantee in organisations:
            if grantee == holder:
                continue
            decision = policy.decide(
                conn,
                actor_org=grantee,
                actor_id="access-overview",
                actor_role="any",
                holder_org=holder,
                patient_key=patient_key,
                resource_type=res_type,
                resource=resource,
            )
            lines.append(AccessLine(holder, grantee, category, decision))
    return lines
