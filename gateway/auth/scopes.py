"""SMART on FHIR scopes, v1 (``system/Patient.read``) and v2 (``system/Patient.rs``)."""

from __future__ import annotations

import re
from dataclasses import dataclass

# c=create r=read u=update d=delete s=search
V1 = {"read": frozenset("rs"), "write": frozenset("cud"), "*": frozenset("cruds")}
_SCOPE = re.compile(r"^(patient|user|system)/(\*|[A-Z][A-Za-z]+)\.(read|write|\*|c?r?u?d?s?)$")


class ScopeError(ValueError):
    """A scope string that is not a SMART resource scope."""


@dataclass(frozen=True)
class Scope:
    context: str  # patient, user or system
    resource_type: str  # a type or "*"
    actions: frozenset[str]

    def permits(self, resource_type: str, action: str) -> bool:
        return self.resource_type in ("*", resource_type) and action in self.actions


def parse_scope(text: str) -> Scope:
    match = _SCOPE.match(text)
    if match is None or not match[3]:
        raise ScopeError(f"'{text}' is not a SMART scope such as system/Patient.read")
    context, resource_type, permission = match.groups()
    return Scope(context, resource_type, V1.get(permission) or frozenset(permission))


def parse_scopes(text: str) -> list[Scope]:
    """Space-separated SMART resource scopes; other scopes (openid, launch…) are skipped."""
    return [parse_scope(s) for s in text.split() if "/" in s]


def permits(scopes: list[Scope], resource_type: str, action: str) -> bool:
    """Whether any scope allows ``action`` (one of c r u d s) on ``resource_type``."""
    return any(scope.permits(resource_type, action) for scope in scopes)


def covered(requested: Scope, allowed: list[Scope]) -> bool:
    """Whether every permission of ``requested`` is within the ``allowed`` scopes."""
    types = [requested.resource_type] if requested.resource_type != "*" else ["*"]
    return all(
        any(
            a.context == requested.context
            and a.resource_type in ("*", *types)
            and action in a.actions
            for a in allowed
        )
        for action in requested.actions
    )
