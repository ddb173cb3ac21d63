"""One job from request to outcome: attempts, retries, timeouts, ownership, adoption.

With a recording backend (`evm`) a create goes through the transaction manager: every signed
transaction is appended to the log (`BucketTransactionSigned`) and acknowledged before it is
broadcast, and from then on it is followed to its outcome, with no attempt timeout and no
retry: "MAX_ATTEMPTS, RETRY_DELAY_S apart" governs only failures before a transaction exists.
A job whose transactions are already in the log (a restart) is resolved from them: no new
`BucketProcessing`, nothing new signed (`JobRunner.follow`). New creates wait for
`creates_open`, which the executor opens once every recorded job is followed again. An
unreachable chain is waited out, spending no attempt. Other backends (the `akave` SDK, which
waits for each receipt itself) send through the `TransactionGate`, one transaction at a time.

A concurrency slot is held only while an attempt reads the chain (the name checks and
`view_bucket`). With a recording backend the attempt's `BucketProcessing` is written once the
create has its key's in-flight slot (before its first `BucketTransactionSigned`), before an
outcome that needs no transaction, or when the attempt fails: waiting for the slot spends no
attempt if the executor stops. A job waiting for the signing key's turn (`TransactionGate`)
or out its retry delay holds no slot, so jobs that need no transaction (bucket already on the
chain, name owned by another job, invalid name) are never queued behind the transactions.
`ATTEMPT_TIMEOUT_S` bounds each chain call of an attempt, the transaction from the moment it
has the key; not the wait for the key, which is the queue of the key's other transactions.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace

from services.executor import spans
from services.executor.attempt_records import signed_event
from services.executor.backends.base import (
    AkaveBackend,
    ChainBucket,
    CreatedBucket,
    RecordingBackend,
)
from services.executor.chain.records import Attempt, Journal
from services.executor.errors import BackendError
from services.executor.transactions import TransactionGate
from shared import error_codes
from shared.bucket_names import name_problem
from shared.events import BucketCreated, BucketFailed, BucketProcessing, EventData
from shared.settings import Settings

log = logging.getLogger(__name__)

Emit = Callable[[EventData], Awaitable[None]]
OwnerOf = Callable[[str], Awaitable["uuid.UUID | None"]]  # the ledger's, index-backed


@dataclass(frozen=True)
class Job:
    job_id: uuid.UUID
    bucket_name: str
    attempts_used: int = 0  # attempts an earlier executor started (crash, rebalance)
    # The outcome of the transactions it recorded before a restart, already being followed.
    followed: Awaitable[CreatedBucket] | None = field(default=None, compare=False)


class JobRunner:
    def __init__(
        self,
        backend: AkaveBackend,
        gate: TransactionGate,
        settings: Settings,
        slots: asyncio.Semaphore,
    ) -> None:
        self._backend = backend
        self._recording = backend if isinstance(backend, RecordingBackend) else None
        self._gate = gate
        self._slots = slots
        self._max_attempts = settings.max_attempts
        self._retry_delay = settings.retry_delay_s
        self._attempt_timeout = settings.attempt_timeout_s
        self.creates_open = asyncio.Event()  # closed while recorded jobs are not followed yet
        self.creates_open.set()

    @property
    def records_transactions(self) -> bool:
        return self._recording is not None

    def follow(self, job: Job, attempts: Sequence[Attempt], emit: Emit) -> Job:
        """The job, its recorded transactions handed to the manager now (their nonces held
        before any new create is signed); `run` then waits for their outcome."""
        assert self._recording is not None
        journal = self._journal(job, max(job.attempts_used, 1), emit, list(attempts))
        return replace(job, followed=self._recording.follow_create(attempts, journal))

    async def run(self, job: Job, emit: Emit, owner_of: OwnerOf) -> None:
        ids = {"job_id": str(job.job_id), "bucket_name": job.bucket_name}
        if job.followed is not None:
            outcome = await self._settle_followed(job, job.followed, owner_of)
            await emit(outcome)
            log.info("job finished", extra={**ids, "type": outcome.type, "resumed": True})
            return
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
                    code=error_codes.ATTEMPT_TIMEOUT,
                    retryable=True,
                )
            except BackendError as exc:
                error = exc
            except Exception as exc:  # any exception is retried (docs/decisions.md)
                log.exception("unexpected error in attempt", extra=ids)
                error = BackendError(f"{type(exc).__name__}: {exc}", code=error_codes.BACKEND_ERROR)
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
            if isinstance(exc, BackendError) and exc.code == error_codes.ATTEMPTS_EXHAUSTED:
                message = str(exc)
            else:
                message = f"gave up after {attempts} attempts; last check failed: {exc}"
            return self._failed(job, message, error_codes.ATTEMPTS_EXHAUSTED, attempts)

    async def _attempt(
        self, job: Job, attempt: int, owner_of: OwnerOf, may_create: bool, emit: Emit | None = None
    ) -> EventData:
        name = job.bucket_name
        announced = False

        async def announce() -> None:
            nonlocal announced
            if emit is not None and not announced:
                announced = True
                await emit(self._event(job, BucketProcessing, attempt=attempt))

        # With a recording backend the attempt is announced once it has its key's slot (just
        # before its first transaction is recorded), once its outcome needs none, or when it
        # fails: a job that waits for the slot spends no attempt when the executor stops or
        # dies meanwhile (cancelled, it announces nothing).
        deferred = self._recording is not None and may_create
        try:
            async with self._slots:
                if not deferred:
                    await announce()
                problem = name_problem(name)
                if problem is not None:
                    await announce()
                    return self._failed(
                        job,
                        f"invalid bucket name: {problem}",
                        error_codes.INVALID_BUCKET_NAME,
                        attempt,
                    )
                owner = await owner_of(name)
                if owner is not None and owner != job.job_id:
                    await announce()
                    return self._failed(
                        job,
                        f"bucket {name!r} already belongs to job {owner}",
                        error_codes.BUCKET_EXISTS,
                        attempt,
                    )
                existing = await self._view(name)
            if deferred and existing is None:
                assert emit is not None
                return await self._create_recorded(job, attempt, emit, owner_of, announce)
        except Exception:  # a failed attempt is an attempt: shown and counted
            await announce()
            raise
        await announce()
        if existing is None and may_create:
            try:
                created = await self._gate.send(
                    lambda: spans.create_bucket(name, self._backend.create_bucket(name)),
                    timeout=self._attempt_timeout,
                )
            except BackendError as exc:
                if exc.code != error_codes.BUCKET_ALREADY_ON_CHAIN:
                    raise
                async with self._slots:
                    existing = await self._view(name)
                if existing is None:
                    raise
            else:
                return self._created(job, created)
        if existing is None:
            raise BackendError(
                f"gave up after {attempt} attempts, interrupted before their outcome was recorded",
                code=error_codes.ATTEMPTS_EXHAUSTED,
                retryable=False,
            )
        return self._adopted(job, existing)

    async def _create_recorded(
        self,
        job: Job,
        attempt: int,
        emit: Emit,
        owner_of: OwnerOf,
        announce: Callable[[], Awaitable[None]],
    ) -> EventData:
        """Create through the transaction manager. Until the first transaction is recorded a
        failure is the attempt's (retried as usual); after it, the create is followed to its
        outcome, never abandoned and never signed again as a new create."""
        assert self._recording is not None
        signed: list[Attempt] = []
        await self.creates_open.wait()
        try:
            created = await spans.create_bucket(
                job.bucket_name,
                self._recording.create_bucket(
                    job.bucket_name, self._journal(job, attempt, emit, signed, announce), job.job_id
                ),
            )
        except Exception as exc:
            if not signed:
                raise
            if not isinstance(exc, BackendError):
                log.exception(
                    "following a signed create failed; following its recorded transactions",
                    extra={"job_id": str(job.job_id), "bucket_name": job.bucket_name},
                )
                journal = self._journal(job, attempt, emit, signed)
                return await self._settle_followed(
                    job, self._recording.follow_create(list(signed), journal), owner_of
                )
            return await self._settled_failure(job, attempt, exc, owner_of)
        return self._created(job, created)

    async def _settle_followed(
        self, job: Job, outcome: Awaitable[CreatedBucket], owner_of: OwnerOf
    ) -> EventData:
        try:
            created = await outcome
        except BackendError as exc:
            return await self._settled_failure(job, max(job.attempts_used, 1), exc, owner_of)
        return self._created(job, created)

    async def _settled_failure(
        self, job: Job, attempt: int, error: BackendError, owner_of: OwnerOf
    ) -> EventData:
        """The outcome of a mined (or finally refused) transaction that created nothing."""
        name = job.bucket_name
        if error.code != error_codes.BUCKET_ALREADY_ON_CHAIN:
            return self._failed(job, str(error), error.code, attempt)
        owner = await owner_of(name)
        if owner is None or owner == job.job_id:
            async with self._slots:
                existing = await self._view(name)
            if existing is not None:
                return self._adopted(job, existing)
        return self._failed(
            job,
            f"bucket {name!r} already exists on the chain and is not this job's ({error})",
            error_codes.BUCKET_EXISTS,
            attempt,
        )

    def _journal(
        self,
        job: Job,
        attempt: int,
        emit: Emit,
        signed: list[Attempt],
        announce: Callable[[], Awaitable[None]] | None = None,
    ) -> Journal:
        """Records each new transaction of the job in the log; returns once the broker has
        acknowledged it (`emit` retries until then), and only then is it broadcast. `announce`
        writes the attempt's `BucketProcessing` before its first transaction, if not yet."""

        async def journal(transaction: Attempt) -> None:
            if announce is not None:
                await announce()
            replacement = any(earlier.nonce == transaction.nonce for earlier in signed)
            await emit(signed_event(job.job_id, attempt, transaction, replacement))
            signed.append(transaction)

        return journal

    def _created(self, job: Job, created: CreatedBucket) -> EventData:
        return self._event(
            job,
            BucketCreated,
            tx_hash=created.tx_hash,
            bucket_id=created.bucket_id,
            bucket_created_at=created.created_at,
            block_number=created.block_number,
        )

    def _adopted(self, job: Job, existing: ChainBucket) -> EventData:
        # On the chain, with our key, and no job in the log owns it: this job takes it over.
        log.info(
            "adopting bucket found on chain",
            extra={"job_id": str(job.job_id), "bucket_name": job.bucket_name},
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
        """With a recording backend an unreachable chain is waited out (no job fails for an
        outage of any length); otherwise it is the attempt's failure."""
        delay = 0.5
        while True:
            try:
                async with asyncio.timeout(self._attempt_timeout):
                    with spans.view_bucket(name):
                        return await self._backend.view_bucket(name)
            except (TimeoutError, BackendError) as exc:
                unreachable = isinstance(exc, TimeoutError) or (
                    exc.code == error_codes.BACKEND_UNAVAILABLE
                )
                if self._recording is None or not unreachable:
                    raise
                log.warning("chain unreachable; waiting", extra={"bucket_name": name})
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    def _failed(self, job: Job, error: str, code: str, attempt: int) -> EventData:
        return self._event(job, BucketFailed, error=error, error_code=code, attempts=attempt)

    @staticmethod
    def _event(job: Job, kind: type[EventData], **fields: object) -> EventData:
        return kind(job_id=job.job_id, bucket_name=job.bucket_name, **fields)
