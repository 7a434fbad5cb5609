"""Zorgbrug adapters: bytes of an EHR export in, a FHIR R4 transaction Bundle out.

Pure mapping libraries (no HTTP, no SQL, never ``gateway``). The public API is what this module
exports; everything else is private and may change.

- ``convert(adapter, data, source, validate=True) -> Conversion`` — the one entry point;
  ``ADAPTERS`` / ``adapter_names()`` — the registry: ``hl7v2``, ``cda``, ``csv``, ``pdf``,
  ``fhir``.
- ``SourceInfo`` — who sent the input (URA), file name, CSV profile, PDF metadata, time zone.
- ``Conversion`` — ``bundle`` (transaction), ``issues``, ``ok``, ``status``,
  ``resource_counts()``; ``ConversionIssue`` — severity, location, message.
- ``AdapterError`` and subclasses — the only exceptions ``convert`` raises.
- HL7 v2 transport helpers for the MLLP listener: ``ack``, ``frame``, ``MllpDecoder``.
- CSV exports of several files: ``convert_csv_files``, ``convert_csv_directory``.
- PDF sidecars: ``pdf_metadata_from_sidecar``.
- Dutch identifiers: ``is_valid_bsn`` and the NamingSystem URIs.
"""

from ._errors import (
    AdapterError,
    InternalAdapterError,
    MalformedInput,
    ProfileError,
    UnsafeInput,
    UnsupportedInput,
)
from ._identifiers import AGB_SYSTEM, BSN_SYSTEM, URA_SYSTEM
from ._identifiers import elfproef as is_valid_bsn
from ._model import Conversion, ConversionIssue, Severity, SourceInfo
from ._registry import ADAPTERS, adapter_names, convert
from .csv import convert_csv_directory, convert_csv_files
from .hl7v2 import MllpDecoder, ack, frame
from .pdf import pdf_metadata_from_sidecar

__all__ = [
    "ADAPTERS",
    "AGB_SYSTEM",
    "BSN_SYSTEM",
    "URA_SYSTEM",
    "AdapterError",
    "Conversion",
    "ConversionIssue",
    "InternalAdapterError",
    "MalformedInput",
    "MllpDecoder",
    "ProfileError",
    "Severity",
    "SourceInfo",
    "UnsafeInput",
    "UnsupportedInput",
    "ack",
    "adapter_names",
    "convert",
    "convert_csv_directory",
    "convert_csv_files",
    "frame",
    "is_valid_bsn",
    "pdf_metadata_from_sidecar",
]
