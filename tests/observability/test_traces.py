"""Traces across the real processes: api, executor, projector and notifier export over OTLP/HTTP
to a receiver in this test, and a job's spans form one trace (the projector's batch links it)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator

import pytest

from shared.settings import Settings
from tests.support.otlp_receiver import OtlpReceiver, ReceivedSpan
from tests.support.stack import Stack, read_events, unique_name
from tests.support.webhook_receiver import Receiver

pytestmark = pytest.mark.slow

STACK_SETTINGS = {"webhook_poll_interval_s": 0.2, "log_format": "json"}
SERVER, CLIENT, CONSUMER = 2, 3, 5  # opentelemetry.proto.trace.v1.Span.SpanKind
DEADLINE_S = 30.0


@pytest.fixture(scope="module")
def stack(
    stack_settings: Settings, otlp: OtlpReceiver, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    """The four services, tracing on: OTEL_EXPORTER_OTLP_ENDPOINT names the receiver."""
    settings = stack_settings.model_copy(update={"otel_exporter_otlp_endpoint": otlp.endpoint})
    running = Stack(settings, tmp_path_factory.mktemp("traced"))
    with pytest.MonkeyPatch.context() as env:
        env.delenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", raising=False)
        env.setenv("OTEL_BSP_SCHEDULE_DELAY", "100")  # export every 0.1 s, not every 5 s
        running.start("projector", "executor", "notifier", "api")
    try:
        yield running
    finally:
        running.stop()


async def eventually(what: str, found: Callable[[], object], stack: Stack) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not found():
        if time.monotonic() > deadline:
            raise AssertionError(f"never saw {what}\n{stack.logs()}")
        await asyncio.sleep(0.1)


def one(spans: list[ReceivedSpan], service: str, name: str) -> ReceivedSpan:
    matching = [s for s in spans if s.service == f"akave-gateway-{service}" and s.name == name]
    assert len(matching) == 1, (service, name, matching)
    return matching[0]


async def test_a_job_is_one_trace_from_the_request_to_the_webhook_post(
    stack: Stack, otlp: OtlpReceiver
) -> None:
    hook = Receiver()
    try:
        async with stack.client() as client:
            registered = await client.post(
                "/webhooks", json={"url": hook.url, "event_types": ["BucketCreated"]}
            )
            assert registered.status_code == 201, registered.text
            accepted = await client.post("/buckets", json={"bucket_name": unique_name("tr")})
            assert accepted.status_code == 202, accepted.text
            job_id = accepted.json()["job_id"]
            job = await stack.wait_terminal(client, job_id)
        assert job["status"] == "completed", job
        await eventually("the webhook POST", hook.received, stack)

        def api_span() -> list[ReceivedSpan]:
            return [s for s in otlp.spans() if s.name == "POST /buckets" and s.kind == SERVER]

        await eventually("the API's span", api_span, stack)
        trace_id = api_span()[0].trace_id

        def in_trace() -> list[ReceivedSpan]:
            return [s for s in otlp.spans() if s.trace_id == trace_id]

        expected = {
            ("akave-gateway-api", "POST /buckets"),
            ("akave-gateway-executor", "executor.job"),
            ("akave-gateway-executor", "executor.attempt"),
            ("akave-gateway-executor", "chain.view_bucket"),
            ("akave-gateway-executor", "chain.create_bucket"),
            ("akave-gateway-notifier", "notifier.deliver"),
        }

        def complete() -> bool:
            # Each process exports on its own schedule, and a parent span ends (and is
            # exported) after its children: wait until every service's spans are in.
            names = {(s.service, s.name) for s in in_trace()}
            batches = [s for s in otlp.spans() if s.name == "projector.write_batch"]
            return expected <= names and any(trace_id in b.linked_trace_ids for b in batches)

        await eventually("the job's spans from every service", complete, stack)
        spans = in_trace()

        request = one(spans, "api", "POST /buckets")
        job_span = one(spans, "executor", "executor.job")
        attempt = one(spans, "executor", "executor.attempt")
        view = one(spans, "executor", "chain.view_bucket")
        create = one(spans, "executor", "chain.create_bucket")
        deliver = one(spans, "notifier", "notifier.deliver")
        post = [s for s in spans if s.service == "akave-gateway-notifier" and s.kind == CLIENT]

        assert request.parent_span_id == ""  # the client sent no traceparent: a new trace
        assert job_span.parent_span_id == request.span_id and job_span.kind == CONSUMER
        assert job_span.attributes["akave.job_id"] == job_id
        assert attempt.parent_span_id == job_span.span_id
        assert attempt.attributes["akave.attempt"] == 1
        assert view.parent_span_id == attempt.span_id and view.kind == CLIENT
        assert create.parent_span_id == attempt.span_id and create.kind == CLIENT
        assert create.attributes["akave.tx_hash"] == job["tx_hash"]
        # the delivery's row kept the BucketCreated record's context: the job's span
        assert deliver.parent_span_id == job_span.span_id
        assert deliver.attributes["akave.delivery_verdict"] == "succeeded"
        assert len(post) == 1 and post[0].parent_span_id == deliver.span_id
        version, sent_trace, sent_parent, _flags = (
            hook.received()[0].headers["traceparent"].split("-")
        )
        assert (version, sent_trace, sent_parent) == ("00", trace_id, post[0].span_id)
        # the projector's batch is a trace of its own, linked to the job's
        batches = [s for s in otlp.spans() if trace_id in s.linked_trace_ids]
        assert batches and all(
            b.service == "akave-gateway-projector" and b.name == "projector.write_batch"
            for b in batches
        )
        assert all(b.trace_id != trace_id for b in batches)
    finally:
        hook.close()

    # every record of the job carries its trace: the request the API's span, the rest the
    # executor's spans
    records = [r for r in await read_events(stack.settings) if job_id.encode() in r.value]
    parents = [dict(r.headers)["traceparent"].decode() for r in records]
    assert len(records) >= 3 and all(p.split("-")[1] == trace_id for p in parents)
    assert parents[0].split("-")[2] == request.span_id


async def test_an_executor_log_line_carries_the_trace_id(stack: Stack, otlp: OtlpReceiver) -> None:
    async with stack.client() as client:
        accepted = await client.post("/buckets", json={"bucket_name": unique_name("tl")})
        job_id = accepted.json()["job_id"]
        await stack.wait_terminal(client, job_id)
    await eventually(
        "the job's span",
        lambda: [s for s in otlp.spans() if s.attributes.get("akave.job_id") == job_id],
        stack,
    )
    trace_id = next(s for s in otlp.spans() if s.attributes.get("akave.job_id") == job_id).trace_id
    finished = [
        line
        for raw in (stack.log_dir / "executor.log").read_text().splitlines()
        if raw.startswith("{")
        and (line := json.loads(raw)).get("job_id") == job_id
        and line["message"] == "job finished"
    ]
    assert len(finished) == 1, stack.logs("executor")
    assert finished[0]["trace_id"] == trace_id
    assert len(finished[0]["span_id"]) == 16
