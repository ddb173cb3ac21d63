"""Webhook endpoints: register, list, read and delete subscriptions; read the delivery log."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Response, status

from services.api.deps import UNAVAILABLE, Config, Store, json_body
from services.api.schemas import Problem
from services.api.webhook_registration import register
from services.api.webhook_schemas import (
    CreateWebhook,
    Delivery,
    DeliveryPage,
    DeliveryStatus,
    Webhook,
    WebhookCreated,
    WebhookPage,
)

router = APIRouter(prefix="/webhooks", tags=["webhooks"])


Limit = Annotated[int, Query(ge=1, le=1000)]
Cursor = Annotated[str | None, Query(max_length=200)]
NOT_FOUND: dict[int | str, dict[str, object]] = {404: {"model": Problem}, **UNAVAILABLE}


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=WebhookCreated,
    responses={415: {"model": Problem}, 422: {"model": Problem}, **UNAVAILABLE},
    dependencies=[Depends(json_body)],
)
async def create_webhook(
    body: CreateWebhook, response: Response, store: Store, config: Config
) -> WebhookCreated:
    """Register a URL for BucketCreated/BucketFailed events. The secret is shown only here."""
    created = await register(store, body, config)
    response.headers["Location"] = f"/webhooks/{created.id}"
    return created


@router.get("", response_model=WebhookPage, responses=UNAVAILABLE)
async def list_webhooks(store: Store, limit: Limit = 100, cursor: Cursor = None) -> WebhookPage:
    """Active webhooks, oldest first, without their secrets."""
    items, next_cursor = await store.page(limit, cursor)
    return WebhookPage(items=items, next_cursor=next_cursor)


# Before /{webhook_id}/..., so "deliveries" is never taken for a webhook id.
@router.get("/deliveries/{delivery_id}", response_model=Delivery, responses=NOT_FOUND)
async def get_delivery(delivery_id: uuid.UUID, store: Store) -> Delivery:
    """One delivery (its id is the `webhook-id` header the receiver saw)."""
    delivery = await store.delivery(delivery_id)
    if delivery is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no delivery {delivery_id}")
    return delivery


@router.get("/{webhook_id}", response_model=Webhook, responses=NOT_FOUND)
async def get_webhook(webhook_id: uuid.UUID, store: Store) -> Webhook:
    webhook = await store.get(webhook_id)
    if webhook is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no webhook {webhook_id}")
    return webhook


@router.delete("/{webhook_id}", status_code=status.HTTP_204_NO_CONTENT, responses=NOT_FOUND)
async def delete_webhook(webhook_id: uuid.UUID, store: Store) -> Response:
    """Stop the webhook: its pending deliveries fail, later events make none."""
    if not await store.delete(webhook_id):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no webhook {webhook_id}")
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/{webhook_id}/deliveries", response_model=DeliveryPage, responses=NOT_FOUND)
async def list_deliveries(
    webhook_id: uuid.UUID,
    store: Store,
    status_filter: Annotated[DeliveryStatus | None, Query(alias="status")] = None,
    limit: Limit = 100,
    cursor: Cursor = None,
) -> DeliveryPage:
    """The webhook's deliveries, newest first, optionally of one status."""
    if await store.get(webhook_id) is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no webhook {webhook_id}")
    items, next_cursor = await store.deliveries(webhook_id, status_filter, limit, cursor)
    return DeliveryPage(items=items, next_cursor=next_cursor)
