"""Errors of the gateway; each maps to a FHIR ``OperationOutcome`` with an HTTP status.

Tree::

    GatewayError                500 exception
    ├── AuditUnavailable        500 exception (the access could not be audited, so it failed)
    ├── BadRequest              400 invalid (also structure, value, not-supported)
    │   └── InvalidResource     400 a resource failed validation (names the elements)
    ├── Unauthorized            401 login
    ├── Forbidden               403 forbidden
    ├── NotFound                404 not-found
    ├── MethodNotAllowed        405 not-supported
    ├── NotAcceptable           406 not-supported
    ├── Conflict                409 conflict
    ├── Gone                    410 deleted
    ├── PreconditionFailed      412 conflict / duplicate
    ├── PayloadTooLarge         413 too-long
    ├── UnsupportedMediaType    415 not-supported
    ├── RangeNotSatisfiable     416 not-found (a byte range past the end of a document)
    └── Unprocessable           422 processing / business-rule
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, ClassVar


@dataclass(frozen=True)
class Issue:
    """One ``OperationOutcome.issue``."""

    diagnostics: str
    code: str = "invalid"
    severity: str = "error"
    expression: tuple[str, ...] = ()
    details: dict[str, Any] | None = None  # a CodeableConcept, e.g. an IHE error code

    def to_fhir(self) -> dict[str, Any]:
        issue: dict[str, Any] = {"severity": self.severity, "code": self.code}
        if self.details:
            issue["details"] = self.details
        issue["diagnostics"] = self.diagnostics
        if self.expression:
            issue["expression"] = list(self.expression)
        return issue


class GatewayError(Exception):
    """Base of every error a client may see; carries its HTTP status and issues."""

    status: ClassVar[int] = 500
    default_code: ClassVar[str] = "exception"

    def __init__(
        self,
        diagnostics: str,
        *,
        code: str | None = None,
        expression: Iterable[str] = (),
        issues: Iterable[Issue] = (),
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(diagnostics)
        self.diagnostics = diagnostics
        self.code = code or self.default_code
        self.issues = list(issues) or [Issue(diagnostics, self.code, "error", tuple(expression))]
        self.headers = headers or {}

    def outcome(self) -> dict[str, Any]:
        """The OperationOutcome resource describing this error."""
        return operation_outcome(self.issues)

    def prefixed(self, where: str, expression: Callable[[str], str] | None = None) -> GatewayError:
        """This error, its diagnostics and issues led by ``where`` (the bundle entry or input
        line it came from), each issue's expressions mapped by ``expression`` when given."""
        self.diagnostics = f"{where}: {self.diagnostics}"
        self.issues = [
            dataclasses.replace(
                issue,
                diagnostics=f"{where}: {issue.diagnostics}",
                expression=tuple(map(expression, issue.expression))
                if expression
                else issue.expression,
            )
            for issue in self.issues
        ]
        self.args = (self.diagnostics,)
        return self


class AuditUnavailable(GatewayError):
    """The audit record of an access could not be written; the access therefore failed."""


class BadRequest(GatewayError):
    status, default_code = 400, "invalid"


class InvalidResource(BadRequest):
    """A resource failed structural validation; ``issues`` name the elements."""

    default_code = "structure"


class Unauthorized(GatewayError):
    status, default_code = 401, "login"


class Forbidden(GatewayError):
    status, default_code = 403, "forbidden"


class NotFound(GatewayError):
    status, default_code = 404, "not-found"


class MethodNotAllowed(GatewayError):
    status, default_code = 405, "not-supported"


class NotAcceptable(GatewayError):
    status, default_code = 406, "not-supported"


class Conflict(GatewayError):
    status, default_code = 409, "conflict"


class Gone(GatewayError):
    status, default_code = 410, "deleted"


class RangeNotSatisfiable(GatewayError):
    status, default_code = 416, "not-found"


class PreconditionFailed(GatewayError):
    status, default_code = 412, "conflict"


class PayloadTooLarge(GatewayError):
    status, default_code = 413, "too-long"


class UnsupportedMediaType(GatewayError):
    status, default_code = 415, "not-supported"


class Unprocessable(GatewayError):
    status, default_code = 422, "processing"


def operation_outcome(issues: Iterable[Issue]) -> dict[str, Any]:
    """Build an OperationOutcome resource from issues."""
    return {"resourceType": "OperationOutcome", "issue": [i.to_fhir() for i in issues]}
