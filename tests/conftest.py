"""Fixtures of the whole suite live in harness.py (shared with conformance/)."""

from harness import fhir, server  # noqa: F401 - fixtures
