"""The executor's spans (shared/tracing.py): a job under the request that made it, each attempt
under the job, each chain call under its attempt. A create's span carries its transaction hash.

    executor.job (parent: the BucketRequested record's traceparent)
      executor.attempt (akave.attempt = 1, 2, ...)
        chain.view_bucket
        chain.create_bucket (akave.tx_hash)
"""

from __future__ import annotations

from collections.abc import Awaitable, Iterator
from contextlib import contextmanager

from opentelemetry.context import Context
from opentelemetry.trace import Span, SpanKind

from services.executor.backends.base import CreatedBucket
from shared.events import normalise_tx_hash
from shared.tracing import span

JOB_ID = "akave.job_id"
BUCKET_NAME = "akave.bucket_name"
ATTEMPT = "akave.attempt"
TX_HASH = "akave.tx_hash"
BUCKET_ID = "akave.bucket_id"


@contextmanager
def job(job_id: object, bucket_name: str, parent: Context | None) -> Iterator[Span]:
    attributes = {JOB_ID: str(job_id), BUCKET_NAME: bucket_name}
    with span("executor.job", parent, attributes, kind=SpanKind.CONSUMER) as s:
        yield s


@contextmanager
def attempt(number: int) -> Iterator[Span]:
    with span("executor.attempt", attributes={ATTEMPT: number}) as s:
        yield s


@contextmanager
def view_bucket(name: str) -> Iterator[Span]:
    with span("chain.view_bucket", attributes={BUCKET_NAME: name}, kind=SpanKind.CLIENT) as s:
        yield s


async def create_bucket(name: str, create: Awaitable[CreatedBucket]) -> CreatedBucket:
    """`create` (the backend's create of `name`) as a span carrying the mined hash."""
    with span("chain.create_bucket", attributes={BUCKET_NAME: name}, kind=SpanKind.CLIENT) as s:
        created = await create
        s.set_attribute(TX_HASH, normalise_tx_hash(created.tx_hash))  # as the events show it
        if created.bucket_id is not None:
            s.set_attribute(BUCKET_ID, created.bucket_id)
        return created
