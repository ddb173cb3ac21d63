"""One job from request to outcome, against an in-memory chain with scripted failures."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from services.executor.backends.base import ChainBucket, CreatedBucket
from services.executor.errors import BackendError
from services.executor.job import Job, JobRunner
from services.executor.transactions import TransactionGate
from shared import error_codes
from shared.events import BucketCreated, BucketFailed, BucketProcessing, EventData
from shared.settings import Settings

TX_HEX = "C0FFEE" + "ab" * 29
REVERTED = "bucket creation failed: execution reverted: 0x497ef2c2"
TRANSIENT = "bucket creation failed: connection refused"
NO_FUNDS = "bucket creation failed: insufficient funds for gas * price + value"

CreateStep = Callable[[str], Awaitable[None]]


class FakeChain:
    """An `AkaveBackend` in memory: buckets by name, and every call it received, in order.

    `create_steps` scripts the next create calls: a string is raised as `BackendError(text)`,
    a coroutine function runs first (e.g. to hang, or to make a bucket appear) and the call
    then succeeds unless it raises; when the script is empty, create succeeds.
    """

    def __init__(self) -> None:
        self.buckets: dict[str, ChainBucket] = {}
        self.calls: list[tuple[str, str]] = []
        self.create_steps: list[str | CreateStep] = []
        self.view_errors: list[BaseException] = []
        self.view_delay_s = 0.0
        self.views_in_flight = 0
        self.most_views_in_flight = 0
        self.closed = False

    async def view_bucket(self, name: str) -> ChainBucket | None:
        self.calls.append(("view", name))
        self.views_in_flight += 1
        self.most_views_in_flight = max(self.most_views_in_flight, self.views_in_flight)
        try:
            await asyncio.sleep(self.view_delay_s)
        finally:
            self.views_in_flight -= 1
        if self.view_errors:
            raise self.view_errors.pop(0)
        return self.buckets.get(name)

    async def create_bucket(self, name: str) -> CreatedBucket:
        self.calls.append(("create", name))
        await asyncio.sleep(0)
        if self.create_steps:
            step = self.create_steps.pop(0)
            if isinstance(step, str):
                raise BackendError(step)
            await step(name)
        if name in self.buckets:
            raise BackendError(REVERTED)
        self.buckets[name] = ChainBucket(name, bucket_id=f"id-{name}", created_at=1_767_225_600)
        return CreatedBucket(
            tx_hash=TX_HEX, name=name, bucket_id=f"id-{name}", created_at=1_767_225_600
        )

    async def close(self) -> None:
        self.closed = True

    def creates(self) -> int:
        return sum(1 for kind, _ in self.calls if kind == "create")


class Outcome:
    """The events one job emitted, in order."""

    def __init__(self) -> None:
        self.events: list[EventData] = []

    async def emit(self, data: EventData) -> None:
        self.events.append(data)

    def kinds(self) -> list[str]:
        return [
            f"{e.type}({e.attempt})" if isinstance(e, BucketProcessing) else e.type
            for e in self.events
        ]

    @property
    def last(self) -> EventData:
        return self.events[-1]


def make_settings(**values: Any) -> Settings:
    defaults: dict[str, Any] = {
        "max_attempts": 3,
        "retry_delay_s": 0,
        "attempt_timeout_s": 5.0,
        "nonce_retry_limit": 2,
    }
    return Settings(_env_file=None, **{**defaults, **values})


def make_runner(
    chain: FakeChain, slots: asyncio.Semaphore | None = None, **settings: Any
) -> JobRunner:
    return JobRunner(
        chain,
        TransactionGate(nonce_retries=2, backoff_s=0),
        make_settings(**settings),
        slots or asyncio.Semaphore(4),
    )


def nobody_owns(_name: str) -> uuid.UUID | None:
    return None


async def no_owner(_name: str) -> uuid.UUID | None:
    return None


async def run_job(
    runner: JobRunner,
    job: Job,
    owner_of: Callable[[str], uuid.UUID | None] = nobody_owns,
) -> Outcome:
    """Runs `job` with `owner_of` answering the ownership check (as the ledger's lookup would)."""
    outcome = Outcome()

    async def owner(name: str) -> uuid.UUID | None:
        return owner_of(name)

    await asyncio.wait_for(runner.run(job, outcome.emit, owner), 5)
    return outcome


@pytest.fixture
def chain() -> FakeChain:
    return FakeChain()


@pytest.fixture
def job() -> Job:
    return Job(uuid.uuid4(), f"bucket-{uuid.uuid4().hex[:8]}")


# Success --------------------------------------------------------------------------------------


async def test_success_emits_processing_then_created_with_a_normalised_hash(
    chain: FakeChain, job: Job
) -> None:
    outcome = await run_job(make_runner(chain), job)
    assert outcome.kinds() == ["BucketProcessing(1)", "BucketCreated"]
    created = outcome.last
    assert isinstance(created, BucketCreated)
    assert created.tx_hash == "0x" + TX_HEX.lower()
    assert created.adopted is False
    assert (created.bucket_id, created.bucket_created_at) == (
        f"id-{job.bucket_name}",
        1_767_225_600,
    )
    assert all(e.job_id == job.job_id and e.bucket_name == job.bucket_name for e in outcome.events)
    assert chain.calls == [("view", job.bucket_name), ("create", job.bucket_name)]


# Retries --------------------------------------------------------------------------------------


async def test_transient_failures_are_retried_until_attempts_run_out(
    chain: FakeChain, job: Job
) -> None:
    chain.create_steps = [TRANSIENT] * 5
    outcome = await run_job(make_runner(chain), job)
    assert outcome.kinds() == [
        "BucketProcessing(1)",
        "BucketProcessing(2)",
        "BucketProcessing(3)",
        "BucketFailed",
    ]
    failed = outcome.last
    assert isinstance(failed, BucketFailed)
    assert failed.attempts == 3
    assert failed.error_code == error_codes.BACKEND_UNAVAILABLE
    assert failed.error == TRANSIENT
    assert chain.creates() == 3


async def test_job_succeeds_on_the_third_attempt_after_two_transient_failures(
    chain: FakeChain, job: Job
) -> None:
    chain.create_steps = [TRANSIENT, "something odd happened"]
    outcome = await run_job(make_runner(chain), job)
    assert outcome.kinds() == [
        "BucketProcessing(1)",
        "BucketProcessing(2)",
        "BucketProcessing(3)",
        "BucketCreated",
    ]
    assert chain.creates() == 3


async def test_max_attempts_setting_bounds_the_attempts(chain: FakeChain, job: Job) -> None:
    chain.create_steps = [TRANSIENT] * 10
    outcome = await run_job(make_runner(chain, max_attempts=5), job)
    assert [e.attempt for e in outcome.events if isinstance(e, BucketProcessing)] == [1, 2, 3, 4, 5]
    assert isinstance(outcome.last, BucketFailed) and outcome.last.attempts == 5
    assert chain.creates() == 5


async def test_unexpected_exception_is_retried_like_any_chain_error(
    chain: FakeChain, job: Job
) -> None:
    chain.view_errors = [RuntimeError("boom"), KeyError("x")]
    outcome = await run_job(make_runner(chain), job)
    assert outcome.kinds() == [
        "BucketProcessing(1)",
        "BucketProcessing(2)",
        "BucketProcessing(3)",
        "BucketCreated",
    ]
    assert chain.creates() == 1


async def test_unexpected_exception_on_every_attempt_fails_as_backend_error(
    chain: FakeChain, job: Job
) -> None:
    chain.view_errors = [RuntimeError("boom")] * 3
    outcome = await run_job(make_runner(chain), job)
    failed = outcome.last
    assert isinstance(failed, BucketFailed)
    assert (failed.error_code, failed.attempts) == (error_codes.BACKEND_ERROR, 3)
    assert failed.error == "RuntimeError: boom"
    assert chain.creates() == 0


async def test_job_waits_the_retry_delay_between_attempts(chain: FakeChain, job: Job) -> None:
    chain.create_steps = [TRANSIENT]
    loop = asyncio.get_running_loop()
    started = loop.time()
    outcome = await run_job(make_runner(chain, retry_delay_s=0.2), job)
    assert loop.time() - started >= 0.2
    assert outcome.kinds() == ["BucketProcessing(1)", "BucketProcessing(2)", "BucketCreated"]


# Errors that cannot heal ----------------------------------------------------------------------


async def test_insufficient_funds_fails_at_once(chain: FakeChain, job: Job) -> None:
    chain.create_steps = [NO_FUNDS]
    outcome = await run_job(make_runner(chain), job)
    assert outcome.kinds() == ["BucketProcessing(1)", "BucketFailed"]
    failed = outcome.last
    assert isinstance(failed, BucketFailed)
    assert (failed.error_code, failed.attempts) == (error_codes.INSUFFICIENT_FUNDS, 1)
    assert failed.error == NO_FUNDS
    assert chain.creates() == 1


@pytest.mark.parametrize("name", ["Bad_Name", "ab", "../x", "a" * 64, "-abc"])
async def test_invalid_name_fails_at_once_without_touching_the_chain(
    chain: FakeChain, name: str
) -> None:
    outcome = await run_job(make_runner(chain), Job(uuid.uuid4(), name))
    assert outcome.kinds() == ["BucketProcessing(1)", "BucketFailed"]
    failed = outcome.last
    assert isinstance(failed, BucketFailed)
    assert (failed.error_code, failed.attempts) == (error_codes.INVALID_BUCKET_NAME, 1)
    assert failed.error.startswith("invalid bucket name: ")
    assert chain.calls == []


async def test_name_owned_by_another_job_fails_with_bucket_exists_without_touching_the_chain(
    chain: FakeChain, job: Job
) -> None:
    owner = uuid.uuid4()
    asked: list[str] = []

    def owner_of(name: str) -> uuid.UUID | None:
        asked.append(name)
        return owner

    outcome = await run_job(make_runner(chain), job, owner_of)
    assert outcome.kinds() == ["BucketProcessing(1)", "BucketFailed"]
    failed = outcome.last
    assert isinstance(failed, BucketFailed)
    assert (failed.error_code, failed.attempts) == (error_codes.BUCKET_EXISTS, 1)
    assert str(owner) in failed.error
    assert asked == [job.bucket_name]
    assert chain.calls == []


# Adoption -------------------------------------------------------------------------------------


async def test_bucket_on_the_chain_with_no_owner_is_adopted_without_a_create(
    chain: FakeChain, job: Job
) -> None:
    chain.buckets[job.bucket_name] = ChainBucket(job.bucket_name, bucket_id="b-7", created_at=42)
    outcome = await run_job(make_runner(chain), job)
    assert outcome.kinds() == ["BucketProcessing(1)", "BucketCreated"]
    created = outcome.last
    assert isinstance(created, BucketCreated)
    assert created.adopted is True and created.tx_hash is None
    assert (created.bucket_id, created.bucket_created_at) == ("b-7", 42)
    assert chain.creates() == 0


async def test_bucket_the_job_itself_owns_is_adopted_again_without_a_create(
    chain: FakeChain, job: Job
) -> None:
    chain.buckets[job.bucket_name] = ChainBucket(job.bucket_name)
    outcome = await run_job(make_runner(chain), job, lambda _name: job.job_id)
    assert outcome.kinds() == ["BucketProcessing(1)", "BucketCreated"]
    assert isinstance(outcome.last, BucketCreated) and outcome.last.adopted is True
    assert chain.creates() == 0


async def test_create_reverted_as_existing_then_seen_on_chain_is_adopted_in_the_same_attempt(
    chain: FakeChain, job: Job
) -> None:
    async def someone_else_mined_it_first(name: str) -> None:
        chain.buckets[name] = ChainBucket(name, bucket_id="raced", created_at=7)

    chain.create_steps = [someone_else_mined_it_first]
    outcome = await run_job(make_runner(chain), job)
    assert outcome.kinds() == ["BucketProcessing(1)", "BucketCreated"]
    created = outcome.last
    assert isinstance(created, BucketCreated)
    assert created.adopted is True and created.tx_hash is None
    assert created.bucket_id == "raced"
    name = job.bucket_name
    assert chain.calls == [("view", name), ("create", name), ("view", name)]


async def test_create_reverted_as_existing_but_not_seen_on_chain_is_retried(
    chain: FakeChain, job: Job
) -> None:
    chain.create_steps = [REVERTED]
    outcome = await run_job(make_runner(chain), job)
    assert outcome.kinds() == ["BucketProcessing(1)", "BucketProcessing(2)", "BucketCreated"]
    created = outcome.last
    assert isinstance(created, BucketCreated) and created.adopted is False
    assert chain.creates() == 2


# Resumed jobs ---------------------------------------------------------------------------------


async def test_resumed_job_continues_counting_from_the_attempts_already_used(
    chain: FakeChain,
) -> None:
    job = Job(uuid.uuid4(), "resumed-bucket", attempts_used=1)
    chain.create_steps = [TRANSIENT, TRANSIENT]
    outcome = await run_job(make_runner(chain), job)
    assert outcome.kinds() == ["BucketProcessing(2)", "BucketProcessing(3)", "BucketFailed"]
    assert isinstance(outcome.last, BucketFailed) and outcome.last.attempts == 3
    assert chain.creates() == 2


async def test_resumed_job_with_every_attempt_spent_adopts_a_bucket_on_the_chain(
    chain: FakeChain,
) -> None:
    job = Job(uuid.uuid4(), "spent-bucket", attempts_used=3)
    chain.buckets[job.bucket_name] = ChainBucket(job.bucket_name, bucket_id="left-over")
    outcome = await run_job(make_runner(chain), job)
    assert outcome.kinds() == ["BucketCreated"]  # no fourth attempt is announced
    created = outcome.last
    assert isinstance(created, BucketCreated)
    assert created.adopted is True and created.bucket_id == "left-over"
    assert chain.calls == [("view", job.bucket_name)]


async def test_resumed_job_with_every_attempt_spent_never_calls_create(chain: FakeChain) -> None:
    job = Job(uuid.uuid4(), "spent-bucket", attempts_used=3)
    outcome = await run_job(make_runner(chain), job)
    assert outcome.kinds() == ["BucketFailed"]
    failed = outcome.last
    assert isinstance(failed, BucketFailed)
    assert failed.error_code == error_codes.ATTEMPTS_EXHAUSTED and failed.attempts == 3
    assert chain.calls == [("view", job.bucket_name)]


# Timeouts -------------------------------------------------------------------------------------


async def hang(_name: str) -> None:
    await asyncio.sleep(30)


async def test_attempt_past_its_timeout_is_abandoned_and_retried(
    chain: FakeChain, job: Job
) -> None:
    chain.create_steps = [hang]
    outcome = await run_job(make_runner(chain, attempt_timeout_s=0.05), job)
    assert outcome.kinds() == ["BucketProcessing(1)", "BucketProcessing(2)", "BucketCreated"]
    assert chain.creates() == 2


async def test_attempts_that_all_time_out_fail_with_attempt_timeout(
    chain: FakeChain, job: Job
) -> None:
    chain.create_steps = [hang, hang]
    outcome = await run_job(make_runner(chain, attempt_timeout_s=0.05, max_attempts=2), job)
    assert outcome.kinds() == ["BucketProcessing(1)", "BucketProcessing(2)", "BucketFailed"]
    failed = outcome.last
    assert isinstance(failed, BucketFailed)
    assert (failed.error_code, failed.attempts) == (error_codes.ATTEMPT_TIMEOUT, 2)
    assert job.bucket_name not in chain.buckets


# Concurrency ----------------------------------------------------------------------------------


async def test_retry_delay_does_not_hold_the_concurrency_slot(chain: FakeChain) -> None:
    slots = asyncio.Semaphore(1)
    runner = make_runner(chain, slots=slots, retry_delay_s=0.5)
    waiting = Job(uuid.uuid4(), "waits-for-retry")
    other = Job(uuid.uuid4(), "other-bucket")
    timeline: list[str] = []

    def recorder(label: str) -> Callable[[EventData], Awaitable[None]]:
        async def emit(data: EventData) -> None:
            kind = (
                f"{data.type}({data.attempt})" if isinstance(data, BucketProcessing) else data.type
            )
            timeline.append(f"{label} {kind}")

        return emit

    chain.create_steps = [TRANSIENT]  # the first create (the waiting job's) fails once
    first = asyncio.create_task(runner.run(waiting, recorder("waiting"), no_owner))
    while "waiting BucketProcessing(1)" not in timeline:
        await asyncio.sleep(0)
    second = asyncio.create_task(runner.run(other, recorder("other"), no_owner))
    await asyncio.wait_for(second, 0.4)  # well inside the waiting job's 0.5 s delay
    assert timeline == [
        "waiting BucketProcessing(1)",
        "other BucketProcessing(1)",
        "other BucketCreated",
    ]
    await asyncio.wait_for(first, 2)
    assert timeline[3:] == ["waiting BucketProcessing(2)", "waiting BucketCreated"]


async def test_concurrency_slots_bound_jobs_talking_to_the_chain_at_once(
    chain: FakeChain,
) -> None:
    chain.view_delay_s = 0.02
    runner = make_runner(chain, slots=asyncio.Semaphore(2))
    jobs = [Job(uuid.uuid4(), f"slot-bucket-{i}") for i in range(6)]
    outcomes = await asyncio.gather(*(run_job(runner, j) for j in jobs))
    assert all(isinstance(o.last, BucketCreated) for o in outcomes)
    assert chain.most_views_in_flight == 2


async def test_jobs_needing_no_transaction_pass_transactions_waiting_for_the_key(
    chain: FakeChain,
) -> None:
    """One slot, one transaction in flight and another waiting for the key: a bucket already
    on the chain is still adopted at once, because waiting for the key holds no slot."""
    in_flight = asyncio.Event()
    release = asyncio.Event()

    async def slow_transaction(_name: str) -> None:
        in_flight.set()
        await release.wait()

    chain.create_steps = [slow_transaction]
    chain.buckets["already-there"] = ChainBucket("already-there", bucket_id="id-x")
    runner = make_runner(chain, slots=asyncio.Semaphore(1))
    sending = asyncio.create_task(run_job(runner, Job(uuid.uuid4(), "first-tx")))
    await asyncio.wait_for(in_flight.wait(), 2)
    queued = asyncio.create_task(run_job(runner, Job(uuid.uuid4(), "second-tx")))
    adopted = await asyncio.wait_for(run_job(runner, Job(uuid.uuid4(), "already-there")), 1)
    owned = await asyncio.wait_for(
        run_job(runner, Job(uuid.uuid4(), "owned-name"), lambda _n: uuid.uuid4()), 1
    )
    assert isinstance(adopted.last, BucketCreated) and adopted.last.adopted
    assert isinstance(owned.last, BucketFailed)
    assert owned.last.error_code == error_codes.BUCKET_EXISTS
    assert not sending.done() and not queued.done()
    release.set()
    for task in (sending, queued):
        assert isinstance((await asyncio.wait_for(task, 2)).last, BucketCreated)


async def test_waiting_for_the_key_does_not_count_against_the_attempt_timeout(
    chain: FakeChain,
) -> None:
    """Each transaction takes 0.1 s and the timeout is 0.25 s: the fifth in the queue waits
    0.4 s for the key, yet no attempt is abandoned."""

    async def takes_a_while(_name: str) -> None:
        await asyncio.sleep(0.1)

    chain.create_steps = [takes_a_while] * 5
    runner = make_runner(chain, attempt_timeout_s=0.25)
    jobs = [Job(uuid.uuid4(), f"queued-{i}") for i in range(5)]
    outcomes = await asyncio.gather(*(run_job(runner, j) for j in jobs))
    assert [o.kinds() for o in outcomes] == [["BucketProcessing(1)", "BucketCreated"]] * 5
    assert chain.creates() == 5
