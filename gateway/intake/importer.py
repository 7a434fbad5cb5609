"""``zorgbrug import``: convert export files with an adapter and submit each one.

Every input (a file; for ``csv`` a directory is one input) gets one JSON line:
``{"file", "status", "resources", "issues"}``; ``status`` is ``imported`` or ``rejected``. A
rejected input stores nothing; the others are stored whatever happened to the rest.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adapters import (
    AdapterError,
    Conversion,
    SourceInfo,
    convert,
    convert_csv_directory,
    pdf_metadata_from_sidecar,
)
from gateway.errors import GatewayError
from gateway.intake.submission import Intake


@dataclass(frozen=True)
class ImportOptions:
    adapter: str
    organization: str
    recipients: list[str]
    profile: str | None = None
    pdf_metadata: dict[str, Any] | None = None  # from flags; a sidecar FILE.json wins


async def import_files(
    intake: Intake, options: ImportOptions, paths: list[Path]
) -> list[dict[str, Any]]:
    """One report per input, in order."""
    return [await _import_one(intake, options, path) for path in paths]


async def _import_one(intake: Intake, options: ImportOptions, path: Path) -> dict[str, Any]:
    report: dict[str, Any] = {"file": str(path), "status": "rejected", "resources": 0, "issues": []}
    try:
        conversion = _convert(options, path)
    except AdapterError as error:
        report["issues"] = [_issue("error", error.location or "", str(error))]
        return report
    except OSError as error:
        report["issues"] = [_issue("error", "", f"cannot read {path}: {error.strerror}")]
        return report
    report["issues"] = [_issue(i.severity, i.location, i.message) for i in conversion.issues]
    # A message or document the adapter converted only in part (an invalid BSN left out) is
    # refused whole; a CSV extract's bad rows are left out and reported by line (issue 7).
    if not conversion.ok and options.adapter != "csv":
        return report
    try:
        result = await intake.submit(conversion)
    except GatewayError as error:
        report["issues"].append(_issue("error", "gateway", error.diagnostics))
        return report
    report["status"] = "imported"
    report["resources"] = result.created
    if result.existing:
        report["already_present"] = result.existing
    report["issues"] += [_issue("information", "gateway", note) for note in result.notes]
    return report


def _convert(options: ImportOptions, path: Path) -> Conversion:
    metadata: dict[str, Any] = dict(options.pdf_metadata or {})
    if options.adapter == "pdf":
        sidecar = path.with_suffix(".json")
        if sidecar.is_file():
            metadata |= pdf_metadata_from_sidecar(sidecar.read_bytes())
    source = SourceInfo(
        organization=options.organization,
        filename=path.name,
        profile=options.profile,
        metadata=metadata,
    )
    if options.adapter == "csv" and path.is_dir():
        return convert_csv_directory(path, source)
    return convert(options.adapter, path.read_bytes(), source)


def _issue(severity: str, location: str, message: str) -> dict[str, str]:
    return {"severity": str(severity), "location": location, "message": message}
