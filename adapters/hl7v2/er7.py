"""HL7 v2 ER7 ("pipe and hat") encoding: bytes → segments → fields → repetitions → components.

A small tokenizer instead of python-hl7 or hl7apy, for the throughput the MLLP feed needs (see
the package docstring for the measurements). It follows chapter 2 of the standard:

- the message starts with MSH; MSH-1 is the field separator and MSH-2 the encoding characters
  (component, repetition, escape, subcomponent and, from v2.7, truncation), so any delimiters work;
- segments end with CR; LF and CRLF are accepted as well (files and some feeds use them);
- a UTF-8 byte order mark is skipped; bytes are UTF-8, else the MSH-18 character set
  (8859/1, 8859/15), else Latin-1 with a note;
- escape sequences ``\\F\\ \\S\\ \\T\\ \\R\\ \\E\\ \\P\\ \\Xhh…\\ \\.br\\`` are decoded when a
  value is read (after splitting, so an escaped delimiter never splits); formatting and
  character-set switching sequences (``\\H\\ \\N\\ \\.sp\\ \\Cxxyy\\`` …) are dropped; unknown
  ones are kept literally;
- ADD segments are joined to the segment they continue (segment fragmentation);
- splitting is lazy: fields are split into repetitions and components only when read.

Anything that is not ER7 raises ``MalformedInput`` with the place, never another exception; every
step is linear in the input size, so hostile input cannot make it hang.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .._errors import MalformedInput, UnsafeInput, UnsupportedInput

MAX_MESSAGE_BYTES = 32 * 1024 * 1024

_SEGMENT_NAME = re.compile(r"[A-Z][A-Z0-9]{2}")
# C0 controls other than TAB, LF and CR have no place in ER7 text (FHIR strings reject them too).
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_HL7_NULL = '""'
_CHARSETS = {"8859/1": "latin-1", "8859/15": "iso8859_15", "ASCII": "ascii"}


@dataclass(frozen=True, slots=True)
class Delimiters:
    """The separators of one message, from MSH-1 and MSH-2."""

    field: str = "|"
    component: str = "^"
    repetition: str = "~"
    escape: str = "\\"
    subcomponent: str = "&"
    truncation: str = ""

    @property
    def encoding_characters(self) -> str:
        """MSH-2 as it is written in a message using these delimiters."""
        return self.component + self.repetition + self.escape + self.subcomponent + self.truncation

    def escape_text(self, text: str) -> str:
        """``text`` with every delimiter written as its escape sequence (for building messages)."""
        e = self.escape
        out = text.replace(e, f"{e}E{e}")
        for char, code in (
            (self.field, "F"),
            (self.component, "S"),
            (self.subcomponent, "T"),
            (self.repetition, "R"),
        ):
            out = out.replace(char, f"{e}{code}{e}")
        return (
            out.replace("\r\n", f"{e}.br{e}")
            .replace("\r", f"{e}.br{e}")
            .replace("\n", f"{e}.br{e}")
        )


DEFAULT_DELIMITERS = Delimiters()

_DROPPED_ESCAPES = ("H", "N", ".fi", ".nf", ".in", ".ti", ".sk")


def _decode_hex(sequence: str) -> str | None:
    try:
        raw = bytes.fromhex(sequence)
    except ValueError:
        return None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    return _CONTROL.sub("", text)


def _escape_value(sequence: str, d: Delimiters) -> str | None:
    simple = {
        "F": d.field,
        "S": d.component,
        "T": d.subcomponent,
        "R": d.repetition,
        "E": d.escape,
        "P": d.truncation,
    }
    if sequence in simple:
        return simple[sequence]
    if sequence.startswith("X"):
        return _decode_hex(sequence[1:])
    if sequence == ".br" or sequence.startswith((".sp", ".ce")):
        return "\n"
    if sequence in _DROPPED_ESCAPES or sequence.startswith((".in", ".ti", ".sk")):
        return ""
    if sequence[:1] in ("C", "M", "Z") and len(sequence) > 1:
        return ""  # character-set switches and locally defined escapes: not interpretable
    return None


def unescape(text: str, d: Delimiters) -> str:
    """Decode the escape sequences of one leaf value."""
    esc = d.escape
    if not esc or esc not in text:
        return text
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        start = text.find(esc, i)
        if start < 0:
            out.append(text[i:])
            break
        out.append(text[i:start])
        end = text.find(esc, start + 1)
        if end < 0:  # unterminated: the rest is literal text
            out.append(text[start:])
            break
        decoded = _escape_value(text[start + 1 : end], d)
        if decoded is None:
            out.append(text[start : end + 1])
        else:
            out.append(decoded)
        i = end + 1
    return "".join(out)


class Composite:
    """One repetition of a field: components made of subcomponents, split when read."""

    __slots__ = ("_components", "_d", "raw")

    def __init__(self, raw: str, delimiters: Delimiters) -> None:
        self.raw = raw
        self._d = delimiters
        self._components: list[str] | None = None

    @property
    def is_empty(self) -> bool:
        return self.raw in ("", _HL7_NULL)

    def get(self, component: int = 1, subcomponent: int = 1) -> str:
        """The unescaped value at ``component``/``subcomponent`` (1-based); "" when absent.

        The HL7 null ``""`` ("delete this value") reads as absent: adapters create, they do
        not delete.
        """
        components = self._components
        if components is None:
            components = self._components = self.raw.split(self._d.component)
        if component > len(components):
            return ""
        value = components[component - 1]
        d = self._d
        if d.subcomponent in value:
            parts = value.split(d.subcomponent)
            value = parts[subcomponent - 1] if subcomponent <= len(parts) else ""
        elif subcomponent > 1:
            return ""
        if not value or value == _HL7_NULL:
            return ""
        if d.escape and d.escape in value:
            value = unescape(value, d)
        return value.strip()

    def subcomponents(self, component: int) -> list[str]:
        """All unescaped subcomponents of ``component`` (e.g. the parts of a family name)."""
        if self._components is None:
            self._components = self.raw.split(self._d.component)
        if component > len(self._components):
            return []
        return [
            unescape(p, self._d).strip()
            for p in self._components[component - 1].split(self._d.subcomponent)
        ]

    def text(self) -> str:
        """The whole repetition as text, delimiters kept literally (for ST/TX/FT values)."""
        return "" if self.raw == _HL7_NULL else unescape(self.raw, self._d)


class Segment:
    """One segment; ``fields[n]`` is field n in HL7 numbering (``fields[0]`` is the name)."""

    __slots__ = ("_d", "_empty", "_reps", "fields", "label", "name", "number")

    def __init__(self, name: str, fields: list[str], number: int, delimiters: Delimiters) -> None:
        self.name = name
        self.fields = fields
        self.number = number  # position in the message, 1-based
        self.label = name  # "OBX[3]" when the message holds more than one OBX
        self._d = delimiters
        self._reps: dict[int, list[Composite]] = {}  # mapping code reads a field many times
        self._empty = Composite("", delimiters)

    def raw(self, n: int) -> str:
        return self.fields[n] if n < len(self.fields) else ""

    def repetitions(self, n: int) -> list[Composite]:
        """The non-empty repetitions of field ``n``."""
        cached = self._reps.get(n)
        if cached is not None:
            return cached
        raw = self.fields[n] if n < len(self.fields) else ""
        if not raw:
            reps: list[Composite] = []
        elif self.name == "MSH" and n in (1, 2):
            reps = [Composite(raw, self._d)]
        else:
            reps = [
                Composite(r, self._d) for r in raw.split(self._d.repetition) if r and r != _HL7_NULL
            ]
        self._reps[n] = reps
        return reps

    def first(self, n: int) -> Composite:
        """The first repetition of field ``n`` (an empty Composite when the field is empty)."""
        reps = self.repetitions(n)
        return reps[0] if reps else self._empty

    def value(self, n: int, component: int = 1, subcomponent: int = 1) -> str:
        """Shortcut for ``first(n).get(component, subcomponent)``."""
        reps = self.repetitions(n)
        return reps[0].get(component, subcomponent) if reps else ""

    def location(
        self, n: int | None = None, rep: int | None = None, component: int | None = None
    ) -> str:
        """``PID-3[1].1`` style location for issues and ACKs."""
        text = self.label if n is None else f"{self.label}-{n}"
        if rep is not None:
            text += f"[{rep}]"
        if component is not None:
            text += f".{component}"
        return text


@dataclass
class Message:
    """A parsed ER7 message: its delimiters, segments and the notes made while decoding it."""

    delimiters: Delimiters
    segments: list[Segment]
    notes: list[tuple[str, str]]

    @property
    def msh(self) -> Segment:
        return self.segments[0]

    @property
    def message_code(self) -> str:
        return self.msh.value(9, 1).upper()

    @property
    def trigger_event(self) -> str:
        return self.msh.value(9, 2).upper()

    @property
    def message_type(self) -> str:
        """``ORU^R01`` (code and trigger event), for messages and logs."""
        return (
            f"{self.message_code}^{self.trigger_event}" if self.trigger_event else self.message_code
        )

    @property
    def control_id(self) -> str:
        return self.msh.value(10)

    @property
    def version(self) -> str:
        return self.msh.value(12)

    def segment(self, name: str) -> Segment | None:
        return next((s for s in self.segments if s.name == name), None)

    def all(self, name: str) -> list[Segment]:
        return [s for s in self.segments if s.name == name]


def _decode(data: bytes) -> tuple[str, list[tuple[str, str]]]:
    notes: list[tuple[str, str]] = []
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        return data.decode("utf-8"), notes
    except UnicodeDecodeError as exc:
        utf8_error = exc
    # Not UTF-8: read MSH-18 from the Latin-1 view (MSH itself is ASCII) and honour it.
    latin = data.decode("latin-1")
    header = latin.split("\r", 1)[0].split("\n", 1)[0]
    charset = ""
    if header.startswith("MSH") and len(header) > 3:
        fields = header.split(header[3])
        charset = fields[17].split("^")[0].strip().upper() if len(fields) > 17 else ""
    if charset.startswith("UNICODE"):
        raise MalformedInput(
            f"bytes are not UTF-8 although MSH-18 says {charset!r} (byte {utf8_error.start})",
            location="MSH-18",
        )
    codec = _CHARSETS.get(charset, "latin-1")
    try:
        text = data.decode(codec)
    except UnicodeDecodeError as exc:
        raise MalformedInput(
            f"bytes do not match character set {charset!r}", location="MSH-18"
        ) from exc
    if charset not in _CHARSETS:
        notes.append(("MSH-18", "message is not UTF-8 and names no character set; read as Latin-1"))
    return text, notes


def _delimiters(header: str) -> Delimiters:
    field = header[3]
    if field.isalnum() or field.isspace():
        raise MalformedInput(f"invalid field separator {field!r}", location="MSH-1")
    end = header.find(field, 4)
    encoding = header[4:] if end < 0 else header[4:end]
    if len(encoding) not in (4, 5):
        raise MalformedInput(
            f"expected 4 encoding characters (^~\\&), got {encoding!r}", location="MSH-2"
        )
    chars = field + encoding
    if len(set(chars)) != len(chars) or any(c.isalnum() or c.isspace() for c in encoding):
        raise MalformedInput(f"invalid encoding characters {encoding!r}", location="MSH-2")
    return Delimiters(field, encoding[0], encoding[1], encoding[2], encoding[3], encoding[4:])


def _join_continuations(lines: list[str], field: str) -> list[str]:
    """Append ADD segments to the segment they continue (segment fragmentation, chapter 2).

    A sender that breaks a long segment ends it anywhere and sends the rest as ``ADD|<rest>``;
    the receiver concatenates. Long embedded documents (OBX-5 ED) arrive this way.
    """
    joined: list[str] = []
    for line in lines:
        if line.startswith("ADD") and (len(line) == 3 or line[3] == field) and joined:
            joined[-1] += line[4:]
        else:
            joined.append(line)
    return joined


def parse(data: bytes) -> Message:
    """Parse one ER7 message. Raises ``MalformedInput``/``UnsafeInput``/``UnsupportedInput``."""
    if len(data) > MAX_MESSAGE_BYTES:
        raise UnsafeInput(
            f"message of {len(data)} bytes exceeds the {MAX_MESSAGE_BYTES} byte bound"
        )
    text, notes = _decode(data)
    # MLLP framing bytes left around a message (a capture saved to a file) are not content.
    text = text.lstrip(" \t\r\n\x0b").rstrip(" \t\r\n\x1c")
    if text.startswith(("FHS", "BHS")):
        raise UnsupportedInput(
            "HL7 batch files (FHS/BHS) are not supported; send one message at a time"
        )
    if not text.startswith("MSH") or len(text) < 8:
        raise MalformedInput("input does not start with an MSH segment", location="MSH")
    control = _CONTROL.search(text)
    if control:
        breaks = text.count("\r", 0, control.start()) or text.count("\n", 0, control.start())
        raise MalformedInput(
            f"control character 0x{ord(control.group()):02X} in segment {breaks + 1}",
            location=f"segment {breaks + 1}",
        )
    d = _delimiters(text)
    # CR ends segments; a message without any CR uses LF (files). With CR, a following LF
    # (CRLF) is dropped, and a lone LF stays inside the segment's text.
    cr = "\r" in text
    lines = [line.lstrip("\n") for line in text.split("\r")] if cr else text.split("\n")
    lines = _join_continuations([line for line in lines if line.strip()], d.field)
    segments: list[Segment] = []
    counts: dict[str, int] = {}
    for line in lines:
        number = len(segments) + 1
        name = line[:3]
        if not _SEGMENT_NAME.fullmatch(name) or (len(line) > 3 and line[3] != d.field):
            raise MalformedInput(f"invalid segment {line[:8]!r}", location=f"segment {number}")
        if name == "MSH":
            if segments:
                raise MalformedInput(
                    "more than one message (a second MSH); send one message at a time",
                    location=f"segment {number}",
                )
            fields = ["MSH", d.field, *line[4:].split(d.field)]
        else:
            fields = line.split(d.field)
        segments.append(Segment(name, fields, number, d))
        counts[name] = counts.get(name, 0) + 1
    seen: dict[str, int] = {}
    for segment in segments:
        if counts[segment.name] > 1:
            seen[segment.name] = seen.get(segment.name, 0) + 1
            segment.label = f"{segment.name}[{seen[segment.name]}]"
    return Message(d, segments, notes)
