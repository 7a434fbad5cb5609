"""The one error hierarchy of the consent package.

::

    ConsentError                  base of every error raised by ``consent``
    ├── InvalidConsent      a FHIR Consent the gateway cannot enforce faithfully (answer 422)
    ├── InvalidAgreement    an agreement or Contract that is incomplete or contradictory (422)
    ├── InvalidEmergency    a break-the-glass declaration without reason or beyond its limit (422)
    └── InvalidRequest      an AccessRequest built wrongly by the caller (also a ValueError)

Every error carries the element it is about (``.element``, e.g. ``Consent.provision.actor[0].role``,
for ``OperationOutcome.issue.expression``) and a ``.reason``; ``str(error)`` is one line:
``"<element>: <reason>"``.
"""

from __future__ import annotations


class ConsentError(Exception):
    """Base class of every error raised by the consent package."""


class _ElementError(ConsentError):
    """An error about one element of a resource, e.g. ``Consent.provision.actor[0].role``."""

    def __init__(self, element: str, reason: str) -> None:
        self.element = element
        self.reason = reason
        super().__init__(f"{element}: {reason}")


class InvalidConsent(_ElementError):
    """A Consent holds a rule this gateway cannot enforce faithfully, or is incomplete."""


class InvalidAgreement(_ElementError):
    """An agreement (or the Contract that stores it) is incomplete or contradictory."""


class InvalidEmergency(_ElementError):
    """A break-the-glass declaration lacks a reason, or its window is empty or too long."""


class InvalidRequest(_ElementError, ValueError):
    """An ``AccessRequest`` (or ``categories_of`` call) that the caller built wrongly."""
