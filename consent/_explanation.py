"""A decision in one sentence for a DPO, in English (the API's and the audit log's language)
or Dutch (the DPO's screens)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Final, Literal

from consent._categories import DATA_CATEGORIES

if TYPE_CHECKING:
    from consent._decision import AccessDecision, DecisionBasis

Language = Literal["en", "nl"]

_PHRASES: Final[Mapping[str, Mapping[str, str]]] = {
    "en": {
        "data": "{category} of the patient held by {holder}",
        "push": "organisation {actor_org} to receive {data}",
        "read": "{actor_id} of organisation {actor_org} to read {data}",
        "what": "{doing} for purpose {purpose}",
        "own": "Permitted for {what}: the data are the organisation's own.",
        "emergency": (
            "Permitted as emergency access (break-the-glass) for {what}, reason: '{reason}'; "
            "audited as an emergency and reported to the DPO (without it: {without})."
        ),
        "permitted": "Permitted for {what}: agreement {agreement} covers it and {why}.",
        "denied": "Denied for {what}: {why}.",
        "no-objection": "the patient has not objected",
        "opt-out-default": "the patient has not objected and the network policy is opt-out",
        "consent": "the patient's consent {consents} permits it",
        "consent-deny": "the patient's consent {consent} forbids it ({provision})",
        "no-agreement": "{actor_org} and {holder} have no agreement",
        "agreement-not-covering": (
            "no agreement between {actor_org} and {holder} covers this purpose and data category"
        ),
        "agreement-expired": "agreement {agreement} has ended or expired",
        "agreement-not-yet-valid": "agreement {agreement} is not yet in force",
        "consent-expired": "the patient's consent {consents} that permitted it has expired",
        "no-consent": "the patient has recorded no consent and the network policy is opt-in",
        "default-deny": "none of the patient's consents permits it",
    },
    "nl": {
        "data": "{category} van de patiënt, in beheer bij {holder}",
        "push": "organisatie {actor_org} om {data} te ontvangen",
        "read": "{actor_id} van organisatie {actor_org} om {data} in te zien",
        "what": "{doing}, met doel {purpose}",
        "own": "Toegestaan voor {what}: de gegevens zijn van de eigen organisatie.",
        "emergency": (
            "Toegestaan als noodtoegang (break-the-glass) voor {what}, reden: '{reason}'; "
            "gelogd als noodtoegang en gemeld aan de FG (zonder noodtoegang: {without})."
        ),
        "permitted": "Toegestaan voor {what}: overeenkomst {agreement} dekt dit en {why}.",
        "denied": "Geweigerd voor {what}: {why}.",
        "no-objection": "de patiënt heeft geen bezwaar gemaakt",
        "opt-out-default": (
            "de patiënt heeft geen bezwaar gemaakt en het netwerkbeleid is opt-out"
        ),
        "consent": "toestemming {consents} van de patiënt staat het toe",
        "consent-deny": "toestemming {consent} van de patiënt verbiedt het ({provision})",
        "no-agreement": "{actor_org} en {holder} hebben geen overeenkomst",
        "agreement-not-covering": (
            "geen overeenkomst tussen {actor_org} en {holder} dekt dit doel en deze "
            "gegevenscategorie"
        ),
        "agreement-expired": "overeenkomst {agreement} is beëindigd of verlopen",
        "agreement-not-yet-valid": "overeenkomst {agreement} is nog niet van kracht",
        "consent-expired": "toestemming {consents} van de patiënt, die het toestond, is verlopen",
        "no-consent": (
            "de patiënt heeft geen toestemming vastgelegd en het netwerkbeleid is opt-in"
        ),
        "default-deny": "geen van de toestemmingen van de patiënt staat het toe",
    },
}


def category_title(code: str, language: Language = "en") -> str:
    """The name of the data category ``code`` in ``language``."""
    category = DATA_CATEGORIES[code]
    return category.dutch_title if language == "nl" else category.title


def explain(decision: AccessDecision, language: Language = "en") -> str:
    """What was decided for whom, and on which basis, in one sentence."""
    phrases = _PHRASES[language]
    r, b = decision.request, decision.basis
    words = {
        "actor_org": r.actor_org,
        "actor_id": r.actor_id,
        "holder": r.holder_org,
        "purpose": r.purpose,
        "agreement": b.agreement_id,
        "consents": ", ".join(b.consent_ids),
    }
    data = phrases["data"].format(category=category_title(r.leaf, language), **words)
    doing = phrases["push" if r.action == "push" else "read"].format(data=data, **words)
    what = phrases["what"].format(doing=doing, **words)
    if b.kind == "own-organisation":
        return phrases["own"].format(what=what)
    if b.kind == "emergency":
        without = _rule(phrases, b.overridden or "", b, words)
        return phrases["emergency"].format(what=what, reason=b.emergency_reason, without=without)
    if decision.permit:
        why = _rule(phrases, b.rule, b, words)
        return phrases["permitted"].format(what=what, why=why, **words)
    return phrases["denied"].format(what=what, why=_rule(phrases, b.rule, b, words))


def _rule(
    phrases: Mapping[str, str], rule: str, b: DecisionBasis, words: Mapping[str, object]
) -> str:
    if rule.startswith("consent-deny:"):
        consent = rule.split(":", 1)[1]
        return phrases["consent-deny"].format(consent=consent, provision=b.provision)
    phrase = phrases.get(rule)
    return phrase.format(**words) if phrase else rule
