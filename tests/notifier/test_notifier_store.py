"""The notifier's Postgres work on the real database: deliveries recorded once, claims that
several notifiers can share, stale outcomes ignored."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.notifier.store import claim_due, delivery_id, record_attempt, record_deliveries
from shared.db import make_engine, make_sessionmaker
from shared.events import BucketCreated, BucketFailed, BucketRequested, Event, new_event
from shared.models import WebhookDelivery, WebhookSubscription
from shared.settings import Settings
from shared.webhook_signing import new_secret


@pytest.fixture
async def sessions(database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = make_engine(Settings(_env_file=None, database_url=database_url))  # type: ignore[call-arg]
    maker = make_sessionmaker(engine)
    yield maker
    async with maker() as session, session.begin():
        await session.execute(delete(WebhookDelivery))
        await session.execute(delete(WebhookSubscription))
    await engine.dispose()


async def subscribe(maker: async_sessionmaker[AsyncSession], *types: str) -> uuid.UUID:
    async with maker() as session, session.begin():
        row = WebhookSubscription(
            id=uuid.uuid4(), url="http://127.0.0.1:9/", secret=new_secret(), event_types=list(types)
        )
        session.add(row)
    return row.id


def created(i: int, time: datetime | None = None) -> Event:
    data = BucketCreated(job_id=uuid.uuid4(), bucket_name=f"b-{i}", tx_hash="0x" + "ab" * 32)
    return new_event(data, "/test", time=time)


async def test_each_event_is_recorded_once_per_wanting_webhook_in_chunks(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    both = await subscribe(sessions, "BucketCreated", "BucketFailed")
    failed_only = await subscribe(sessions, "BucketFailed")
    events = [created(i) for i in range(1500)]
    failure = BucketFailed(
        job_id=uuid.uuid4(),
        bucket_name="f",
        error="no",
        error_code="insufficient_funds",
        attempts=1,
    )
    events += [
        new_event(failure, "/test"),
        new_event(BucketRequested(job_id=uuid.uuid4(), bucket_name="r"), "/test"),
        created(-1, time=datetime(2020, 1, 1, tzinfo=UTC)),  # before the webhooks existed
    ]
    async with sessions() as session, session.begin():
        assert await record_deliveries(session, events) == 1500 + 2
    async with sessions() as session, session.begin():  # the batch consumed again
        assert await record_deliveries(session, events) == 0
    async with sessions() as session:
        rows = (await session.execute(select(WebhookDelivery))).scalars().all()
    assert {r.id for r in rows} == {delivery_id(both, e.id) for e in events[:1501]} | {
        delivery_id(failed_only, events[1500].id)
    }
    assert all(r.status == "pending" and r.attempts == 0 for r in rows)


async def test_concurrent_claims_never_take_the_same_delivery(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    await subscribe(sessions, "BucketCreated")
    async with sessions() as session, session.begin():
        await record_deliveries(session, [created(i) for i in range(10)])
    first, second = sessions(), sessions()
    try:
        async with first.begin():
            a = await claim_due(first, 6, 30.0, 3)
            async with second.begin():  # while the first claim still holds its rows
                b = await claim_due(second, 6, 30.0, 3)
    finally:
        await first.close()
        await second.close()
    assert len(a) == 6 and len(b) == 4
    assert not {c.id for c in a} & {c.id for c in b}
    assert {c.attempt for c in a + b} == {1}
    async with sessions() as session, session.begin():  # leased: nothing is due now
        assert await claim_due(session, 10, 30.0, 3) == []


async def test_an_outcome_of_a_superseded_attempt_is_ignored(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    await subscribe(sessions, "BucketCreated")
    async with sessions() as session, session.begin():
        await record_deliveries(session, [created(0)])
        [first] = await claim_due(session, 1, 0.0, 3)  # lease of 0 s: due again at once
    async with sessions() as session, session.begin():
        [second] = await claim_due(session, 1, 30.0, 3)
    assert (first.id, first.attempt, second.attempt) == (second.id, 1, 2)
    async with sessions() as session, session.begin():
        await record_attempt(session, first, "succeeded", 200, None, None)
    async with sessions() as session:
        row = await session.get(WebhookDelivery, first.id)
        assert row is not None and row.status == "pending" and row.attempts == 2
    async with sessions() as session, session.begin():
        await record_attempt(session, second, "failed", 410, "receiver answered 410", None)
    async with sessions() as session:
        row = await session.get(WebhookDelivery, first.id)
        assert row is not None and (row.status, row.last_status_code) == ("failed", 410)
        assert row.next_attempt_at is None and row.delivered_at is None
