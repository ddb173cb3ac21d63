"""What tracing adds to the accept path, per POST /buckets, measured in this process.

Off (OTEL_EXPORTER_OTLP_ENDPOINT unset) the FastAPI instrumentation is not installed at all, so
the only code that runs is the Appender asking for the current span's headers and the log
filter asking for trace ids: this times both against a no-op tracer, and, for comparison,
the same calls inside a recording SDK span (tracing on; the export itself runs in the SDK's
background thread). `python -m bench.tracing_cost`.
"""

from __future__ import annotations

import logging
import timeit

from opentelemetry import trace

from shared.log_setup import TraceIds
from shared.tracing import record_headers

CALLS = 200_000


def per_call_ns(statement: str, namespace: dict[str, object]) -> float:
    timer = timeit.Timer(statement, globals=namespace)
    return min(timer.repeat(5, CALLS)) / CALLS * 1e9


def measure() -> dict[str, float]:
    record = logging.LogRecord("bench", logging.INFO, __file__, 0, "accepted", (), None)
    namespace: dict[str, object] = {"record_headers": record_headers, "f": TraceIds(), "r": record}
    figures = {
        "off_headers_ns": per_call_ns("record_headers()", namespace),
        "off_log_filter_ns": per_call_ns("f.filter(r)", namespace),
    }
    from opentelemetry.sdk.trace import TracerProvider

    tracer = TracerProvider().get_tracer("bench")
    with tracer.start_as_current_span("POST /buckets"):
        assert trace.get_current_span().is_recording()
        figures["on_headers_ns"] = per_call_ns("record_headers()", namespace)
        figures["on_log_filter_ns"] = per_call_ns("f.filter(r)", namespace)
    figures["on_span_ns"] = per_call_ns("with t.start_as_current_span('x'): pass", {"t": tracer})
    return figures


def main() -> None:
    for name, value in measure().items():
        print(f"{name:>20}: {value:8.0f} ns")


if __name__ == "__main__":
    main()
