"""Adapter throughput: HL7 v2 ORU^R01 messages/s, C-CDA CCD conversion time, CSV rows/s.

Run from the repository root:  .venv/bin/python bench/bench_adapters.py [--quick]

Targets (project brief): ORU^R01 >= 2,000 messages/s on one core, CCD <= 20 ms median.
Each figure is given with and without R4B validation of the produced resources
(``convert(..., validate=...)``); the gateway validates every resource again when storing it.
The process pins itself to one CPU where the OS allows, so the figures are per core.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from adapters import SourceInfo, convert, convert_csv_files  # noqa: E402
from adapters.hl7v2 import er7  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"
SOURCE = SourceInfo(organization="12345678")


def per_second(call: Callable[[], object], seconds: float) -> tuple[float, int]:
    """Calls per second of ``call`` over about ``seconds`` (after a short warm-up)."""
    for _ in range(20):
        call()
    count, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        for _ in range(25):
            call()
        count += 25
    return count / elapsed, count


def median_ms(call: Callable[[], object], runs: int) -> float:
    for _ in range(3):
        call()
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        call()
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


def hl7_messages() -> dict[str, bytes]:
    lab = (SHARED / "hl7v2" / "microsoft-fhir-converter" / "LAB-ORU-2.hl7").read_bytes()
    dutch = (ROOT / "tests" / "adapters" / "fixtures" / "hl7v2" / "nl-oru-r01-bsn.hl7").read_bytes()
    return {
        "LAB-ORU-2 (2 OBR, 10 OBX)": lab.removeprefix(b"\xef\xbb\xbf").replace(b"\n", b"\r"),
        "nl-oru-r01-bsn (1 OBR, 5 OBX)": dutch.replace(b"\n", b"\r"),
    }


def synthea_export(patients: int) -> dict[str, bytes]:
    """A synthetic Synthea export: ``patients`` patients with 10 observations each."""
    fixture = ROOT / "tests" / "adapters" / "fixtures" / "synthea"
    patient_header, patient_row = (fixture / "patients.csv").read_text().splitlines()[:2]
    obs_lines = (fixture / "observations.csv").read_text().splitlines()
    obs_header, obs_rows = obs_lines[0], obs_lines[1:5]
    first_id = patient_row.split(",", 1)[0]
    patients_csv, observations_csv = [patient_header], [obs_header]
    for n in range(patients):
        pid = f"b1f6c1a2-0d4e-4c59-9d7a-{n:012d}"
        patients_csv.append(patient_row.replace(first_id, pid))
        for k in range(10):
            row = obs_rows[k % len(obs_rows)].replace(first_id, pid)
            date = f"2019-02-{1 + k:02d}T10:24:41Z"
            observations_csv.append(row.replace("2019-02-17T10:24:41Z", date))
    return {
        "patients.csv": ("\n".join(patients_csv) + "\n").encode(),
        "observations.csv": ("\n".join(observations_csv) + "\n").encode(),
    }


def optional_library_figures(message: bytes, seconds: float) -> list[str]:
    """Parse-only figures of python-hl7 / hl7apy, when installed, for the parser comparison."""
    lines = []
    text = message.decode("utf-8")
    try:
        import hl7  # type: ignore[import-not-found]

        rate, _ = per_second(lambda: hl7.parse(text), seconds)
        lines.append(
            f"  python-hl7 {getattr(hl7, '__version__', '?')} parse only: {rate:9,.0f} msg/s"
        )
    except ImportError:
        lines.append("  python-hl7: not installed (pip install hl7 to compare)")
    try:
        from hl7apy import parser as hl7apy_parser  # type: ignore[import-not-found]

        rate, _ = per_second(
            lambda: hl7apy_parser.parse_message(text, find_groups=True), seconds / 4
        )
        lines.append(f"  hl7apy parse only:            {rate:9,.0f} msg/s")
    except ImportError:
        lines.append("  hl7apy: not installed (pip install hl7apy to compare)")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter runs (noisier figures)")
    args = parser.parse_args()
    seconds = 1.0 if args.quick else 3.0
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"Python {sys.version.split()[0]}, one core, load average {load:.2f} at start\n")

    print("HL7 v2 ORU^R01 -> FHIR transaction Bundle (target >= 2,000 msg/s)")
    for name, message in hl7_messages().items():
        parse_rate, _ = per_second(lambda m=message: er7.parse(m), seconds)
        fast, _ = per_second(lambda m=message: convert("hl7v2", m, SOURCE, validate=False), seconds)
        full, _ = per_second(lambda m=message: convert("hl7v2", m, SOURCE), seconds)
        print(f"  {name}")
        print(f"    ER7 tokenizer only:           {parse_rate:9,.0f} msg/s")
        print(f"    convert, validate=False:      {fast:9,.0f} msg/s  ({1000 / fast:.3f} ms)")
        print(f"    convert, validate=True:       {full:9,.0f} msg/s  ({1000 / full:.3f} ms)")
    print("  parser libraries on LAB-ORU-2, for comparison:")
    for line in optional_library_figures(next(iter(hl7_messages().values())), seconds):
        print("  " + line)

    print("\nC-CDA -> FHIR (target <= 20 ms median for the CCD)")
    for path in (
        SHARED / "c-cda" / "documents" / "CCD" / "CCD_1" / "CCD.XML",
        SHARED / "c-cda" / "documents" / "Referral_Note" / "Referral_Note.xml",
    ):
        data = path.read_bytes()
        runs = 30 if args.quick else 100
        fast = median_ms(lambda d=data: convert("cda", d, SOURCE, validate=False), runs)
        full = median_ms(lambda d=data: convert("cda", d, SOURCE), runs)
        resources = len(convert("cda", data, SOURCE, validate=False).bundle["entry"])
        print(f"  {path.name} ({len(data) // 1024} KiB, {resources} entries)")
        print(f"    median, validate=False:       {fast:9.2f} ms")
        print(f"    median, validate=True:        {full:9.2f} ms")

    print("\nCSV (Synthea profile) -> FHIR")
    export = synthea_export(200 if args.quick else 1000)
    rows = sum(content.count(b"\n") - 1 for content in export.values())
    source = SourceInfo(organization="12345678", profile="synthea")
    for validate in (False, True):
        start = time.perf_counter()
        conversion = convert_csv_files(export, source, validate=validate)
        elapsed = time.perf_counter() - start
        assert conversion.ok, conversion.issues[:3]
        print(
            f"  {rows:,} rows, validate={validate!s:5}:   {rows / elapsed:9,.0f} rows/s  ({elapsed:.2f} s)"
        )


if __name__ == "__main__":
    main()
