"""The whole pipeline on a real EVM chain: api + executor (evm backend, transaction manager) +
projector as OS processes, real Kafka, real Postgres, anvil with 2 s blocks and our Storage
contract. The witness is the chain: CreateBucket logs per name and the receipts of every
transaction the log says we signed (the stack and its witnesses: tests/support/evm_stack.py).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from localinfra.dev_keys import DEV_ACCOUNTS
from tests.support.evm_stack import (
    ADDRESS,
    EvmStack,
    bucket_id,
    signed_hashes,
    submit,
    wait_all_terminal,
)
from tests.support.stack import unique_name

pytestmark = pytest.mark.slow


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


async def test_jobs_signed_by_a_key_removed_from_the_pool_complete_watch_only_after_a_restart(
    evm_stack_factory: Any, tmp_path: Path
) -> None:
    evm: EvmStack = evm_stack_factory()
    chain, stack = evm.chain, evm.stack
    chain.set_interval_mining(0)  # the creates wait in the mempool while the pool changes
    names = [unique_name("retired") for _ in range(5)]
    async with stack.client() as client:
        ids = await submit(client, names)
        deadline = time.monotonic() + 30
        while int(chain.rpc("txpool_status")["pending"], 16) < len(names):
            assert time.monotonic() < deadline, "the creates never reached the mempool"
            await asyncio.sleep(0.05)
        stack.kill("executor")
        chain.drop_all_transactions()  # and the node lost them too

        new_address, new_key = DEV_ACCOUNTS[4]  # anvil's public dev key 4: test data
        pool = tmp_path / "new-pool"
        pool.write_text(new_key + "\n")
        pool.chmod(0o600)
        stack.start("executor", env={"CHAIN_KEY_POOL_FILE": str(pool)})
        chain.set_interval_mining(2)
        jobs = await wait_all_terminal(stack, client, ids, timeout=60)
        later = await submit(client, [unique_name("new-key")])
        (after,) = (await wait_all_terminal(stack, client, later, timeout=60)).values()

    assert Counter(j["status"] for j in jobs.values()) == {"completed": len(names)}
    logs = evm.create_logs()
    assert all(logs[bucket_id(n)] == 1 for n in names)  # under the removed key, once each
    events = await evm.events()
    signed = [e["data"] for e in events if e["type"] == "BucketTransactionSigned"]
    assert sorted(d["bucket_name"] for d in signed if d["signer"] == ADDRESS) == sorted(names)
    assert [d["bucket_name"] for d in signed if d["signer"] == new_address] == [
        after["bucket_name"]
    ]
    assert after["status"] == "completed"
