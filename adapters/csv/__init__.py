"""Tabular EHR extracts (CSV) → FHIR R4 transaction Bundle, driven by a mapping profile.

A profile (``adapters/csv_profiles/*.toml``, language in the README there) says which file is
which table, which resource a table's rows become, and which column feeds which field. One
import is usually several files (a Synthea export is a directory of them), so there are three
ways in, all returning one Conversion:

- ``convert("csv", data, source)`` — ``data`` is a ZIP archive of the export's files, or a
  single CSV file whose table is chosen by ``source.filename`` (``patients.csv``);
- ``convert_csv_files({"patients.csv": b"…", …}, source)`` — file name → bytes;
- ``convert_csv_directory(path, source)`` — the profile's files found in a directory.

Rows are converted independently: a bad row (missing code, a patient id that is not in the
patients table, a non-numeric value in a numeric observation) is an error issue naming the file
and line, and the other rows still convert. Patients are read first and encounters second, so
rows of other tables can refer to them; rows whose table has a stable id (``id`` in the
profile) are conditional creates on it, so importing the same export twice adds nothing.
"""

from __future__ import annotations

import io
import zipfile
import zlib
from collections.abc import Mapping
from pathlib import Path, PurePosixPath

from .._bundle import TransactionBuilder
from .._errors import MalformedInput, UnsafeInput
from .._guard import run_adapter
from .._model import Conversion, IssueLog, SourceInfo
from .profile import Profile, load_profile
from .resources import MAPPERS, CsvRun
from .rows import Row, RowError, open_table

__all__ = ["convert_csv", "convert_csv_directory", "convert_csv_files"]

MAX_CSV_BYTES = 128 * 1024 * 1024
MAX_ARCHIVE_MEMBERS = 64


def convert_csv(data: bytes, source: SourceInfo) -> Conversion:
    """Registry entry: a ZIP of the export, or one CSV file named by ``source.filename``."""
    profile = load_profile(source.profile)
    if data.startswith(b"PK\x03\x04"):
        files, ignored = _unzip(data, profile)
        return _convert(profile, files, source, ignored)
    if not source.filename:
        raise MalformedInput(
            "a single CSV file needs SourceInfo.filename to pick its table; or send a ZIP"
        )
    return _convert(profile, {source.filename: data}, source, [])


def convert_csv_files(
    files: Mapping[str, bytes], source: SourceInfo, *, validate: bool = True
) -> Conversion:
    """Convert the files of one export, given as file name → bytes."""
    size = sum(len(content) for content in files.values())
    return run_adapter(
        "csv",
        lambda: _convert(load_profile(source.profile), dict(files), source, []),
        validate=validate,
        size=size,
    )


def convert_csv_directory(
    path: str | Path, source: SourceInfo, *, validate: bool = True
) -> Conversion:
    """Convert the profile's files found in directory ``path`` (other files are ignored)."""

    def run() -> Conversion:
        profile = load_profile(source.profile)
        folder = Path(path)
        if not folder.is_dir():
            raise MalformedInput(f"{folder} is not a directory")
        files: dict[str, bytes] = {}
        total = 0
        for table in profile.tables:
            candidate = next(
                (
                    p
                    for p in folder.iterdir()
                    if p.name.lower() == table.file.lower() and p.is_file()
                ),
                None,
            )
            if candidate is None:
                continue
            total += candidate.stat().st_size
            if total > MAX_CSV_BYTES:
                raise UnsafeInput(
                    f"export exceeds the {MAX_CSV_BYTES} byte bound at {candidate.name}"
                )
            files[candidate.name] = candidate.read_bytes()
        return _convert(profile, files, source, [])

    return run_adapter("csv", run, validate=validate, size=0)


def _unzip(data: bytes, profile: Profile) -> tuple[dict[str, bytes], list[str]]:
    """The profile's files from a ZIP archive, read within size and member-count bounds."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        members = [info for info in archive.infolist() if not info.is_dir()]
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError) as exc:
        raise MalformedInput(f"not a readable ZIP archive ({exc})") from exc
    if len(members) > MAX_ARCHIVE_MEMBERS:
        raise UnsafeInput(f"ZIP archive with {len(members)} files; at most {MAX_ARCHIVE_MEMBERS}")
    files: dict[str, bytes] = {}
    ignored: list[str] = []
    remaining = MAX_CSV_BYTES
    for info in members:
        name = PurePosixPath(info.filename).name
        if profile.table_for_file(name) is None:
            ignored.append(info.filename)
            continue
        if info.file_size > remaining:
            raise UnsafeInput(
                f"{info.filename}: archive content exceeds the {MAX_CSV_BYTES} byte bound"
            )
        try:
            with archive.open(info) as member:
                # The sizes in the archive directory can lie (zip bombs): read at most the bound.
                content = member.read(remaining + 1)
        except (zipfile.BadZipFile, RuntimeError, NotImplementedError, EOFError, zlib.error) as exc:
            raise MalformedInput(f"{info.filename}: cannot be extracted ({exc})") from exc
        if len(content) > remaining:
            raise UnsafeInput(
                f"{info.filename}: archive content exceeds the {MAX_CSV_BYTES} byte bound"
            )
        remaining -= len(content)
        files[name] = content
    return files, ignored


def _convert(
    profile: Profile, files: dict[str, bytes], source: SourceInfo, ignored: list[str]
) -> Conversion:
    if sum(len(content) for content in files.values()) > MAX_CSV_BYTES:
        raise UnsafeInput(f"CSV input exceeds the {MAX_CSV_BYTES} byte bound")
    issues = IssueLog()
    builder = TransactionBuilder(issues)
    run = CsvRun(profile, source, issues, builder)
    by_table = {}
    for name, content in files.items():
        table = profile.table_for_file(name)
        if table is None:
            ignored.append(name)
        else:
            by_table[table.name] = (name, content)
    for name in ignored:
        issues.information(name, f"not a file of profile {profile.name!r}; ignored")
    for table in profile.tables:
        if table.name not in by_table:
            run.missing_tables.add(table.resource)
    for table in profile.tables:
        if table.name not in by_table:
            continue
        filename, content = by_table[table.name]
        opened = open_table(profile, table, filename, content, issues)
        if opened is None:
            run.missing_tables.add(table.resource)
            continue
        width = len(opened.header)
        for line, cells in opened.rows:
            row = Row(profile, opened, cells, line, source, issues)
            if len(cells) != width:
                issues.error(
                    row.location, f"{len(cells)} values where the header has {width}; row skipped"
                )
                continue
            try:
                resource = MAPPERS[table.resource](run, row)
                key = run.key_identifier(table, row)
            except RowError as exc:
                issues.error(row.location, f"{exc}; row skipped")
                continue
            if key:
                resource["identifier"] = [key, *resource.get("identifier", [])]
            if table.resource == "Patient":
                url = builder.add_patient(resource, location=row.location)
            else:
                url = builder.add(resource, identifier=key, location=row.location)
            if key and len(table.id_columns) == 1:
                run.row_urls.setdefault(table.resource, {})[key["value"]] = url
    return Conversion("csv", builder.build(), issues.items, sources=builder.sources)
