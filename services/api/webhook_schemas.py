"""Request and response bodies of the webhook endpoints."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, field_validator

from shared.errors import TargetRefused
from shared.webhook_signing import secret_problem
from shared.webhook_targets import MAX_URL_LENGTH, parse_url


class WebhookEventType(StrEnum):
    BUCKET_CREATED = "BucketCreated"
    BUCKET_FAILED = "BucketFailed"


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


# What the document can say about an acceptable URL and secret. Published in the schema only
# (`json_schema_extra`): the validators enforce the same rules and give the reason.
# URL:
# http(s), a host without credentials, a port in range, no whitespace or control characters
# (spelled out: what str.isspace() calls whitespace, as the validator does).
# Whether the host resolves, and whether it is one of the gateway's own services, depends on
# the network and the deployment, so only the validators know.
_PORT = r"(?::(?:[0-9]{1,4}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5]))?"
URL_PATTERN = (
    r"^[hH][tT][tT][pP][sS]?://(?:[A-Za-z0-9._~%!$&'()*+,;=-]+|\[[0-9A-Fa-f:.]+\])"
    + _PORT
    + r"(?:[/?#][^\x00-\x20\x7f\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*)?$"
)
# `whsec_` + standard base64 of 24 to 64 bytes.
_B64 = "[A-Za-z0-9+/]"
SECRET_PATTERN = (
    rf"^whsec_(?:(?:{_B64}{{4}}){{8,20}}(?:{_B64}{{2}}==|{_B64}{{3}}=)?"
    rf"|(?:{_B64}{{4}}){{21}}(?:{_B64}{{2}}==)?)$"
)


class CreateWebhook(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(
        min_length=1,
        max_length=MAX_URL_LENGTH,
        json_schema_extra={"pattern": URL_PATTERN},
        examples=["https://example.com/hooks/akave"],
        description="absolute http(s) URL without credentials; not the gateway's own services",
    )
    secret: str | None = Field(
        default=None,
        max_length=200,
        json_schema_extra={"pattern": SECRET_PATTERN},
        description="`whsec_` + base64 of 24-64 bytes; omit it and one is generated and "
        "returned once",
    )
    event_types: list[WebhookEventType] = Field(
        default_factory=lambda: list(WebhookEventType), min_length=1, max_length=2
    )

    @field_validator("url")
    @classmethod
    def _url_shape(cls, value: str) -> str:
        try:
            parse_url(value)
        except TargetRefused as exc:
            raise ValueError(str(exc)) from exc
        return value

    @field_validator("secret")
    @classmethod
    def _secret_shape(cls, value: str | None) -> str | None:
        if value is not None and (problem := secret_problem(value)) is not None:
            raise ValueError(f"secret {problem}")
        return value

    @field_validator("event_types")
    @classmethod
    def _unique(cls, value: list[WebhookEventType]) -> list[WebhookEventType]:
        return sorted(set(value))


class Webhook(BaseModel):
    id: uuid.UUID
    url: str
    event_types: list[WebhookEventType]
    created_at: datetime


class WebhookCreated(Webhook):
    secret: str = Field(description="the signing secret; shown only in this answer")


class WebhookPage(BaseModel):
    items: list[Webhook]
    next_cursor: str | None


class Delivery(BaseModel):
    delivery_id: uuid.UUID = Field(description="also the `webhook-id` header; same on retries")
    webhook_id: uuid.UUID
    event_id: str
    event_type: WebhookEventType
    job_id: uuid.UUID
    bucket_name: str
    status: DeliveryStatus
    attempts: int
    last_status_code: int | None
    last_error: str | None
    next_attempt_at: datetime | None = Field(description="set while pending")
    created_at: datetime
    updated_at: datetime
    delivered_at: datetime | None


class DeliveryPage(BaseModel):
    items: list[Delivery]
    next_cursor: str | None
