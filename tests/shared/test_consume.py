"""The one consume component (`shared/consume.py`) on a real broker: a fetched batch is sorted
into events, unknown types and malformed records, counted under `ConsumeStats`' names, and
what cannot be read is parked as it was, with headers saying where it came from and why."""

from __future__ import annotations

import uuid
from typing import Any, TypeAlias

import pytest

from shared.consume import (
    ConsumerName,
    ConsumeStats,
    DeadLetters,
    SortedBatch,
    sort_batch,
    unapplicable,
)
from shared.dead_letter import CONSUMER, ERROR, ORIGIN_OFFSET, ORIGIN_PARTITION, ORIGIN_TOPIC
from shared.events import CONTENT_TYPE_HEADER, BucketProcessing, BucketRequested, new_event
from shared.kafka import Appender, ensure_topics
from shared.settings import Settings
from tests.support.stack import Stack, read_events

UNKNOWN_TYPE = (
    b'{"specversion":"1.0","id":"x1","source":"/elsewhere","type":"BucketRenamed",'
    b'"subject":"abc","time":"2026-01-01T00:00:00Z","data":{"job_id":"x","bucket_name":"abc"}}'
)
GARBAGE = [
    b"\xff\xfe\x00 not even text",
    b"{not json",
    b"[]",
    b'{"specversion":"1.0","type":"BucketCreated","data":{}}',
    None,
]
NAME = "consume-test"  # one key: every record lands in one partition, in this order
# The log fixture: its settings, its records in offset order, the two events' job ids.
Log: TypeAlias = tuple[Settings, list[Any], list[uuid.UUID]]


@pytest.fixture(scope="module")
async def log(base_settings: Settings) -> Log:
    """A topic of its own holding: event, unknown, 5 malformed, event (and its records)."""
    settings = Stack.settings_for(base_settings)
    await ensure_topics(settings)
    jobs = [uuid.uuid4(), uuid.uuid4()]
    appender = Appender(settings)
    try:
        topic = settings.bucket_events_topic
        await appender.append(
            topic, new_event(BucketRequested(job_id=jobs[0], bucket_name=NAME), "/test")
        )
        await appender.send(topic, UNKNOWN_TYPE, NAME.encode(), [CONTENT_TYPE_HEADER])
        for value in GARBAGE:
            await appender.send(topic, value, NAME.encode(), [("origin", b"test")])
        await appender.append(
            topic,
            new_event(BucketProcessing(job_id=jobs[1], bucket_name=NAME, attempt=1), "/test"),
        )
    finally:
        await appender.stop()
    records = sorted(await read_events(settings), key=lambda r: r.offset)
    assert len(records) == 2 + 1 + len(GARBAGE)
    return settings, records, jobs


async def test_a_batch_is_sorted_into_events_unknown_and_malformed(
    log: Log,
) -> None:
    _, records, jobs = log
    events, batch = sort_batch(records)

    assert [(r.offset, e.job_id) for r, e in events] == [
        (records[0].offset, jobs[0]),
        (records[-1].offset, jobs[1]),
    ]
    assert [e.type for _, e in events] == ["BucketRequested", "BucketProcessing"]
    assert batch.events == 2 and batch.unknown_skipped == 1
    assert [r.offset for r, _ in batch.malformed] == [r.offset for r in records[2:-1]]
    assert all(why for _, why in batch.malformed)


async def test_streaming_read_yields_the_same_events_and_sorts_the_same(
    log: Log,
) -> None:
    _, records, _ = log
    listed, sorted_batch = sort_batch(records)
    streamed = SortedBatch()
    seen = [(r.offset, e) for r, e in streamed.read(iter(records))]

    assert seen == [(r.offset, e) for r, e in listed]
    assert streamed.events == sorted_batch.events
    assert streamed.unknown_skipped == sorted_batch.unknown_skipped
    assert streamed.malformed == sorted_batch.malformed


async def test_counts_use_one_set_of_names(
    log: Log,
) -> None:
    _, records, _ = log
    stats = ConsumeStats()
    _, batch = sort_batch(records)
    stats.count(batch, len(records))
    stats.count(batch, len(records))
    total = ConsumeStats()
    total.add(stats)
    total.add(stats)

    assert stats.as_dict() == {
        "records_read": 2 * len(records),
        "events": 4,
        "unknown_skipped": 2,
        "parked": 0,  # sorting parks nothing: `DeadLetters` counts what it parks
    }
    assert total.as_dict() == {k: 2 * v for k, v in stats.as_dict().items()}


async def test_malformed_and_unapplicable_records_are_parked_as_they_were_with_headers(
    log: Log,
) -> None:
    settings, records, _ = log
    events, batch = sort_batch(records)
    stats = ConsumeStats()
    appender = Appender(settings)
    try:
        dead_letters = DeadLetters(
            appender, settings.dead_letter_topic, ConsumerName.NOTIFIER, stats
        )
        await dead_letters.park_all(batch.malformed)
        refused = events[-1][0]
        await dead_letters.park(refused, unapplicable("value too long"))
    finally:
        await appender.stop()

    assert stats.parked == len(GARBAGE) + 1
    parked = sorted(
        await read_events(settings, settings.dead_letter_topic),
        key=lambda r: (r.partition, r.offset),
    )
    expected = [*batch.malformed, (refused, "cannot be applied: value too long")]
    assert len(parked) == len(expected)
    for copy, (original, why) in zip(parked, expected, strict=True):
        headers = dict(copy.headers)
        assert copy.value == original.value and copy.key == original.key
        assert headers[ORIGIN_TOPIC] == settings.bucket_events_topic.encode()
        assert headers[ORIGIN_PARTITION] == str(original.partition).encode()
        assert headers[ORIGIN_OFFSET] == str(original.offset).encode()
        assert headers[ERROR] == why.encode()
        assert headers[CONSUMER] == b"notifier"
        # The original headers travel with the record.
        assert set(original.headers) <= set(copy.headers)


def test_replay_parks_under_the_projectors_name() -> None:
    assert ConsumerName.REPLAY is ConsumerName.PROJECTOR
    assert [n.value for n in ConsumerName] == ["executor", "projector", "notifier"]
