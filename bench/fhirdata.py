"""Realistic Dutch test data for the benchmark: nl-core style Patients and lab/vital Observations.

The same Patient shape is produced by the wrk Lua script (bench/wrk/create_patient.lua); keep the
two in step when changing one.
"""

from __future__ import annotations

import random
import uuid
from typing import Any

import orjson

BSN_SYSTEM = "http://fhir.nl/fhir/NamingSystem/bsn"
LOINC = "http://loinc.org"

# (prefix, own name): most frequent Dutch family names.
FAMILIES = [
    ("", "Jansen"),
    ("de", "Vries"),
    ("van den", "Berg"),
    ("van", "Dijk"),
    ("", "Bakker"),
    ("", "Janssen"),
    ("", "Visser"),
    ("", "Smit"),
    ("", "Meijer"),
    ("de", "Boer"),
    ("", "Mulder"),
    ("de", "Groot"),
    ("", "Bos"),
    ("", "Vos"),
    ("", "Peters"),
    ("", "Hendriks"),
    ("van", "Leeuwen"),
    ("", "Dekker"),
    ("", "Brouwer"),
    ("de", "Wit"),
    ("", "Dijkstra"),
    ("", "Smits"),
    ("de", "Graaf"),
    ("van der", "Meer"),
]
GIVEN = [
    ("Johanna", "female"),
    ("Maria", "female"),
    ("Anna", "female"),
    ("Sophie", "female"),
    ("Emma", "female"),
    ("Julia", "female"),
    ("Cornelia", "female"),
    ("Fleur", "female"),
    ("Jan", "male"),
    ("Pieter", "male"),
    ("Hendrik", "male"),
    ("Willem", "male"),
    ("Daan", "male"),
    ("Sem", "male"),
    ("Lucas", "male"),
    ("Gerrit", "male"),
]
CITIES = [
    ("Amsterdam", "1012"),
    ("Rotterdam", "3011"),
    ("Utrecht", "3511"),
    ("Den Haag", "2511"),
    ("Eindhoven", "5611"),
    ("Groningen", "9711"),
    ("Nijmegen", "6511"),
    ("Zwolle", "8011"),
]
STREETS = ["Dorpsstraat", "Kerkstraat", "Schoolstraat", "Molenweg", "Stationsweg", "Julianalaan"]
# Prefixes for ``Patient?family=`` (starts-with, case-insensitive), each a handful of names.
FAMILY_PREFIXES = ["Jans", "Vis", "Bak", "Mul", "Dij", "Bo", "Hen", "Smi", "Mei", "Dek"]

# (code, display, unit, low, high): 718-7 first, the code the search benchmark asks for.
OBSERVATION_CODES = [
    ("718-7", "Hemoglobin [Mass/volume] in Blood", "mmol/L", 6.5, 10.5),
    ("2345-7", "Glucose [Moles/volume] in Serum or Plasma", "mmol/L", 3.5, 11.0),
    ("8867-4", "Heart rate", "/min", 50, 110),
    ("8480-6", "Systolic blood pressure", "mm[Hg]", 95, 170),
    ("29463-7", "Body weight", "kg", 45, 120),
]
_VITAL = {"8867-4", "8480-6", "29463-7"}


def bsn(number: int) -> str:
    """A 9-digit BSN passing the 11-proef, derived from an 8-digit number; unique per number.

    Numbers whose check digit would be 10 are shifted to the next free one by the caller's range:
    ``bsn`` returns ``""`` for them.
    """
    digits = [int(c) for c in f"{number % 100_000_000:08d}"]
    total = sum(d * w for d, w in zip(digits, range(9, 1, -1), strict=True))
    check = total % 11
    if check == 10:
        return ""
    return "".join(map(str, digits)) + str(check)


def bsn_stream(start: int):  # type: ignore[no-untyped-def]
    """Valid BSNs from the 8-digit number ``start`` upwards."""
    number = start
    while True:
        value = bsn(number)
        number += 1
        if value:
            yield value


def patient(rng: random.Random, bsn_value: str) -> dict[str, Any]:
    """An nl-core style Patient of about 1 KB of JSON."""
    prefix, own = rng.choice(FAMILIES)
    given, gender = rng.choice(GIVEN)
    city, pc = rng.choice(CITIES)
    street = rng.choice(STREETS)
    house = str(rng.randint(1, 250))
    family = f"{prefix} {own}" if prefix else own
    birth = f"{rng.randint(1930, 2020)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
    family_ext = [
        {"url": "http://hl7.org/fhir/StructureDefinition/humanname-own-name", "valueString": own}
    ]
    if prefix:
        family_ext.insert(
            0,
            {
                "url": "http://hl7.org/fhir/StructureDefinition/humanname-own-prefix",
                "valueString": prefix,
            },
        )
    mail = f"{given.lower()}.{own.lower()}{rng.randint(1, 999)}@example.nl"
    return {
        "resourceType": "Patient",
        "meta": {"profile": ["http://nictiz.nl/fhir/StructureDefinition/nl-core-Patient"]},
        "identifier": [{"use": "official", "system": BSN_SYSTEM, "value": bsn_value}],
        "active": True,
        "name": [
            {
                "use": "official",
                "text": f"{given} {family}",
                "family": family,
                "_family": {"extension": family_ext},
                "given": [given],
            }
        ],
        "telecom": [
            {
                "system": "phone",
                "value": f"+316{rng.randint(10_000_000, 99_999_999)}",
                "use": "mobile",
            },
            {"system": "email", "value": mail, "use": "home"},
        ],
        "gender": gender,
        "birthDate": birth,
        "address": [
            {
                "use": "home",
                "type": "both",
                "line": [f"{street} {house}"],
                "_line": [
                    {
                        "extension": [
                            {
                                "url": "http://hl7.org/fhir/StructureDefinition/iso21090-ADXP-streetName",
                                "valueString": street,
                            },
                            {
                                "url": "http://hl7.org/fhir/StructureDefinition/iso21090-ADXP-houseNumber",
                                "valueString": house,
                            },
                        ]
                    }
                ],
                "city": city,
                "postalCode": f"{pc} {rng.choice('ABCDEFGHJKLMNPRSTVWXZ')}{rng.choice('ABCDEFGHJKLMNPRSTVWXZ')}",
                "country": "NL",
            }
        ],
    }


def observation(rng: random.Random, subject_ref: str, code_index: int) -> dict[str, Any]:
    code, display, unit, low, high = OBSERVATION_CODES[code_index]
    value = round(rng.uniform(low, high), 1)
    category = "vital-signs" if code in _VITAL else "laboratory"
    return {
        "resourceType": "Observation",
        "status": "final",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": category,
                    }
                ]
            }
        ],
        "code": {"coding": [{"system": LOINC, "code": code, "display": display}]},
        "subject": {"reference": subject_ref},
        "effectiveDateTime": f"20{rng.randint(15, 24)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T{rng.randint(7, 17):02d}:{rng.randint(0, 59):02d}:00+01:00",
        "valueQuantity": {
            "value": value,
            "unit": unit,
            "system": "http://unitsofmeasure.org",
            "code": unit,
        },
    }


def transaction_bundle(
    rng: random.Random, bsns: list[str], observations_per_patient: list[int]
) -> tuple[bytes, list[int]]:
    """A transaction Bundle: one Patient per BSN, then Observations referencing them by urn:uuid.

    Returns the body and, for each entry, the index of the patient it is about (for Patients
    their own index); so the caller can pair the response's locations with BSNs.
    """
    entries: list[dict[str, Any]] = []
    about: list[int] = []
    urns = [f"urn:uuid:{uuid.UUID(int=rng.getrandbits(128), version=4)}" for _ in bsns]
    for i, (value, urn) in enumerate(zip(bsns, urns, strict=True)):
        entries.append(
            {
                "fullUrl": urn,
                "resource": patient(rng, value),
                "request": {"method": "POST", "url": "Patient"},
            }
        )
        about.append(i)
    for i, count in enumerate(observations_per_patient):
        for k in range(count):
            entries.append(
                {
                    "resource": observation(rng, urns[i], k % len(OBSERVATION_CODES)),
                    "request": {"method": "POST", "url": "Observation"},
                }
            )
            about.append(i)
    body = orjson.dumps({"resourceType": "Bundle", "type": "transaction", "entry": entries})
    return body, about


if __name__ == "__main__":  # print one sample Patient and its size
    sample = orjson.dumps(patient(random.Random(1), bsn(12345678) or bsn(12345679)))
    print(sample.decode(), len(sample), "bytes")
