"""The values every adapter takes and returns: SourceInfo in, Conversion (Bundle + issues) out."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

Severity = Literal["error", "warning", "information"]

_URA = re.compile(r"\d{8}")


@dataclass(frozen=True)
class SourceInfo:
    """Who sent the input and what the caller knows about it.

    - ``organization``: URA of the sending care organisation (8 digits). It scopes local
      identifiers (patient numbers, visit numbers) and is the custodian of documents.
    - ``filename``: original file name, when there is one (picks the table of a single CSV file).
    - ``profile``: CSV mapping profile name (``"synthea"``) or a path to a profile TOML file.
    - ``metadata``: adapter-specific facts, e.g. for ``pdf`` the BSN, LOINC type code, title,
      date and author (see ``adapters.pdf``).
    - ``timezone``: IANA zone in which timestamps without an offset are read. HL7 v2 and CDA allow
      local times; FHIR requires an offset on every time, so one has to be chosen.

    Raises ``ValueError`` on construction when the URA or time zone is invalid: those come from
    the caller's configuration, not from the input bytes.
    """

    organization: str
    filename: str | None = None
    profile: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict, hash=False, compare=False)
    timezone: str = "Europe/Amsterdam"

    def __post_init__(self) -> None:
        if not isinstance(self.organization, str) or not _URA.fullmatch(self.organization):
            raise ValueError(f"organization must be a URA of 8 digits, got {self.organization!r}")
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {self.timezone!r}") from exc

    @property
    def zone(self) -> ZoneInfo:
        """The time zone object for ``timezone`` (cached by ``zoneinfo``)."""
        return ZoneInfo(self.timezone)


@dataclass(frozen=True, slots=True)
class ConversionIssue:
    """One problem found while converting: where, how bad, and what happened.

    ``location`` uses the notation of the input: ``"PID-3[1].1"`` or ``"OBX[3]-5"`` for HL7 v2,
    ``"patients.csv line 17"`` for CSV, an XPath-like path for CDA, ``"metadata.bsn"`` for PDF.
    """

    severity: Severity
    location: str
    message: str

    def __str__(self) -> str:
        return f"{self.severity}: {self.location}: {self.message}"


class IssueLog:
    """Collects the issues of one conversion; adapters pass it down to their mapping functions."""

    def __init__(self) -> None:
        self.items: list[ConversionIssue] = []

    def error(self, location: str, message: str) -> None:
        self.items.append(ConversionIssue("error", location, message))

    def warning(self, location: str, message: str) -> None:
        self.items.append(ConversionIssue("warning", location, message))

    def information(self, location: str, message: str) -> None:
        self.items.append(ConversionIssue("information", location, message))


@dataclass
class Conversion:
    """The result of one conversion: a FHIR R4 transaction Bundle and the issues met on the way.

    ``ok`` is False when any issue is an error: the Bundle is then incomplete (a row, a document
    or an identifier was left out) and the caller should refuse or NACK the input rather than
    store a partial picture (a CSV extract, whose rows stand alone, may store its good rows).
    ``validated`` tells whether every resource was checked against the FHIR R4B models before
    this object was returned. ``sources`` tells, per Bundle entry, where in the input it came
    from (``"patients.csv line 17"``; empty when not known), so that a refusal of an entry can
    name the input.
    """

    adapter: str
    bundle: dict[str, Any]
    issues: list[ConversionIssue] = field(default_factory=list)
    validated: bool = False
    sources: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(issue.severity == "error" for issue in self.issues)

    @property
    def status(self) -> Literal["ok", "warning", "error"]:
        """The worst severity among the issues; information-only issues count as ``ok``."""
        severities = {issue.severity for issue in self.issues}
        if "error" in severities:
            return "error"
        if "warning" in severities:
            return "warning"
        return "ok"

    def resources(self, resource_type: str | None = None) -> list[dict[str, Any]]:
        """The resources of the Bundle, in entry order, optionally of one type only."""
        found = [entry["resource"] for entry in self.bundle.get("entry", [])]
        if resource_type is None:
            return found
        return [r for r in found if r.get("resourceType") == resource_type]

    def resource_counts(self) -> dict[str, int]:
        """Number of resources per resource type, e.g. ``{"Patient": 1, "Observation": 5}``."""
        return dict(Counter(r["resourceType"] for r in self.resources()))
