"""Tracing off (OTEL_EXPORTER_OTLP_ENDPOINT unset): nothing is exported and no traceparent is
written, even though OTEL_EXPORTER_OTLP_TRACES_ENDPOINT names a live receiver (the SDK would
export there if it were installed)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from shared.settings import Settings
from tests.support.otlp_receiver import TRACES_PATH, OtlpReceiver
from tests.support.stack import Stack, read_events, unique_name
from tests.support.webhook_receiver import Receiver

pytestmark = pytest.mark.slow

STACK_SETTINGS = {"webhook_poll_interval_s": 0.2}


@pytest.fixture(scope="module")
def stack(
    stack_settings: Settings, otlp: OtlpReceiver, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    settings = stack_settings.model_copy(update={"otel_exporter_otlp_endpoint": None})
    running = Stack(settings, tmp_path_factory.mktemp("untraced"))
    with pytest.MonkeyPatch.context() as env:
        env.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
        env.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", otlp.endpoint + TRACES_PATH)
        env.setenv("OTEL_BSP_SCHEDULE_DELAY", "100")
        running.start("projector", "executor", "notifier", "api")
    try:
        yield running
    finally:
        running.stop()


async def test_with_the_endpoint_unset_nothing_is_exported_or_propagated(
    stack: Stack, otlp: OtlpReceiver
) -> None:
    hook = Receiver()
    try:
        async with stack.client() as client:
            registered = await client.post(
                "/webhooks", json={"url": hook.url, "event_types": ["BucketCreated"]}
            )
            assert registered.status_code == 201, registered.text
            accepted = await client.post("/buckets", json={"bucket_name": unique_name("off")})
            job_id = accepted.json()["job_id"]
            job = await stack.wait_terminal(client, job_id)
        assert job["status"] == "completed", job
        for _ in range(100):
            if hook.received():
                break
            await asyncio.sleep(0.1)
        assert len(hook.received()) == 1, stack.logs()
        assert "traceparent" not in hook.received()[0].headers
    finally:
        hook.close()
    stack.stop()  # a tracer provider would flush its last spans now
    records = [r for r in await read_events(stack.settings) if job_id.encode() in r.value]
    assert len(records) >= 3
    assert all("traceparent" not in dict(r.headers) for r in records)
    assert otlp.requests == 0 and otlp.spans() == []
