"""Registering a webhook: refuse targets that reach the gateway itself, then store it."""

from __future__ import annotations

from services.api.webhook_schemas import CreateWebhook, WebhookCreated
from services.api.webhook_store import WebhookStore
from shared.settings import Settings
from shared.webhook_signing import new_secret
from shared.webhook_targets import check_target


async def register(store: WebhookStore, body: CreateWebhook, settings: Settings) -> WebhookCreated:
    """Raises `TargetRefused` for a URL the gateway will not call."""
    await check_target(body.url, settings, settings.db_timeout_s)
    return await store.create(body.url, body.secret or new_secret(), body.event_types)
