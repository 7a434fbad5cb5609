"""General acknowledgement (ACK) for the MLLP listener: MSH + MSA (+ ERR on errors).

The ACK answers in the sender's own terms: its delimiters, its version (ERR in the v2.5+ layout
or, for older versions, the ELD layout of ERR-1 plus the text in MSA-3), its processing id, and
sender/receiver swapped. It is built from a lenient read of MSH alone, so it works for messages
that failed to parse and for garbage: when MSH cannot be read, default delimiters, version 2.5.1
and a generated control id are used.
"""

from __future__ import annotations

import re
import uuid

from .._datetime import now_hl7
from .._errors import AdapterError
from .er7 import DEFAULT_DELIMITERS, Delimiters

_VERSION = re.compile(r"2\.\d(\.\d)?")
_PROCESSING = re.compile(r"[DPT]")
_TRIGGER = re.compile(r"[A-Z0-9]{3}")
_LOCATION = re.compile(
    r"(?P<seg>[A-Z][A-Z0-9]{2})(?:\[(?P<occ>\d+)\])?(?:-(?P<field>\d+))?"
    r"(?:\[(?P<rep>\d+)\])?(?:\.(?P<comp>\d+))?"
)
# Table 0357 message error condition codes and their texts.
ERROR_TEXT = {
    "0": "Message accepted",
    "100": "Segment sequence error",
    "101": "Required field missing",
    "102": "Data type error",
    "103": "Table value not found",
    "200": "Unsupported message type",
    "201": "Unsupported event code",
    "202": "Unsupported processing id",
    "203": "Unsupported version id",
    "207": "Application internal error",
}


def _read_msh(message: bytes) -> tuple[Delimiters, list[str]] | None:
    """Delimiters and raw MSH fields (``fields[n]`` = MSH-n), or None when MSH is unreadable."""
    head = message[:4096].decode("utf-8", errors="replace")
    start = head.find("MSH")
    if start < 0 or start > 64 or len(head) < start + 8:
        return None
    line = re.split(r"[\r\n]", head[start:], maxsplit=1)[0]
    field = line[3]
    end = line.find(field, 4)
    encoding = line[4:end] if end > 0 else ""
    chars = field + encoding
    if (
        field.isalnum()
        or field.isspace()
        or len(encoding) not in (4, 5)
        or len(set(chars)) != len(chars)
        or any(c.isalnum() or c.isspace() for c in encoding)
    ):
        return None
    d = Delimiters(field, encoding[0], encoding[1], encoding[2], encoding[3], encoding[4:])
    return d, ["MSH", field, *line[4:].split(field)]


def _component(raw: str, d: Delimiters, index: int) -> str:
    parts = raw.split(d.component)
    return parts[index] if index < len(parts) else ""


def _error_location(location: str | None, d: Delimiters) -> str:
    match = _LOCATION.fullmatch(location or "")
    if not match or not match.group("field"):
        return ""
    parts = [
        match.group("seg"),
        match.group("occ") or "1",
        match.group("field"),
        match.group("rep") or "",
        match.group("comp") or "",
    ]
    return d.component.join(parts).rstrip(d.component)


def ack(message: bytes, code: str, error: str | AdapterError | None = None) -> bytes:
    """An ACK for ``message`` with acknowledgement ``code`` (``AA``, ``AE`` or ``AR``).

    ``error`` (a text, or the ``AdapterError`` that rejected the message) adds an ERR segment
    with its HL7 error code (table 0357) and location. The result is CR-separated ER7 in UTF-8,
    without MLLP framing (see ``frame``).
    """
    if code not in ("AA", "AE", "AR"):
        raise ValueError(f"acknowledgement code must be AA, AE or AR, got {code!r}")
    header = _read_msh(message)
    d, fields = header if header else (DEFAULT_DELIMITERS, ["MSH"])

    def original(n: int) -> str:
        return fields[n] if n < len(fields) else ""

    version = _component(original(12), d, 0)
    version = version if _VERSION.fullmatch(version) else "2.5.1"
    processing = _component(original(11), d, 0)
    processing = processing if _PROCESSING.fullmatch(processing) else "P"
    trigger = _component(original(9), d, 1)
    message_type = (
        d.component.join(["ACK", trigger, "ACK"]) if _TRIGGER.fullmatch(trigger) else "ACK"
    )
    control_id = uuid.uuid4().hex[:20]
    acknowledged = _component(original(10), d, 0) or control_id
    msh = d.field.join(
        [
            "MSH",
            d.encoding_characters,
            original(5),
            original(6),
            original(3),
            original(4),
            now_hl7(),
            "",
            message_type,
            control_id,
            processing,
            version,
        ]
    )
    segments = [msh]
    text = ""
    error_code = "207"
    location = None
    if isinstance(error, AdapterError):
        text, error_code, location = str(error), error.hl7_error_code, error.location
    elif error:
        text = " ".join(error.split())
    text = d.escape_text(text.encode("ascii", "replace").decode("ascii"))[:500]
    modern = tuple(int(p) for p in version.split(".")[:2]) >= (2, 5)
    msa = ["MSA", code, acknowledged]
    if text and not modern:
        msa.append(text)
    segments.append(d.field.join(msa))
    if code != "AA" or text:
        code_text = ERROR_TEXT.get(error_code, "")
        if modern:
            severity = "E" if code != "AA" else "W"
            coded = d.component.join([error_code, code_text, "HL70357"])
            err = ["ERR", "", _error_location(location, d), coded, severity, "", "", "", text]
        else:
            coded = d.subcomponent.join([error_code, code_text, "HL70357"])
            where = _error_location(location, d).split(d.component)[:3] if location else []
            eld = d.component.join([*where, *[""] * (3 - len(where)), coded])
            err = ["ERR", eld]
        segments.append(d.field.join(err).rstrip(d.field))
    return ("\r".join(segments) + "\r").encode("utf-8")
