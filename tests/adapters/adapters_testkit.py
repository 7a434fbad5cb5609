"""Paths to the sample data and small helpers shared by the adapter tests."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# The checkout sits next to shared/ (locally and in CI), as for the gateway tests.
SHARED_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
HL7V2_SAMPLES = SHARED_DATA / "hl7v2" / "microsoft-fhir-converter"
BAD_INPUTS = SHARED_DATA / "hl7v2" / "nhapi-testdata" / "BadInputs"
CCDA = SHARED_DATA / "c-cda"
NL_CORE = SHARED_DATA / "nl-nictiz-zib2020" / "examples"
FIXTURES = Path(__file__).resolve().parent / "fixtures"

# URA of the fictitious sending hospital in these tests.
URA = "12345678"
TEST_BSN = "999911120"  # a test BSN from Dutch test material; passes the elfproef


def hl7(name: str) -> bytes:
    """A shared HL7 v2 sample with CR segment separators, as they travel over MLLP."""
    return (HL7V2_SAMPLES / name).read_bytes().replace(b"\r\n", b"\r").replace(b"\n", b"\r")


@contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Fail with TimeoutError when the block runs longer than ``seconds`` (a hang guard)."""

    def expire(signum: int, frame: object) -> None:
        raise TimeoutError(f"took longer than {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def only(resources: list[dict], **match: object) -> dict:
    """The one resource whose top-level fields equal ``match``; fails when not exactly one."""
    found = [r for r in resources if all(r.get(k) == v for k, v in match.items())]
    assert len(found) == 1, f"expected one resource matching {match}, found {len(found)}"
    return found[0]


def by_code(resources: list[dict], code: str, element: str = "code") -> dict:
    """The one resource whose ``element`` CodeableConcept has a coding with ``code``."""
    found = [
        r
        for r in resources
        if any(c.get("code") == code for c in r.get(element, {}).get("coding", []))
    ]
    assert len(found) == 1, f"expected one resource with {element} {code}, found {len(found)}"
    return found[0]
