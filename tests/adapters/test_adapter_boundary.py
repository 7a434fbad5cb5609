"""The package boundary: registry, SourceInfo, Dutch identifiers, validation, and the promise
that no input bytes make ``convert`` raise anything but an AdapterError."""

from __future__ import annotations

import random

import pytest

from adapters import (
    ADAPTERS,
    AdapterError,
    InternalAdapterError,
    MalformedInput,
    SourceInfo,
    UnsupportedInput,
    adapter_names,
    convert,
    is_valid_bsn,
)
from adapters._guard import run_adapter
from adapters._identifiers import local_system, normalize_bsn, normalize_system
from adapters._validation import validate_bundle
from tests.adapters.adapters_testkit import CCDA, FIXTURES, NL_CORE, URA, hl7, time_limit

PDF = (FIXTURES / "pdf" / "discharge-summary-ud-sample.pdf").read_bytes()
SEEDS = {
    "hl7v2": hl7("ORU-R01-01.hl7"),
    "cda": (CCDA / "documents" / "CCD" / "CCD_2" / "CCD.xml").read_bytes(),
    "csv": (FIXTURES / "synthea" / "observations.csv").read_bytes(),
    "pdf": PDF[:2048] + PDF[-1024:],
    "fhir": (NL_CORE / "nl-core-Patient-01.xml").read_bytes(),
}
SOURCES = {
    "hl7v2": SourceInfo(organization=URA),
    "cda": SourceInfo(organization=URA),
    "csv": SourceInfo(organization=URA, profile="synthea", filename="observations.csv"),
    "pdf": SourceInfo(organization=URA, metadata={"bsn": "999911120", "type_code": "18842-5"}),
    "fhir": SourceInfo(organization=URA),
}


def test_the_registry_names_five_adapters() -> None:
    assert adapter_names() == ("hl7v2", "cda", "csv", "pdf", "fhir")
    assert set(ADAPTERS) == set(adapter_names())


def test_an_unknown_adapter_or_non_bytes_input_is_refused() -> None:
    source = SourceInfo(organization=URA)
    with pytest.raises(UnsupportedInput, match="known: hl7v2"):
        convert("edifact", b"x", source)
    with pytest.raises(MalformedInput, match="bytes"):
        convert("hl7v2", "MSH|^~\\&|", source)  # type: ignore[arg-type]
    assert convert("hl7v2", bytearray(hl7("ADT-A28-01.hl7")), source).resource_counts() == {
        "Patient": 1
    }


@pytest.mark.parametrize("organization", ["1234567", "123456789", "1234567a", ""])
def test_source_info_wants_an_eight_digit_ura(organization: str) -> None:
    with pytest.raises(ValueError, match="URA"):
        SourceInfo(organization=organization)


def test_source_info_wants_a_known_time_zone() -> None:
    with pytest.raises(ValueError, match="time zone"):
        SourceInfo(organization=URA, timezone="Europe/Utrecht")


@pytest.mark.parametrize(
    ("value", "valid"),
    [("999911120", True), ("999911121", False), ("111222333", True), ("123456782", True),
     ("123456789", False), ("000000000", False), ("99991112", False), ("99991112a", False)],
)  # fmt: skip
def test_elfproef(value: str, valid: bool) -> None:
    assert is_valid_bsn(value) is valid


def test_bsn_normalisation_restores_the_leading_zero_and_drops_separators() -> None:
    assert normalize_bsn("9999.11.120") == "999911120"
    assert normalize_bsn("12345672") == "012345672"  # 0*9 + 1*8 + ... - 2 = 110, divisible by 11
    assert normalize_bsn("999911121") is None


@pytest.mark.parametrize(
    ("system", "expected"),
    [
        ("urn:oid:2.16.840.1.113883.2.4.6.3", "http://fhir.nl/fhir/NamingSystem/bsn"),
        ("2.16.840.1.113883.2.4.6.3", "http://fhir.nl/fhir/NamingSystem/bsn"),
        ("urn:oid:2.16.528.1.1007.3.3", "http://fhir.nl/fhir/NamingSystem/ura"),
        ("urn:oid:2.16.840.1.113883.2.4.6.1", "http://fhir.nl/fhir/NamingSystem/agb-z"),
        ("urn:oid:2.16.528.1.1007.5.1", "http://fhir.nl/fhir/NamingSystem/big"),
        ("urn:oid:1.2.3", "urn:oid:1.2.3"),
        ("http://example.org/mrn", "http://example.org/mrn"),
    ],
)
def test_identifier_systems_are_normalised_in_one_place(system: str, expected: str) -> None:
    assert normalize_system(system) == expected


def test_local_systems_are_scoped_to_the_sender_and_safe_as_uris() -> None:
    assert (
        local_system(URA, "ZHT Lab&Co") == f"https://zorgbrug.nl/fhir/NamingSystem/{URA}/zht-lab-co"
    )


def test_validation_rejects_codes_outside_a_required_binding() -> None:
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [{
        "fullUrl": "urn:uuid:7f1b0e0a-0000-4000-8000-000000000001",
        "resource": {"resourceType": "Observation", "status": "bogus", "code": {"text": "x"}},
        "request": {"method": "POST", "url": "Observation"},
    }]}  # fmt: skip
    with pytest.raises(InternalAdapterError, match="status = 'bogus'"):
        validate_bundle(bundle)


def test_an_unexpected_exception_becomes_an_internal_adapter_error() -> None:
    def broken():  # a defect in an adapter, simulated
        raise KeyError("PID")

    with pytest.raises(InternalAdapterError) as caught:
        run_adapter("hl7v2", broken, validate=True, size=0)
    assert isinstance(caught.value.__cause__, KeyError)


def _mutations(seed: bytes, rng: random.Random) -> list[bytes]:
    cases = [
        b"",
        b"\x00" * 64,
        bytes(rng.randrange(256) for _ in range(300)),
        seed[:1],
        seed[: len(seed) // 2],
    ]
    for _ in range(60):
        data = bytearray(seed)
        for _ in range(rng.randrange(1, 12)):
            position = rng.randrange(len(data))
            choice = rng.random()
            if choice < 0.4:
                data[position] = rng.randrange(256)
            elif choice < 0.7:
                del data[position : position + rng.randrange(1, 40)]
            else:
                data[position:position] = rng.choice(
                    [b"|", b"^", b"\\", b"&", b"~", b"\r", b"<", b">", b'"', b","]
                )
        cases.append(bytes(data))
    return cases


@pytest.mark.parametrize("adapter", ["hl7v2", "cda", "csv", "pdf", "fhir"])
def test_mutated_input_never_escapes_as_anything_but_an_adapter_error(adapter: str) -> None:
    rng = random.Random(f"zorgbrug-{adapter}")  # deterministic: a failure reproduces
    with time_limit(30.0):
        for data in _mutations(SEEDS[adapter], rng):
            try:
                convert(adapter, data, SOURCES[adapter])
            except InternalAdapterError:
                raise
            except AdapterError:
                pass
