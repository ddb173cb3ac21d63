"""The private key never reaches a log line, whatever form it is logged in."""

from __future__ import annotations

import io
import logging
import secrets

import orjson
import pytest

from shared.log_setup import ConsoleFormatter, JsonFormatter, SecretMask


@pytest.fixture
def key() -> str:
    return secrets.token_hex(32)  # a throwaway key made for this test


@pytest.mark.parametrize("formatter", [JsonFormatter(), ConsoleFormatter()])
def test_key_is_masked_in_message_args_extras_and_tracebacks(
    key: str, formatter: logging.Formatter
) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    handler.addFilter(SecretMask(["0x" + key]))
    logger = logging.getLogger(f"test-mask-{id(formatter)}")
    logger.addHandler(handler)
    logger.propagate = False
    logger.error("plain %s", key)
    logger.error("upper 0X%s", key.upper())
    logger.error("extra", extra={"detail": f"key=0x{key}"})
    try:
        raise RuntimeError(f"boom {key.upper()}")
    except RuntimeError:
        logger.exception("failed")
    out = stream.getvalue()
    assert key not in out.lower()
    assert out.count("***") == 4  # one per record that carried the key


def test_without_secrets_records_pass_unchanged() -> None:
    record = logging.LogRecord("x", logging.INFO, "", 0, "hello %s", ("world",), None)
    assert SecretMask([]).filter(record) and record.getMessage() == "hello world"


def test_a_line_logged_inside_a_span_carries_its_trace_and_span_ids() -> None:
    from opentelemetry.sdk.trace import TracerProvider

    from shared.log_setup import TraceIds

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(TraceIds())
    logger = logging.getLogger("test-trace-ids")
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    logger.propagate = False
    logger.info("outside")
    with TracerProvider().get_tracer("test").start_as_current_span("job") as span:
        logger.info("inside")
    outside, inside = (orjson.loads(line) for line in stream.getvalue().splitlines())
    assert "trace_id" not in outside and "span_id" not in outside
    context = span.get_span_context()
    assert inside["trace_id"] == f"{context.trace_id:032x}"
    assert inside["span_id"] == f"{context.span_id:016x}"
