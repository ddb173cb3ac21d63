"""The signer fence (services/executor/chain/fence.py) on the machine's real Postgres, and a
lane behind it on a real anvil chain. Keys here are anvil's public dev keys (public test data).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import time
from collections.abc import AsyncIterator

import psycopg
import pytest

from localinfra.chain import deploy_storage
from localinfra.dev_keys import DEV_ACCOUNTS
from services.executor.chain.fence import SignerFence, libpq_url, lock_key
from services.executor.chain.keys import SigningKey
from services.executor.chain.lane import LaneConfig
from services.executor.chain.manager import TransactionManager
from services.executor.chain.records import Attempt
from services.executor.chain.rpc import JsonRpc
from tests.chain.fixtures import REPO, AnvilFactory

CHAIN_ID = 31337
ADDRESS, KEY = DEV_ACCOUNTS[2]
OTHER = DEV_ACCOUNTS[3][0]


@pytest.fixture
async def fences(database_url: str) -> AsyncIterator[list[SignerFence]]:
    made: list[SignerFence] = []
    yield made
    for fence in made:
        await fence.close()


def new_fence(made: list[SignerFence], url: str) -> SignerFence:
    fence = SignerFence(url, check_timeout_s=2.0, retry_s=0.1)
    made.append(fence)
    return fence


async def terminate_holder(url: str, address: str) -> None:
    """End the session that holds `address`'s lock, as an administrator (or a network) would."""
    key = lock_key(CHAIN_ID, address)
    async with await psycopg.AsyncConnection.connect(libpq_url(url), autocommit=True) as conn:
        cur = await conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' "
            "AND classid::int8 * 4294967296 + objid::int8 = %s AND granted",
            (key,),
        )
        assert await cur.fetchall(), "nobody held the lock"


async def test_a_second_fence_for_the_same_signer_waits_as_standby_until_the_first_closes(
    database_url: str, fences: list[SignerFence], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="services.executor.chain.fence")
    holder, standby = new_fence(fences, database_url), new_fence(fences, database_url)
    assert await holder.acquire(CHAIN_ID, [ADDRESS])
    await holder.verify()

    waiting = asyncio.create_task(standby.acquire(CHAIN_ID, [ADDRESS]))
    await asyncio.sleep(1.0)
    assert not waiting.done(), "two fences held one signer at once"
    assert "standby" in caplog.text

    await holder.close()
    started = time.monotonic()
    assert await asyncio.wait_for(waiting, 5)
    assert time.monotonic() - started < 1.0
    await standby.verify()


async def test_a_pool_is_taken_all_or_none(database_url: str, fences: list[SignerFence]) -> None:
    first = new_fence(fences, database_url)
    assert await first.acquire(CHAIN_ID, [ADDRESS])
    stop = asyncio.Event()
    both = new_fence(fences, database_url)
    wanting = asyncio.create_task(both.acquire(CHAIN_ID, [ADDRESS, OTHER], stop))
    await asyncio.sleep(0.5)
    # the pool's other key is not held by the waiting fence: a third one can take it
    third = new_fence(fences, database_url)
    third_stop = asyncio.Event()
    asyncio.get_running_loop().call_later(2.0, third_stop.set)
    assert await third.acquire(CHAIN_ID, [OTHER], third_stop)
    stop.set()
    assert await wanting is False


async def test_a_terminated_session_loses_the_fence_and_verify_never_returns(
    database_url: str, fences: list[SignerFence]
) -> None:
    fence = new_fence(fences, database_url)
    assert await fence.acquire(CHAIN_ID, [ADDRESS])
    await terminate_holder(database_url, ADDRESS)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(fence.verify(), 5)
    assert fence.lost.is_set()


async def test_a_lane_whose_fence_is_lost_signs_nothing(
    database_url: str, fences: list[SignerFence], anvil_factory: AnvilFactory
) -> None:
    chain = anvil_factory(block_time=None)
    contract = deploy_storage(chain)
    fence = new_fence(fences, database_url)
    assert await fence.acquire(CHAIN_ID, [ADDRESS])
    rpc = JsonRpc(chain.rpc_url)
    manager = TransactionManager(rpc, [SigningKey(KEY)], LaneConfig(CHAIN_ID, contract), 0.2, fence)
    await manager.start()
    recorded: list[Attempt] = []

    async def journal(attempt: Attempt) -> None:
        recorded.append(attempt)

    try:
        await asyncio.wait_for(manager.create("fenced-one", journal), 30)
        assert len(recorded) == 1
        before = chain.rpc("eth_getTransactionCount", ADDRESS, "pending")

        await terminate_holder(database_url, ADDRESS)
        blocked = asyncio.create_task(manager.create("fenced-two", journal))
        await asyncio.sleep(3)
        assert not blocked.done()
        assert fence.lost.is_set()
        assert len(recorded) == 1, "a lane signed after its fence was lost"
        assert chain.rpc("eth_getTransactionCount", ADDRESS, "pending") == before
        blocked.cancel()
    finally:
        await manager.close()
        await rpc.close()


HOLDER = """
import asyncio, sys
from services.executor.chain.fence import SignerFence

async def main() -> None:
    fence = SignerFence(sys.argv[1])
    assert await fence.acquire(int(sys.argv[2]), [sys.argv[3]])
    print("held", flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


async def test_a_sigkilled_holders_lock_is_free_at_once(
    database_url: str, fences: list[SignerFence]
) -> None:
    holder = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        HOLDER,
        database_url,
        str(CHAIN_ID),
        ADDRESS,
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None
        assert await asyncio.wait_for(holder.stdout.readline(), 30) == b"held\n"
        standby = new_fence(fences, database_url)
        waiting = asyncio.create_task(standby.acquire(CHAIN_ID, [ADDRESS]))
        await asyncio.sleep(0.5)
        assert not waiting.done()
        holder.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        assert await asyncio.wait_for(waiting, 10)
        took = time.monotonic() - killed
        assert took < 2.0, f"the lock took {took:.2f} s to free"
    finally:
        if holder.returncode is None:
            holder.kill()
        await holder.wait()
