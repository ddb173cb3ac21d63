"""The trace context in record headers and delivery rows: what is written is read back, and
a record without one (or with a broken one) has none."""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from shared.settings import Settings
from shared.tracing import (
    context_from_headers,
    context_from_traceparent,
    link_distinct_traces,
    record_headers,
    traceparent_of,
    tracing_on,
)

tracer = TracerProvider().get_tracer("test")


def _span_context(context: object) -> trace.SpanContext:
    return trace.get_current_span(context).get_span_context()  # type: ignore[arg-type]


def test_headers_written_in_a_span_give_back_its_context() -> None:
    with tracer.start_as_current_span("append") as span:
        headers = record_headers()
    read = _span_context(context_from_headers([("content-type", b"x"), *headers]))
    assert read.trace_id == span.get_span_context().trace_id
    assert read.span_id == span.get_span_context().span_id
    text = traceparent_of(headers)
    assert text is not None
    assert _span_context(context_from_traceparent(text)).span_id == read.span_id


def test_no_span_no_headers_and_no_context() -> None:
    assert record_headers() == []
    assert context_from_headers(None) is None
    assert context_from_headers([("content-type", b"x")]) is None
    assert context_from_headers([("traceparent", b"not-a-traceparent")]) is None
    assert context_from_traceparent(None) is None


def test_a_batch_span_links_each_trace_once() -> None:
    with tracer.start_as_current_span("job a") as a:
        a_headers = record_headers()
    with tracer.start_as_current_span("job b") as b:
        b_headers = record_headers()
    records = [a_headers, a_headers, b_headers, []]
    with tracer.start_as_current_span("batch") as batch:
        link_distinct_traces(batch, (context_from_headers(h) for h in records))
    linked = [link.context.trace_id for link in batch.links]  # type: ignore[attr-defined]
    assert linked == [a.get_span_context().trace_id, b.get_span_context().trace_id]


def test_tracing_is_on_only_with_an_endpoint() -> None:
    base = Settings(_env_file=None)  # type: ignore[call-arg]
    assert not tracing_on(base.model_copy(update={"otel_exporter_otlp_endpoint": None}))
    on = base.model_copy(update={"otel_exporter_otlp_endpoint": "http://127.0.0.1:4318"})
    assert tracing_on(on)
    assert not tracing_on(on.model_copy(update={"otel_sdk_disabled": True}))
