"""The whole pipeline on a real EVM chain: api + executor (evm backend, transaction manager) +
projector as OS processes, real Kafka, real Postgres, anvil with 2 s blocks and our Storage
contract. The witness is the chain: CreateBucket logs per name and the receipts of every
transaction the log says we signed.

The signing key is anvil's public dev key 2 (public test data), given as a key pool file.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from eth_utils import keccak

from localinfra.anvil import LocalAnvil
from localinfra.chain import deploy_storage
from localinfra.dev_keys import DEV_ACCOUNTS
from services.executor.chain import reverts
from shared.fold import TERMINAL
from shared.settings import Settings
from tests.chain.fixtures import AnvilFactory
from tests.conftest import own_database
from tests.support.stack import Stack, read_events, unique_name

pytestmark = pytest.mark.slow
ADDRESS, KEY = DEV_ACCOUNTS[2]


def bucket_id(name: str) -> str:
    return "0x" + keccak(name.encode() + bytes.fromhex(ADDRESS[2:])).hex()


class EvmStack:
    """A stack of this test's own on a 2 s-block chain of its own."""

    def __init__(self, chain: LocalAnvil, contract: str, stack: Stack) -> None:
        self.chain = chain
        self.contract = contract
        self.stack = stack

    def create_logs(self) -> Counter[str]:
        logs = self.chain.rpc(
            "eth_getLogs",
            {
                "address": self.contract,
                "fromBlock": "0x0",
                "toBlock": "latest",
                "topics": [reverts.CREATE_BUCKET_TOPIC],
            },
        )
        return Counter(entry["topics"][1] for entry in logs)

    def receipt(self, tx_hash: str) -> dict[str, Any] | None:
        answer: dict[str, Any] | None = self.chain.rpc("eth_getTransactionReceipt", tx_hash)
        return answer

    async def events(self) -> list[dict[str, Any]]:
        return [orjson.loads(r.value) for r in await read_events(self.stack.settings)]


@pytest.fixture
def evm_stack_factory(
    anvil_factory: AnvilFactory,
    base_settings: Settings,
    postgres_server: str | None,
    tmp_path: Path,
) -> Iterator[Any]:
    started: list[Stack] = []
    databases = contextlib.ExitStack()

    def start(**overrides: Any) -> EvmStack:
        chain = anvil_factory(block_time=2.0)
        contract = deploy_storage(chain)
        pool = tmp_path / "key-pool"
        pool.write_text(KEY + "\n")
        pool.chmod(0o600)
        database = databases.enter_context(
            own_database(postgres_server, f"akave_gw_evm_{time.time_ns()}")
        )
        settings = Stack.settings_for(
            base_settings,
            database_url=database,
            akave_backend="evm",
            chain_rpc_url=chain.rpc_url,
            chain_contract_address=contract,
            chain_key_pool_file=pool,
            chain_poll_interval_s=0.2,
            **overrides,
        )
        log_dir = tmp_path / f"stack-{len(started)}"
        log_dir.mkdir()
        stack = Stack(settings, log_dir)
        started.append(stack)
        stack.start()
        return EvmStack(chain, contract, stack)

    try:
        yield start
    finally:
        for stack in started:
            stack.stop()
        databases.close()  # drops them


async def submit(client: httpx.AsyncClient, names: list[str], at_once: int = 50) -> list[str]:
    limit = asyncio.Semaphore(at_once)

    async def post(name: str) -> str:
        async with limit:
            response = await client.post("/buckets", json={"bucket_name": name})
        assert response.status_code == 202, response.text
        return str(response.json()["job_id"])

    return list(await asyncio.gather(*(post(n) for n in names)))


async def wait_all_terminal(
    stack: Stack, client: httpx.AsyncClient, ids: list[str], timeout: float
) -> dict[str, dict[str, Any]]:
    """Every job's final row, polling the unfinished ones a few dozen at a time."""
    done: dict[str, dict[str, Any]] = {}
    limit = asyncio.Semaphore(32)
    deadline = time.monotonic() + timeout

    async def look(job_id: str) -> None:
        async with limit:
            response = await client.get(f"/buckets/jobs/{job_id}")
        if response.status_code == 200 and response.json()["status"] in TERMINAL:
            done[job_id] = response.json()

    while len(done) < len(ids):
        await asyncio.gather(*(look(j) for j in ids if j not in done))
        if len(done) == len(ids):
            break
        if time.monotonic() > deadline:
            left = [j for j in ids if j not in done][:5]
            raise AssertionError(
                f"{len(ids) - len(done)} jobs not terminal, e.g. {left}\n" + stack.logs()
            )
        await asyncio.sleep(0.5)
    return done


def signed_hashes(events: list[dict[str, Any]]) -> dict[str, list[str]]:
    """Bucket name -> the hashes of every transaction the log says we signed for it."""
    hashes: dict[str, list[str]] = {}
    for event in events:
        if event["type"] == "BucketTransactionSigned":
            hashes.setdefault(event["data"]["bucket_name"], []).append(event["data"]["tx_hash"])
    return hashes


async def test_a_job_shows_its_pending_transaction_then_completes_with_the_mined_one(
    evm_stack_factory: Any,
) -> None:
    evm: EvmStack = evm_stack_factory()
    names = [unique_name("evm") for _ in range(4)]
    evm.chain.set_interval_mining(0)  # nothing mines until every job shows its transaction
    async with evm.stack.client() as client:
        ids = await submit(client, names)
        ids += await submit(client, names[:1])  # the first name again, later in the log
        pending: dict[str, str] = {}
        deadline = time.monotonic() + 30
        while len(pending) < len(names) and time.monotonic() < deadline:
            for job_id in ids[: len(names)]:
                job = (await client.get(f"/buckets/jobs/{job_id}")).json()
                if job["status"] == "processing" and job["tx_hash"] is not None:
                    pending.setdefault(job_id, job["tx_hash"])
            await asyncio.sleep(0.05)
        assert len(pending) == len(names), "a job never showed its pending transaction hash"
        evm.chain.set_interval_mining(2)
        jobs = await wait_all_terminal(evm.stack, client, ids, timeout=60)

    events = await evm.events()
    logs = evm.create_logs()
    created = {e["data"]["job_id"]: e["data"] for e in events if e["type"] == "BucketCreated"}
    for job_id, name in zip(ids, names, strict=False):
        job = jobs[job_id]
        assert job["status"] == "completed", job
        receipt = evm.receipt(job["tx_hash"])
        assert receipt is not None and int(receipt["status"], 16) == 1, job
        assert receipt["transactionHash"] == job["tx_hash"] == created[job_id]["tx_hash"]
        assert int(receipt["blockNumber"], 16) == created[job_id]["block_number"]
        assert created[job_id]["bucket_id"] == bucket_id(name)
        assert pending[job_id] in signed_hashes(events)[name]
        assert logs[bucket_id(name)] == 1, name
    duplicate = jobs[ids[-1]]
    assert (duplicate["status"], duplicate["error_code"]) == ("failed", "bucket_exists")
    assert sum(logs.values()) == len(names)
    processing = [e for e in events if e["type"] == "BucketProcessing"]
    assert len(processing) == len(ids)  # one attempt each: nothing was retried


async def test_sigkill_with_fifty_transactions_in_flight_resolves_every_job_from_the_log(
    evm_stack_factory: Any,
) -> None:
    evm: EvmStack = evm_stack_factory(chain_max_in_flight=64)
    chain, stack = evm.chain, evm.stack
    names = [unique_name("crash-evm") for _ in range(500)]
    async with stack.client() as client:
        started = time.monotonic()
        ids = await submit(client, names)
        in_pool = 0
        while in_pool < 50:
            assert time.monotonic() - started < 40, "never 50 transactions in flight"
            in_pool = int(chain.rpc("txpool_status")["pending"], 16)
            await asyncio.sleep(0.02)
        stack.kill("executor")

        chain.set_interval_mining(0)  # hold the chain still while the log is counted
        before = await evm.events()
        recorded = [h for hs in signed_hashes(before).values() for h in hs]
        unmined = [h for h in recorded if evm.receipt(h) is None]
        outcomes = sum(e["type"] in ("BucketCreated", "BucketFailed") for e in before)
        chain.set_interval_mining(2)
        assert len(unmined) >= 50, (len(unmined), len(recorded), outcomes)
        assert outcomes < len(names)  # the crash came mid-run

        stack.start("executor")
        jobs = await wait_all_terminal(stack, client, ids, timeout=90)

    assert Counter(j["status"] for j in jobs.values()) == {"completed": len(names)}
    logs = evm.create_logs()
    assert all(logs[bucket_id(n)] == 1 for n in names), [
        n for n in names if logs[bucket_id(n)] != 1
    ]
    assert sum(logs.values()) == len(names)
    events = await evm.events()
    for name, hashes in signed_hashes(events).items():
        receipts = [r for r in (evm.receipt(h) for h in hashes) if r is not None]
        assert len(receipts) == 1, (name, hashes)  # one mined, the others replaced or never sent
        assert int(receipts[0]["status"], 16) == 1, (name, receipts[0])  # nothing reverted
    # A job that had recorded a transaction before the kill started no new attempt after it.
    followed = {e["data"]["job_id"] for e in before if e["type"] == "BucketTransactionSigned"}

    def attempts(log: list[dict[str, Any]]) -> Counter[str]:
        return Counter(e["data"]["job_id"] for e in log if e["type"] == "BucketProcessing")

    assert len(followed) >= 50
    assert [j for j in followed if attempts(events)[j] != attempts(before)[j]] == []
    for job in jobs.values():
        receipt = evm.receipt(job["tx_hash"])
        assert receipt is not None and int(receipt["status"], 16) == 1, job
