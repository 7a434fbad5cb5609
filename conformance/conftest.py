"""The conformance suite uses the live-server fixtures of tests/harness.py."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from harness import fhir, server  # noqa: F401 - fixtures
