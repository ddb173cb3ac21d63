"""Webhook subscriptions and their delivery log in Postgres, as the API reads and writes them."""

from __future__ import annotations

import uuid

from sqlalchemy import and_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.sql import func

from services.api.cursors import decode_cursor, encode_cursor
from services.api.timeouts import bounded
from services.api.webhook_schemas import (
    Delivery,
    DeliveryStatus,
    Webhook,
    WebhookCreated,
    WebhookEventType,
)
from shared.models import WebhookDelivery, WebhookSubscription

DELETED_ERROR = "webhook deleted before delivery"


def _webhook(row: WebhookSubscription) -> Webhook:
    return Webhook(
        id=row.id,
        url=row.url,
        event_types=[WebhookEventType(t) for t in row.event_types],
        created_at=row.created_at,
    )


def _delivery(row: WebhookDelivery) -> Delivery:
    return Delivery(
        delivery_id=row.id,
        webhook_id=row.subscription_id,
        event_id=row.event_id,
        event_type=WebhookEventType(row.event_type),
        job_id=row.job_id,
        bucket_name=row.bucket_name,
        status=DeliveryStatus(row.status),
        attempts=row.attempts,
        last_status_code=row.last_status_code,
        last_error=row.last_error,
        next_attempt_at=row.next_attempt_at if row.status == DeliveryStatus.PENDING else None,
        created_at=row.created_at,
        updated_at=row.updated_at,
        delivered_at=row.delivered_at,
    )


class WebhookStore:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], timeout_s: float) -> None:
        self._sessions = sessions
        self._timeout = timeout_s

    @bounded
    async def create(
        self, url: str, secret: str, event_types: list[WebhookEventType]
    ) -> WebhookCreated:
        async with self._sessions() as session, session.begin():
            row = WebhookSubscription(
                id=uuid.uuid4(), url=url, secret=secret, event_types=list(event_types)
            )
            session.add(row)
            await session.flush()
            await session.refresh(row)
            return WebhookCreated(**_webhook(row).model_dump(), secret=secret)

    @bounded
    async def get(self, webhook_id: uuid.UUID) -> Webhook | None:
        async with self._sessions() as session:
            row = await session.get(WebhookSubscription, webhook_id)
            return None if row is None or row.deleted_at is not None else _webhook(row)

    @bounded
    async def page(self, limit: int, cursor: str | None) -> tuple[list[Webhook], str | None]:
        """Active webhooks, oldest first."""
        after = decode_cursor(cursor) if cursor else None
        query = select(WebhookSubscription).where(WebhookSubscription.deleted_at.is_(None))
        if after is not None:
            moment, row_id = after
            query = query.where(
                or_(
                    WebhookSubscription.created_at > moment,
                    and_(WebhookSubscription.created_at == moment, WebhookSubscription.id > row_id),
                )
            )
        query = query.order_by(WebhookSubscription.created_at, WebhookSubscription.id)

        async with self._sessions() as session:
            rows = list(await session.scalars(query.limit(limit + 1)))
        page = rows[:limit]
        more = len(rows) > limit and page
        return [_webhook(r) for r in page], (
            encode_cursor(page[-1].created_at, page[-1].id) if more else None
        )

    @bounded
    async def delete(self, webhook_id: uuid.UUID) -> bool:
        """Stop the webhook and fail its pending deliveries; False when there was none."""
        async with self._sessions() as session, session.begin():
            deleted = await session.scalar(
                update(WebhookSubscription)
                .where(
                    WebhookSubscription.id == webhook_id,
                    WebhookSubscription.deleted_at.is_(None),
                )
                .values(deleted_at=func.now())
                .returning(WebhookSubscription.id)
            )
            if deleted is None:
                return False
            await session.execute(
                update(WebhookDelivery)
                .where(
                    WebhookDelivery.subscription_id == webhook_id,
                    WebhookDelivery.status == DeliveryStatus.PENDING.value,
                )
                .values(
                    status=DeliveryStatus.FAILED.value,
                    last_error=DELETED_ERROR,
                    next_attempt_at=None,
                    updated_at=func.now(),
                )
            )
            return True

    @bounded
    async def deliveries(
        self,
        webhook_id: uuid.UUID,
        status: DeliveryStatus | None,
        limit: int,
        cursor: str | None,
    ) -> tuple[list[Delivery], str | None]:
        """One webhook's deliveries, newest first."""
        before = decode_cursor(cursor) if cursor else None
        query = select(WebhookDelivery).where(WebhookDelivery.subscription_id == webhook_id)
        if status is not None:
            query = query.where(WebhookDelivery.status == status.value)
        if before is not None:
            moment, row_id = before
            query = query.where(
                or_(
                    WebhookDelivery.created_at < moment,
                    and_(WebhookDelivery.created_at == moment, WebhookDelivery.id < row_id),
                )
            )
        query = query.order_by(WebhookDelivery.created_at.desc(), WebhookDelivery.id.desc())

        async with self._sessions() as session:
            rows = list(await session.scalars(query.limit(limit + 1)))
        page = rows[:limit]
        more = len(rows) > limit and page
        return [_delivery(r) for r in page], (
            encode_cursor(page[-1].created_at, page[-1].id) if more else None
        )

    @bounded
    async def delivery(self, delivery_id: uuid.UUID) -> Delivery | None:
        async with self._sessions() as session:
            row = await session.get(WebhookDelivery, delivery_id)
            return None if row is None else _delivery(row)
