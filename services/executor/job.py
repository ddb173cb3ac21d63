"""One job from request to outcome: attempts, retries, timeouts, ownership, adoption.

A concurrency slot is held only while an attempt reads the chain (announcing the attempt and
`view_bucket`). A job waiting for the signing key's turn (`TransactionGate`) or out its retry
delay holds no slot, so jobs that need no transaction (bucket already on the chain, name owned
by another job, invalid name) are never queued behind the transactions.
`ATTEMPT_TIMEOUT_S` bounds each chain call of an attempt, the transaction from the moment it
has the key; not the wait for the key, which is the queue of the key's other transactions.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from services.executor import errors, spans
from services.executor.backends.base import AkaveBackend, BackendError, ChainBucket
from services.executor.transactions import TransactionGate
from shared.bucket_names import name_problem
from shared.events import BucketCreated, BucketFailed, BucketProcessing, EventData
from shared.settings import Settings

log = logging.getLogger(__name__)

Emit = Callable[[EventData], Awaitable[None]]
OwnerOf = Callable[[str], "uuid.UUID | None"]


@dataclass(frozen=True)
class Job:
    job_id: uuid.UUID
    bucket_name: str
    attempts_used: int = 0  # attempts an earlier executor started (crash, rebalance)


class JobRunner:
    def __init__(
        self,
        backend: AkaveBackend,
        gate: TransactionGate,
        settings: Settings,
        slots: asyncio.Semaphore,
    ) -> None:
        self._backend = backend
        self._gate = gate
        self._slots = slots
        self._max_attempts = settings.max_attempts
        self._retry_delay = settings.retry_delay_s
        self._attempt_timeout = settings.attempt_timeout_s

    async def run(self, job: Job, emit: Emit, owner_of: OwnerOf) -> None:
        ids = {"job_id": str(job.job_id), "bucket_name": job.bucket_name}
        attempt = job.attempts_used
        if attempt >= self._max_attempts:
            await emit(await self._settle_spent(job, attempt, owner_of))
            return
        while True:
            attempt += 1
            try:
                with spans.attempt(attempt):
                    outcome = await self._attempt(job, attempt, owner_of, True, emit)
            except TimeoutError:
                error = BackendError(
                    f"a chain call of attempt {attempt} ran past {self._attempt_timeout:g} s "
                    "and was abandoned",
                    code=errors.ATTEMPT_TIMEOUT,
                    retryable=True,
                )
            except BackendError as exc:
                error = exc
            except Exception as exc:  # "any exception" is retried, as the seed plan asks
                log.exception("unexpected error in attempt", extra=ids)
                error = BackendError(f"{type(exc).__name__}: {exc}", code=errors.BACKEND_ERROR)
            else:
                await emit(outcome)
                log.info("job finished", extra={**ids, "type": outcome.type, "attempt": attempt})
                return
            log.warning(
                "attempt failed",
                extra={**ids, "attempt": attempt, "error_code": error.code, "error": str(error)},
            )
            if not error.retryable or attempt >= self._max_attempts:
                await emit(
                    self._event(
                        job,
                        BucketFailed,
                        error=str(error),
                        error_code=error.code,
                        attempts=attempt,
                    )
                )
                return
            await asyncio.sleep(self._retry_delay)

    async def _settle_spent(self, job: Job, attempts: int, owner_of: OwnerOf) -> EventData:
        """A job resumed after a crash with every attempt spent: no new transaction, but a
        bucket that the interrupted attempt did create is still adopted."""
        try:
            with spans.attempt(attempts):
                return await self._attempt(job, attempts, owner_of, may_create=False)
        except Exception as exc:  # whatever stops the last look, the job is over
            if isinstance(exc, BackendError) and exc.code == errors.ATTEMPTS_EXHAUSTED:
                message = str(exc)
            else:
                message = f"gave up after {attempts} attempts; last check failed: {exc}"
            return self._failed(job, message, errors.ATTEMPTS_EXHAUSTED, attempts)

    async def _attempt(
        self, job: Job, attempt: int, owner_of: OwnerOf, may_create: bool, emit: Emit | None = None
    ) -> EventData:
        name = job.bucket_name
        async with self._slots:
            if emit is not None:
                await emit(self._event(job, BucketProcessing, attempt=attempt))
            problem = name_problem(name)
            if problem is not None:
                return self._failed(
                    job, f"invalid bucket name: {problem}", errors.INVALID_BUCKET_NAME, attempt
                )
            owner = owner_of(name)
            if owner is not None and owner != job.job_id:
                return self._failed(
                    job,
                    f"bucket {name!r} already belongs to job {owner}",
                    errors.BUCKET_EXISTS,
                    attempt,
                )
            existing = await self._view(name)
        if existing is None and may_create:
            try:
                created = await self._gate.send(
                    lambda: spans.create_bucket(self._backend, name), timeout=self._attempt_timeout
                )
            except BackendError as exc:
                if exc.code != errors.BUCKET_ALREADY_ON_CHAIN:
                    raise
                async with self._slots:
                    existing = await self._view(name)
                if existing is None:
                    raise
            else:
                return self._event(
                    job,
                    BucketCreated,
                    tx_hash=created.tx_hash,
                    bucket_id=created.bucket_id,
                    bucket_created_at=created.created_at,
                )
        if existing is None:
            raise BackendError(
                f"gave up after {attempt} attempts, interrupted before their outcome was recorded",
                code=errors.ATTEMPTS_EXHAUSTED,
                retryable=False,
            )
        # On the chain, with our key, and no job in the log owns it: this job takes it over.
        log.info(
            "adopting bucket found on chain", extra={"job_id": str(job.job_id), "bucket_name": name}
        )
        return self._event(
            job,
            BucketCreated,
            tx_hash=None,
            bucket_id=existing.bucket_id,
            bucket_created_at=existing.created_at,
            adopted=True,
        )

    async def _view(self, name: str) -> ChainBucket | None:
        async with asyncio.timeout(self._attempt_timeout):
            with spans.view_bucket(name):
                return await self._backend.view_bucket(name)

    def _failed(self, job: Job, error: str, code: str, attempt: int) -> EventData:
        return self._event(job, BucketFailed, error=error, error_code=code, attempts=attempt)

    @staticmethod
    def _event(job: Job, kind: type[EventData], **fields: object) -> EventData:
        return kind(job_id=job.job_id, bucket_name=job.bucket_name, **fields)
