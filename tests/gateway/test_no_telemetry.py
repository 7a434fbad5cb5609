"""FastAPI traces requests and records their exceptions, with messages, whenever an
OpenTelemetry SDK is set up in the process (an ``opentelemetry-instrument`` wrapper, say). Span
names and attributes would carry request URLs, and so BSNs; the gateway turns that off: what it
records of requests is its audit trail."""

from __future__ import annotations

import pytest
from harness import start_server
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

BSN = "http://fhir.nl/fhir/NamingSystem/bsn|999911120"


@pytest.fixture(scope="module")
def telemetry():
    """A tracer and meter provider set up for the whole process, as an operator's would be."""
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    trace.set_tracer_provider(tracer_provider)
    reader = InMemoryMetricReader()
    metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
    return spans, reader


def test_requests_reach_no_opentelemetry_set_up_in_the_process(telemetry, tmp_path):
    spans, reader = telemetry
    server, database = start_server("sqlite", tmp_path)
    try:
        with server.client() as fhir:
            assert fhir.get("/Patient", params={"identifier": BSN}).status_code == 200
            assert fhir.get("/Patient/does-not-exist").status_code == 404
            assert fhir.get("/Patient", params={"birthdate": "not-a-date"}).status_code == 400
    finally:
        server.stop()
        database.drop()
    assert spans.get_finished_spans() == ()
    recorded = reader.get_metrics_data()
    assert recorded is None or not [
        metric
        for resource in recorded.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
    ]
