"""Emergency access (break-the-glass): a clinician overrides a missing or denying consent.

An emergency is declared by one actor of one organisation for one patient, with a reason, and
holds for a limited window. While it holds, that actor's ``read`` requests with purpose ETREAT (or
its specialisation BTG) are permitted even without agreement or consent; the decision then
carries the obligations ``audit-as-emergency`` and ``notify-dpo``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from consent._errors import InvalidEmergency
from consent._request import AccessRequest
from consent._terminology import EMERGENCY_PURPOSES

# The longest an emergency declaration holds; a longer need is a new declaration, with a reason.
EMERGENCY_MAX_DURATION: Final = timedelta(hours=4)


@dataclass(frozen=True, slots=True, kw_only=True)
class Emergency:
    """A break-the-glass declaration by ``actor_id`` of ``actor_org`` for ``patient``."""

    actor_id: str
    actor_org: str
    patient: str
    reason: str
    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        if not self.reason.strip():
            raise InvalidEmergency("Emergency.reason", "an emergency needs a reason")
        for name in ("start", "end"):
            value: datetime = getattr(self, name)
            if value.tzinfo is None or value.utcoffset() is None:
                raise InvalidEmergency(f"Emergency.{name}", "must be timezone-aware")
        if self.end <= self.start:
            raise InvalidEmergency("Emergency.end", "must be after start")
        if self.end - self.start > EMERGENCY_MAX_DURATION:
            raise InvalidEmergency(
                "Emergency.end", f"an emergency holds at most {EMERGENCY_MAX_DURATION}"
            )

    @classmethod
    def declare(
        cls,
        *,
        actor_id: str,
        actor_org: str,
        patient: str,
        reason: str,
        at: datetime,
        duration: timedelta = EMERGENCY_MAX_DURATION,
    ) -> Emergency:
        """Declare an emergency starting at ``at`` for ``duration`` (at most 4 hours)."""
        return cls(
            actor_id=actor_id,
            actor_org=actor_org,
            patient=patient,
            reason=reason,
            start=at,
            end=at + duration,
        )

    def covers(self, request: AccessRequest) -> bool:
        """Whether this declaration permits ``request``: same actor and patient, ETREAT, in time."""
        return (
            emergency_may_cover(request)
            and request.actor_id == self.actor_id
            and request.actor_org == self.actor_org
            and request.patient == self.patient
            and self.start <= request.at < self.end
        )


def emergency_may_cover(request: AccessRequest) -> bool:
    """Whether any emergency could permit ``request``: only reads for an emergency purpose
    (ETREAT) can be, so a caller need not look up the declared emergencies for others."""
    return request.action == "read" and request.purpose in EMERGENCY_PURPOSES
