"""Request and response bodies of the HTTP API."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from shared.bucket_names import MAX_LENGTH, MIN_LENGTH, PATTERN, name_problem
from shared.fold import JobStatus


class CreateBucket(BaseModel):
    model_config = ConfigDict(extra="forbid")

    bucket_name: str = Field(
        min_length=MIN_LENGTH,
        max_length=MAX_LENGTH,
        pattern=PATTERN,
        examples=["my-first-bucket"],
        description="3-63 lowercase letters, digits and hyphens; starts and ends alphanumeric",
    )

    @field_validator("bucket_name", mode="before")
    @classmethod
    def _rules(cls, value: object) -> object:
        if isinstance(value, str) and (problem := name_problem(value)) is not None:
            raise ValueError(f"bucket_name {problem}")
        return value


class JobAccepted(BaseModel):
    job_id: uuid.UUID
    bucket_name: str
    status: JobStatus


class Job(BaseModel):
    job_id: uuid.UUID
    bucket_name: str
    status: JobStatus
    tx_hash: str | None
    error: str | None
    error_code: str | None
    attempts: int
    created_at: datetime
    updated_at: datetime
    retry_of: uuid.UUID | None = Field(
        default=None, description="the failed job this job retries (POST .../retry)"
    )
    retried_by: uuid.UUID | None = Field(
        default=None, description="the job that retries this failed one, once it exists"
    )


class RetryAccepted(BaseModel):
    job_id: uuid.UUID = Field(description="the new job: the retry")
    bucket_name: str
    status: JobStatus
    retry_of: uuid.UUID = Field(description="the failed job it retries")


class Bucket(BaseModel):
    bucket_name: str
    tx_hash: str | None
    created_at: datetime = Field(description="when the gateway recorded the bucket as created")
    job_id: uuid.UUID


class BucketPage(BaseModel):
    items: list[Bucket]
    next_cursor: str | None = Field(
        description="pass as `cursor` for the next page; null at the end"
    )


class SignerLaneHealth(BaseModel):
    """One signing key's lane as its executor last published it (AKAVE_BACKEND=evm)."""

    chain_id: int
    address: str
    state: Literal["ok", "paused", "stale"]
    next_nonce: int | None
    in_flight: int
    reason: str | None = Field(description="why the lane is paused (the node's refusal)")
    balance_wei: str | None = Field(description="decimal string: wei exceed JSON's safe integers")
    updated_at: datetime
    age_s: float = Field(description="seconds since the executor last published this lane")


class Health(BaseModel):
    status: str = Field(description='"ok", "degraded: ..." (200) or "down: ..." (503)')
    checks: dict[str, str] = Field(description="database, log, projector: ok/down/behind")
    projector_lag: dict[str, int] | None = Field(
        default=None, description="records the projector has not applied, per partition"
    )
    lanes: list[SignerLaneHealth] = []


class Problem(BaseModel):
    detail: str
