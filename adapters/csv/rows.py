"""Reading a CSV file row by row, and the values of one row as a profile describes them."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from .._datetime import iso_date, iso_datetime, strptime_datetime
from .._identifiers import is_oid
from .._model import IssueLog, SourceInfo
from .._terminology import UCUM, decimal_value, system_for_code_oid, ucum_code
from .profile import REQUIRED_FIELDS, FieldSpec, Profile, TableSpec


class RowError(Exception):
    """A row cannot be converted; the message says why. Caught per row, never escapes."""


@dataclass
class TableFile:
    """One CSV file being read for a table of the profile."""

    table: TableSpec
    filename: str
    header: dict[str, int]
    rows: Iterator[tuple[int, list[str]]]


def open_table(
    profile: Profile, table: TableSpec, filename: str, data: bytes, issues: IssueLog
) -> TableFile | None:
    """Decode ``data`` and read its header; None (with an error issue) when that fails."""
    try:
        text = data.decode(profile.encoding)
    except UnicodeDecodeError as exc:
        issues.error(filename, f"not {profile.encoding} (byte {exc.start}); file skipped")
        return None
    text = text.removeprefix("\ufeff")
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=profile.delimiter, strict=True)
    try:
        header_row = next(reader, None)
    except csv.Error as exc:
        issues.error(f"{filename} line 1", f"header is not valid CSV ({exc}); file skipped")
        return None
    if not header_row:
        issues.error(filename, "empty file; skipped")
        return None
    header = {name.strip(): index for index, name in enumerate(header_row)}
    missing = [
        f"{key} ({' or '.join(spec.columns)})"
        for key, spec in table.fields.items()
        if spec.columns and not any(c in header for c in spec.columns) and key in _required(table)
    ]
    for part in table.id_columns:
        if not any(c in header for c in part):
            missing.append(f"id part {' or '.join(part)}")
    if missing:
        issues.error(
            f"{filename} line 1", f"required columns missing: {'; '.join(missing)}; file skipped"
        )
        return None
    for key, spec in table.fields.items():
        if (
            spec.columns
            and not any(c in header for c in spec.columns)
            and key not in _required(table)
        ):
            issues.information(
                f"{filename} line 1",
                f"column {' or '.join(spec.columns)} ({key}) not present; left empty",
            )

    def rows() -> Iterator[tuple[int, list[str]]]:
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                issues.error(
                    f"{filename} line {reader.line_num}",
                    f"not valid CSV ({exc}); rest of file skipped",
                )
                return
            if not row or all(not cell.strip() for cell in row):
                continue
            yield reader.line_num, row

    return TableFile(table, filename, header, rows())


def _required(table: TableSpec) -> tuple[str, ...]:
    return REQUIRED_FIELDS[table.resource]


@dataclass
class Row:
    """The values of one row, read through the table's field specs."""

    profile: Profile
    file: TableFile
    cells: list[str]
    line: int
    source: SourceInfo
    issues: IssueLog
    notes: list[tuple[str, str]] = field(default_factory=list)

    @property
    def location(self) -> str:
        return f"{self.file.filename} line {self.line}"

    def cell(self, columns: tuple[str, ...]) -> str:
        """The stripped value of the first of ``columns`` present in the header ("" if none)."""
        for column in columns:
            index = self.file.header.get(column)
            if index is not None:
                return self.cells[index].strip() if index < len(self.cells) else ""
        return ""

    def spec(self, key: str) -> FieldSpec | None:
        return self.file.table.fields.get(key)

    def text(self, key: str) -> str:
        spec = self.spec(key)
        if spec is None:
            return ""
        return spec.value if spec.value is not None else self.cell(spec.columns)

    def required_text(self, key: str) -> str:
        value = self.text(key)
        if not value:
            spec = self.spec(key)
            columns = " or ".join(spec.columns) if spec else key
            raise RowError(f"{columns} ({key}) is empty")
        return value

    def mapped(self, key: str, allowed: frozenset[str] | None = None) -> str | None:
        """A code translated through the field's ``map``; outside ``allowed`` → warning, None."""
        raw = self.text(key)
        if not raw:
            return None
        spec = self.spec(key)
        value = spec.map.get(raw.upper(), raw) if spec else raw
        if allowed is not None and value not in allowed:
            self.issues.warning(self.location, f"{key} value {raw!r} not understood; left out")
            return None
        return value

    def datetime(self, key: str, *, date_only: bool = False) -> str | None:
        raw = self.text(key)
        spec = self.spec(key)
        if not raw or spec is None:
            return None
        if spec.format:
            result = strptime_datetime(raw, spec.format, self.source.zone)
            if result and date_only:
                result = result[:10]
        else:
            result = iso_date(raw) if date_only else iso_datetime(raw, self.source.zone)
        if result is None:
            self.issues.warning(self.location, f"{key} {raw!r} is not a valid date; left out")
        return result

    def concept(self, key: str) -> dict[str, Any] | None:
        """A CodeableConcept from a code column, its system (fixed or by column) and display."""
        spec = self.spec(key)
        if spec is None:
            return None
        code = " ".join(self.text(key).split())
        display = self.cell(spec.display) if spec.display else ""
        if not code and not display:
            return None
        coding: dict[str, str] = {}
        system = spec.system
        named = self.cell(spec.system_column) if spec.system_column else ""
        if named:
            system = self.profile.code_systems.get(named.upper()) or (
                system_for_code_oid(named) if is_oid(named) else None
            )
            if system is None:
                self.issues.warning(
                    self.location, f"code system {named!r} unknown; code kept without it"
                )
        if code and spec.map:
            code = spec.map.get(code.upper(), code)
        if system:
            coding["system"] = system
        if code:
            coding["code"] = code
        if display:
            coding["display"] = display
        concept: dict[str, Any] = {"coding": [coding]} if code else {}
        if display:
            concept["text"] = display
        return concept

    def value(self, key: str) -> tuple[str, Any] | None:
        """An observation value: a Quantity when the type column says numeric, else a string."""
        spec = self.spec(key)
        raw = self.text(key)
        if spec is None or not raw:
            return None
        kind = self.cell(spec.type_column).lower() if spec.type_column else ""
        number = decimal_value(raw)
        numeric = kind in spec.numeric if kind else number is not None
        if not numeric:
            return "valueString", raw
        if number is None:
            raise RowError(f"value {raw!r} is not a number although its type says numeric")
        quantity: dict[str, Any] = {"value": number}
        unit = self.cell(spec.unit) if spec.unit else ""
        if unit:
            quantity["unit"] = unit
            code = ucum_code(unit)
            if code:
                quantity.update(system=UCUM, code=code)
        return "valueQuantity", quantity
