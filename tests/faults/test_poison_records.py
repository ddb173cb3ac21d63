"""Malformed and unknown records on the real topic never stop a consumer."""

from __future__ import annotations

import httpx
import pytest

from shared.dead_letter import CONSUMER, ERROR, ORIGIN_OFFSET, ORIGIN_PARTITION, ORIGIN_TOPIC
from shared.kafka import Appender
from tests.support.stack import Stack, read_events, unique_name

pytestmark = pytest.mark.slow

UNKNOWN_TYPE = (
    b'{"specversion":"1.0","id":"x1","source":"/elsewhere","type":"BucketRenamed",'
    b'"subject":"abc","time":"2026-01-01T00:00:00Z","data":{"job_id":"x","bucket_name":"abc"}}'
)
POISON = [b"{not json", b"[]", b'{"specversion":"1.0","type":"BucketCreated","data":{}}', None]


async def test_poison_is_parked_unknown_is_skipped_and_jobs_still_flow(
    stack: Stack, client: httpx.AsyncClient
) -> None:
    name = unique_name("after-poison")
    appender = Appender(stack.settings)
    try:
        offsets = [
            await appender.send(stack.settings.bucket_events_topic, value, name.encode())
            for value in [*POISON, UNKNOWN_TYPE]
        ]
    finally:
        await appender.stop()

    accepted = await client.post("/buckets", json={"bucket_name": name})
    job = await stack.wait_terminal(client, accepted.json()["job_id"])
    assert job["status"] == "completed"

    parked = await read_events(stack.settings, stack.settings.dead_letter_topic)
    by_consumer: dict[str, list[int]] = {}
    for record in parked:
        headers = {k: v.decode() for k, v in record.headers}
        assert headers[ORIGIN_TOPIC] == stack.settings.bucket_events_topic
        assert headers[ERROR]
        assert (int(headers[ORIGIN_PARTITION]), int(headers[ORIGIN_OFFSET])) in offsets
        by_consumer.setdefault(headers[CONSUMER], []).append(int(headers[ORIGIN_OFFSET]))
    poison_offsets = sorted(o for _, o in offsets[: len(POISON)])
    assert sorted(by_consumer["projector"]) == poison_offsets
    assert sorted(by_consumer["executor"]) == poison_offsets
