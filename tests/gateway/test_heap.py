"""A serving process keeps the garbage collector off what startup loaded (gateway/api/heap.py):
full collections walked ~140,000 long-lived objects each time and stalled every request."""

from __future__ import annotations

import gc

from harness import start_server

from gateway.api.heap import YOUNG_THRESHOLD


def test_a_started_gateway_freezes_its_startup_heap_and_still_collects(tmp_path):
    server, database = start_server("sqlite", tmp_path)
    try:
        with server.client() as fhir:
            assert fhir.get("/Patient/does-not-exist").status_code == 404
        # The FHIR models, SQLAlchemy's metadata and the routes are out of the collector's walk.
        assert gc.get_freeze_count() > 50_000
        assert gc.get_threshold()[0] == YOUNG_THRESHOLD
        # Collection itself stays on: reference cycles made while serving are reclaimed.
        assert gc.isenabled()
    finally:
        server.stop()
        database.drop()
