"""Traces (OpenTelemetry): one trace per job, carried across the processes in record headers.

Tracing is on only when OTEL_EXPORTER_OTLP_ENDPOINT is set (OTLP over HTTP). Off, no tracer
provider is installed: every span is the API's no-op, no record gets a `traceparent` header,
and the SDK is never imported. The other standard variables (OTEL_EXPORTER_OTLP_TRACES_ENDPOINT,
OTEL_EXPORTER_OTLP_HEADERS, OTEL_SERVICE_NAME, OTEL_TRACES_SAMPLER, OTEL_BSP_*, ...) are read by
the SDK itself once it is on.

The context travels as W3C Trace Context (`traceparent`, `tracestate`): in the Kafka headers of
every record the `Appender` writes inside a span, and in the notifier's delivery rows.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Span, SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import AttributeValue

from shared.settings import Settings

TRACER_NAME = "akave-gateway"
SERVICE_PREFIX = "akave-gateway-"
TRACEPARENT = "traceparent"
_W3C = TraceContextTextMapPropagator()
_FIELDS = frozenset(_W3C.fields)  # traceparent, tracestate


def tracing_on(settings: Settings) -> bool:
    return bool(settings.otel_exporter_otlp_endpoint) and not settings.otel_sdk_disabled


def start_tracing(settings: Settings, service: str) -> Callable[[], None]:
    """Install the SDK's tracer provider, exporting in batches over OTLP/HTTP, when tracing is
    on; returns what flushes and stops it at exit (nothing to do when off)."""
    base = settings.otel_exporter_otlp_endpoint
    installed = not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
    if base is None or not tracing_on(settings) or installed:  # set once per process
        return _nothing
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    endpoint = None  # the SDK's own rule: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, if set, wins
    if not os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        endpoint = f"{base.rstrip('/')}/v1/traces"
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: SERVICE_PREFIX + service}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    trace.set_tracer_provider(provider)
    return provider.shutdown


def _nothing() -> None:
    return None


def tracer() -> trace.Tracer:
    return trace.get_tracer(TRACER_NAME)


@contextmanager
def span(
    name: str,
    parent: Context | None = None,
    attributes: Mapping[str, AttributeValue] | None = None,
    kind: SpanKind = SpanKind.INTERNAL,
) -> Iterator[Span]:
    """A span, current inside the block, under `parent` (default: the current span). An
    exception leaving the block is recorded on it and marks it as an error."""
    with tracer().start_as_current_span(
        name, context=parent, kind=kind, attributes=attributes
    ) as s:
        yield s


def record_headers() -> list[tuple[str, bytes]]:
    """The current span's context as Kafka headers; none when no span is recording."""
    if not trace.get_current_span().get_span_context().is_valid:
        return []
    carrier: dict[str, str] = {}
    _W3C.inject(carrier)
    return [(key, value.encode()) for key, value in carrier.items()]


def context_from_headers(headers: Iterable[tuple[str, bytes]] | None) -> Context | None:
    """The trace context a record was written in, or None if it carries none."""
    carrier = {k: v.decode("latin-1") for k, v in headers or () if k in _FIELDS}
    if TRACEPARENT not in carrier:
        return None
    context = _W3C.extract(carrier)
    return context if trace.get_current_span(context).get_span_context().is_valid else None


def traceparent_of(headers: Iterable[tuple[str, bytes]] | None) -> str | None:
    """A record's `traceparent` header as text (what a delivery row keeps), or None."""
    for key, value in headers or ():
        if key == TRACEPARENT:
            return value.decode("latin-1")
    return None


def context_from_traceparent(traceparent: str | None) -> Context | None:
    return context_from_headers([(TRACEPARENT, traceparent.encode())] if traceparent else None)


def link_distinct_traces(target: Span, contexts: Iterable[Context | None]) -> None:
    """Link `target` to the span of each context, once per trace (a batch holds many jobs'
    records, a job's records one trace)."""
    if not target.is_recording():
        return
    seen: set[int] = set()
    for context in contexts:
        if context is None:
            continue
        linked = trace.get_current_span(context).get_span_context()
        if linked.trace_id not in seen:
            seen.add(linked.trace_id)
            target.add_link(linked)


def current_ids() -> tuple[str, str] | None:
    """(trace_id, span_id) of the current span as hex, for log lines; None outside a span."""
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return f"{context.trace_id:032x}", f"{context.span_id:016x}"
