"""Parse a FHIR R4 Consent (scope patient-privacy) into an enforceable ``PatientConsent``.

Whatever the gateway could not enforce faithfully is refused with ``InvalidConsent`` naming the
element, so that it answers 422 instead of silently ignoring part of what the patient decided:

- scope other than patient-privacy; a missing patient or id; ``Consent.policy`` (a policy document
  is not machine-enforceable); a ``policyRule`` other than v3 ActCode OPTIN or OPTOUT; a category
  that itself restricts use (e.g. EMRGONLY, INFAO) rather than classifying the consent;
- a provision without ``type``. FHIR R4 leaves the root type to the base policy, and the official
  examples read that policy both ways (OPTIN examples that withhold data), so the effect of every
  rule, the root one included, must be stated as permit or deny;
- actor roles other than CST (data holder) and PRCP/IRCP (recipient); actors that are people,
  devices or groups rather than organisations; a CST actor named only by organisation type;
- actions, purposes, classes or codes from systems or with codes that are not enforced;
  ``securityLabel`` rules; ``data`` references to specific resources; any ``modifierExtension``.

Organisations are named by URA: as a logical reference (``reference.identifier`` with the URA
system; when present it decides, whatever the literal reference says), as a contained
Organization (URA identifier, or only an organisation ``type`` such as ``Z3`` to mean every
organisation of that type), or as a literal ``Organization/<id>`` reference that the caller's
``ReferenceResolver`` turns into a URA. The patient likewise: a BSN identifier, a contained
Patient with a BSN, or a literal reference the resolver turns into the patient key.
A Consent of any status is checked in full, so that reactivating it can never surprise.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Protocol, cast

from consent._categories import leaves_of_coding
from consent._errors import InvalidConsent
from consent._fhirtime import fhir_period
from consent._provisions import (
    ConsentStatus,
    OrganisationSet,
    PatientConsent,
    PolicyRule,
    Provision,
    ProvisionType,
)
from consent._terminology import (
    ACT_CODE_SYSTEMS,
    ACT_REASON_SYSTEMS,
    BSN_SYSTEMS,
    CATEGORY_SYSTEMS,
    CONSENT_ACTION_SYSTEM,
    CONSENT_ACTIONS,
    CONSENT_SCOPE_SYSTEM,
    LOINC_SYSTEM,
    ORGANIZATION_TYPE_SYSTEMS,
    PARTICIPATION_TYPE_SYSTEMS,
    PURPOSES,
    URA_SYSTEMS,
)

_STATUSES: Final = frozenset(
    {"draft", "proposed", "active", "rejected", "inactive", "entered-in-error"}
)
_HOLDER_ROLE: Final = "CST"
_RECIPIENT_ROLES: Final = frozenset({"PRCP", "IRCP"})
# Consent.category codes that classify a privacy consent without restricting it.
_NEUTRAL_CATEGORIES: Final = frozenset(
    {(LOINC_SYSTEM, "59284-0"), (LOINC_SYSTEM, "64292-6"), (LOINC_SYSTEM, "57016-8")}
    | {(system, code) for system in ACT_CODE_SYSTEMS for code in ("INFA", "IDSCL")}
)


class ReferenceResolver(Protocol):
    """Turns literal references of a Consent into the keys the rules are written in."""

    def organization_ura(self, reference: str) -> str | None:
        """The URA of ``Organization/<id>`` (as written in the Consent), or None if unknown."""
        ...

    def patient_key(self, reference: str) -> str | None:
        """The patient key (the gateway uses the BSN) of ``Patient/<id>``, or None if unknown."""
        ...


@dataclass(frozen=True, slots=True)
class MappingResolver:
    """A ``ReferenceResolver`` backed by two dictionaries keyed by the literal reference."""

    organizations: Mapping[str, str] = field(default_factory=dict)
    patients: Mapping[str, str] = field(default_factory=dict)

    def organization_ura(self, reference: str) -> str | None:
        """The URA registered for this Organization reference, if any."""
        return self.organizations.get(reference)

    def patient_key(self, reference: str) -> str | None:
        """The patient key registered for this Patient reference, if any."""
        return self.patients.get(reference)


def parse_consent(
    resource: Mapping[str, Any], *, resolver: ReferenceResolver | None = None
) -> PatientConsent:
    """Build the enforceable rule tree of an R4 Consent; ``InvalidConsent`` names what is refused.

    ``resource`` is the Consent as JSON, already structurally valid R4. ``resolver`` turns literal
    ``Organization/<id>`` and ``Patient/<id>`` references into URA and patient key.
    """
    return _ConsentReader(resource, resolver).read()


def _fail(element: str, reason: str) -> InvalidConsent:
    return InvalidConsent(element, reason)


def _codings(concept: Any) -> list[Mapping[str, Any]]:
    if not isinstance(concept, Mapping):
        return []
    return [c for c in concept.get("coding") or () if isinstance(c, Mapping)]


def _shown(coding: Mapping[str, Any]) -> str:
    return f"{coding.get('system', '(no system)')}|{coding.get('code', '(no code)')}"


def _modifier_paths(node: Any, path: str) -> Iterator[str]:
    if isinstance(node, Mapping):
        for key, value in node.items():
            if key == "modifierExtension" and value:
                yield f"{path}.modifierExtension"
            else:
                yield from _modifier_paths(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, item in enumerate(node):
            yield from _modifier_paths(item, f"{path}[{i}]")


class _ConsentReader:
    def __init__(self, resource: Mapping[str, Any], resolver: ReferenceResolver | None) -> None:
        self.r = resource
        self.resolver = resolver
        self.contained = {
            c.get("id"): c for c in resource.get("contained") or () if isinstance(c, Mapping)
        }

    def read(self) -> PatientConsent:
        r = self.r
        if r.get("resourceType") != "Consent":
            raise _fail("Consent.resourceType", f"expected Consent, got {r.get('resourceType')!r}")
        for path in _modifier_paths(r, "Consent"):
            raise _fail(path, "modifier extensions are not understood, so the rule is refused")
        if r.get("implicitRules"):
            raise _fail("Consent.implicitRules", "implicit rules cannot be enforced")
        consent_id = r.get("id")
        if not isinstance(consent_id, str) or not consent_id:
            raise _fail("Consent.id", "missing; every decision must name the consent it rests on")
        status = r.get("status")
        if status not in _STATUSES:
            raise _fail("Consent.status", f"status {status!r} is not a Consent status")
        self._check_scope()
        self._check_categories()
        patient = self._patient()
        if r.get("policy"):
            uri = r["policy"][0].get("uri") or r["policy"][0].get("authority")
            raise _fail(
                "Consent.policy[0]",
                f"policy {uri!r} is not enforced; state its rules as provisions",
            )
        policy_rule = self._policy_rule()
        if not isinstance(r.get("provision"), Mapping):
            raise _fail("Consent.provision", "missing; the rules must be stated as provisions")
        root = self._provision(r["provision"], "Consent.provision", root=True)
        return PatientConsent(
            id=consent_id,
            status=cast(ConsentStatus, status),
            patient=patient,
            policy_rule=policy_rule,
            root=root,
            recorded_at=r.get("dateTime"),
            organizations=tuple(
                self._recorder(ref, f"Consent.organization[{i}]")
                for i, ref in enumerate(r.get("organization") or ())
            ),
        )

    # -- Consent-level elements -----------------------------------------------------------------

    def _check_scope(self) -> None:
        codings = _codings(self.r.get("scope"))
        if not any(
            c.get("system") == CONSENT_SCOPE_SYSTEM and c.get("code") == "patient-privacy"
            for c in codings
        ):
            shown = ", ".join(_shown(c) for c in codings) or "none"
            raise _fail("Consent.scope", f"scope {shown} is not patient-privacy")

    def _check_categories(self) -> None:
        for i, concept in enumerate(self.r.get("category") or ()):
            codings = _codings(concept)
            if not any((c.get("system"), c.get("code")) in _NEUTRAL_CATEGORIES for c in codings):
                shown = ", ".join(_shown(c) for c in codings) or "text only"
                raise _fail(
                    f"Consent.category[{i}]",
                    f"category {shown} is not a privacy-consent category this gateway enforces",
                )

    def _policy_rule(self) -> PolicyRule:
        rule = self.r.get("policyRule")
        if rule is None:
            raise _fail("Consent.policyRule", "missing; state the base policy (OPTIN or OPTOUT)")
        codes = {c.get("code") for c in _codings(rule) if c.get("system") in ACT_CODE_SYSTEMS}
        if codes == {"OPTIN"} or codes == {"OPTOUT"}:
            return cast(PolicyRule, codes.pop())
        shown = ", ".join(_shown(c) for c in _codings(rule)) or "text only"
        raise _fail("Consent.policyRule", f"policy rule {shown} is not known")

    def _patient(self) -> str:
        ref = self.r.get("patient")
        if not isinstance(ref, Mapping):
            raise _fail("Consent.patient", "missing; a privacy consent is given by a patient")
        identifier = ref.get("identifier")
        if isinstance(identifier, Mapping):
            if identifier.get("system") in BSN_SYSTEMS and identifier.get("value"):
                return str(identifier["value"])
            raise _fail("Consent.patient.identifier", "only a BSN identifies the patient")
        literal = ref.get("reference")
        if isinstance(literal, str) and literal.startswith("#"):
            contained = self.contained.get(literal[1:])
            if contained is None or contained.get("resourceType") != "Patient":
                raise _fail("Consent.patient.reference", f"{literal} is not a contained Patient")
            for ident in contained.get("identifier") or ():
                if ident.get("system") in BSN_SYSTEMS and ident.get("value"):
                    return str(ident["value"])
            raise _fail("Consent.patient.reference", f"contained {literal} has no BSN")
        if isinstance(literal, str) and literal.startswith("Patient/"):
            key = self.resolver.patient_key(literal) if self.resolver else None
            if key:
                return key
            raise _fail("Consent.patient.reference", f"'{literal}' is not a known patient")
        raise _fail("Consent.patient", "neither a BSN identifier nor a Patient reference")

    def _recorder(self, ref: Any, element: str) -> str:
        # The organisation that manages the consent: informative, so an unknown one is kept as
        # written rather than refused.
        try:
            found = self._organisations(ref, element)
        except InvalidConsent:
            return str(ref.get("reference") or ref.get("display") or "?")
        return ",".join(sorted(found.uras | found.types))

    # -- provisions -----------------------------------------------------------------------------

    def _provision(self, p: Mapping[str, Any], path: str, *, root: bool = False) -> Provision:
        # Elements that cannot be enforced are reported before a missing type: they say more.
        if p.get("securityLabel"):
            raise _fail(f"{path}.securityLabel", "rules on security labels are not enforced")
        if p.get("data"):
            raise _fail(
                f"{path}.data", "rules on specific resources (data references) are not enforced"
            )
        holders, recipients = self._actors(p.get("actor") or (), path)
        actions = self._actions(p.get("action") or (), path)
        purposes = self._purposes(p.get("purpose") or (), path)
        leaves = self._leaves(p, path)
        period_start, period_end = self._period(p, "period", path)
        data_start, data_end = self._period(p, "dataPeriod", path)
        kind = p.get("type")
        if kind not in ("permit", "deny"):
            reason = (
                "missing; the root rule must state permit or deny (it is not inferred from "
                "policyRule)"
                if root and kind is None
                else f"type {kind!r} is not permit or deny"
            )
            raise _fail(f"{path}.type", reason)
        children = tuple(
            self._provision(child, f"{path}.provision[{i}]")
            for i, child in enumerate(p.get("provision") or ())
        )
        return Provision(
            path=path,
            type=cast(ProvisionType, kind),
            period_start=period_start,
            period_end=period_end,
            holders=holders,
            recipients=recipients,
            actions=actions,
            purposes=purposes,
            leaves=leaves,
            data_start=data_start,
            data_end=data_end,
            children=children,
        )

    def _period(
        self, p: Mapping[str, Any], name: str, path: str
    ) -> tuple[datetime | None, datetime | None]:
        if name not in p:
            return None, None
        try:
            return fhir_period(p[name])
        except (ValueError, KeyError) as exc:
            raise _fail(f"{path}.{name}", str(exc)) from None

    def _actors(
        self, actors: Any, path: str
    ) -> tuple[frozenset[str] | None, OrganisationSet | None]:
        holder_uras: set[str] = set()
        recipient_uras: set[str] = set()
        recipient_types: set[str] = set()
        has_holder = has_recipient = False
        for i, actor in enumerate(actors):
            element = f"{path}.actor[{i}]"
            role = self._role(actor.get("role"), f"{element}.role")
            if not isinstance(actor.get("reference"), Mapping):
                raise _fail(f"{element}.reference", "missing")
            found = self._organisations(actor["reference"], f"{element}.reference")
            if role == _HOLDER_ROLE:
                if not found.uras:
                    raise _fail(
                        f"{element}.reference",
                        "the data holder (CST) must be named by URA, not by organisation type",
                    )
                has_holder = True
                holder_uras |= found.uras
            else:
                has_recipient = True
                recipient_uras |= found.uras
                recipient_types |= found.types
        return (
            frozenset(holder_uras) if has_holder else None,
            OrganisationSet(frozenset(recipient_uras), frozenset(recipient_types))
            if has_recipient
            else None,
        )

    def _role(self, concept: Any, element: str) -> str:
        codings = _codings(concept)
        for coding in codings:
            if coding.get("system") in PARTICIPATION_TYPE_SYSTEMS:
                code = coding.get("code")
                if code == _HOLDER_ROLE or code in _RECIPIENT_ROLES:
                    return str(code)
                raise _fail(element, f"role '{code}' is not enforced")
        shown = ", ".join(_shown(c) for c in codings) or "none"
        raise _fail(element, f"role {shown} is not enforced")

    def _organisations(self, ref: Mapping[str, Any], element: str) -> OrganisationSet:
        identifier = ref.get("identifier")
        if isinstance(identifier, Mapping):
            if ref.get("type") not in (None, "Organization"):
                raise _fail(element, f"names a {ref['type']}; consent is enforced per organisation")
            if identifier.get("system") in URA_SYSTEMS and identifier.get("value"):
                return OrganisationSet(uras=frozenset({str(identifier["value"])}))
            raise _fail(f"{element}.identifier", "an organisation is identified by its URA")
        literal = ref.get("reference")
        if not isinstance(literal, str) or not literal:
            raise _fail(element, "neither a URA identifier nor a reference")
        if literal.startswith("#"):
            return self._contained_organisation(literal, element)
        kind, _, rest = literal.rpartition("/")
        kind = kind.rpartition("/")[2]
        if kind != "Organization":
            named = kind or literal
            raise _fail(
                element, f"'{literal}' names a {named}; consent is enforced per organisation"
            )
        ura = self.resolver.organization_ura(literal) if self.resolver and rest else None
        if not ura:
            raise _fail(element, f"'{literal}' has no known URA (give an identifier or resolver)")
        return OrganisationSet(uras=frozenset({ura}))

    def _contained_organisation(self, literal: str, element: str) -> OrganisationSet:
        org = self.contained.get(literal[1:])
        if org is None or org.get("resourceType") != "Organization":
            raise _fail(element, f"{literal} is not a contained Organization")
        uras = frozenset(
            str(i["value"])
            for i in org.get("identifier") or ()
            if i.get("system") in URA_SYSTEMS and i.get("value")
        )
        if uras:  # a URA names the organisation exactly; its type is then descriptive
            return OrganisationSet(uras=uras)
        types = frozenset(
            str(c["code"])
            for concept in org.get("type") or ()
            for c in _codings(concept)
            if c.get("system") in ORGANIZATION_TYPE_SYSTEMS and c.get("code")
        )
        if not types:
            raise _fail(element, f"contained {literal} has neither a URA nor an organisation type")
        return OrganisationSet(types=types)

    def _actions(self, concepts: Any, path: str) -> frozenset[str] | None:
        if not concepts:
            return None
        covered: set[str] = set()
        for i, concept in enumerate(concepts):
            codes = [
                c.get("code") for c in _codings(concept) if c.get("system") == CONSENT_ACTION_SYSTEM
            ]
            if not codes or any(code not in CONSENT_ACTIONS for code in codes):
                shown = ", ".join(_shown(c) for c in _codings(concept)) or "text only"
                raise _fail(f"{path}.action[{i}]", f"action {shown} is not enforced")
            for code in codes:
                covered |= CONSENT_ACTIONS[str(code)]
        if not covered:
            raise _fail(f"{path}.action", "none of these actions is one the gateway performs")
        return frozenset(covered)

    def _purposes(self, codings: Any, path: str) -> frozenset[str] | None:
        if not codings:
            return None
        covered: set[str] = set()
        for i, coding in enumerate(codings):
            element = f"{path}.purpose[{i}]"
            if coding.get("system") not in ACT_REASON_SYSTEMS:
                raise _fail(element, f"purpose system {coding.get('system')!r} is not known")
            code = coding.get("code")
            if code not in PURPOSES:
                raise _fail(element, f"purpose '{code}' is not enforced")
            covered |= PURPOSES[code]
        return frozenset(covered)

    def _leaves(self, p: Mapping[str, Any], path: str) -> frozenset[str] | None:
        by_class = self._class_leaves(p.get("class") or (), path)
        by_code = self._code_leaves(p.get("code") or (), path)
        if by_class is None or by_code is None:
            return by_class if by_code is None else by_code
        if not by_class & by_code:
            raise _fail(f"{path}.code", "together with class it selects no data at all")
        return by_class & by_code

    def _class_leaves(self, codings: Any, path: str) -> frozenset[str] | None:
        if not codings:
            return None
        leaves: set[str] = set()
        for i, coding in enumerate(codings):
            leaves |= self._coding_leaves(coding, f"{path}.class[{i}]", "class")
        return frozenset(leaves)

    def _code_leaves(self, concepts: Any, path: str) -> frozenset[str] | None:
        if not concepts:
            return None
        leaves: set[str] = set()
        for i, concept in enumerate(concepts):
            element = f"{path}.code[{i}]"
            categories = [c for c in _codings(concept) if c.get("system") in CATEGORY_SYSTEMS]
            if not categories:
                shown = ", ".join(_shown(c) for c in _codings(concept)) or "text only"
                raise _fail(
                    element, f"code {shown} is not a data category; content codes are not enforced"
                )
            for coding in categories:
                leaves |= self._coding_leaves(coding, element, "code")
        return frozenset(leaves)

    def _coding_leaves(self, coding: Any, element: str, name: str) -> frozenset[str]:
        try:
            leaves = leaves_of_coding(coding.get("system"), coding.get("code"))
        except KeyError:
            raise _fail(element, f"{name} {_shown(coding)} is not a known data category") from None
        except ValueError as exc:
            raise _fail(element, str(exc)) from None
        if leaves is None:
            raise _fail(element, f"{name} system {coding.get('system')!r} is not enforced")
        return leaves
