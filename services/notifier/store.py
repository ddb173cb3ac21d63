"""The notifier's Postgres work: record deliveries, claim due ones, record each attempt.

Claims use `FOR UPDATE SKIP LOCKED` and a lease (the claimed row's `next_attempt_at` moves to
now + lease), so several notifier processes share the work without a lock held over HTTP, and
a delivery whose notifier died mid-request is picked up again when its lease runs out.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from shared.events import Event, encode
from shared.models import WebhookDelivery, WebhookSubscription

NOTIFIED_TYPES = frozenset({"BucketCreated", "BucketFailed"})
INTERRUPTED_ERROR = "the notifier stopped during the last attempt"
INSERT_CHUNK = 1000


def delivery_id(subscription_id: uuid.UUID, event_id: str) -> uuid.UUID:
    """Deterministic: the same event for the same subscription is always the same delivery."""
    return uuid.uuid5(subscription_id, event_id)


@dataclass(frozen=True)
class Subscription:
    id: uuid.UUID
    event_types: frozenset[str]
    created_at: datetime

    def wants(self, event: Event) -> bool:
        """Events of its types that happened after it was registered."""
        return event.type in self.event_types and event.time >= self.created_at


async def active_subscriptions(session: AsyncSession) -> list[Subscription]:
    rows = await session.execute(
        select(
            WebhookSubscription.id,
            WebhookSubscription.event_types,
            WebhookSubscription.created_at,
        ).where(WebhookSubscription.deleted_at.is_(None))
    )
    return [Subscription(r.id, frozenset(r.event_types), r.created_at) for r in rows]


async def record_deliveries(
    session: AsyncSession, events: list[Event], traceparents: Mapping[str, str] | None = None
) -> int:
    """Insert one pending delivery per (event, subscription that wants it), if absent, with
    the event's traceparent (by event id) when its record had one. Returns how many are new."""
    traceparents = traceparents or {}
    subscriptions = await active_subscriptions(session)
    rows = [
        {
            "id": delivery_id(sub.id, event.id),
            "subscription_id": sub.id,
            "event_id": event.id,
            "event_type": event.type,
            "job_id": event.job_id,
            "bucket_name": event.subject,
            "payload": encode(event).decode(),
            "status": "pending",
            "next_attempt_at": text("now()"),
            "traceparent": traceparents.get(event.id),
        }
        for event in events
        if event.type in NOTIFIED_TYPES
        for sub in subscriptions
        if sub.wants(event)
    ]
    new = 0
    for start in range(0, len(rows), INSERT_CHUNK):  # stay far below 65535 bind parameters
        result = await session.execute(
            insert(WebhookDelivery)
            .values(rows[start : start + INSERT_CHUNK])
            .on_conflict_do_nothing(index_elements=["id"])
            .returning(WebhookDelivery.id)
        )
        new += len(result.all())
    return new


@dataclass(frozen=True)
class Claimed:
    id: uuid.UUID
    subscription_id: uuid.UUID
    event_id: str
    payload: str
    attempt: int
    url: str
    secret: str
    traceparent: str | None = None


async def oldest_due_age_s(session: AsyncSession) -> float:
    """Seconds the oldest due delivery has waited past its due time (0 when none is due)."""
    waited = await session.scalar(
        text(
            "SELECT COALESCE(EXTRACT(EPOCH FROM now() - min(next_attempt_at)), 0)"
            " FROM webhook_deliveries WHERE status = 'pending' AND next_attempt_at <= now()"
        )
    )
    return float(waited or 0)


async def claim_due(
    session: AsyncSession, limit: int, lease_s: float, max_attempts: int
) -> list[Claimed]:
    """Take up to `limit` due deliveries of active webhooks; each claim counts as an attempt."""
    await session.execute(
        text(
            "UPDATE webhook_deliveries SET status = 'failed', next_attempt_at = NULL,"
            " last_error = :error, updated_at = now()"
            " WHERE status = 'pending' AND next_attempt_at <= now() AND attempts >= :max"
        ),
        {"error": INTERRUPTED_ERROR, "max": max_attempts},
    )
    rows = await session.execute(
        text(
            """
            WITH due AS (
                SELECT d.id FROM webhook_deliveries d
                JOIN webhook_subscriptions s ON s.id = d.subscription_id
                WHERE d.status = 'pending' AND d.next_attempt_at <= now()
                  AND d.attempts < :max AND s.deleted_at IS NULL
                ORDER BY d.next_attempt_at
                LIMIT :limit
                FOR UPDATE OF d SKIP LOCKED
            )
            UPDATE webhook_deliveries d
            SET attempts = d.attempts + 1,
                next_attempt_at = now() + make_interval(secs => :lease),
                updated_at = now()
            FROM due, webhook_subscriptions s
            WHERE d.id = due.id AND s.id = d.subscription_id
            RETURNING d.id, d.subscription_id, d.event_id, d.payload, d.attempts, s.url, s.secret,
                      d.traceparent
            """
        ),
        {"max": max_attempts, "limit": limit, "lease": lease_s},
    )
    return [Claimed(*row) for row in rows]


async def record_attempt(
    session: AsyncSession,
    claimed: Claimed,
    status: str,
    status_code: int | None,
    error: str | None,
    retry_in_s: float | None,
) -> None:
    """Write an attempt's outcome, unless the delivery moved on meanwhile (deleted webhook, or
    a lease that ran out and another notifier's newer attempt)."""
    await session.execute(
        update(WebhookDelivery)
        .where(
            WebhookDelivery.id == claimed.id,
            WebhookDelivery.status == "pending",
            WebhookDelivery.attempts == claimed.attempt,
        )
        .values(
            status=status,
            last_status_code=status_code,
            last_error=error,
            next_attempt_at=None
            if retry_in_s is None
            else func.now() + timedelta(seconds=retry_in_s),
            delivered_at=func.now() if status == "succeeded" else None,
            updated_at=func.now(),
        )
    )
