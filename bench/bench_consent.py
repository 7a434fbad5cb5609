"""Benchmark of the consent policy decision point (``consent.decide`` and ``consent_grants``).

Builds what the gateway's warm cache would hold: 100,000 parsed consents spread over 50,000
patients, indexed by patient in a dict, and the agreements between 50 organisations indexed by
pair. Then times ``decide`` for random requests, one call at a time with ``time.perf_counter_ns``,
and ``consent_grants`` for one patient with 3 consents and 10 organisations.

Usage: .venv/bin/python bench/bench_consent.py [--requests 200000] [--seed 7]
Target: decide median <= 20 us.
"""

from __future__ import annotations

import argparse
import gc
import platform
import random
import statistics
import sys
import time
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from consent import (
    AccessRequest,
    Agreement,
    AgreementDocument,
    NetworkPolicy,
    PatientConsent,
    PolicyFacts,
    categories_of,
    consent_grants,
    decide,
    parse_consent,
)

PERMIT_RULES = {"own-organisation", "consent", "opt-out-default", "no-objection", "emergency"}
N_ORGS = 50
N_PATIENTS = 50_000
N_CONSENTS = 100_000
ACT_REASON = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
PARTICIPATION = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
CATEGORY = "http://zorgbrug.nl/fhir/CodeSystem/data-category"
MITZ = "urn:oid:2.16.840.1.113883.2.4.3.111.5.10.1"
LAB = {
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
RESOURCES: list[tuple[str, dict[str, Any] | None]] = [
    ("Condition", None),
    ("MedicationStatement", None),
    ("MedicationRequest", None),
    ("DiagnosticReport", None),
    ("Observation", LAB),
    ("DocumentReference", None),
    ("Binary", None),
    ("AllergyIntolerance", None),
    ("Patient", None),
]


def ura(i: int) -> str:
    return f"{10_000_000 + i:08d}"


def org_types(i: int) -> frozenset[str]:
    return frozenset({"Z3"}) if i < 20 else frozenset({"Z4"})


def bsn(i: int) -> str:
    return f"9999{i:05d}"


def actor(role: str, reference: dict[str, Any]) -> dict[str, Any]:
    return {"role": {"coding": [{"system": PARTICIPATION, "code": role}]}, "reference": reference}


def by_ura(value: str) -> dict[str, Any]:
    return {"identifier": {"system": "http://fhir.nl/fhir/NamingSystem/ura", "value": value}}


def consent_json(n: int, patient: str, rng: random.Random) -> dict[str, Any]:
    """One of three realistic shapes: a permit to named hospitals, a permit to every hospital
    except medication, or an objection against one organisation."""
    shape = n % 3
    if shape == 0:
        rules = {
            "type": "permit",
            "actor": [actor("PRCP", by_ura(ura(rng.randrange(N_ORGS)))) for _ in range(3)]
            + [actor("CST", by_ura(ura(rng.randrange(N_ORGS))))],
            "purpose": [{"system": ACT_REASON, "code": "TREAT"}],
            "class": [{"system": MITZ, "code": "GGC002"}],
            "period": {"start": "2024-01-01", "end": "2027-12-31"},
        }
        contained: list[dict[str, Any]] = []
    elif shape == 1:
        rules = {
            "type": "permit",
            "actor": [actor("PRCP", {"reference": "#hospitals"})],
            "purpose": [{"system": ACT_REASON, "code": "TREAT"}],
            "provision": [
                {"type": "deny", "class": [{"system": CATEGORY, "code": "medication"}]},
                {"type": "deny", "dataPeriod": {"end": "2015-12-31"}},
            ],
        }
        contained = [
            {
                "resourceType": "Organization",
                "id": "hospitals",
                "type": [
                    {
                        "coding": [
                            {
                                "system": "http://nictiz.nl/fhir/NamingSystem/organization-type",
                                "code": "Z3",
                            }
                        ]
                    }
                ],
            }
        ]
    else:
        rules = {"type": "deny", "actor": [actor("PRCP", by_ura(ura(rng.randrange(N_ORGS))))]}
        contained = []
    resource: dict[str, Any] = {
        "resourceType": "Consent",
        "id": f"consent-{n}",
        "status": "active" if n % 17 else "inactive",
        "scope": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/consentscope",
                    "code": "patient-privacy",
                }
            ]
        },
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {
            "identifier": {"system": "http://fhir.nl/fhir/NamingSystem/bsn", "value": patient}
        },
        "policyRule": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                    "code": "OPTOUT" if shape == 2 else "OPTIN",
                }
            ]
        },
        "provision": rules,
    }
    if contained:
        resource["contained"] = contained
    return resource


def agreements(rng: random.Random) -> dict[frozenset[str], list[Agreement]]:
    """Every organisation has agreements with about ten others; some agreements have ended."""
    index: dict[frozenset[str], list[Agreement]] = {}
    doc = AgreementDocument(title="Verwerkersovereenkomst", url="https://docs.example.org/vo.pdf")
    for i in range(N_ORGS):
        for j in rng.sample(range(N_ORGS), 10):
            if i == j:
                continue
            pair = frozenset({ura(i), ura(j)})
            index.setdefault(pair, []).append(
                Agreement(
                    id=f"vo-{i}-{j}",
                    kind="processor",
                    parties=pair,
                    purposes=frozenset({"TREAT"}),
                    categories=frozenset({"treatment"} if rng.random() < 0.8 else {"GGC012"}),
                    valid_from=date(2024, 1, 1),
                    valid_to=None if rng.random() < 0.9 else date(2025, 1, 1),
                    document=doc,
                )
            )
    return index


def random_request(rng: random.Random, partners: dict[int, list[int]]) -> AccessRequest:
    """A request; nine in ten come from an organisation that has an agreement with the holder,
    so that most decisions go all the way through the patient's consents."""
    holder_i = rng.randrange(N_ORGS)
    if rng.random() < 0.9 and partners[holder_i]:
        actor_i = rng.choice(partners[holder_i])
    else:
        actor_i = rng.choice([i for i in range(N_ORGS) if i != holder_i])
    resource_type, resource = rng.choice(RESOURCES)
    at = datetime(2025, 1, 1, tzinfo=UTC) + timedelta(seconds=rng.randrange(365 * 86400))
    data_date = (
        None if rng.random() < 0.2 else date(2010, 1, 1) + timedelta(days=rng.randrange(5500))
    )
    return AccessRequest(
        actor_org=ura(actor_i),
        actor_org_types=org_types(actor_i),
        actor_id=f"user-{rng.randrange(1000)}",
        actor_role="medisch-specialist",
        holder_org=ura(holder_i),
        patient=bsn(rng.randrange(N_PATIENTS)),
        purpose="ETREAT" if rng.random() < 0.05 else "TREAT",
        action="push" if rng.random() < 0.1 else "read",
        resource_type=resource_type,
        categories=categories_of(resource_type, resource),
        at=at,
        data_date=data_date,
    )


def percentile(sorted_ns: list[int], q: float) -> float:
    return sorted_ns[min(len(sorted_ns) - 1, int(q * len(sorted_ns)))] / 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    rng = random.Random(args.seed)

    print(f"python {platform.python_version()} on {platform.machine()}, {platform.system()}")
    t = time.perf_counter()
    by_patient: dict[str, list[PatientConsent]] = {}
    for n in range(N_CONSENTS):
        patient = bsn(n % N_PATIENTS)
        by_patient.setdefault(patient, []).append(parse_consent(consent_json(n, patient, rng)))
    parse_s = time.perf_counter() - t
    print(
        f"parsed {N_CONSENTS:,} consents for {len(by_patient):,} patients in {parse_s:.1f} s "
        f"({parse_s / N_CONSENTS * 1e6:.1f} us per consent)"
    )
    index = agreements(rng)
    partners = {
        i: [j for j in range(N_ORGS) if j != i and frozenset({ura(i), ura(j)}) in index]
        for i in range(N_ORGS)
    }
    policy = NetworkPolicy("opt-in")
    work = []
    for _ in range(args.requests):
        r = random_request(rng, partners)
        facts = PolicyFacts(
            consents=by_patient.get(r.patient, ()),
            agreements=index.get(frozenset({r.actor_org, r.holder_org}), ()),
            policy=policy,
        )
        work.append((r, facts))

    gc.collect()
    gc.freeze()  # the cache is long-lived: keep the collector from walking it during timing
    for r, facts in work[:5000]:  # warm up
        decide(r, facts)
    timings: list[int] = []
    rules: Counter[str] = Counter()
    clock = time.perf_counter_ns
    for r, facts in work:
        t0 = clock()
        d = decide(r, facts)
        timings.append(clock() - t0)
        rules[d.basis.rule.split(":")[0]] += 1
    permitted = sum(n for rule, n in rules.items() if rule in PERMIT_RULES)
    timings.sort()
    print(
        f"decide: {len(timings):,} decisions, median {percentile(timings, 0.5):.2f} us, "
        f"p95 {percentile(timings, 0.95):.2f} us, p99 {percentile(timings, 0.99):.2f} us, "
        f"mean {statistics.fmean(timings) / 1000:.2f} us ({permitted / len(timings):.0%} permitted)"
    )
    print(
        "  outcomes: "
        + ", ".join(f"{rule} {n / len(timings):.0%}" for rule, n in rules.most_common())
    )

    # consent_grants: one patient with 3 consents, 10 organisations (grantees and holders).
    orgs = [ura(i) for i in range(10)]
    grantees = {u: org_types(i) for i, u in enumerate(orgs)}
    patient = bsn(N_PATIENTS + 1)
    three = [parse_consent(consent_json(n, patient, rng)) for n in (300, 301, 302)]
    grant_ns = []
    rows = 0
    for _ in range(50):
        t0 = clock()
        rows = len(consent_grants(patient, three, grantees, orgs, policy))
        grant_ns.append(clock() - t0)
    grant_ns.sort()
    print(
        f"consent_grants (3 consents, 10 organisations): median "
        f"{percentile(grant_ns, 0.5) / 1000:.2f} ms, p95 {percentile(grant_ns, 0.95) / 1000:.2f} ms, "
        f"{rows:,} rows"
    )


if __name__ == "__main__":
    main()
