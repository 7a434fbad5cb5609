"""Fixtures of the adapter tests; paths and helpers live in adapters_testkit.py."""

from __future__ import annotations

import pytest

from adapters import SourceInfo
from tests.adapters.adapters_testkit import URA


@pytest.fixture
def source() -> SourceInfo:
    """The SourceInfo of the fictitious sending hospital."""
    return SourceInfo(organization=URA)
