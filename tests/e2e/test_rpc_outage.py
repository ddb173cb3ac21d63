"""The chain's RPC unreachable for 60 s, at process level: the executor (evm backend, the
transaction manager) reaches anvil (2 s blocks) only through a `TcpProxy`, which the test cuts
while some creates are in flight (recorded, not mined) and others are not signed yet.

60 s is far longer than the whole retry budget: MAX_ATTEMPTS * RETRY_DELAY_S = 3 * 2 s = 6 s
here (the default attempts, a retry delay below the default 10 s). An outage counted against
that budget would fail jobs; a lane that signed a create again for a transaction it could not
see would duplicate it. The rule is neither: no job fails, nothing is re-signed, everything
resumes. The witness is the chain itself (one CreateBucket log per name from our key, no
receipt of ours reverted) and the log (each job signed its create at one nonce only).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

import pytest

from tests.support.evm_stack import (
    EvmStack,
    bucket_id,
    signed_hashes,
    submit,
    wait_all_terminal,
)
from tests.support.stack import unique_name

pytestmark = pytest.mark.slow

OUTAGE_S = 60.0
MAX_ATTEMPTS = 3
RETRY_DELAY_S = 2.0


def signed_by_job(events: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    by_job: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        if event["type"] == "BucketTransactionSigned":
            by_job.setdefault(event["data"]["job_id"], []).append(event["data"])
    return by_job


async def test_rpc_unreachable_longer_than_the_retry_budget_fails_and_duplicates_nothing(
    evm_stack_factory: Any,
) -> None:
    assert OUTAGE_S > 5 * MAX_ATTEMPTS * RETRY_DELAY_S  # clearly past the whole retry budget
    evm: EvmStack = evm_stack_factory(
        rpc_proxy=True, max_attempts=MAX_ATTEMPTS, retry_delay_s=RETRY_DELAY_S
    )
    chain, stack, proxy = evm.chain, evm.stack, evm.proxy
    assert proxy is not None
    names = [unique_name("outage") for _ in range(40)]
    late = [unique_name("outage-late") for _ in range(5)]
    async with stack.client() as client:
        started = time.monotonic()
        ids = await submit(client, names)
        in_pool = 0
        while in_pool < 5:  # some sent and not mined yet
            assert time.monotonic() - started < 30, "never 5 transactions in flight"
            in_pool = int(chain.rpc("txpool_status")["pending"], 16)
            await asyncio.sleep(0.02)
        proxy.cut()
        cut_at = time.monotonic()

        chain.set_interval_mining(0)  # hold the chain still while the log is counted
        before = await evm.events()
        recorded = [h for hs in signed_hashes(before).values() for h in hs]
        unmined = [h for h in recorded if evm.receipt(h) is None]
        signed_jobs = set(signed_by_job(before))
        chain.set_interval_mining(2)  # the chain carries on: what was sent is mined unseen
        assert len(unmined) >= 5, (len(unmined), len(recorded))
        assert len(signed_jobs) < len(names), "every job was signed before the cut"

        await asyncio.sleep(OUTAGE_S / 2 - (time.monotonic() - cut_at))
        ids += await submit(client, late)  # accepted (202) while the chain is unreachable
        await asyncio.sleep(OUTAGE_S - (time.monotonic() - cut_at))
        during = await evm.events()
        proxy.restore()
        outage = time.monotonic() - cut_at

        jobs = await wait_all_terminal(stack, client, ids, timeout=60)
        settled = time.monotonic() - cut_at - outage

    every = names + late
    print(
        f"\ncut {cut_at - started:.1f} s after the first POST with {len(unmined)} of "
        f"{len(recorded)} recorded transactions unmined and {len(names) - len(signed_jobs)} "
        f"of {len(names)} jobs not signed; outage {outage:.1f} s; all {len(every)} terminal "
        f"{settled:.1f} s after the restore"
    )
    assert Counter(j["status"] for j in jobs.values()) == {"completed": len(every)}
    assert [e for e in during if e["type"] == "BucketFailed"] == []
    logs = evm.create_logs()
    assert [n for n in every if logs[bucket_id(n)] != 1] == []
    assert sum(logs.values()) == len(every)
    events = await evm.events()
    for name, hashes in signed_hashes(events).items():
        receipts = [r for r in (evm.receipt(h) for h in hashes) if r is not None]
        assert len(receipts) == 1, (name, hashes)  # one mined, the others replaced or unsent
        assert int(receipts[0]["status"], 16) == 1, (name, receipts[0])  # nothing reverted
    signed = signed_by_job(events)
    assert sorted(signed) == sorted(ids)
    for job_id, transactions in signed.items():
        assert len({t["nonce"] for t in transactions}) == 1, (job_id, transactions)
        assert [t["kind"] for t in transactions].count("create") == 1, (job_id, transactions)
    attempts = Counter(e["data"]["job_id"] for e in events if e["type"] == "BucketProcessing")
    assert attempts == Counter(ids)  # the outage spent no attempt
    executor_log = (stack.log_dir / "executor.log").read_text(errors="replace")
    assert "chain RPC unreachable" in executor_log  # the executor did see the outage
    for job in jobs.values():
        receipt = evm.receipt(job["tx_hash"])
        assert receipt is not None and int(receipt["status"], 16) == 1, job
