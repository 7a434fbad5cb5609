"""Fixtures of the browser tests: one Debian Chromium per test process, driven by Playwright.

Playwright's own browser downloads are never used; without /usr/bin/chromium the browser tests
skip (`apt-get install chromium`; .ci/run installs it).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from browser import CHROMIUM


# Per module, not per session: while Playwright's sync API runs, it keeps an event loop going
# in the worker's main thread, and every later test file of that worker that calls asyncio.run
# (the harness does) would fail.
@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip("Debian chromium not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        yield chromium
        chromium.close()
