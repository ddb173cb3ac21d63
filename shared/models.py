"""SQLAlchemy tables of the read model. Alembic migrates them (see alembic/versions)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    Numeric,
    String,
    Text,
    literal,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class BucketJob(Base):
    """One job per `BucketRequested`; its columns are `shared.fold.JobState`."""

    __tablename__ = "bucket_jobs"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    bucket_name: Mapped[str] = mapped_column(String(255), nullable=False)
    status: Mapped[str] = mapped_column(String(50), nullable=False)
    tx_hash: Mapped[str | None] = mapped_column(String(255))
    error: Mapped[str | None] = mapped_column(Text)
    error_code: Mapped[str | None] = mapped_column(String(100))
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    retry_of: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))

    __table_args__ = (
        Index("ix_bucket_jobs_status", "status"),
        Index("ix_bucket_jobs_created_at", "created_at"),
        Index("ix_bucket_jobs_bucket_name", "bucket_name"),
        Index(
            "uq_bucket_jobs_completed_name",
            "bucket_name",
            unique=True,
            postgresql_where=text("status = 'completed'"),
        ),
        Index("ix_bucket_jobs_completed_at_id", "completed_at", "id"),
        # The console's live list of changes reads the latest `updated_at`s.
        Index("ix_bucket_jobs_updated_at", "updated_at"),
    )


# The predicate of `uq_bucket_jobs_completed_name` for every lookup of a name's completed job,
# written into the SQL rather than bound: a prepared statement's generic plan can use a
# partial index only when the query states the index's predicate literally
# (docs/decisions.md, "The 409 check and generic plans").
IS_COMPLETED = BucketJob.status == literal("completed", literal_execute=True)


class ProjectorCheckpoint(Base):
    """The next offset to apply per partition, committed with the rows it covers."""

    __tablename__ = "projector_checkpoints"

    topic: Mapped[str] = mapped_column(String(255), primary_key=True)
    partition: Mapped[int] = mapped_column(Integer, primary_key=True)
    next_offset: Mapped[int] = mapped_column(BigInteger, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=text("now()")
    )


class WebhookSubscription(Base):
    """A receiver of BucketCreated/BucketFailed notifications. Deleting one sets `deleted_at`
    (its delivery log stays readable)."""

    __tablename__ = "webhook_subscriptions"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    url: Mapped[str] = mapped_column(Text, nullable=False)
    secret: Mapped[str] = mapped_column(Text, nullable=False)
    event_types: Mapped[list[str]] = mapped_column(ARRAY(String(50)), nullable=False)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=text("now()")
    )
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (Index("ix_webhook_subscriptions_created_at_id", "created_at", "id"),)


class WebhookDelivery(Base):
    """One event for one subscription. `id` is uuid5(subscription id, event id), so consuming
    an event twice never makes a second delivery."""

    __tablename__ = "webhook_deliveries"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    subscription_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("webhook_subscriptions.id"), nullable=False
    )
    event_id: Mapped[str] = mapped_column(String(255), nullable=False)
    event_type: Mapped[str] = mapped_column(String(50), nullable=False)
    job_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), nullable=False)
    bucket_name: Mapped[str] = mapped_column(String(255), nullable=False)
    payload: Mapped[str] = mapped_column(Text, nullable=False)
    status: Mapped[str] = mapped_column(String(20), nullable=False, server_default="pending")
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=text("now()")
    )
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=text("now()")
    )
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # the W3C traceparent of the event's record: its POST is a span of the job's trace
    traceparent: Mapped[str | None] = mapped_column(String(55))

    __table_args__ = (
        Index(
            "ix_webhook_deliveries_due",
            "next_attempt_at",
            postgresql_where=text("status = 'pending'"),
        ),
        Index("ix_webhook_deliveries_subscription", "subscription_id", "created_at", "id"),
    )


class SignerLane(Base):
    """One signing key's lane as the executor holding its fence last published it (for
    /health): upserted every CHAIN_LANE_STATUS_INTERVAL_S; an old `updated_at` means stale."""

    __tablename__ = "signer_lanes"

    chain_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    address: Mapped[str] = mapped_column(String(42), primary_key=True)
    next_nonce: Mapped[int | None] = mapped_column(BigInteger)
    in_flight: Mapped[int] = mapped_column(Integer, nullable=False)
    paused: Mapped[bool] = mapped_column(Boolean, nullable=False)
    reason: Mapped[str | None] = mapped_column(Text)
    balance_wei: Mapped[int | None] = mapped_column(Numeric(78, 0))
    executor: Mapped[str] = mapped_column(String(255), nullable=False)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)


class ExecutorSnapshot(Base):
    """An executor's fold of one partition as of `position` (every record below it), written
    in one transaction with the finished jobs and owners it no longer holds in memory
    (services/executor/snapshot.py). Deleting a row is safe: the partition is folded again."""

    __tablename__ = "executor_snapshots"

    topic: Mapped[str] = mapped_column(String(255), primary_key=True)
    partition: Mapped[int] = mapped_column(Integer, primary_key=True)
    position: Mapped[int] = mapped_column(BigInteger, nullable=False)
    version: Mapped[int] = mapped_column(Integer, nullable=False)
    checksum: Mapped[str] = mapped_column(String(64), nullable=False)  # sha256 of payload, hex
    payload: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    jobs: Mapped[int] = mapped_column(Integer, nullable=False)  # unfinished jobs it holds
    taken_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)


class ExecutorFinishedJob(Base):
    """A job that reached a terminal status, below some snapshot's position: the executor's
    paged index of the history it does not keep in memory (a request read again is skipped)."""

    __tablename__ = "executor_finished"

    topic: Mapped[str] = mapped_column(String(255), primary_key=True)
    job_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    partition: Mapped[int] = mapped_column(Integer, nullable=False)

    __table_args__ = (Index("ix_executor_finished_partition", "topic", "partition"),)


class ExecutorOwner(Base):
    """The first completed job of each bucket name, below some snapshot's position: the
    executor's ownership check for names it no longer holds in memory."""

    __tablename__ = "executor_owners"

    topic: Mapped[str] = mapped_column(String(255), primary_key=True)
    bucket_name: Mapped[str] = mapped_column(String(255), primary_key=True)
    job_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), nullable=False)
    partition: Mapped[int] = mapped_column(Integer, nullable=False)

    __table_args__ = (Index("ix_executor_owners_partition", "topic", "partition"),)
