"""The job flow (`JobRunner`) with the evm backend on a real anvil chain: what each outcome of a
signed create becomes in the log. The events go to a list here (the log's part is proven in
tests/e2e/test_evm_jobs.py); the chain, its contract and its fault levers are real.

The signing key is anvil's public dev key 3 (public test data), on chains of these tests' own.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from localinfra.anvil import LocalAnvil
from localinfra.chain import deploy_storage
from localinfra.dev_keys import DEV_ACCOUNTS
from services.executor.backends.evm import EvmBackend
from services.executor.job import Job, JobRunner
from services.executor.transactions import TransactionGate
from shared import error_codes
from shared.events import (
    BucketCreated,
    BucketFailed,
    BucketProcessing,
    BucketTransactionSigned,
    EventData,
)
from shared.settings import Settings
from tests.chain.fixtures import AnvilFactory

ADDRESS, KEY = DEV_ACCOUNTS[3]


class Flow:
    def __init__(self, chain: LocalAnvil, backend: EvmBackend, runner: JobRunner) -> None:
        self.chain = chain
        self.backend = backend
        self.runner = runner
        self.events: list[EventData] = []
        self.owners: dict[str, uuid.UUID] = {}

    async def emit(self, data: EventData) -> None:
        self.events.append(data)
        if isinstance(data, BucketCreated):
            self.owners.setdefault(data.bucket_name, data.job_id)

    def run(self, name: str) -> asyncio.Task[None]:
        job = Job(uuid.uuid4(), name)
        return asyncio.create_task(self.runner.run(job, self.emit, self.owner_of))

    async def owner_of(self, name: str) -> uuid.UUID | None:
        return self.owners.get(name)

    def of(self, name: str) -> list[EventData]:
        return [e for e in self.events if e.bucket_name == name]


@pytest.fixture
async def flows(anvil_factory: AnvilFactory, tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    opened: list[EvmBackend] = []

    async def start(block_time: float | None = None, **options: Any) -> Flow:
        chain = anvil_factory(block_time=block_time)
        pool = tmp_path / f"pool-{len(opened)}"
        pool.write_text(KEY + "\n")
        pool.chmod(0o600)
        settings = Settings(
            _env_file=None,  # type: ignore[call-arg]
            akave_backend="evm",
            chain_rpc_url=chain.rpc_url,
            chain_contract_address=deploy_storage(chain),
            chain_key_pool_file=pool,
            chain_poll_interval_s=0.05,
            retry_delay_s=0.1,
            **options,
        )
        backend = await EvmBackend.open(settings)
        opened.append(backend)
        runner = JobRunner(backend, TransactionGate(1), settings, asyncio.Semaphore(4))
        return Flow(chain, backend, runner)

    try:
        yield start
    finally:
        for backend in opened:
            await backend.close()


async def test_a_mined_create_completes_with_its_hash_block_and_bucket_id(flows: Any) -> None:
    flow: Flow = await flows()
    await asyncio.wait_for(flow.run("mined-one"), 20)
    processing, signed, created = flow.of("mined-one")
    assert isinstance(processing, BucketProcessing) and processing.attempt == 1
    assert isinstance(signed, BucketTransactionSigned) and signed.kind == "create"
    assert (signed.signer, signed.chain_id, signed.attempt) == (ADDRESS, 31337, 1)
    assert isinstance(created, BucketCreated) and not created.adopted
    receipt = flow.chain.rpc("eth_getTransactionReceipt", created.tx_hash)
    assert created.tx_hash == signed.tx_hash == receipt["transactionHash"]
    assert created.block_number == int(receipt["blockNumber"], 16)
    assert created.bucket_id == receipt["logs"][0]["topics"][1]


async def test_a_name_taken_in_the_same_block_adopts_nothing_and_fails_as_bucket_exists(
    flows: Any,
) -> None:
    flow: Flow = await flows()
    flow.chain.set_automine(False)
    first, second = flow.run("taken-twice"), flow.run("taken-twice")
    while sum(isinstance(e, BucketTransactionSigned) for e in flow.events) < 2:
        await asyncio.sleep(0.05)
    flow.chain.set_interval_mining(1)  # both in one block: the second reverts
    await asyncio.wait_for(asyncio.gather(first, second), 30)
    outcomes = [e for e in flow.events if isinstance(e, BucketCreated | BucketFailed)]
    assert [type(e) for e in outcomes] == [BucketCreated, BucketFailed]
    assert isinstance(outcomes[1], BucketFailed)
    assert outcomes[1].error_code == error_codes.BUCKET_EXISTS
    assert "0x497ef2c2" in outcomes[1].error  # BucketAlreadyExists, from its receipt


async def test_a_revert_fails_the_job_at_once_with_the_decoded_error(flows: Any) -> None:
    flow: Flow = await flows(chain_create_gas=60_000)
    await asyncio.wait_for(flow.run("starved-job"), 20)
    *_, outcome = flow.of("starved-job")
    assert isinstance(outcome, BucketFailed)
    assert (outcome.error_code, outcome.attempts) == (error_codes.OUT_OF_GAS, 1)
    assert "out of gas" in outcome.error
    assert sum(isinstance(e, BucketProcessing) for e in flow.events) == 1  # not retried


async def test_an_unfunded_key_keeps_the_job_waiting_and_completes_it_once_funded(
    flows: Any,
) -> None:
    flow: Flow = await flows(block_time=1, chain_insufficient_funds_wait_s=30)
    funds = flow.chain.balance(ADDRESS)
    flow.chain.set_balance(ADDRESS, 0)
    job = flow.run("broke-then-funded")
    await asyncio.sleep(3)
    assert not job.done()
    assert flow.backend.status()[0].paused
    flow.chain.set_balance(ADDRESS, funds)
    await asyncio.wait_for(job, 20)
    *_, outcome = flow.of("broke-then-funded")
    assert isinstance(outcome, BucketCreated) and outcome.tx_hash is not None


async def test_an_unfunded_key_fails_the_job_with_insufficient_funds_after_the_wait(
    flows: Any,
) -> None:
    flow: Flow = await flows(block_time=1, chain_insufficient_funds_wait_s=2)
    flow.chain.set_balance(ADDRESS, 0)
    job = flow.run("broke-for-good")
    await asyncio.sleep(1)
    assert not job.done()
    await asyncio.wait_for(job, 20)
    *_, outcome = flow.of("broke-for-good")
    assert isinstance(outcome, BucketFailed)
    assert outcome.error_code == error_codes.INSUFFICIENT_FUNDS


async def test_a_job_waiting_for_its_keys_slot_has_spent_no_attempt_when_it_is_stopped(
    flows: Any,
) -> None:
    """The key's one in-flight slot is taken by an unmined create; a second job waits for it.
    Stopped meanwhile (a deploy, a crash), the waiting job has written nothing: a restart
    finds it queued with no attempt spent. Run again once the slot is free, it completes in
    its first attempt."""
    flow: Flow = await flows(chain_max_in_flight=1)
    flow.chain.set_automine(False)
    holder = flow.run("holds-the-slot")
    while not any(isinstance(e, BucketTransactionSigned) for e in flow.events):
        await asyncio.sleep(0.05)
    waiting = flow.run("waits-for-the-slot")
    await asyncio.sleep(1.5)
    assert not waiting.done()
    assert flow.of("waits-for-the-slot") == []  # not even BucketProcessing
    waiting.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await waiting
    flow.chain.set_interval_mining(1)
    await asyncio.wait_for(holder, 30)
    await asyncio.wait_for(flow.run("waits-for-the-slot"), 30)
    processing, signed, created = flow.of("waits-for-the-slot")
    assert isinstance(processing, BucketProcessing) and processing.attempt == 1
    assert isinstance(signed, BucketTransactionSigned) and signed.attempt == 1
    assert isinstance(created, BucketCreated) and created.tx_hash == signed.tx_hash
